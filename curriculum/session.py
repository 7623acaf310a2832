"""One process's session on one pool: the only owner of per-process state.

A :class:`PoolSession` owns, for its process, everything that is not shared: the draw policy
(create a task in a free slot, else evict and replace, else sample from the scored view), the
write queue (one retry path), outage mode, lost-pool recovery, fork adoption and the health
counters. The backend below it only runs atomic operations; the facade above it only validates
and delegates.

Rules it keeps:

- A call that raised recorded nothing of its own. ``record`` never raises for a write failure
  after its input was accepted: the outcome stays queued and is written exactly once when the
  pool can be reached (``health/pending_outcomes`` counts it); only bad input, an unknown task or
  a full outage buffer (``max_buffered_outcomes``, checked before anything is queued) raise.
- A forked child never writes what its parent queued (the parent still owns it): the one fork
  hook (:mod:`curriculum.forks`) clears the child's queue; the child takes its own sampling
  stream and exit flush at its first call.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from multiprocessing import util as mp_util
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from backends import open_backend
from backends.base import PoolState, RecordResult
from backends.stage_state import StageState
from curriculum import forks
from curriculum.algorithms import PoolView, make_algorithm
from curriculum.background import BACKGROUND_MIN_TASKS, BACKGROUND_REFRESH_S, ViewRefresher
from curriculum.draw_policy import try_create, try_evict_and_replace, view_with_tasks
from curriculum.errors import BackendError, BackendUnavailableError, PoolLostError, UnknownTaskError
from curriculum.location import PoolLocation
from curriculum.outage import TRANSIENT, OutageGuard
from curriculum.pool_params import pool_params
from curriculum.range_ids import make_generator
from curriculum.range_session import range_tracker
from curriculum.redis_options import redis_options
from curriculum.task_registry import TaskRegistry
from curriculum.view_cache import ViewCache, refresh_cost_factor
from curriculum.write_queue import WriteQueue

if TYPE_CHECKING:
    from curriculum.config import CurriculumConfig

logger = logging.getLogger("curriculum")
T = TypeVar("T")
Priorities = list[float] | None


class PoolSession:
    """A process's session on the pool at ``location``, described by ``config``."""

    def __init__(
        self,
        config: CurriculumConfig,
        location: PoolLocation,
        *,
        create: bool,
        staging: dict[str, Any] | None = None,
    ) -> None:
        """Attach to the pool (creating it when absent and ``create``)."""
        self.config = config
        self.location = location
        self.staging = staging
        self.generator = make_generator(config)
        self.backend = open_backend(
            location.backend_url,
            location.session_id,
            pool_params(config, staging),
            create=create,
            lock_timeout_s=config.lock_timeout_s,
            **redis_options(config, private=location.private),
        )
        self.capacity = self.backend.params.capacity
        algorithm = config.algorithm_config
        self.min_samples_for_lp = getattr(algorithm, "min_samples_for_lp", 1)
        refresh_after = max(config.write_batch_size, self.capacity // 8)
        self.queue = WriteQueue()
        self.ranges = range_tracker(self)  # range expansion's shared ranges, else None
        self.registry = TaskRegistry(self.capacity)
        self.views = ViewCache(
            make_algorithm(algorithm, self.ranges),
            capacity=self.capacity,
            max_age_s=config.snapshot_max_age_s,
            refresh_after_outcomes=refresh_after,
            max_task_failures=config.max_task_failures,
            by_time=not config.deterministic,
            cost_factor=refresh_cost_factor(config, self.capacity),
            shared_cost_factor=1.0 / config.refresh_cpu_share,
            running=self.registry.running,
            played=self.registry.issued,
        )
        self._outcomes_per_write = config.write_batch_size
        self._samples_per_write = 4 * config.write_batch_size
        self._room = config.max_buffered_outcomes  # outcomes the queue may hold
        # raise modes want the error from the call whose write failed: no write sent ahead
        self._wait_for_writes = "raise" in (config.on_backend_unavailable, config.on_pool_lost)
        self.outage = OutageGuard(
            str(location),
            buffer=config.on_backend_unavailable == "buffer",
            retry_s=config.outage_retry_s,
        )
        self.dropped_outcomes = 0  # outcomes dropped because their pool was lost
        self.late_outcomes = 0  # outcomes this process wrote after their task was evicted
        self.overflow_warned = False  # the label table filled up, and a warning said so
        self.refresher = ViewRefresher()  # a large pool's view refresh in a helper thread
        large = config.background_refresh and self.capacity >= BACKGROUND_MIN_TASKS
        reads = getattr(self.backend, "thread_safe_reads", False)
        self._background = large and not config.deterministic and reads
        self._catch_up = self._background and getattr(self.backend, "in_memory_reads", False)
        self.owner = self.backend.created  # this process created the pool
        if self.backend.created:
            self.rng = np.random.default_rng(config.seed)
            self._adopted = True
        else:  # a distinct, reproducible-per-attach stream for every process sharing the pool
            self._adopted = False
        self._exit_flush: mp_util.Finalize | None = None
        forks.on_fork_in_child(self, PoolSession._after_fork)
        self._adopt_process()

    # -- processes ------------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child, right after the fork: the parent still owns what it queued."""
        self.queue.discard()
        self.registry.running.clear()
        self.refresher.drop()  # its thread does not exist here
        self.owner = False
        self._adopted = False
        self._exit_flush = None  # multiprocessing does not run a parent's finalizers here

    def _adopt_process(self) -> None:
        """First use in this process: its own sampling stream and exit flush."""
        if not self._adopted:
            self.rng = np.random.default_rng([self.config.seed, self.backend.reserve_sequence()])
            self._adopted = True
        if self._exit_flush is None or not self._exit_flush.still_active():
            # Runs at interpreter exit and when a multiprocessing child (fork or spawn) exits,
            # before the backend's own clean-up (lower priority).
            self._exit_flush = mp_util.Finalize(
                self, _flush_quietly, args=(self.queue, self.backend), exitpriority=20
            )

    def ready(self) -> None:
        """Make the session usable here: adopt it after a fork, re-arm a dropped exit flush."""
        flush = self._exit_flush
        if not self._adopted or flush is None or not flush.still_active():
            self._adopt_process()

    # -- recovery -------------------------------------------------------------------------------

    def run(self, action: Callable[..., T], *args: Any, retry: bool) -> T | None:
        """``action(*args)``; when the pool was lost, recover (per ``on_pool_lost``) and run it
        once more (``retry``) or drop it (returns None)."""
        try:
            return action(*args)
        except PoolLostError as exc:
            self.recover(exc)
            return action(*args) if retry else None

    def recover(self, exc: PoolLostError) -> None:
        """Attach to the pool anew (creating it empty if absent), per ``on_pool_lost``."""
        dropped = self._forget_lost_pool()  # never written: that pool is gone
        if self.config.on_pool_lost == "raise":
            raise exc
        created = self.backend.reattach(pool_params(self.config, self.staging))
        logger.warning(
            "%s; %s; dropped %d outcomes this process had not yet written to it",
            exc,
            "re-created it empty from this process's config"
            if created
            else "attached to the pool another process re-created",
            dropped,
        )

    def _forget_lost_pool(self) -> int:
        """Drop what referred to a lost pool; the outcomes dropped with it.

        The tasks this process had handed out are remembered as lost: their late outcomes are
        dropped (and counted) instead of raising UnknownTaskError.
        """
        dropped = self.queue.discard()
        self.dropped_outcomes += dropped
        self.registry.mark_lost()
        self.refresher.drop()
        self.views.invalidate()
        self.views.maybe_free_slots = True
        self.outage.reset()
        return dropped

    # -- views ----------------------------------------------------------------------------------

    def view(self, *, fresh: bool = False) -> PoolView:
        """The scored view; recomputed when due (or ``fresh``) and the pool has changed.

        During an outage the last view is used (a ``fresh`` view raises instead). A view whose
        refresh costs more than ``BACKGROUND_REFRESH_S`` (a large pool) is refreshed in a helper
        thread while sampling goes on from the current one, which waits a little for it once stale
        (:meth:`~curriculum.background.ViewRefresher.overdue`).
        """
        views, refresher = self.views, self.refresher
        if refresher.running and (fresh or refresher.overdue(views, catch_up=self._catch_up)):
            try:
                refresher.finish(views)
            except TRANSIENT as exc:
                self.outage.failed(exc)  # buffer mode: go on from this view; raise mode: raise
            else:
                self.outage.reachable()
        if not fresh and not views.due():
            assert views.view is not None
            return views.view
        in_helper = False  # the refresh runs in a helper thread
        if views.view is not None and not fresh:
            if self.outage.active():
                return views.view
            in_helper = self._background and views.cost_s > BACKGROUND_REFRESH_S
            if in_helper and refresher.running:
                return views.view
        started = time.thread_time()
        try:
            if not views.by_time or self.queue.open_outcomes:  # waited for: the new view shows
                self._write()  # every outcome recorded so far, and so do the others' next
            view = views.view
            if in_helper and view is not None:
                refresher.start(self.backend, views, view.snapshot.version)
            else:
                changed = view is None or self.backend.version() != view.snapshot.version
                view = views.refreshed(self.backend.snapshot() if changed else None, started)
        except TRANSIENT as exc:
            if views.view is None or fresh:
                raise
            self.outage.failed(exc)  # buffer mode: go on from this view; raise mode: raise
            return views.view
        self.outage.reachable()
        return view

    # -- drawing --------------------------------------------------------------------------------

    def draw(self) -> tuple[int, int, int]:
        """The next task: ``(task_id, slot, label_id)``; its episode counts as started."""
        placed = try_create(self) if self.views.maybe_free_slots else None
        if placed is None:
            view = view_with_tasks(self, self.view())
            if self.views.evictions and view.wants_eviction(self.rng):
                placed = try_evict_and_replace(self, view)
            if placed is None:
                slot = view.sample_slot(self.rng)
                placed = view.task_id(slot), slot, view.label_id(slot)
                self.registry.touch(*placed)
        task_id, slot, label_id = placed
        queue = self.queue
        if queue.opened_at is None:
            queue.opened_at = time.monotonic()
        queue.open.add_sample(slot, task_id, label_id)
        self.registry.started(task_id)
        if len(queue.open.sample_slots) >= self._samples_per_write:
            self.flush_if_due(force=True)
        return placed

    # -- recording ------------------------------------------------------------------------------

    def locate(self, task_id: int) -> tuple[int, int]:
        """``(slot, label_id)`` of a task handed out here or active in the pool; ``(-1, -1)``
        for a task of a pool that was lost since (its outcome is dropped and counted).

        Raises:
            UnknownTaskError: the task is neither.
        """
        found = self.registry.get(task_id)
        if found is not None:
            return found
        for fresh in (False, True):
            snapshot = self.view(fresh=fresh).snapshot
            slots = np.flatnonzero(snapshot.rows["task_id"] == task_id)
            if len(slots):
                slot = int(slots[0])
                label_id = int(snapshot.rows["label_id"][slot])
                self.registry.remember(task_id, slot, label_id)
                return slot, label_id
        if self.registry.was_lost(task_id):
            return -1, -1
        raise UnknownTaskError(
            f"task id {task_id} is not active in {self.location} "
            "and was not handed out by this curriculum"
        )

    def record_one(
        self, task_id: int, score: float, steps: int, priority: float | None = None
    ) -> None:
        """Queue one outcome (validated by the caller); written when the batch is due."""
        queue = self.queue
        batch = queue.open
        if queue.sealed or len(batch.outcome_slots) >= self._room:
            self._check_room(1)
        found = self.registry.issued.get(task_id)
        slot, label_id = found if found is not None else self.locate(task_id)
        if slot < 0:  # a task of a lost pool
            self.dropped_outcomes += 1
            return
        if queue.opened_at is None:
            queue.opened_at = time.monotonic()
        batch.add_outcome(slot, task_id, label_id, score, steps, priority)
        self.registry.ended(task_id)
        self.views.outcomes_since += 1
        if (
            len(batch.outcome_slots) >= self._outcomes_per_write
            or time.monotonic() - queue.opened_at >= self.config.write_max_delay_s
        ):
            self.flush_if_due(force=True)

    def record(
        self, task_ids: list[int], scores: list[float], steps: int, priorities: Priorities = None
    ) -> None:
        """Queue outcomes (validated by the caller) and write them with the queue now."""
        self._check_room(len(task_ids))
        locations = [self.locate(task_id) for task_id in task_ids]
        self.queue.touch()
        batch = self.queue.open
        kept = 0
        given = priorities or [None] * len(task_ids)
        for task_id, (slot, label_id), score, priority in zip(
            task_ids, locations, scores, given, strict=True
        ):
            if slot < 0:  # a task of a lost pool
                self.dropped_outcomes += 1
                continue
            batch.add_outcome(slot, task_id, label_id, score, 0, priority)
            self.registry.ended(task_id)
            kept += 1
        batch.steps += steps if kept == len(task_ids) else round(steps * kept / len(task_ids))
        self.views.outcomes_since += kept
        self.flush_if_due(force=True)

    def record_failure(self, task_id: int) -> None:
        """Queue a failure of the task's env config and write it now (if the pool answers)."""
        slot, label_id = self.locate(task_id)
        if slot < 0:
            return
        self.queue.touch()
        self.queue.open.add_failure(slot, task_id, label_id)
        self.registry.ended(task_id)  # its episode never ran
        self.views.invalidate()  # the next view sees the count and may evict the task
        self.flush_if_due(force=True)

    def _check_room(self, count: int) -> None:
        """Refuse outcomes that would take the queue past ``max_buffered_outcomes``."""
        limit = self._room
        buffered = self.queue.pending_outcomes
        if buffered + count > limit:
            raise BackendUnavailableError(
                f"{buffered} outcomes are already queued for {self.location} (it cannot be "
                f"written to), and max_buffered_outcomes={limit}; these {count} were not "
                "recorded. Restore the server, or raise max_buffered_outcomes"
            )

    def flush_if_due(self, *, force: bool = False) -> None:
        """Write the queue when a batch is full or old; a failure keeps it queued."""
        queue, config = self.queue, self.config
        if not (
            force
            or queue.open_outcomes >= config.write_batch_size
            or len(queue.open.sample_slots) >= 4 * config.write_batch_size
            or (
                queue.opened_at is not None
                and time.monotonic() - queue.opened_at >= config.write_max_delay_s
            )
        ):
            return
        if self.outage.active():
            return
        try:
            self._write(wait=self._wait_for_writes)
        except TRANSIENT as exc:
            with contextlib.suppress(BackendError):  # raise mode: the next call that needs
                self.outage.failed(exc)  # the server raises; this outcome stays queued
        else:
            self.outage.reachable()

    def _write(self, *, wait: bool = True) -> RecordResult:
        counted = self.queue.outcomes_in_flight  # a batch sent ahead counted when sent
        try:
            result = self.queue.flush(self.backend, wait=wait)
        except (*TRANSIENT, PoolLostError):
            raise  # kept and sent again, or dropped with the lost pool by recover()
        except BackendError:  # refused for good (a corrupted pool): never sent again
            self.dropped_outcomes += self.queue.drop_head()
            raise
        self.late_outcomes += result.late
        # the writers estimate counts this process's outcomes as the pool does: once written
        self.views.own_outcomes += result.outcomes + self.queue.outcomes_in_flight - counted
        return result

    def flush(self) -> RecordResult:
        """Write every queued write now, waiting for the backend.

        Raises:
            BackendUnavailableError, LockTimeoutError: the pool cannot be written to (the queue
                is kept and written, once, later).
        """
        result = self._write()
        self.outage.reachable()
        return result

    # -- the rest of the pool's interface -------------------------------------------------------

    def fresh_view(self) -> PoolView:
        """A view of the pool with every queued write applied.

        Raises:
            BackendUnavailableError, LockTimeoutError: the pool cannot be read or written (in
                buffer mode this counts as an outage too).
        """
        try:
            self.flush()
            return self.view(fresh=True)
        except TRANSIENT as exc:
            with contextlib.suppress(BackendError):
                self.outage.failed(exc)
            raise

    def end_epoch(self) -> dict[str, int]:
        """Reset the pool's epoch counters; their values before."""
        self.flush()
        before = self.backend.end_epoch()
        self.refresher.drop()
        self.views.invalidate()
        return before

    def export_state(self) -> PoolState:
        """Everything the pool holds, after writing the queue."""
        self.flush()
        state = self.backend.export_state()
        if not self.views.by_time:  # deterministic: continue from a view of this very state
            self.views.invalidate()
        return state

    def import_state(self, state: PoolState) -> None:
        """Replace the pool's contents with ``state`` (the queue is written first)."""
        self.flush()
        self.backend.import_state(state)
        self.registry.clear()
        self.refresher.drop()
        self.views.invalidate()
        self.views.restart_writers_estimate()
        self.views.maybe_free_slots = int((state.rows["task_id"] >= 0).sum()) < self.capacity

    def stage_state(self) -> StageState:
        """The pool's stage record (a staged curriculum's root pool)."""
        return self.backend.stage_state()

    def health(self) -> dict[str, float]:
        """This process's figures on its writes (every key: docs/stats.md)."""
        return {
            "health/outages": float(self.outage.count),
            "health/in_outage": float(self.outage.active()),
            "health/pending_outcomes": float(self.queue.pending_outcomes),
            "health/dropped_outcomes": float(self.dropped_outcomes),
            "health/late_outcomes": float(self.late_outcomes),
            "health/write_retries": float(self.queue.retries),
            "health/writers": self.views.writers,
        }

    # -- lifetime -------------------------------------------------------------------------------

    def close(self, *, destroy: bool = False) -> None:
        """Write the queue and release the pool (``destroy``: remove it for everyone).

        With ``on_pool_lost="recreate"``, a queue meant for a lost pool is dropped (and logged)
        instead of re-creating the pool on the way out.
        """
        try:
            self.flush()
        except PoolLostError as exc:
            if self.config.on_pool_lost == "raise":
                raise
            dropped = self._forget_lost_pool()
            logger.warning("%s; closing without it: %d unwritten outcomes dropped", exc, dropped)
        finally:
            if self._exit_flush is not None:
                self._exit_flush.cancel()
            if self.refresher.call is not None:  # let a helper thread finish its read first
                self.refresher.call.wait(timeout=self.config.lock_timeout_s)
                self.refresher.drop()
            if destroy:
                self.backend.destroy()
            else:
                self.backend.close()


def _flush_quietly(queue: WriteQueue, backend: Any) -> None:
    """At interpreter exit: write what this process still queues, if the pool is reachable."""
    with contextlib.suppress(Exception):  # exit-time best effort: the pool may be gone
        queue.flush(backend)
