"""The facade a trainer uses: which task next, how did it go, stats and checkpoints.

It validates what comes in (:mod:`curriculum.validation`) and delegates to the process's
:class:`~curriculum.session.PoolSession`, through one recovery wrapper (``PoolSession.run``) that
re-attaches to a lost pool per ``on_pool_lost``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.base import PoolState, TaskMemoryBackend
from curriculum.checkpoint import decode_state, encode_state
from curriculum.errors import CheckpointError, PoolClosedError, UnknownTaskError
from curriculum.location import PoolLocation
from curriculum.outage import TRANSIENT
from curriculum.pool_params import pool_params
from curriculum.priority_notes import note_priority
from curriculum.session import PoolSession
from curriculum.slices import slice_stats
from curriculum.stats import compute_stats, task_figures
from curriculum.task import CurriculumTask
from curriculum.validation import (
    check_priorities,
    check_priority,
    check_score,
    check_scores,
    check_steps,
    check_task_id,
    check_task_ids,
    sum_steps,
)

if TYPE_CHECKING:
    from curriculum.config import CurriculumConfig

logger = logging.getLogger("curriculum")

__all__ = ["Curriculum", "check_steps", "pool_params", "sum_steps"]


class Curriculum:
    """One process's handle on a shared curriculum.

    Every process (and host) built from the same config and ``session_id`` shares one pool of
    active tasks. A curriculum pickles into worker processes (fork or spawn) as its config and
    pool location: the worker attaches to the same pool. A /dev/shm pool lives while any process
    is attached (the last one to leave removes it); a Redis pool stays until ``destroy()`` (a
    private one, ``session_id=None``, is removed by its creator at ``close()``).

    Outcomes are queued per process (``write_batch_size``, ``write_max_delay_s``) and written
    under one lock acquisition; ``stats()``, ``get_state()``, ``flush()`` and ``close()`` write
    the queue first. Use ``write_batch_size=1`` for immediate writes.

    A call that raised recorded nothing: ``update_task_performance`` raises only for bad input,
    an unknown task or a full outage buffer. Once it returned, its outcome is recorded exactly
    once, now or (when the pool cannot be written to for a while) when it can again.
    """

    def __init__(self, config: CurriculumConfig) -> None:
        """Create the pool of ``config``'s session, or attach to it if it exists."""
        algorithm = config.algorithm_config
        location = PoolLocation.resolve(algorithm.session_id, algorithm.backend_url)
        self._open(config, location, create=True)

    @classmethod
    def _at(
        cls,
        config: CurriculumConfig,
        location: PoolLocation,
        *,
        create: bool,
        staging: dict[str, Any] | None = None,
    ) -> Curriculum:
        """A handle on the pool at ``location`` (whatever ``config`` names): how a staged
        curriculum opens its stages' pools."""
        curriculum = cls.__new__(cls)
        curriculum._open(config, location, create=create, staging=staging)
        return curriculum

    def _open(
        self,
        config: CurriculumConfig,
        location: PoolLocation,
        *,
        create: bool,
        staging: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.location = location
        self._staging = staging
        self._closed = False
        self._session = PoolSession(config, location, create=create, staging=staging)
        self._stats_cache: tuple[int, dict[str, float]] | None = None

    @property
    def session_id(self) -> str:
        """The name of the shared pool."""
        return self.location.session_id

    @property
    def backend(self) -> TaskMemoryBackend:
        """The storage backend of the pool (atomic operations only)."""
        return self._session.backend

    # -- pickling: config and location cross process boundaries, never handles ----------------

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "location": self.location, "staging": self._staging}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._open(state["config"], state["location"], create=False, staging=state["staging"])

    # -- the hot path ---------------------------------------------------------------------------

    def get_task(self) -> CurriculumTask:
        """The task the next episode should play."""
        session = self._ready()
        task_id, slot, _ = session.run(session.draw, retry=True)
        return CurriculumTask(task_id, slot, session.generator)

    def task_for_id(self, task_id: int) -> CurriculumTask:
        """The task with this id, for evaluation: its config is rebuilt from the id.

        Touches no pool (nothing is scheduled); ``slot`` is -1.
        """
        return CurriculumTask(check_task_id(task_id), -1, self._session.generator)

    def update_task_performance(
        self, task_id: int, score: float, *, steps: int = 1, priority: float | None = None
    ) -> None:
        """Record the score (in [0, 1]) of an episode played on ``task_id``.

        ``steps`` is the episode's length in environment steps (counted in ``num_steps``, and
        the clock of a staged curriculum's "time" criterion); without it an episode counts 1.
        ``priority`` is the episode's Prioritized Level Replay score (e.g. its mean absolute
        GAE or a regret estimate; any finite real), read by
        ``PrioritizedLevelReplayConfig(score_function="priority")``; other algorithms store it
        and say once that it steers nothing.

        Raises:
            ScoreError: the score is not a real number, is not finite, or lies outside [0, 1]
                (unless ``clip_scores``), ``steps`` is not an int in [0, 2**40], or
                ``priority`` is not a finite real of magnitude at most 1e30.
            UnknownTaskError: the task is not active and was not handed out by this curriculum.
            BackendUnavailableError: ``max_buffered_outcomes`` are already queued during an
                outage (this outcome is not recorded).
        """
        session = self._ready()
        value = check_score(task_id, score, clip=self.config.clip_scores)
        count = check_steps(steps)
        task_id = check_task_id(task_id)
        if priority is not None:
            priority = check_priority(task_id, priority)
        note_priority(self.config.algorithm_config, priority is not None)
        if session.ranges is None:
            session.run(session.record_one, task_id, value, count, priority, retry=False)
            return
        with session.ranges.outcomes([task_id], [value]):
            session.run(session.record_one, task_id, value, count, priority, retry=False)

    def update_task_performance_batch(
        self,
        task_ids: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        *,
        steps: Sequence[int] | np.ndarray | None = None,
        priorities: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Record many outcomes at once, written under one lock acquisition (with the queue).

        ``steps`` gives each episode's length (default 1 each), ``priorities`` each episode's
        priority (see :meth:`update_task_performance`). Every value is validated before
        anything is recorded: one bad score or priority records nothing.
        """
        session = self._ready()
        ids = check_task_ids(task_ids)
        values = check_scores(ids, scores, clip=self.config.clip_scores)
        total = sum_steps(steps, len(ids))
        checked = check_priorities(ids, priorities)
        note_priority(self.config.algorithm_config, checked is not None)
        scores = values.tolist()
        if session.ranges is None:
            session.run(session.record, ids, scores, total, checked, retry=False)
            return
        with session.ranges.outcomes(ids, scores):
            session.run(session.record, ids, scores, total, checked, retry=False)

    def check_scores(self, task_ids: list[int], scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """The scores as they would be recorded (clipped when ``clip_scores``).

        Raises:
            ScoreError: the first bad score, naming its task; or a length mismatch.
        """
        return check_scores(task_ids, scores, clip=self.config.clip_scores)

    def check_score(self, task_id: object, score: object) -> float:
        """The score as it would be recorded (clipped when ``clip_scores``).

        Raises:
            ScoreError: the score is not a finite number, or outside [0, 1] without clipping.
        """
        return check_score(task_id, score, clip=self.config.clip_scores)

    def report_task_failure(self, task_id: int) -> None:
        """Record that the task's env config failed to build or apply (written at once).

        Failures count per task and per label; a task that failed ``max_task_failures`` times
        is evicted at the next chance, whatever the algorithm.

        Raises:
            UnknownTaskError: the task is not active and was not handed out by this curriculum.
        """
        session = self._ready()
        session.run(session.record_failure, check_task_id(task_id), retry=False)

    def flush(self) -> None:
        """Write this process's queued outcomes and sample counts now.

        Raises:
            BackendUnavailableError: the server cannot be reached (the queue is kept).
        """
        session = self._ready()
        session.run(session.flush, retry=False)

    # -- stats, per-task figures, epochs, checkpoints ---------------------------------------------

    def stats(self) -> dict[str, float]:
        """Flat statistics of the shared pool, plus this process's ``health/`` figures (every
        key: docs/stats.md).

        While the server is unreachable (``on_backend_unavailable="buffer"``) this returns the
        last pool stats this handle computed, if any, with current health figures.
        """
        session = self._ready()
        try:
            stats = session.run(self._pool_stats, retry=True)
        except TRANSIENT:
            if self.config.on_backend_unavailable == "raise" or self._stats_cache is None:
                raise
            stats = dict(self._stats_cache[1])
        assert stats is not None
        stats.update(session.health())
        return stats

    def health(self) -> dict[str, float]:
        """This process's ``health/`` figures, without touching the pool (docs/stats.md):
        outages seen, whether one is on, outcomes queued and not yet written, outcomes dropped
        with a lost pool, late outcomes, and writes sent again after a failure. Also after
        ``close()``, for a last look."""
        return self._session.health()

    def _pool_stats(self) -> dict[str, float]:
        view = self._session.fresh_view()
        version = view.snapshot.version
        if self._stats_cache is None or self._stats_cache[0] != version:
            stats = compute_stats(view, self._session.min_samples_for_lp)
            stats.update(slice_stats(view, self.config.slice_axes))
            self._stats_cache = (version, stats)
        stats = dict(self._stats_cache[1])
        if self._session.ranges is not None:
            stats.update(self._session.ranges.stats())
        return stats

    def task_stats(self, task_id: int) -> dict[str, Any]:
        """One active task's statistics, learning progress and sampling probability.

        Keys: ``task_id``, ``slot``, ``label``, ``outcomes``, ``samples``, ``successes``,
        ``failures``, ``mean_score``, ``fast_ema``, ``slow_ema``, ``performance``, ``baseline``,
        ``score`` (the algorithm's raw score: learning progress for LP) and ``probability``
        (its sampling probability now).

        Raises:
            UnknownTaskError: the task is not active in the pool.
        """
        session = self._ready()
        task_id = check_task_id(task_id)
        view = session.run(session.fresh_view, retry=True)
        assert view is not None
        figures = task_figures(view, task_id)
        if figures is None:
            raise UnknownTaskError(f"task id {task_id} is not active in {self.location}")
        return figures

    def task_probabilities(self) -> dict[int, float]:
        """Every active task's sampling probability now, by task id."""
        session = self._ready()
        view = session.run(session.fresh_view, retry=True)
        assert view is not None
        ids = view.snapshot.rows["task_id"][view.active].tolist()
        return dict(zip(ids, view.probabilities.tolist(), strict=True))

    def on_epoch_end(self) -> dict[str, float]:
        """End the epoch: reset the pool's epoch counters; returns their values before."""
        session = self._ready()
        before = session.run(session.end_epoch, retry=True)
        assert before is not None
        return {f"epoch/num_{k.removeprefix('epoch_')}": float(v) for k, v in before.items()}

    def get_state(self) -> dict[str, Any]:
        """A checkpoint of the shared pool and this process's RNG, as plain data."""
        session = self._ready()
        exported = session.run(session.export_state, retry=True)
        assert exported is not None
        return encode_state(exported, session.rng)

    def load_state(self, state: dict[str, Any], *, allow_param_mismatch: bool = False) -> None:
        """Replace the shared pool's contents with a checkpoint.

        Args:
            state: What :meth:`get_state` returned (possibly after a JSON or msgpack round trip).
            allow_param_mismatch: Load a checkpoint whose algorithm, timescales or generator
                differ from this pool's. The slot count must match regardless.

        Raises:
            CheckpointError: the checkpoint is damaged, foreign, or incompatible.
        """
        self._load_checked(*self._checked_state(state, allow_param_mismatch))

    def _checked_state(
        self, state: dict[str, Any], allow_param_mismatch: bool
    ) -> tuple[PoolState, np.random.Generator]:
        """The checkpoint decoded and checked against this pool; nothing is changed yet."""
        session = self._ready()
        pool_state, rng_state = decode_state(state)
        mine = session.backend.params
        if pool_state.params.capacity != mine.capacity:
            raise CheckpointError(
                f"checkpoint has {pool_state.params.capacity} slots, "
                f"pool {self.session_id!r} has {mine.capacity}"
            )
        theirs, ours = pool_state.params.ranges, mine.ranges
        grids = [(r["paths"], r["grid"]) if r else None for r in (theirs, ours)]
        if theirs and ours and grids[0] != grids[1]:
            raise CheckpointError(
                f"checkpoint's ranges are grid points of the axes {theirs['paths']} on grids "
                f"{theirs['grid']}, this pool's of {ours['paths']} on {ours['grid']}: they mean "
                "other values here, so they cannot be loaded (not even with "
                "allow_param_mismatch); use the checkpoint's range-expansion axes and grid"
            )
        found = mine.mismatches(pool_state.params)
        problems = [p.replace("requested", "checkpoint") for p in found]
        if problems and not allow_param_mismatch:
            raise CheckpointError(
                "checkpoint was made with other parameters (pass allow_param_mismatch=True to "
                "load it anyway): " + "; ".join(problems)
            )
        if problems:
            logger.warning(
                "pool %r: loading a checkpoint made with other parameters (%s): its tasks are "
                "rebuilt by this pool's generator and scored by this pool's settings",
                self.session_id,
                "; ".join(problems),
            )
        if len(pool_state.labels) > mine.label_capacity:
            raise CheckpointError(
                f"checkpoint has {len(pool_state.labels)} labels, "
                f"the pool holds at most {mine.label_capacity}"
            )
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint RNG state is unusable: {exc}") from None
        pool_state.params = mine
        return pool_state, rng

    def _load_checked(self, pool_state: PoolState, rng: np.random.Generator) -> None:
        """Replace the pool's contents with a :meth:`_checked_state` result."""
        session = self._ready()
        session.run(session.import_state, pool_state, retry=True)
        session.rng = rng
        self._stats_cache = None

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Write queued outcomes and release the pool (its creator also removes it)."""
        if self._closed:
            return
        self._closed = True
        session = self._session
        session.close(destroy=self.location.private and session.owner)

    def destroy(self) -> None:
        """Remove the shared pool now, for every process using it, and close this handle.

        A /dev/shm pool is also removed when its creator closes; a Redis pool stays until
        destroyed.
        """
        if self._closed:
            raise PoolClosedError(f"curriculum of session {self.session_id!r} is closed")
        self._closed = True
        self._session.close(destroy=True)

    def __enter__(self) -> Curriculum:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ready(self) -> PoolSession:
        if self._closed:
            raise PoolClosedError(f"curriculum of session {self.session_id!r} is closed")
        session = self._session
        session.ready()
        return session

    def __repr__(self) -> str:
        backend = type(self.backend).__name__
        return f"Curriculum(session_id={self.session_id!r}, backend={backend})"
