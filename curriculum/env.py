"""A Gymnasium wrapper that plays curriculum tasks: one task per episode, one outcome per episode.

:class:`CurriculumEnv` wraps one environment. At every ``reset`` (including the autoresets of
vector envs, which pass neither seed nor options) it draws a task from the shared curriculum and
puts the task's env config into the env; at the step that ends the episode it reports the
episode's score to the curriculum, once, and adds a small numeric dict under
``info["curriculum"]`` to that step's info.

Two forms::

    CurriculumEnv(MyGridEnv(), curriculum)        # MyGridEnv.set_task(env_cfg) applies a task
    CurriculumEnv(curriculum=curriculum, env_factory=build_lake)  # build_lake(env_cfg) -> env

The factory form builds (and rebuilds, when the config changes) the env from each task's config,
for envs that read their config in ``__init__`` (FrozenLake's map). See
:mod:`curriculum.env_tasks` for both forms, the task id they may take, and the rule that every
task keeps the observation and action spaces.

Vector envs and worker processes
--------------------------------
Construction is cheap and touches no pool: no task is drawn, created or counted before the first
``reset`` (the factory form builds its first env from the reference task's config, id 0, which
reads no pool). The throwaway envs that ``gymnasium.vector.AsyncVectorEnv`` (and PufferLib) build
in the parent process to read the spaces therefore leave no trace in the pool's counters.

Env factories must be picklable: module-level functions, or ``functools.partial`` over one. A
:class:`~curriculum.Curriculum` pickles as its config and session id and re-attaches to the same
pool in the worker, so it can be bound into the factory::

    import functools

    import gymnasium
    from curriculum import Curriculum, CurriculumEnv

    def build_lake(env_cfg):                      # module level: picklable
        return gymnasium.make("FrozenLake-v1", desc=env_cfg["desc"],
                              is_slippery=env_cfg["is_slippery"])

    def make_env(curriculum: Curriculum) -> CurriculumEnv:
        return CurriculumEnv(curriculum=curriculum, env_factory=build_lake)

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

A multi-agent env (per-agent arrays) runs under PufferLib as a native PufferLib env through
:class:`curriculum.env_puffer.CurriculumPufferEnv`.

Outcomes and sample counts are buffered per process (``write_batch_size``) and written when the
buffer fills, at ``close()`` of an env that used the pool, and at a clean process exit. PufferLib's
Multiprocessing backend terminates its workers without closing their envs: use
``write_batch_size=1`` there (each outcome then writes the buffer at once; only the sample counts
of resets since a worker's last outcome can be lost). It does not wait for them either: on
/dev/shm, join them (``for p in envs.processes: p.join()``) before closing the curriculum, so that
the last process to leave removes the pool (a worker killed while attached cannot leave it, and a
pool whose last users were killed stays in /dev/shm, orphaned).

``close()`` closes the wrapped env and writes this process's buffered outcomes, but it does NOT
close the curriculum: other envs (in this process and in others) share it.

Failing tasks and forced tasks
------------------------------
A task whose config fails to build (``get_env_cfg()``) or to apply (or its env to build) is
reported with ``report_task_failure`` and another task is drawn, up to ``max_task_attempts`` tasks
per reset; then a ``ConfigError`` names the last task and its exception. A task that changes the
spaces is reported and raises ``ConfigError`` at once. Exceptions of the wrapped env's own
``reset`` propagate unchanged.

``reset(options={"task_id": id})`` plays the task ``id`` instead of drawing one (for evaluation):
its config is rebuilt from the id by the curriculum's generator (a
:class:`~curriculum.StagedCurriculum`'s: that of ``options["stage"]`` when given, else of the
stage the task is known in, see ``StagedCurriculum.task_for_id``). ``id`` is an int, a numpy integer
(the terminal info's ``task_id``, also as batched by a vector env) or an integral float. Such an
episode is not counted as scheduled, its score is NOT reported to the pool (evaluation must not
steer the curriculum), and a failure of its config raises at once (nothing else is tried: the
caller asked for that task). Its terminal info still carries ``info["curriculum"]``. The other
options are passed on to the wrapped env's ``reset``.

Episodes and scores
-------------------
An episode ends at the step where ``terminated`` or ``truncated`` is true; with per-agent arrays
(multi-agent envs) when every agent is done, and its return is then the mean of the agents'
returns (:mod:`curriculum.env_episode`). The score is ``score_fn(info, episode_return)``, else
``info["score"]``, else the return mapped from ``score_range`` onto [0, 1]. A score outside
[0, 1] raises ``ScoreError`` naming the fixes, or, with ``out_of_range="clip"``, is clipped with
one warning per process (:mod:`curriculum.env_scores`). Each score is reported with the episode's
length in environment steps (the pool's ``num_steps``, and the clock of a staged curriculum's
"time" criterion), and with ``info["priority"]`` of the terminal step when present (Prioritized
Level Replay's per-episode score, see ``Curriculum.update_task_performance``).

The terminal info
-----------------
``info["curriculum"]`` holds numbers only, always under the same keys (:data:`INFO_KEYS`):
``task_id`` (int64), ``score``, ``stage`` (the index of the stage the episode's task came from,
with a :class:`~curriculum.StagedCurriculum`; else 0.0), and, for the episode's label,
``label_completions``, ``label_samples``, ``label_evictions``, ``label_failures``,
``label_mean_reward``, ``label_success_rate`` and ``label_mean_lp`` (the ``label/<label>/...``
stats keys of the same names; floats; the three averages NaN while there is nothing to average).

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
from collections.abc import Callable
from typing import Any, SupportsFloat

try:
    import gymnasium as gym
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "curriculum.env needs gymnasium>=1.0: pip install 'curriculum-pool[env]'"
    ) from exc

import numpy as np

from curriculum.curriculum import Curriculum
from curriculum.env_episode import EpisodeReturns
from curriculum.env_info import (
    INFO_KEY,
    INFO_KEYS,
    PRIORITY_KEY,
    task_id_option,
    terminal_info,
)
from curriculum.env_scores import OutOfRange, Scorer
from curriculum.env_tasks import (
    EnvFactory,
    TaskSpaceError,
    check_spaces,
    reference_env_cfg,
    resolve_apply,
)
from curriculum.errors import ConfigError, PoolClosedError
from curriculum.staged import StagedCurriculum
from curriculum.task import CurriculumTask

AnyCurriculum = Curriculum | StagedCurriculum

__all__ = ["INFO_KEY", "INFO_KEYS", "CurriculumEnv"]


class CurriculumEnv(gym.Wrapper):
    """Plays one curriculum task per episode and reports each finished episode's score once.

    See the module docstring for the protocol, the score rules, the terminal info, and how to
    build picklable env factories.

    Attributes:
        curriculum: The shared curriculum (not owned: ``close()`` leaves it open).
        task: The task of the current episode, or None (before the first reset, or when the
            episode plays a task forced by ``options={"task_id": ...}``).
        task_id: The id of the current episode's task, or None before the first reset.
        clipped_scores: How many scores outside [0, 1] were clipped (``out_of_range="clip"``).
        reported_episodes: How many episode scores this wrapper reported to the curriculum.
        task_failures: How many task configs failed to build or apply (each was reported).
    """

    def __init__(
        self,
        env: gym.Env | AnyCurriculum | None = None,
        curriculum: AnyCurriculum | None = None,
        apply_task: Callable[..., Any] | None = None,
        score_fn: Callable[[dict[str, Any], float], SupportsFloat] | None = None,
        *,
        env_factory: Callable[..., gym.Env] | None = None,
        score_range: tuple[float, float] = (0.0, 1.0),
        out_of_range: OutOfRange = "raise",
        max_task_attempts: int = 5,
        stats_interval_s: float = 10.0,
    ) -> None:
        """Wrap ``env`` (or build it with ``env_factory``); nothing is drawn from (or written
        to) the curriculum until ``reset``.

        Args:
            env: The env to wrap; None with ``env_factory``. (``CurriculumEnv(curriculum,
                env_factory=...)`` is accepted too.)
            curriculum: The shared curriculum (or staged curriculum) the tasks come from and the
                scores go to.
            apply_task: ``apply_task(env, env_cfg)`` configures ``env`` for a task (with a
                parameter named ``task_id``, it gets the task id too). None uses
                ``env.unwrapped.set_task`` or ``set_env_cfg``. Not with ``env_factory``.
            score_fn: ``score_fn(terminal_info, episode_return)`` gives the episode's score.
                None uses ``info["score"]`` if present, else the return mapped by ``score_range``.
            env_factory: ``env_factory(env_cfg)`` builds the env for a task (with a parameter
                named ``task_id``, it gets the task id too; see :mod:`curriculum.env_tasks`).
            score_range: The episode returns mapped linearly onto scores 0 and 1.
            out_of_range: ``"raise"`` (ScoreError) or ``"clip"`` (warned once per process) for a
                score outside [0, 1].
            max_task_attempts: Tasks tried per reset when task configs fail (at least 1).
            stats_interval_s: Largest age of the stats behind the label figures of the info.

        Raises:
            ConfigError: an argument is invalid; neither or both of ``env`` and ``env_factory``;
                the factory fails on the reference task; or ``apply_task`` is None and the env
                has no ``set_task`` / ``set_env_cfg`` method.
        """
        if isinstance(env, (Curriculum, StagedCurriculum)) and curriculum is None:
            env, curriculum = None, env
        if not isinstance(curriculum, (Curriculum, StagedCurriculum)):
            raise ConfigError(
                "CurriculumEnv needs a Curriculum or StagedCurriculum, "
                f"got {type(curriculum).__name__}"
            )
        self._scorer = Scorer(score_fn, score_range, out_of_range)
        self._max_task_attempts = _check_attempts(max_task_attempts)
        self._stats_interval_s = _check_interval(stats_interval_s)
        self._factory: EnvFactory | None = None
        if env_factory is not None:
            if env is not None or apply_task is not None:
                raise ConfigError(
                    "CurriculumEnv takes either env (with apply_task or set_task) or "
                    "env_factory, not both"
                )
            self._factory = EnvFactory(env_factory)
            env = self._build_reference_env(curriculum)
        elif not isinstance(env, gym.Env):
            raise ConfigError(
                f"CurriculumEnv needs a gymnasium.Env or env_factory=..., got {type(env).__name__}"
            )
        super().__init__(env)
        self.curriculum = curriculum
        self._spaces = (env.observation_space, env.action_space)
        self._apply = None if self._factory is not None else resolve_apply(env, apply_task)

        self.task: CurriculumTask | None = None
        self.task_id: int | None = None
        self.reported_episodes = 0
        self.task_failures = 0
        self._label = ""
        self._report = False  # whether the current episode's score goes to the pool
        self._in_episode = False  # reset done and the episode has not ended yet
        self._episode = EpisodeReturns()
        self._stage = 0  # the stage of the current episode's task
        self._used_pool = False  # this wrapper drew or reported anything (close() flushes)
        self._rebuilt_seed: int | None = None  # the first seed of an env just rebuilt

    def _build_reference_env(self, curriculum: AnyCurriculum) -> gym.Env:
        assert self._factory is not None
        try:
            return self._factory.build(reference_env_cfg(curriculum), 0)
        except Exception as exc:
            raise ConfigError(
                f"env_factory failed on the config of the reference task (id 0), which gives "
                f"the env's spaces: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def clipped_scores(self) -> int:
        """How many scores outside [0, 1] this wrapper clipped."""
        return self._scorer.clipped

    @property
    def agent_returns(self) -> np.ndarray:
        """Each agent's return in the current (or last) episode; one entry for one agent."""
        returns = self._episode.agent_returns
        return np.zeros(0) if returns is None else returns.copy()

    @property
    def episode_over(self) -> bool:
        """True before the first reset and from the step that ends an episode until the next
        reset."""
        return not self._in_episode

    # -- reset: one task per episode ----------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Draw a task (or play ``options["task_id"]``), apply it, and reset the wrapped env.

        Raises:
            ConfigError: ``max_task_attempts`` drawn tasks in a row failed to build or apply, a
                task changes the spaces, or the forced task id is invalid or its config failed.
        """
        self._in_episode = False
        self.task, self.task_id = None, None  # a failed reset leaves no episode to step
        if self._factory is not None:
            self._factory.seed_from(seed)
        self._rebuilt_seed = None
        inner_options = options
        if options is not None and "task_id" in options:
            inner_options = {k: v for k, v in options.items() if k not in ("task_id", "stage")}
            self._play_forced(options["task_id"], options.get("stage"))
        else:
            self._play_drawn()
        if seed is None:
            seed = self._rebuilt_seed
        obs, info = self.env.reset(seed=seed, options=inner_options)
        self._episode = EpisodeReturns()
        self._in_episode = True
        return obs, info

    def _put(self, task: CurriculumTask) -> None:
        """Put the task's config into the env (building a new env in the factory form)."""
        env_cfg = task.get_env_cfg()
        if self._factory is None:
            assert self._apply is not None
            self._apply(env_cfg, task.task_id)
            check_spaces(self._spaces, self.env, task.task_id, task.get_label())
            return
        if not self._factory.needs_rebuild(env_cfg, task.task_id):
            return
        env = self._factory.build(env_cfg, task.task_id)
        try:
            check_spaces(self._spaces, env, task.task_id, task.get_label())
        except TaskSpaceError:
            env.close()
            self._factory.built_from = None
            raise
        old, self.env = self.env, env
        self._rebuilt_seed = self._factory.next_seed()
        old.close()

    def _play_drawn(self) -> None:
        curriculum = self.curriculum
        last: tuple[int, BaseException] | None = None
        for _ in range(self._max_task_attempts):
            self._used_pool = True
            task = curriculum.get_task()
            try:
                self._put(task)
            except TaskSpaceError:  # another task would not fix the task space: stop here
                self._fail(task)
                raise
            except Exception as exc:  # any failure of the task's config: try another task
                self._fail(task)
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

    def _fail(self, task: CurriculumTask) -> None:
        self.task_failures += 1
        self.curriculum.report_task_failure(task.task_id)

    def _play_forced(self, task_id: Any, stage: Any = None) -> None:
        try:
            if stage is None:
                task = self.curriculum.task_for_id(task_id_option(task_id))
            elif isinstance(self.curriculum, Curriculum):
                raise ConfigError("options['stage'] applies to a StagedCurriculum only")
            else:
                task = self.curriculum.task_for_id(task_id_option(task_id), stage=stage)
            self._put(task)
        except Exception as exc:
            raise ConfigError(
                f"task {task_id!r} (forced by options['task_id']) failed to build or apply on "
                f"{type(self.env.unwrapped).__name__}: {type(exc).__name__}: {exc}"
            ) from exc
        self.task, self.task_id, self._report = None, task.task_id, False
        self._label = task.get_label()
        self._stage = task.stage

    # -- step: one outcome per finished episode -----------------------------------------------

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step the wrapped env; at the step that ends the episode, report its score once.

        Raises:
            gymnasium.error.ResetNeeded: ``step`` before the first ``reset``.
            ScoreError: the episode's score is NaN, infinite or not a number, or outside [0, 1]
                with ``out_of_range="raise"``.
            ValueError: per-agent arrays changed their number of agents within an episode.
        """
        if self.task_id is None:
            raise gym.error.ResetNeeded("CurriculumEnv: call reset() before step()")
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not self._in_episode:  # a step after the episode ended, without reset: pass through
            return obs, reward, terminated, truncated, info
        if not self._episode.add(reward, terminated, truncated):
            return obs, reward, terminated, truncated, info
        self._in_episode = False  # from here on, nothing is reported for this episode again
        score = self._scorer.score(info, self._episode.mean_return, self.task_id)
        if self._report:
            self.curriculum.update_task_performance(
                self.task_id, score, steps=self._episode.steps, priority=info.get(PRIORITY_KEY)
            )
            self.reported_episodes += 1
        info = dict(info)
        info[INFO_KEY] = terminal_info(
            self.curriculum, self._stats_interval_s, self.task_id, score, self._stage, self._label
        )
        return obs, reward, terminated, truncated, info

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


def _check_attempts(max_task_attempts: Any) -> int:
    if isinstance(max_task_attempts, bool) or not isinstance(max_task_attempts, int):
        raise ConfigError(f"max_task_attempts must be an int, got {max_task_attempts!r}")
    if max_task_attempts < 1:
        raise ConfigError(f"max_task_attempts must be at least 1, got {max_task_attempts}")
    return max_task_attempts


def _check_interval(stats_interval_s: Any) -> float:
    try:
        interval = float(stats_interval_s)
    except (TypeError, ValueError):
        interval = math.nan
    if not interval >= 0.0 or math.isinf(interval):
        raise ConfigError(f"stats_interval_s must be finite and >= 0, got {stats_interval_s!r}")
    return interval
