"""A process's handle on the shared pool: create, evict, record and view, over any backend.

The pool keeps no shared truth of its own. What it keeps per process is either a cache checked
against the backend (the scored view; the slot of each task this process handed out, verified by
the backend's compare-and-set on every write) or this process's own unsent writes.

The scored view is recomputed when the pool's version moved and either the view is older than
``snapshot_max_age_s`` or this process alone wrote enough outcomes since the view was taken
(``max(write_batch_size, capacity // 8)``): a fast loop in one process sees its own progress
quickly, and a large pool is not re-scored after every batch.
"""

from __future__ import annotations

import itertools
import logging
import os
import time

import numpy as np

from backends.base import PoolSnapshot, RecordResult, TaskMemoryBackend, WriteBatch
from curriculum.algorithms import CurriculumAlgorithm, PoolView
from curriculum.errors import BackendUnavailableError, UnknownTaskError
from curriculum.generators import TaskGenerator
from curriculum.task_ids import derive_task_id

logger = logging.getLogger("curriculum.pool")

# A view lives at least this many times what its last refresh cost (so refreshing a pool that
# is slow to read takes at most about a tenth of a process's time).
REFRESH_COST_FACTOR = 10


class TaskPool:
    """Task lifecycle over a backend, with a cached scored view and a write buffer."""

    def __init__(
        self,
        backend: TaskMemoryBackend,
        generator: TaskGenerator,
        algorithm: CurriculumAlgorithm,
        *,
        snapshot_max_age_s: float,
        write_batch_size: int,
        write_max_delay_s: float,
        max_task_failures: int,
        buffer_on_outage: bool = False,
        outage_retry_s: float = 1.0,
        max_buffered_outcomes: int = 1_000_000,
    ) -> None:
        """Wrap ``backend`` for one process.

        With ``buffer_on_outage``, an unreachable server does not stop the hot path: sampling
        uses the last view, writes stay buffered (at most ``max_buffered_outcomes`` outcomes)
        and the server is tried again every ``outage_retry_s``.
        """
        self.backend = backend
        self.generator = generator
        self.algorithm = algorithm
        self.snapshot_max_age_s = snapshot_max_age_s
        self.write_batch_size = write_batch_size
        self.write_max_delay_s = write_max_delay_s
        self.max_task_failures = max_task_failures
        self.capacity = backend.params.capacity
        self._view: PoolView | None = None
        self._view_time = 0.0
        self._refresh_cost = 0.0  # seconds the last snapshot and scoring took
        self._written_since_view = 0
        self._refresh_after_writes = max(write_batch_size, self.capacity // 8)
        self._maybe_free_slots = True
        self._issued: dict[int, tuple[int, int]] = {}  # task id -> (slot, label id)
        self._issued_limit = 8 * self.capacity + 16_384
        # handed out by get_task and not reported yet: never forgotten while the episode runs
        self._open: dict[int, int] = {}  # task id -> episodes in progress
        self._pending = WriteBatch()
        self._pending_since = 0.0
        self._pending_pid = os.getpid()
        self._unsent: WriteBatch | None = None  # a batch whose write failed, to send first
        self.buffer_on_outage = buffer_on_outage
        self.outage_retry_s = outage_retry_s
        self.max_buffered_outcomes = max_buffered_outcomes
        self._outage_until = 0.0  # while in the future, the hot path does not try the server
        self.outages = 0  # outages seen by this process
        self._lost_tasks: set[int] = set()  # tasks handed out from a pool that was lost since
        self.dropped_outcomes = 0  # outcomes dropped because their pool was lost

    # -- outages --------------------------------------------------------------------------------

    def in_outage(self) -> bool:
        """Whether the server failed recently and is not tried again yet."""
        return self._outage_until > time.monotonic()

    def _note_outage(self, exc: BackendUnavailableError) -> None:
        """Keep going on what this process has; raise when not configured to."""
        if not self.buffer_on_outage:
            raise exc
        if not self._outage_until:
            self.outages += 1
            logger.warning(
                "pool %r is unreachable; sampling from the last view and buffering writes "
                "(retry every %.1f s): %s",
                self.backend.session_id,
                self.outage_retry_s,
                exc,
            )
        self._outage_until = time.monotonic() + self.outage_retry_s
        self._check_buffer_limit(exc)

    def _check_buffer_limit(self, cause: BackendUnavailableError | None) -> None:
        buffered = self.pending_outcomes
        if buffered > self.max_buffered_outcomes:
            raise BackendUnavailableError(
                f"{buffered} outcomes buffered during an outage of pool "
                f"{self.backend.session_id!r}, over max_buffered_outcomes="
                f"{self.max_buffered_outcomes} (they stay buffered)"
                + (f": {cause}" if cause else "")
            ) from cause

    def _note_reachable(self) -> None:
        if self._outage_until:
            self._outage_until = 0.0
            logger.warning("pool %r is reachable again", self.backend.session_id)

    # -- views ----------------------------------------------------------------------------------

    def view(self, *, fresh: bool = False) -> PoolView:
        """The scored view; recomputed when stale (or ``fresh``) and the pool has changed.

        A view lives at least ``snapshot_max_age_s``, and at least REFRESH_COST_FACTOR times
        what the last refresh cost: a pool that takes long to read (a large pool on a remote
        server) is then not re-read after every batch.
        """
        now = time.monotonic()
        view = self._view
        max_age = max(self.snapshot_max_age_s, REFRESH_COST_FACTOR * self._refresh_cost)
        if (
            view is None
            or fresh
            or now - self._view_time >= max_age
            or self._written_since_view >= self._refresh_after_writes
        ):
            if view is not None and not fresh and self.in_outage():
                return view
            try:
                if view is None or self.backend.version() != view.snapshot.version:
                    view = self._score(self.backend.snapshot())
                    self._view = view
                    if len(view.active) < self.capacity:
                        self._maybe_free_slots = True
                    self._refresh_cost = time.monotonic() - now
            except BackendUnavailableError as exc:
                if view is None or fresh:
                    raise
                self._note_outage(exc)
                return view
            self._note_reachable()
            self._view_time = time.monotonic()
            self._written_since_view = 0
        return view

    def _score(self, snapshot: PoolSnapshot) -> PoolView:
        """The algorithm's view, with tasks whose env config keeps failing evicted first."""
        view = self.algorithm.view(snapshot)
        failures = snapshot.rows["n_failures"][view.active]
        broken = view.active[failures >= self.max_task_failures].tolist()
        if broken:
            first = set(broken)
            view.eviction_order = broken + [s for s in view.eviction_order if s not in first]
        return view

    def snapshot(self) -> PoolSnapshot:
        """The snapshot behind a fresh view."""
        return self.view(fresh=True).snapshot

    def invalidate(self) -> None:
        """Forget the cached view (after this process changed the pool)."""
        self._view = None

    # -- creating and evicting ------------------------------------------------------------------

    def _new_task_fields(self) -> tuple[int, int, int]:
        seq = self.backend.reserve_sequence()
        task_id = derive_task_id(self.backend.params.pool_seed, seq)
        label_id = self.backend.intern_label(self.generator.generate(task_id).label)
        return task_id, label_id, seq

    def try_create(self) -> tuple[int, int, int] | None:
        """Create a task in a free slot: ``(task_id, slot, label_id)``, or None when full."""
        if not self._maybe_free_slots or self.in_outage():
            return None
        try:
            task_id, label_id, seq = self._new_task_fields()
            slot = self.backend.create_task(task_id, label_id, seq)
        except BackendUnavailableError as exc:
            self._note_outage(exc)
            return None
        if slot is None:
            self._maybe_free_slots = False
            return None
        self._remember(task_id, slot, label_id)
        self.invalidate()
        return task_id, slot, label_id

    def try_evict_and_replace(self, view: PoolView) -> tuple[int, int, int] | None:
        """Evict the view's most evictable task and create a new one in its slot.

        Candidates another process already replaced fail the backend's compare-and-set and are
        skipped. Returns ``(task_id, slot, label_id)`` of the new task, or None when nothing was
        evicted.
        """
        if not view.eviction_order or self.in_outage():
            return None
        try:
            while view.eviction_order:
                slot = view.eviction_order.pop(0)
                if slot in self._pending.outcome_slots:
                    self.flush()  # this process's outcomes for the candidate count before it goes
                old_task = view.task_id(slot)
                task_id, label_id, seq = self._new_task_fields()
                if self.backend.replace_task(slot, old_task, task_id, label_id, seq):
                    self._remember(task_id, slot, label_id)
                    view.place_new_task(slot, task_id, label_id, seq)
                    return task_id, slot, label_id
        except BackendUnavailableError as exc:
            self._note_outage(exc)
        return None

    def _remember(self, task_id: int, slot: int, label_id: int) -> None:
        issued = self._issued
        if len(issued) >= self._issued_limit:
            # Forget the older half (dicts keep insertion order; a task handed out again moves
            # to the end), except tasks whose episodes are still running. Evicted tasks stay
            # known until then, so their late outcomes still count for their label.
            open_tasks = self._open
            for old in list(itertools.islice(issued, len(issued) // 2)):
                if old not in open_tasks:
                    del issued[old]
        issued[task_id] = (slot, label_id)

    def remember_sampled(self, view: PoolView, slot: int) -> tuple[int, int, int]:
        """Note that this process handed out the task in ``slot``: ``(task_id, slot, label_id)``."""
        task_id = view.task_id(slot)
        label_id = view.label_id(slot)
        known = self._issued.pop(task_id, None)
        if known is None:
            self._remember(task_id, slot, label_id)
        else:
            self._issued[task_id] = known  # most recently handed out: forgotten last
        return task_id, slot, label_id

    def _opened(self, task_id: int) -> None:
        open_tasks = self._open
        if len(open_tasks) >= self._issued_limit:  # episodes never reported (a crashed env)
            for old in list(itertools.islice(open_tasks, len(open_tasks) // 2)):
                del open_tasks[old]
        open_tasks[task_id] = open_tasks.get(task_id, 0) + 1

    def _closed(self, task_id: int) -> None:
        count = self._open.pop(task_id, 0)
        if count > 1:
            self._open[task_id] = count - 1

    def forget_lost_pool(self) -> int:
        """Drop what referred to a pool that is gone; returns the outcomes dropped with it.

        The tasks this process had handed out are remembered as lost: their late outcomes are
        dropped (and counted in ``dropped_outcomes``) instead of raising UnknownTaskError.
        """
        dropped = self.pending_outcomes
        self.dropped_outcomes += dropped
        self._pending = WriteBatch()
        self._unsent = None
        self._pending_pid = os.getpid()
        self._lost_tasks = set(itertools.islice(self._issued, self._issued_limit))
        self._issued.clear()
        self._open.clear()
        self._maybe_free_slots = True
        self._outage_until = 0.0
        self.invalidate()
        return dropped

    def locate_or_lost(self, task_id: int) -> tuple[int, int]:
        """:meth:`locate`, or ``(-1, -1)`` for a task of a pool that was lost since.

        Raises:
            UnknownTaskError: the task is neither handed out, active nor of a lost pool.
        """
        found = self._issued.get(task_id)
        if found is not None:
            return found
        try:
            return self.locate(task_id)
        except UnknownTaskError:
            if self.was_lost(task_id):
                return -1, -1
            raise

    def was_lost(self, task_id: int) -> bool:
        """Whether this process handed out ``task_id`` from a pool that was lost since."""
        if task_id in self._lost_tasks:
            self.dropped_outcomes += 1
            return True
        return False

    def count_dropped(self, count: int) -> None:
        """Count outcomes dropped because their pool was lost (see :meth:`was_lost`)."""
        self.dropped_outcomes += count

    def reset_after_import(self, num_active: int) -> None:
        """Drop every cache after the pool's contents were replaced by a checkpoint."""
        self._issued.clear()
        self._open.clear()
        self._maybe_free_slots = num_active < self.capacity
        self.invalidate()

    # -- recording ------------------------------------------------------------------------------

    def locate(self, task_id: int) -> tuple[int, int]:
        """``(slot, label id)`` of a task this process handed out or that is active in the pool.

        Raises:
            UnknownTaskError: the task is neither.
        """
        found = self._issued.get(task_id)
        if found is not None:
            return found
        for fresh in (False, True):
            snapshot = self.view(fresh=fresh).snapshot
            slots = np.flatnonzero(snapshot.rows["task_id"] == task_id)
            if len(slots):
                slot = int(slots[0])
                label_id = int(snapshot.rows["label_id"][slot])
                self._remember(task_id, slot, label_id)
                return slot, label_id
        raise UnknownTaskError(
            f"task id {task_id} is not active in pool {self.backend.session_id!r} "
            "and was not handed out by this curriculum"
        )

    def add_outcome(
        self,
        slot: int,
        task_id: int,
        label_id: int,
        score: float,
        steps: int = 1,
        *,
        flush_when_due: bool = True,
    ) -> None:
        """Buffer an outcome; writes the buffer when it is full or old enough."""
        pending = self._pending
        if not pending.outcome_slots and not pending.sample_slots:
            self._pending_since = time.monotonic()
        pending.add_outcome(slot, task_id, label_id, score, steps)
        self._closed(task_id)
        if flush_when_due:
            self._flush_if_due()

    def record_now(
        self,
        task_ids: list[int],
        scores: list[float],
        steps: int,
        locations: list[tuple[int, int]] | None = None,
    ) -> RecordResult:
        """Write the buffer and these outcomes (whose episodes took ``steps`` environment steps in
        total) under one lock acquisition; ``locations`` are their ``(slot, label id)`` if the
        caller located them already."""
        if locations is None:
            locations = [self.locate(task_id) for task_id in task_ids]
        if self._open:
            for task_id in task_ids:
                self._closed(task_id)
        if self._pending_pid != os.getpid():
            self.discard_pending()
        self._pending.extend_outcomes(
            [slot for slot, _ in locations],
            task_ids,
            [label for _, label in locations],
            scores,
            steps,
        )
        return self.flush()

    def add_sample(self, slot: int, task_id: int, label_id: int) -> None:
        """Buffer one scheduling of a task (its episode is open until its outcome comes)."""
        pending = self._pending
        if not pending.outcome_slots and not pending.sample_slots:
            self._pending_since = time.monotonic()
        pending.add_sample(slot, task_id, label_id)
        self._opened(task_id)
        self._flush_if_due()

    def add_failure(self, slot: int, task_id: int, label_id: int) -> RecordResult:
        """Record a failure of the task's env config now (with anything buffered)."""
        if self._pending_pid != os.getpid():
            self.discard_pending()
        self._pending.add_failure(slot, task_id, label_id)
        self._closed(task_id)  # its episode never ran
        self.invalidate()  # the next view sees the count and may evict the task
        try:
            return self.flush()
        except BackendUnavailableError as exc:
            self._note_outage(exc)  # buffered: written with the next flush
            return RecordResult(applied=0, late=0)

    def discard_pending(self) -> None:
        """Drop buffered writes inherited from a parent process (the parent still owns them)."""
        self._open.clear()  # and its episodes
        self._pending = WriteBatch()
        self._unsent = None
        self._pending_pid = os.getpid()

    def _flush_if_due(self) -> None:
        pending = self._pending
        if (
            len(pending.outcome_slots) >= self.write_batch_size
            or len(pending.sample_slots) >= 4 * self.write_batch_size
            or time.monotonic() - self._pending_since >= self.write_max_delay_s
        ):
            if self._outage_until and self.in_outage():
                self._check_buffer_limit(None)
                return
            try:
                self.flush(wait=False)  # a backend may overlap the write with the caller's work
            except BackendUnavailableError as exc:
                self._note_outage(exc)
            else:
                self._note_reachable()

    def flush(self, *, wait: bool = True) -> RecordResult:
        """Write every buffered outcome and sample count under one lock acquisition.

        A batch whose write failed is kept as it was (with the write id the backend gave it) and
        sent again before anything newer: a backend that may have applied it (a connection lost
        after the server ran the script) recognises the id and does not apply it twice.
        """
        if self._pending_pid != os.getpid():
            self.discard_pending()
        if self._unsent is not None:
            self._send(self._unsent, wait=True)
        pending = self._pending
        if not len(pending):
            if wait:
                self.backend.sync()
            return RecordResult(applied=0, late=0)
        self._pending = WriteBatch()
        return self._send(pending, wait=wait)

    def _send(self, batch: WriteBatch, *, wait: bool) -> RecordResult:
        self._unsent = batch
        result = self.backend.record(batch, wait=wait)
        self._unsent = None
        self._written_since_view += len(batch.outcome_slots)
        return result

    @property
    def pending_outcomes(self) -> int:
        """Outcomes buffered in this process and not yet written."""
        unsent = len(self._unsent.outcome_slots) if self._unsent is not None else 0
        return len(self._pending.outcome_slots) + unsent
