"""The MiniGrid task family of the PPO example, and the env factory its worker processes run.

Tasks are DoorKey rooms of four sizes (5, 6, 7, 8: the larger the room, the rarer a random
walk finds the key, the door and the goal), plus two impossible variants: a locked door with no
key anywhere (sizes 5 and 8), so the goal can never be reached. A task's env config is a plain
dict ``{"label": "doorkey" | "nokey", "size": int}``; its label is ``doorkey|size:8`` and so on.

Every task shares one observation space: the agent's egocentric 7x7 view (``ImgObsWrapper``),
whatever the room size, so one policy plays them all and one env object can switch between
them at each reset (``CurriculumDoorKeyEnv.set_task``).

This module imports neither torch nor the curriculum's trainer: worker processes import it to
build their envs, and the tests use it without torch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from episode_log import Episode
from minigrid.core.world_object import Key
from minigrid.envs import DoorKeyEnv
from minigrid.wrappers import ImgObsWrapper

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    CurriculumEnv,
    DiscreteRandomConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    TaskGeneratorSet,
)
from curriculum.env import INFO_KEY
from curriculum.errors import ConfigError

SOLVABLE_SIZES = (5, 6, 7, 8)
IMPOSSIBLE_SIZES = (5, 8)
HARDEST_LABEL = "doorkey|size:8"
IMPOSSIBLE_KIND = "nokey"
ALGORITHMS = ("lp", "uniform")
OVERHEAD_INFO_KEY = "curriculum_overhead_s"
"""Info key (every step) of the seconds spent in the curriculum wrapper since the last step."""


def task_generator() -> TaskGeneratorSet.Config:
    """The task family: four solvable DoorKey sizes and two impossible ones, one label each.

    Each of the six labels is equally likely for a new task id (weights 4:2 over the two
    kinds), so a third of the tasks are impossible.
    """
    return TaskGeneratorSet.Config(
        generator_configs=[
            BucketedTaskGenerator.Config(
                child_generator_config=SingleTaskGenerator.Config(
                    env={"label": "doorkey", "size": SOLVABLE_SIZES[0]}
                ),
                buckets={"size": list(SOLVABLE_SIZES)},
            ),
            BucketedTaskGenerator.Config(
                child_generator_config=SingleTaskGenerator.Config(
                    env={"label": IMPOSSIBLE_KIND, "size": IMPOSSIBLE_SIZES[0]}
                ),
                buckets={"size": list(IMPOSSIBLE_SIZES)},
            ),
        ],
        weights=[len(SOLVABLE_SIZES), len(IMPOSSIBLE_SIZES)],
    )


def all_labels() -> list[str]:
    """Every label of the family, solvable sizes first (smallest first), then impossible ones."""
    return [f"doorkey|size:{s}" for s in SOLVABLE_SIZES] + [
        f"{IMPOSSIBLE_KIND}|size:{s}" for s in IMPOSSIBLE_SIZES
    ]


def is_impossible_label(label: str) -> bool:
    """Whether tasks of this label can never be solved."""
    return label.startswith(IMPOSSIBLE_KIND + "|")


def curriculum_config(
    algorithm: str,
    seed: int,
    backend_url: str | None = None,
    num_active_tasks: int = 24,
) -> CurriculumConfig:
    """The curriculum of one run: learning progress (``"lp"``) or uniform sampling.

    Both start from the same pool for a seed (task ids are a hash of the seed); uniform sampling
    never evicts, learning progress evicts tasks that stopped teaching and draws new ones.

    Raises:
        ConfigError: ``algorithm`` is not one of :data:`ALGORITHMS`.
    """
    if algorithm == "lp":
        algo: LearningProgressConfig | DiscreteRandomConfig = LearningProgressConfig(
            backend_url=backend_url
        )
    elif algorithm == "uniform":
        algo = DiscreteRandomConfig(backend_url=backend_url)
    else:
        raise ConfigError(f"algorithm {algorithm!r} is unknown; choose one of {ALGORITHMS}")
    return CurriculumConfig(
        task_generator=task_generator(),
        num_active_tasks=num_active_tasks,
        algorithm_config=algo,
        seed=seed,
    )


class CurriculumDoorKeyEnv(DoorKeyEnv):
    """DoorKey whose room size and key are set per episode by ``set_task(env_cfg)``.

    ``env_cfg["label"] == "nokey"`` removes the key after the room is built: the locked door is
    then the only way through the wall that splits the room, and the goal is behind it, so no
    sequence of actions reaches the goal.
    """

    def __init__(self, size: int = 8, **kwargs: Any) -> None:
        super().__init__(size=size, **kwargs)
        self.has_key = True

    def set_task(self, env_cfg: dict[str, Any]) -> None:
        """Configure the next episode: room ``size`` (and its step limit ``10 * size**2``)."""
        size = int(env_cfg["size"])
        if size < 5:
            raise ValueError(f"DoorKey size must be >= 5, got {size}")
        kind = env_cfg["label"]
        if kind not in ("doorkey", IMPOSSIBLE_KIND):
            raise ValueError(f"task kind {kind!r} is unknown; expected 'doorkey' or 'nokey'")
        self.width = self.height = size
        self.max_steps = 10 * size * size
        self.has_key = kind == "doorkey"

    def _gen_grid(self, width: int, height: int) -> None:
        super()._gen_grid(width, height)
        if self.has_key:
            return
        for i in range(width):
            for j in range(height):
                if isinstance(self.grid.get(i, j), Key):
                    self.grid.set(i, j, None)


def success_score(info: dict[str, Any], episode_return: float) -> float:
    """1 if the episode reached the goal (MiniGrid pays a positive reward only then), else 0."""
    return 1.0 if episode_return > 0.0 else 0.0


class _EnvClock(gym.Wrapper):
    """Adds up the time spent inside the wrapped env's ``reset`` and ``step``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seconds = 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        start = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        start = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            self.seconds += time.perf_counter() - start


class CurriculumOverheadClock(gym.Wrapper):
    """Puts the time spent in the curriculum wrapper (not in the env) into every step's info.

    ``info[OVERHEAD_INFO_KEY]`` is the wall time of this ``step`` (or of the last ``reset`` and
    this step) minus the time inside the env below the curriculum wrapper: ``get_task``,
    applying the task, ``update_task_performance`` and the wrapper's bookkeeping.
    """

    def __init__(self, env: gym.Env, env_clock: _EnvClock) -> None:
        super().__init__(env)
        self._env_clock = env_clock
        self._pending = 0.0

    def _timed(self, call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
        inner_before = self._env_clock.seconds
        start = time.perf_counter()
        result = call(*args, **kwargs)
        total = time.perf_counter() - start
        return result, max(total - (self._env_clock.seconds - inner_before), 0.0)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        (obs, info), overhead = self._timed(self.env.reset, **kwargs)
        self._pending += overhead
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        (obs, reward, terminated, truncated, info), overhead = self._timed(self.env.step, action)
        info = dict(info)
        info[OVERHEAD_INFO_KEY] = self._pending + overhead
        self._pending = 0.0
        return obs, reward, terminated, truncated, info


def make_env(curriculum: Curriculum) -> gym.Env:
    """One worker's env: DoorKey tasks from ``curriculum``, image observations, timed.

    Module-level, so ``functools.partial(make_env, curriculum)`` pickles into worker processes
    (the curriculum re-attaches to the same pool there). This is the one place that builds the
    env and binds it to the curriculum.
    """
    env_clock = _EnvClock(ImgObsWrapper(CurriculumDoorKeyEnv()))
    env = CurriculumEnv(env_clock, curriculum, score_fn=success_score)
    return gym.wrappers.RecordEpisodeStatistics(CurriculumOverheadClock(env, env_clock))


def env_factory(curriculum: Curriculum) -> functools.partial[gym.Env]:
    """A picklable factory of :func:`make_env` over ``curriculum``, for vector envs."""
    return functools.partial(make_env, curriculum)


class EpisodeCollector:
    """Turns the terminal infos of a vector env of :func:`make_env` envs into episodes.

    Expects ``AutoresetMode.SAME_STEP`` (terminal infos under ``infos["final_info"]``).
    """

    def __init__(self, label_of: Callable[[int], str]) -> None:
        """``label_of(task_id)`` gives a task's label (e.g. through ``task_for_id``)."""
        self._label_of = label_of
        self._labels: dict[int, str] = {}
        self.episodes: list[Episode] = []
        self.overhead_s = 0.0

    def label(self, task_id: int) -> str:
        """The label of ``task_id`` (computed once per id)."""
        label = self._labels.get(task_id)
        if label is None:
            label = self._labels[task_id] = self._label_of(task_id)
        return label

    def add(self, infos: dict[str, Any], env_step: int) -> None:
        """Record the episodes that ended in this vector step, and the curriculum's time."""
        self.overhead_s += float(np.sum(infos.get(OVERHEAD_INFO_KEY, 0.0)))
        final = infos.get("final_info")
        if final is None or INFO_KEY not in final:
            return
        cur, stats = final[INFO_KEY], final["episode"]
        for i in np.flatnonzero(final[f"_{INFO_KEY}"]):
            task_id = int(cur["task_id"][i])
            score = float(cur["score"][i])
            self.episodes.append(
                Episode(
                    env_step=env_step,
                    task_id=task_id,
                    label=self.label(task_id),
                    score=score,
                    success=score > 0.5,
                    episode_return=float(stats["r"][i]),
                    length=int(stats["l"][i]),
                )
            )

    def recent_success(self, last: int = 200) -> str:
        """Success rate and count per label over the last ``last`` episodes, as one line."""
        recent = self.episodes[-last:]
        parts = []
        for label in all_labels():
            wins = [e.success for e in recent if e.label == label]
            if wins:
                parts.append(f"{label.replace('|size:', '')}={np.mean(wins):.2f}/{len(wins)}")
        return " ".join(parts)
