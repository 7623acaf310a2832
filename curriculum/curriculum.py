"""The facade a trainer uses: which task next, how did it go, stats and checkpoints."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
from collections.abc import Sequence
from multiprocessing import util as mp_util
from typing import Any

import numpy as np

from backends import open_backend
from backends.base import PoolParams
from curriculum.algorithms import make_algorithm
from curriculum.checkpoint import decode_state, encode_state
from curriculum.config import CurriculumConfig, LearningProgressConfig
from curriculum.ema import EmaParams
from curriculum.errors import (
    BackendUnavailableError,
    CheckpointError,
    PoolClosedError,
    PoolLostError,
    ScoreError,
)
from curriculum.generators import config_fingerprint
from curriculum.pool import TaskPool
from curriculum.redis_options import redis_options
from curriculum.slices import slice_stats
from curriculum.stats import compute_stats
from curriculum.task import CurriculumTask
from curriculum.task_ids import MAX_TASK_ID, check_task_id

_DEFAULT_LP = LearningProgressConfig()
logger = logging.getLogger("curriculum")


def pool_params(config: CurriculumConfig, staging: dict[str, Any] | None = None) -> PoolParams:
    """The parameters that define the pool ``config`` describes (``staging``: the stage rule of
    a staged curriculum's root pool)."""
    algorithm = config.algorithm_config
    lp = algorithm if isinstance(algorithm, LearningProgressConfig) else _DEFAULT_LP
    return PoolParams(
        capacity=config.num_active_tasks,
        label_capacity=config.max_labels,
        algorithm=algorithm.algorithm_params(),
        ema=EmaParams(
            ema_timescale=lp.ema_timescale,
            slow_timescale_factor=lp.slow_timescale_factor,
            task_tracker_ema_alpha=lp.task_tracker_ema_alpha,
            success_threshold=lp.success_threshold,
        ),
        generator_fingerprint=config_fingerprint(config.task_generator),
        pool_seed=config.seed,
        staging=staging,
    )


class Curriculum:
    """One process's handle on a shared curriculum.

    Every process (and host) built from the same config and ``session_id`` shares one pool of
    active tasks. A curriculum pickles into worker processes (fork or spawn) as its config and
    session: the worker attaches to the same pool; only the process that created the pool removes
    it, at ``close()`` or at exit.

    Outcomes are buffered per process (``write_batch_size``, ``write_max_delay_s``) and written
    under one lock acquisition; ``stats()``, ``get_state()``, ``flush()`` and ``close()`` write
    the buffer first. Use ``write_batch_size=1`` for immediate writes.
    """

    def __init__(self, config: CurriculumConfig) -> None:
        """Create the pool of ``config``'s session, or attach to it if it exists."""
        session = config.algorithm_config.session_id or f"auto-{os.getpid()}-{secrets.token_hex(4)}"
        self._open(config, session, create=True)
        # A pool with a generated name is private to this curriculum and its workers: its
        # creator removes it at close() on every backend (a Redis pool would otherwise stay).
        self._private_pool = config.algorithm_config.session_id is None and self.backend.created

    @classmethod
    def _for_session(
        cls,
        config: CurriculumConfig,
        session_id: str,
        *,
        create: bool,
        staging: dict[str, Any] | None = None,
    ) -> Curriculum:
        """A handle on the pool ``session_id`` (whatever ``config`` names): how a staged
        curriculum opens its stages' pools."""
        curriculum = cls.__new__(cls)
        curriculum._open(config, session_id, create=create, staging=staging)
        return curriculum

    def _open(
        self,
        config: CurriculumConfig,
        session_id: str,
        *,
        create: bool,
        staging: dict[str, Any] | None = None,
    ) -> None:
        self._private_pool = False
        self.config = config
        self.session_id = session_id
        self._staging = staging
        self._closed = False
        self._generator = config.task_generator.create()
        backend = open_backend(
            config.algorithm_config.backend_url,
            session_id,
            pool_params(config, staging),
            create=create,
            lock_timeout_s=config.lock_timeout_s,
            **redis_options(config),
        )
        self.backend = backend
        self._pool = TaskPool(
            backend,
            self._generator,
            make_algorithm(config.algorithm_config),
            snapshot_max_age_s=config.snapshot_max_age_s,
            write_batch_size=config.write_batch_size,
            write_max_delay_s=config.write_max_delay_s,
            max_task_failures=config.max_task_failures,
            buffer_on_outage=config.on_backend_unavailable == "buffer",
            outage_retry_s=config.outage_retry_s,
            max_buffered_outcomes=config.max_buffered_outcomes,
        )
        if backend.created:
            self._rng = np.random.default_rng(config.seed)
        else:  # a distinct, reproducible-per-attach stream for every process sharing the pool
            self._rng = np.random.default_rng([config.seed, backend.reserve_sequence()])
        self._stats_cache: tuple[int, dict[str, float]] | None = None
        self._backend_dropped = 0  # the backend's dropped_outcomes already counted
        self._pid = os.getpid()
        self._exit_flush = self._register_exit_flush()
        lp = config.algorithm_config
        self._min_samples_for_lp = (
            lp.min_samples_for_lp if isinstance(lp, LearningProgressConfig) else 1
        )

    def _register_exit_flush(self) -> mp_util.Finalize:
        # Runs at interpreter exit and when a multiprocessing child (fork or spawn) exits,
        # before the backend's own clean-up (lower priority).
        return mp_util.Finalize(self, _flush_quietly, args=(self._pool,), exitpriority=20)

    def _adopt_process(self) -> None:
        """First use in a forked child: own sampling stream and exit hook; no parent buffer."""
        self._pid = os.getpid()
        self._pool.discard_pending()
        self._rng = np.random.default_rng([self.config.seed, self.backend.reserve_sequence()])
        self._exit_flush = self._register_exit_flush()

    # -- pickling: config and session cross process boundaries, never handles -----------------

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "session_id": self.session_id, "staging": self._staging}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._open(state["config"], state["session_id"], create=False, staging=state["staging"])

    # -- the hot path ---------------------------------------------------------------------------

    def get_task(self) -> CurriculumTask:
        """The task the next episode should play."""
        self._check_open()
        try:
            return self._draw()
        except PoolLostError as exc:
            self._recover(exc)
            return self._draw()

    def _draw(self) -> CurriculumTask:
        pool = self._pool
        placed = pool.try_create()
        if placed is None:
            view = pool.view()
            if view.eviction_order:
                placed = pool.try_evict_and_replace(view)
            if placed is None:
                placed = pool.remember_sampled(view, view.sample_slot(self._rng))
        task_id, slot, label_id = placed
        pool.add_sample(slot, task_id, label_id)
        return CurriculumTask(task_id, slot, self._generator)

    def task_for_id(self, task_id: int) -> CurriculumTask:
        """The task with this id, for evaluation: its config is rebuilt from the id.

        Touches no pool (nothing is scheduled); ``slot`` is -1.
        """
        return CurriculumTask(check_task_id(task_id), -1, self._generator)

    def update_task_performance(self, task_id: int, score: float, *, steps: int = 1) -> None:
        """Record the score (in [0, 1]) of an episode played on ``task_id``.

        ``steps`` is the episode's length in environment steps (counted in ``num_steps``, and
        the clock of a staged curriculum's "time" criterion); without it an episode counts 1.

        Raises:
            ScoreError: the score is NaN, infinite, or outside [0, 1] (unless ``clip_scores``),
                or ``steps`` is not an int in [0, 2**40].
            UnknownTaskError: the task is not active and was not handed out by this curriculum.
        """
        self._check_open()
        value = self.check_score(task_id, score)
        count = check_steps(steps)
        task_id = check_task_id(task_id)
        try:
            slot, label_id = self._pool.locate_or_lost(task_id)
            if slot >= 0:
                self._pool.add_outcome(slot, task_id, label_id, value, count)
        except PoolLostError as exc:
            self._recover(exc)  # this outcome was for the lost pool: dropped with its buffer

    def update_task_performance_batch(
        self,
        task_ids: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        *,
        steps: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Record many outcomes at once, written under one lock acquisition (with the buffer).

        ``steps`` gives each episode's length (default 1 each). Every score is validated before
        anything is recorded: one bad score records nothing.
        """
        self._check_open()
        ids = _task_id_list(task_ids)
        values = self.check_scores(ids, scores)
        total = len(ids) if steps is None else sum_steps(steps, len(ids))
        try:
            locations = [self._pool.locate_or_lost(task_id) for task_id in ids]
            kept = [i for i, (slot, _) in enumerate(locations) if slot >= 0]
            if len(kept) < len(ids):  # outcomes of tasks of a lost pool are dropped
                self._pool.count_dropped(len(ids) - len(kept))
                ids, values = [ids[i] for i in kept], values[kept]
                locations = [locations[i] for i in kept]
            self._pool.record_now(ids, values.tolist(), total, locations)
        except PoolLostError as exc:
            self._recover(exc)

    def check_scores(self, task_ids: list[int], scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """The scores as they would be recorded (clipped when ``clip_scores``).

        Raises:
            ScoreError: the first bad score, naming its task; or a length mismatch.
        """
        try:
            raw = np.asarray(scores)
        except ValueError:  # ragged
            raw = np.asarray(list(scores), dtype=object)
        if raw.dtype.kind in "fiu":  # numbers: checked all at once below
            values = raw.astype(np.float64, copy=False)
        elif raw.ndim == 1:  # strings, None, bools, objects: one by one (check_score decides)
            values = np.array(
                [self.check_score(t, s) for t, s in zip(task_ids, raw.tolist(), strict=False)],
                dtype=np.float64,
            )
        else:
            values = raw
        if values.shape != (len(task_ids),):
            raise ScoreError(f"{len(task_ids)} task ids but scores of shape {values.shape}")
        bad = ~np.isfinite(values)
        if not self.config.clip_scores:
            bad |= (values < 0) | (values > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            self.check_score(task_ids[i], float(values[i]))
        return np.clip(values, 0.0, 1.0)

    def check_score(self, task_id: object, score: object) -> float:
        """The score as it would be recorded (clipped when ``clip_scores``).

        Raises:
            ScoreError: the score is not a finite number, or outside [0, 1] without clipping.
        """
        if isinstance(score, (str, bytes, bytearray)):
            raise ScoreError(f"score {score!r} for task {task_id} is not a number")
        try:
            value = float(score)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ScoreError(f"score {score!r} for task {task_id} is not a number") from None
        if not math.isfinite(value):
            raise ScoreError(f"score {score!r} for task {task_id} is not finite")
        if not 0.0 <= value <= 1.0:
            if not self.config.clip_scores:
                raise ScoreError(
                    f"score {score!r} for task {task_id} is outside [0, 1] "
                    "(set clip_scores=True to clip)"
                )
            value = min(max(value, 0.0), 1.0)
        return value

    def report_task_failure(self, task_id: int) -> None:
        """Record that the task's env config failed to build or apply (written at once).

        Failures count per task and per label; a task that failed ``max_task_failures`` times
        is evicted at the next chance, whatever the algorithm.

        Raises:
            UnknownTaskError: the task is not active and was not handed out by this curriculum.
        """
        self._check_open()
        task_id = check_task_id(task_id)
        try:
            slot, label_id = self._pool.locate_or_lost(task_id)
            if slot >= 0:
                self._pool.add_failure(slot, task_id, label_id)
        except PoolLostError as exc:
            self._recover(exc)

    def flush(self) -> None:
        """Write this process's buffered outcomes and sample counts now.

        Raises:
            BackendUnavailableError: the server cannot be reached (the buffer is kept).
        """
        self._check_open()
        try:
            self._pool.flush()
        except PoolLostError as exc:
            self._recover(exc)

    # -- stats, epochs, checkpoints ---------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Flat statistics of the shared pool (every key: docs/stats.md).

        While the server is unreachable (``on_backend_unavailable="buffer"``) this returns the
        last stats this handle computed, if any.
        """
        self._check_open()
        try:
            return self._compute_stats()
        except PoolLostError as exc:
            self._recover(exc)
            return self._compute_stats()
        except BackendUnavailableError:
            if self.config.on_backend_unavailable == "raise" or self._stats_cache is None:
                raise
            return dict(self._stats_cache[1])

    def _compute_stats(self) -> dict[str, float]:
        self._pool.flush()
        view = self._pool.view(fresh=True)
        version = view.snapshot.version
        if self._stats_cache is None or self._stats_cache[0] != version:
            stats = compute_stats(view, self._min_samples_for_lp)
            stats.update(slice_stats(view, self.config.slice_axes))
            self._stats_cache = (version, stats)
        return dict(self._stats_cache[1])

    def on_epoch_end(self) -> dict[str, float]:
        """End the epoch: reset the pool's epoch counters; returns their values before."""
        self._check_open()
        try:
            self._pool.flush()
            before = self.backend.end_epoch()
        except PoolLostError as exc:
            self._recover(exc)
            before = self.backend.end_epoch()
        self._pool.invalidate()
        return {f"epoch/num_{k.removeprefix('epoch_')}": float(v) for k, v in before.items()}

    def get_state(self) -> dict[str, Any]:
        """A checkpoint of the shared pool and this process's RNG, as plain data."""
        self._check_open()
        try:
            self._pool.flush()
            exported = self.backend.export_state()
        except PoolLostError as exc:
            self._recover(exc)
            exported = self.backend.export_state()
        return encode_state(exported, self._rng)

    def load_state(self, state: dict[str, Any], *, allow_param_mismatch: bool = False) -> None:
        """Replace the shared pool's contents with a checkpoint.

        Args:
            state: What :meth:`get_state` returned (possibly after a JSON or msgpack round trip).
            allow_param_mismatch: Load a checkpoint whose algorithm, timescales or generator
                differ from this pool's. The slot count must match regardless.

        Raises:
            CheckpointError: the checkpoint is damaged, foreign, or incompatible.
        """
        self._check_open()
        pool_state, rng_state = decode_state(state)
        mine = self.backend.params
        if pool_state.params.capacity != mine.capacity:
            raise CheckpointError(
                f"checkpoint has {pool_state.params.capacity} slots, "
                f"pool {self.session_id!r} has {mine.capacity}"
            )
        problems = mine.mismatches(pool_state.params)
        if problems and not allow_param_mismatch:
            raise CheckpointError(
                "checkpoint was made with other parameters (pass allow_param_mismatch=True to "
                "load it anyway): "
                + "; ".join(p.replace("requested", "checkpoint") for p in problems)
            )
        if len(pool_state.labels) > mine.label_capacity:
            raise CheckpointError(
                f"checkpoint has {len(pool_state.labels)} labels, "
                f"the pool holds at most {mine.label_capacity}"
            )
        try:
            self._rng.bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint RNG state is unusable: {exc}") from None
        pool_state.params = mine
        try:
            self._pool.flush()
            self.backend.import_state(pool_state)
        except PoolLostError as exc:  # a lost pool is what a checkpoint restores
            self._recover(exc)
            self.backend.import_state(pool_state)
        self._pool.reset_after_import(int((pool_state.rows["task_id"] >= 0).sum()))

    # -- a lost pool -----------------------------------------------------------------------------

    def _recover(self, exc: PoolLostError) -> None:
        """Attach to the pool anew (creating it empty if absent), per ``on_pool_lost``."""
        if self.config.on_pool_lost == "raise":
            raise exc
        dropped = self._pool.forget_lost_pool()
        created = self.backend.reattach(pool_params(self.config, self._staging))
        dropped += self._in_flight_dropped()
        self._stats_cache = None
        logger.warning(
            "%s; %s; dropped %d outcomes this process had not yet written to it",
            exc,
            "re-created it empty from this process's config"
            if created
            else "attached to the pool another process re-created",
            dropped,
        )

    def _in_flight_dropped(self) -> int:
        """Outcomes of writes the backend had sent ahead to a lost pool, not yet counted."""
        lost_by_backend = getattr(self.backend, "dropped_outcomes", 0)
        in_flight, self._backend_dropped = lost_by_backend - self._backend_dropped, lost_by_backend
        self._pool.count_dropped(in_flight)
        return in_flight

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Write buffered outcomes and release the pool (its creator also removes it)."""
        if self._closed:
            return
        try:
            self._flush_before_release()
        finally:
            self._closed = True
            self._exit_flush.cancel()
            if self._private_pool and self._pid == os.getpid():
                self.backend.destroy()
            else:
                self.backend.close()

    def destroy(self) -> None:
        """Remove the shared pool now, for every process using it, and close this handle.

        A /dev/shm pool is also removed when its creator closes; a Redis pool stays until
        destroyed.
        """
        if self._closed:
            raise PoolClosedError(f"curriculum of session {self.session_id!r} is closed")
        self._flush_before_release()
        self._closed = True
        self._exit_flush.cancel()
        self.backend.destroy()

    def _flush_before_release(self) -> None:
        """Write the buffer; with ``on_pool_lost="recreate"``, a buffer meant for a lost pool is
        dropped (and logged) instead of re-creating the pool on the way out."""
        try:
            self._pool.flush()
        except PoolLostError as exc:
            if self.config.on_pool_lost == "raise":
                raise
            dropped = self._pool.forget_lost_pool() + self._in_flight_dropped()
            logger.warning(
                "%s; closing without it: dropped %d outcomes this process had not yet written",
                exc,
                dropped,
            )

    def __enter__(self) -> Curriculum:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError(f"curriculum of session {self.session_id!r} is closed")
        if self._pid != os.getpid():
            self._adopt_process()

    def __repr__(self) -> str:
        backend = type(self.backend).__name__
        return f"Curriculum(session_id={self.session_id!r}, backend={backend})"


MAX_EPISODE_STEPS = 2**40  # far beyond any episode; keeps every step counter exact in int64


def check_steps(steps: object) -> int:
    """``steps`` as an int in [0, MAX_EPISODE_STEPS], or ScoreError naming it."""
    if (
        isinstance(steps, (bool, np.bool_))
        or not isinstance(steps, (int, np.integer))
        or not 0 <= steps <= MAX_EPISODE_STEPS
    ):
        raise ScoreError(
            f"steps {steps!r} must be an int in [0, 2**40] (environment steps of the episode)"
        )
    return int(steps)


def sum_steps(steps: Sequence[int] | np.ndarray, count: int) -> int:
    """The total of per-episode ``steps`` (one per outcome), validated."""
    values = steps.tolist() if isinstance(steps, np.ndarray) else list(steps)
    if len(values) != count or (isinstance(steps, np.ndarray) and steps.ndim != 1):
        raise ScoreError(f"steps must be {count} ints >= 0, got {steps!r:.200}")
    return sum(check_steps(value) for value in values)


def _task_id_list(task_ids: Sequence[int] | np.ndarray) -> list[int]:
    """Validated task ids (vectorised when they come as an integer array)."""
    if not isinstance(task_ids, np.ndarray):
        task_ids = list(task_ids)
        kinds = set(map(type, task_ids))
        if bool in kinds or np.bool_ in kinds:
            return [check_task_id(t) for t in task_ids]  # raises, naming the bool
    array = np.asarray(task_ids)
    if array.dtype.kind in "iu" and array.ndim == 1:
        if len(array) and (array.min() < 0 or array.max() > MAX_TASK_ID):
            bad = array[(array < 0) | (array > MAX_TASK_ID)][0]
            check_task_id(int(bad))  # raises, naming it
        return array.tolist()
    return [check_task_id(t) for t in task_ids]


def _flush_quietly(pool: TaskPool) -> None:
    """At interpreter exit: write what this process still buffers, if the pool is reachable."""
    with contextlib.suppress(Exception):  # exit-time best effort: the pool may be gone
        pool.flush()
