"""A simulated student and task space, for the demo, the quality benchmark and tests.

The task space (:func:`task_space`) has graded tasks of nine difficulties in [0.1, 0.9], a share
of impossible tasks (always fail) and a share of trivial tasks (always succeed). Tasks of one
difficulty are distinct tasks (own id, own statistics) that the student finds equally hard.

The student (:class:`SimulatedStudent`) has one competence ``c[d]`` per difficulty level. Its
chance of success on a task of difficulty ``d`` is ``sigmoid(sharpness * (c[d] - d))``, and the
score of an episode is a Bernoulli draw of that chance (0 or 1). Every graded episode teaches:
competence grows by ``learning_rate * 4 p (1 - p)`` (most at the edge of competence, where
``p`` is near 0.5; nothing where the task is always failed or always solved) on the level played
and by that gain times ``transfer ** distance`` on the other levels, so practice at one
difficulty makes its neighbours easier, and a level that starts out of reach becomes learnable.
Competence is capped at ``max_competence``. Impossible and trivial tasks teach nothing.

Three options give the other students of the quality benchmark (all off by default):

- ``forgetting``: every episode, each level's competence decays towards its initial value by
  this fraction of the distance (before the episode's gain), so a level that is not practised,
  directly or through transfer, is forgotten; a mastered level needs occasional practice.
- ``prerequisite``: level ``k`` learns only as far as level ``k - 1`` is mastered: its gain (direct
  or transferred) is multiplied by ``min(1, p[k - 1] / prerequisite)`` (level 0 has no
  prerequisite). Pair it with a small ``transfer`` (partial transfer).
- ``noise``: the score is continuous, ``clip(p + noise * N(0, 1), 0, 1)``, instead of a
  Bernoulli draw of ``p``; impossible tasks then score noise around 0, trivial ones around 1.

``mastery()`` is the mean success probability over the nine levels (the quantity a user cares
about). The student also counts the episodes played per category and, when asked
(``curve_every``), records its mastery every ``curve_every`` episodes, so a run's learning curve
is known whichever process played the episodes. With ``shared=True`` its whole state lives in
one shared-memory array (updated under that array's lock), so worker processes train one student.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
from typing import Any

import numpy as np

from curriculum.generators import BucketedTaskGenerator, SingleTaskGenerator, TaskGeneratorSet

DIFFICULTIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CATEGORIES = (*(f"{d:g}" for d in DIFFICULTIES), "impossible", "trivial")
IMPOSSIBLE = len(DIFFICULTIES)
TRIVIAL = IMPOSSIBLE + 1


def task_space(
    impossible_share: float = 0.1, trivial_share: float = 0.1
) -> TaskGeneratorSet.Config:
    """Graded tasks (labels ``graded|difficulty:<d>``), plus ``impossible`` and ``trivial`` ones.

    Tasks with equal bucket values are still distinct tasks: each has its own id (which a real
    environment would use as its level seed) and its own statistics.
    """
    graded = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "graded"}),
        buckets={"difficulty": list(DIFFICULTIES)},
    )
    return TaskGeneratorSet.Config(
        generator_configs=[
            graded,
            SingleTaskGenerator.Config(env={"label": "impossible"}),
            SingleTaskGenerator.Config(env={"label": "trivial"}),
        ],
        weights=[1.0 - impossible_share - trivial_share, impossible_share, trivial_share],
    )


def category(env_cfg: dict[str, Any]) -> int:
    """Index in :data:`CATEGORIES` of a task of :func:`task_space`."""
    label = env_cfg.get("label")
    if label == "impossible":
        return IMPOSSIBLE
    if label == "trivial":
        return TRIVIAL
    return DIFFICULTIES.index(env_cfg["difficulty"])


class SimulatedStudent:
    """One student's competence per difficulty level, optionally shared between processes.

    The state is one flat array: competences (one per level), episodes per category, the episode
    count, then the recorded mastery curve.
    """

    def __init__(
        self,
        learning_rate: float = 0.02,
        transfer: float = 0.5,
        sharpness: float = 12.0,
        initial_competence: float = 0.05,
        shared: bool = False,
        *,
        max_competence: float = 1.2,
        curve_every: int = 0,
        curve_points: int = 0,
        forgetting: float = 0.0,
        prerequisite: float = 0.0,
        noise: float = 0.0,
    ) -> None:
        """A student that starts able to solve only the easiest tasks, sometimes.

        Args:
            learning_rate: Competence gained by an episode played at p = 0.5.
            transfer: Share of a gain that reaches a level one step away (squared at two...).
            sharpness: Slope of the success probability in ``competence - difficulty``.
            initial_competence: Every level's competence at the start.
            shared: Keep the state in shared memory, for worker processes (spawn or fork).
            max_competence: Cap of every competence.
            curve_every: Record the mastery every this many episodes (0: never).
            curve_points: How many mastery records to keep (the curve's length).
            forgetting: Per-episode decay of every competence towards its initial value.
            prerequisite: Mastery of the level below that lets a level learn at full rate
                (0: no prerequisites).
            noise: Standard deviation of a continuous score around ``p`` (0: Bernoulli scores).
        """
        self.learning_rate = learning_rate
        self.transfer = transfer
        self.sharpness = sharpness
        self.max_competence = max_competence
        self.curve_every = curve_every
        self.initial_competence = initial_competence
        self.forgetting = forgetting
        self.prerequisite = prerequisite
        self.noise = noise
        self.curve_points = curve_points if curve_every else 0
        levels = len(DIFFICULTIES)
        self._counts_at = levels
        self._episodes_at = levels + len(CATEGORIES)
        self._curve_at = self._episodes_at + 1
        size = self._curve_at + self.curve_points
        values = [initial_competence] * levels + [0.0] * (size - levels)
        self._weights = [
            [transfer ** abs(other - level) for other in range(levels)] for level in range(levels)
        ]
        self._shared: Any = mp.get_context("spawn").Array("d", values) if shared else None
        self._values: Any = self._shared.get_obj() if shared else values

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._shared is not None:
            del state["_values"]  # the raw view is rebuilt from the shared array
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._shared is not None:
            self._values = self._shared.get_obj()

    def _lock(self) -> Any:
        return self._shared.get_lock() if self._shared is not None else contextlib.nullcontext()

    def _level_probability(self, level: int) -> float:
        gap = self._values[level] - DIFFICULTIES[level]
        return 1.0 / (1.0 + math.exp(-self.sharpness * gap))

    def success_probability(self, env_cfg: dict[str, Any]) -> float:
        """Chance of success on the task ``env_cfg``."""
        kind = category(env_cfg)
        if kind == IMPOSSIBLE:
            return 0.0
        if kind == TRIVIAL:
            return 1.0
        return self._level_probability(kind)

    def play(self, env_cfg: dict[str, Any], rng: np.random.Generator) -> float:
        """Play one episode: returns the score and learns from the attempt.

        The score is 0 or 1 (a Bernoulli draw of the success probability), or with ``noise``
        the probability plus Gaussian noise, clipped to [0, 1].
        """
        kind = category(env_cfg)
        values = self._values
        with self._lock():
            if self.forgetting:
                self._forget()
            if kind == IMPOSSIBLE:
                p = 0.0
            elif kind == TRIVIAL:
                p = 1.0
            else:
                p = self._level_probability(kind)
                self._learn(kind, self.learning_rate * 4.0 * p * (1.0 - p))
            values[self._counts_at + kind] += 1.0
            episodes = values[self._episodes_at] + 1.0
            values[self._episodes_at] = episodes
            if self.curve_every and episodes % self.curve_every == 0:
                index = int(episodes) // self.curve_every - 1
                if index < self.curve_points:
                    values[self._curve_at + index] = self._mastery()
        if self.noise:
            return float(min(max(p + self.noise * rng.standard_normal(), 0.0), 1.0))
        return float(rng.random() < p)

    def _forget(self) -> None:
        values, rate, start = self._values, self.forgetting, self.initial_competence
        for level in range(len(DIFFICULTIES)):
            values[level] -= rate * (values[level] - start)

    def _learn(self, kind: int, gain: float) -> None:
        values, cap = self._values, self.max_competence
        gates = self._gates() if self.prerequisite else None
        for other, weight in enumerate(self._weights[kind]):
            step = gain * weight * (gates[other] if gates is not None else 1.0)
            values[other] = min(cap, values[other] + step)

    def _gates(self) -> list[float]:
        """Per level, the share of a gain it takes in: how far its prerequisite is mastered."""
        below = [1.0] + [self._level_probability(level) for level in range(len(DIFFICULTIES) - 1)]
        return [min(1.0, p / self.prerequisite) for p in below]

    def _mastery(self) -> float:
        return sum(self._level_probability(level) for level in range(len(DIFFICULTIES))) / len(
            DIFFICULTIES
        )

    def mastery(self) -> float:
        """Mean success probability over the graded difficulty levels."""
        with self._lock():
            return self._mastery()

    def competence(self) -> list[float]:
        """The competence per difficulty level."""
        with self._lock():
            return [float(v) for v in self._values[: len(DIFFICULTIES)]]

    @property
    def episodes(self) -> int:
        """Episodes played so far (by every process sharing the student)."""
        return int(self._values[self._episodes_at])

    def category_counts(self) -> np.ndarray:
        """Episodes played per category of :data:`CATEGORIES`."""
        with self._lock():
            return np.array(self._values[self._counts_at : self._episodes_at], dtype=np.float64)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The recorded mastery curve: (episodes, mastery) at every ``curve_every`` episodes."""
        recorded = (
            min(self.episodes // self.curve_every, self.curve_points) if self.curve_every else 0
        )
        with self._lock():
            mastery = np.array(self._values[self._curve_at : self._curve_at + recorded])
        return np.arange(1, recorded + 1) * self.curve_every, mastery
