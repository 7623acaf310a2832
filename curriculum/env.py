"""A Gymnasium wrapper that plays curriculum tasks: one task per episode, one outcome per episode.

:class:`CurriculumEnv` wraps one environment. At every ``reset`` (including the autoresets of
vector envs, which pass neither seed nor options) it draws a task from the shared curriculum and
applies the task's env config to the wrapped env; at the step that ends the episode (terminated or
truncated) it reports the episode's score to the curriculum, once, and adds a small numeric dict
under ``info["curriculum"]`` to that step's info.

Vector envs and worker processes
--------------------------------
Construction is cheap and touches no pool: no task is drawn, created or counted before the first
``reset``. The throwaway envs that ``gymnasium.vector.AsyncVectorEnv`` (and PufferLib) build in the
parent process to read the spaces therefore leave no trace in the pool's counters.

Env factories must be picklable: module-level functions, or ``functools.partial`` over one. A
:class:`~curriculum.Curriculum` pickles as its config and session id and re-attaches to the same
pool in the worker, so it can be bound into the factory::

    import functools

    import gymnasium
    from curriculum import Curriculum, CurriculumEnv

    def make_env(curriculum: Curriculum, max_steps: int = 200) -> CurriculumEnv:
        return CurriculumEnv(MyGridEnv(max_steps=max_steps), curriculum)  # MyGridEnv.set_task(cfg)

    curriculum = Curriculum(config)
    factory = functools.partial(make_env, curriculum)
    envs = gymnasium.vector.AsyncVectorEnv([factory] * 8, context="spawn")
    ...
    envs.close()        # closes the envs (each flushes what it recorded), not the curriculum
    curriculum.close()  # the trainer closes the shared curriculum itself, last

A lambda or a closure is not picklable by ``pickle`` (AsyncVectorEnv happens to use cloudpickle,
PufferLib and plain ``multiprocessing`` do not). PufferLib calls
``creator(*args, buf=..., seed=...)``: a PufferLib creator is a module-level function taking those
keywords and the curriculum as a positional argument (``env_args=[curriculum]``)::

    def make_puffer_env(curriculum, buf=None, seed=0):
        return pufferlib.emulation.GymnasiumPufferEnv(
            env_creator=functools.partial(make_env, curriculum), buf=buf, seed=seed)

Outcomes and sample counts are buffered per process (``write_batch_size``) and written when the
buffer fills, at ``close()`` of an env that used the pool, and at a clean process exit. PufferLib's
Multiprocessing backend terminates its workers without closing their envs: use
``write_batch_size=1`` there (each outcome then writes the buffer at once; only the sample counts
of resets since a worker's last outcome can be lost).

``close()`` closes the wrapped env and writes this process's buffered outcomes, but it does NOT
close the curriculum: other envs (in this process and in others) share it.

Applying a task
---------------
``apply_task(env, env_cfg)`` if given (``env`` is the wrapped env), else the method
``set_task(env_cfg)`` or ``set_env_cfg(env_cfg)`` of ``env.unwrapped``; an env with neither is
refused at construction with a :class:`~curriculum.errors.ConfigError`. A task whose config fails
to build (``get_env_cfg()``) or to apply is reported with ``report_task_failure`` and another task
is drawn, up to ``max_task_attempts`` tasks per reset; then a ``ConfigError`` names the last task
and its exception. Exceptions of the wrapped env's own ``reset`` propagate unchanged.

``reset(options={"task_id": id})`` plays the task ``id`` instead of drawing one (for evaluation):
its config is rebuilt from the id by the curriculum's generator. Such an episode is not counted
as scheduled, its score is NOT reported to the pool (evaluation must not steer the curriculum),
and a failure of its config raises at once (nothing else is tried: the caller asked for that
task). Its terminal info still carries ``info["curriculum"]``. The other options are passed on to
the wrapped env's ``reset``.

Scores
------
``score_fn(info, episode_return)`` if given, else ``info["score"]`` when the terminal info has it,
else the episode return mapped linearly from ``score_range`` onto [0, 1]. Scores outside [0, 1]
are clipped and counted in :attr:`CurriculumEnv.clipped_scores`; a NaN, infinite or non-numeric
score raises :class:`~curriculum.errors.ScoreError` (the episode then counts as over: nothing is
reported for it). Each score is reported with the episode's length in environment steps (the
pool's ``num_steps``, and the clock of a staged curriculum's "time" criterion).

The terminal info
-----------------
``info["curriculum"]`` holds floats only, always under the same keys (vector envs batch info per
key with the dtype of the first value seen): ``task_id``, ``score``, ``stage`` (the index of the
stage the episode's task came from, with a :class:`~curriculum.StagedCurriculum`; else 0.0), and,
for the episode's label, ``label_completions``, ``label_samples``, ``label_evictions``,
``label_failures``, ``label_mean_reward``, ``label_success_rate`` and ``label_mean_lp`` (the
``label/<label>/...`` stats keys of the same names).

The label figures come from ``Curriculum.stats()``, which flushes the write buffer and reads and
scores the whole pool: far too expensive for every episode. They are read from a stats dict
cached per curriculum handle and process (shared by every wrapper on that handle) and refreshed
at most once every ``stats_interval_s`` seconds (default 10) at a terminal step. The figures can
therefore be up to that old, and a label first seen after the last refresh shows 0.0 until the
next one (as does a label beyond the pool's ``max_labels``, counted under ``(other)``).
``stats_interval_s=0`` refreshes at every terminal step (tests, debugging).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, SupportsFloat

try:
    import gymnasium as gym
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "curriculum.env needs gymnasium>=1.0: pip install 'curriculum-pool[env]'"
    ) from exc

from curriculum.curriculum import Curriculum
from curriculum.errors import ConfigError, PoolClosedError, ScoreError
from curriculum.staged import StagedCurriculum
from curriculum.task import CurriculumTask

AnyCurriculum = Curriculum | StagedCurriculum

__all__ = ["INFO_KEY", "INFO_KEYS", "CurriculumEnv"]

INFO_KEY = "curriculum"
"""The key of the terminal step's info under which the wrapper puts its dict."""

_LABEL_FIGURES = (
    "completions",
    "samples",
    "evictions",
    "failures",
    "mean_reward",
    "success_rate",
    "mean_lp",
)
INFO_KEYS = ("task_id", "score", "stage", *(f"label_{name}" for name in _LABEL_FIGURES))
"""The keys of ``info["curriculum"]``, in order (all values are floats)."""

_METHOD_NAMES = ("set_task", "set_env_cfg")


class _StatsCache:
    """``Curriculum.stats()`` of one curriculum handle in one process, at most so old."""

    __slots__ = ("pid", "stats", "taken")

    def __init__(self) -> None:
        self.pid = -1
        self.taken = -math.inf
        self.stats: dict[str, float] = {}

    def get(self, curriculum: AnyCurriculum, max_age_s: float) -> dict[str, float]:
        now = time.monotonic()
        pid = os.getpid()
        if pid != self.pid or now - self.taken >= max_age_s:
            self.stats = curriculum.stats()
            self.taken = now
            self.pid = pid
        return self.stats


# One cache per curriculum handle, shared by every wrapper on that handle in this process.
_STATS_CACHES: weakref.WeakKeyDictionary[AnyCurriculum, _StatsCache] = weakref.WeakKeyDictionary()


def _stats_cache(curriculum: AnyCurriculum) -> _StatsCache:
    cache = _STATS_CACHES.get(curriculum)
    if cache is None:
        cache = _STATS_CACHES[curriculum] = _StatsCache()
    return cache


class CurriculumEnv(gym.Wrapper):
    """Plays one curriculum task per episode and reports each finished episode's score once.

    See the module docstring for the protocol, the score rules, the terminal info, and how to
    build picklable env factories.

    Attributes:
        curriculum: The shared curriculum (not owned: ``close()`` leaves it open).
        task: The task of the current episode, or None (before the first reset, or when the
            episode plays a task forced by ``options={"task_id": ...}``).
        task_id: The id of the current episode's task, or None before the first reset.
        clipped_scores: How many scores outside [0, 1] were clipped.
        reported_episodes: How many episode scores this wrapper reported to the curriculum.
        task_failures: How many task configs failed to build or apply (each was reported).
    """

    def __init__(
        self,
        env: gym.Env,
        curriculum: AnyCurriculum,
        apply_task: Callable[[gym.Env, Any], Any] | None = None,
        score_fn: Callable[[dict[str, Any], float], SupportsFloat] | None = None,
        *,
        score_range: tuple[float, float] = (0.0, 1.0),
        max_task_attempts: int = 5,
        stats_interval_s: float = 10.0,
    ) -> None:
        """Wrap ``env``; nothing is drawn from (or written to) the curriculum until ``reset``.

        Args:
            env: The env to wrap.
            curriculum: The shared curriculum (or staged curriculum) the tasks come from and the
                scores go to.
            apply_task: ``apply_task(env, env_cfg)`` configures ``env`` for a task. None uses
                ``env.unwrapped.set_task(env_cfg)`` or ``env.unwrapped.set_env_cfg(env_cfg)``.
            score_fn: ``score_fn(terminal_info, episode_return)`` gives the episode's score.
                None uses ``info["score"]`` if present, else the return mapped by ``score_range``.
            score_range: The episode returns mapped linearly onto scores 0 and 1.
            max_task_attempts: Tasks tried per reset when task configs fail (at least 1).
            stats_interval_s: Largest age of the stats behind the label figures of the info.

        Raises:
            ConfigError: an argument is invalid, or ``apply_task`` is None and the env has no
                ``set_task`` / ``set_env_cfg`` method.
        """
        super().__init__(env)
        if not isinstance(curriculum, (Curriculum, StagedCurriculum)):
            raise ConfigError(
                "CurriculumEnv needs a Curriculum or StagedCurriculum, "
                f"got {type(curriculum).__name__}"
            )
        self.curriculum = curriculum
        self._apply = self._resolve_apply(env, apply_task)
        if score_fn is not None and not callable(score_fn):
            raise ConfigError(f"score_fn must be callable, got {type(score_fn).__name__}")
        self._score_fn = score_fn
        self._score_low, self._score_high = _check_score_range(score_range)
        if isinstance(max_task_attempts, bool) or not isinstance(max_task_attempts, int):
            raise ConfigError(f"max_task_attempts must be an int, got {max_task_attempts!r}")
        if max_task_attempts < 1:
            raise ConfigError(f"max_task_attempts must be at least 1, got {max_task_attempts}")
        self._max_task_attempts = max_task_attempts
        try:
            interval = float(stats_interval_s)
        except (TypeError, ValueError):
            interval = math.nan
        if not interval >= 0.0 or math.isinf(interval):
            raise ConfigError(f"stats_interval_s must be finite and >= 0, got {stats_interval_s!r}")
        self._stats_interval_s = interval

        self.task: CurriculumTask | None = None
        self.task_id: int | None = None
        self.clipped_scores = 0
        self.reported_episodes = 0
        self.task_failures = 0
        self._label = ""
        self._report = False  # whether the current episode's score goes to the pool
        self._in_episode = False  # reset done and the episode has not ended yet
        self._episode_return = 0.0
        self._episode_steps = 0
        self._stage = 0  # the stage of the current episode's task
        self._used_pool = False  # this wrapper drew or reported anything (close() flushes)

    @staticmethod
    def _resolve_apply(
        env: gym.Env, apply_task: Callable[[gym.Env, Any], Any] | None
    ) -> Callable[[Any], Any]:
        if apply_task is not None:
            if not callable(apply_task):
                raise ConfigError(f"apply_task must be callable, got {type(apply_task).__name__}")
            return lambda env_cfg: apply_task(env, env_cfg)
        base = env.unwrapped
        for name in _METHOD_NAMES:
            method = getattr(base, name, None)
            if callable(method):
                return method
        raise ConfigError(
            f"cannot apply a task to env {type(base).__module__}.{type(base).__qualname__}"
            + (f" (wrapped as {type(env).__name__})" if env is not base else "")
            + ": it has no set_task(env_cfg) or set_env_cfg(env_cfg) method; "
            "pass apply_task=(env, env_cfg) -> None to CurriculumEnv"
        )

    # -- reset: one task per episode ----------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Draw a task (or play ``options["task_id"]``), apply it, and reset the wrapped env.

        Raises:
            ConfigError: ``max_task_attempts`` drawn tasks in a row failed to build or apply, or
                the forced task id is invalid or its config failed.
        """
        self._in_episode = False
        self.task, self.task_id = None, None  # a failed reset leaves no episode to step
        inner_options = options
        if options is not None and "task_id" in options:
            inner_options = {k: v for k, v in options.items() if k != "task_id"}
            self._play_forced(options["task_id"])
        else:
            self._play_drawn()
        obs, info = self.env.reset(seed=seed, options=inner_options)
        self._episode_return = 0.0
        self._episode_steps = 0
        self._in_episode = True
        return obs, info

    def _play_drawn(self) -> None:
        curriculum = self.curriculum
        last: tuple[int, BaseException] | None = None
        for _ in range(self._max_task_attempts):
            self._used_pool = True
            task = curriculum.get_task()
            try:
                self._apply(task.get_env_cfg())
            except Exception as exc:  # any failure of the task's config: try another task
                self.task_failures += 1
                curriculum.report_task_failure(task.task_id)
                last = (task.task_id, exc)
                continue
            self.task, self.task_id, self._report = task, task.task_id, True
            self._label = task.get_label()
            self._stage = task.stage
            return
        assert last is not None
        task_id, exc = last
        raise ConfigError(
            f"{self._max_task_attempts} task(s) in a row failed to build or apply on "
            f"{type(self.env.unwrapped).__name__}; last: task {task_id}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    def _play_forced(self, task_id: Any) -> None:
        try:
            task = self.curriculum.task_for_id(task_id)
            self._apply(task.get_env_cfg())
        except Exception as exc:
            raise ConfigError(
                f"task {task_id!r} (forced by options['task_id']) failed to build or apply on "
                f"{type(self.env.unwrapped).__name__}: {type(exc).__name__}: {exc}"
            ) from exc
        self.task, self.task_id, self._report = None, task.task_id, False
        self._label = task.get_label()
        self._stage = task.stage

    # -- step: one outcome per finished episode -----------------------------------------------

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the wrapped env; at the step that ends the episode, report its score once.

        Raises:
            gymnasium.error.ResetNeeded: ``step`` before the first ``reset``.
            ScoreError: the episode's score is NaN, infinite or not a number.
        """
        if self.task_id is None:
            raise gym.error.ResetNeeded("CurriculumEnv: call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not self._in_episode:  # a step after the episode ended, without reset: pass through
            return obs, reward, terminated, truncated, info
        self._episode_return += float(reward)
        self._episode_steps += 1
        if not (terminated or truncated):
            return obs, reward, terminated, truncated, info
        self._in_episode = False  # from here on, nothing is reported for this episode again
        score = self._score(info)
        if self._report:
            self.curriculum.update_task_performance(self.task_id, score, steps=self._episode_steps)
            self.reported_episodes += 1
        info = dict(info)
        info[INFO_KEY] = self._terminal_info(score)
        return obs, reward, terminated, truncated, info

    def _score(self, info: Mapping[str, Any]) -> float:
        if self._score_fn is not None:
            raw: Any = self._score_fn(info, self._episode_return)
            source = "score_fn"
        elif "score" in info:
            raw, source = info["score"], "info['score']"
        else:
            low, high = self._score_low, self._score_high
            raw, source = (self._episode_return - low) / (high - low), "episode return"
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ScoreError(
                f"score {raw!r} (from {source}) of task {self.task_id} is not a number"
            ) from None
        if not math.isfinite(value):
            raise ScoreError(f"score {raw!r} (from {source}) of task {self.task_id} is not finite")
        if not 0.0 <= value <= 1.0:
            self.clipped_scores += 1
            value = min(max(value, 0.0), 1.0)
        return value

    def _terminal_info(self, score: float) -> dict[str, float]:
        stats = _stats_cache(self.curriculum).get(self.curriculum, self._stats_interval_s)
        prefix = f"label/{self._label}/"
        figures = {f"label_{n}": float(stats.get(prefix + n, 0.0)) for n in _LABEL_FIGURES}
        return {
            "task_id": float(self.task_id),
            "score": score,
            "stage": float(self._stage),
            **figures,
        }

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the wrapped env and write this process's buffered outcomes.

        The curriculum stays open: other envs share it; its owner closes it.
        """
        try:
            if self._used_pool:
                # A curriculum closed by its owner first has nothing left to write.
                with contextlib.suppress(PoolClosedError):
                    self.curriculum.flush()
        finally:
            super().close()


def _check_score_range(score_range: Any) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in score_range)
    except (TypeError, ValueError):
        raise ConfigError(
            f"score_range must be two numbers (low, high), got {score_range!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"score_range must be finite with low < high, got {score_range!r}")
    return low, high
