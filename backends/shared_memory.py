"""The embedded backend: one pool per session in a /dev/shm segment, shared by every process.

The segment's layout, lifetime and safety checks are in :mod:`backends.shm_segment` and
:mod:`backends.shm_attach`; the mutations in :mod:`backends.shm_records`.

Writes take an exclusive ``flock`` on the segment (see :mod:`backends.file_lock`), save what
they will change in the segment's undo record (:mod:`backends.shm_journal`) and bump a seqlock
around the change, so a write is all or nothing even when its process dies in the middle, and
snapshots copy without the lock and retry when a write overlapped. Rows are updated as whole
records (one copy per row), never field by field.

Every write first checks that the segment is still the file of its path (a removed segment
raises PoolLostError instead of taking writes nobody will see) and still has its size.
The segment lives while any process is attached: the last to leave (``close()``, garbage
collection, interpreter exit) removes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from multiprocessing import util as mp_util
from typing import TypeVar

import numpy as np

from backends.base import (
    PoolParams,
    PoolSnapshot,
    PoolState,
    RecordResult,
    TaskMemoryBackend,
    WriteBatch,
    labels_full_error,
)
from backends.layout import (
    COUNTER_NAMES,
    EMPTY_TASK,
    EPOCH_COUNTERS,
    LABEL_DTYPE,
    decode_label,
    encode_label,
    label_totals,
)
from backends.range_state import RangeState, RangeUpdate, apply_range_update
from backends.shm_attach import open_segment
from backends.shm_journal import _CRASH_AT, crash_point
from backends.shm_records import (
    COUNTER_INDEX,
    PreparedBatch,
    add_label,
    apply_batch,
    evict,
    find_label,
    free_slot,
    label_ids,
    label_to_add,
    labels_folded,
    write_new_task,
)
from backends.shm_segment import (  # noqa: F401 - re-exported for tools and tests
    MAGIC,
    META,
    META_INDEX,
    PARAMS_BYTES,
    PARAMS_OFFSET,
    SEGMENT_PREFIX,
    STAGE_DTYPE,
    SegmentFiles,
    detach,
    range_from_record,
    range_to_record,
    segment_path,
    segment_size,
    shm_dir,
    stage_from_record,
    stage_to_record,
)
from backends.stage_state import StageState, StageUpdate, apply_stage_update
from curriculum import forks
from curriculum.errors import (
    BackendError,
    PoolClosedError,
    PoolCorruptedError,
    PoolLostError,
    PoolMismatchError,
)

logger = logging.getLogger("curriculum.shm")
T = TypeVar("T")
SNAPSHOT_RETRIES = 8
# multiprocessing runs exit finalizers of priority >= 0 (the session's flush: 20), then stops its
# daemonic children and joins the others, then runs the rest: leaving last lets this process
# remove the segment that children still held through an inherited descriptor.
EXIT_PRIORITY = -10


class SharedMemoryBackend(TaskMemoryBackend):
    """A pool in a /dev/shm segment, locked with flock, read through a seqlock."""

    thread_safe_reads = True  # reads copy the segment under its sequence counter, lock-free
    in_memory_reads = True

    def __init__(
        self,
        session_id: str,
        params: PoolParams,
        *,
        create: bool = True,
        lock_timeout_s: float = 10.0,
    ) -> None:
        """Attach to the session's pool, creating it when absent and ``create`` is true.

        Raises:
            PoolMismatchError: the existing pool was made with different parameters.
            PoolNotFoundError: the pool does not exist and ``create`` is false.
            PoolCorruptedError: the segment is not a pool this library can trust or read.
            BackendError: a new pool does not fit in the shm file system.
        """
        self.session_id = session_id
        self.path = segment_path(session_id)
        self._lock_timeout_s = lock_timeout_s
        self._closed = False
        self._open(params, create=create)

    def _open(self, params: PoolParams, *, create: bool) -> None:
        opened = open_segment(
            self.session_id, params, create=create, lock_timeout_s=self._lock_timeout_s
        )
        self._files: SegmentFiles = opened.files
        self._lock = opened.files.lock
        self.created = opened.created
        self.params = opened.params
        self._meta = opened.mapped.meta
        self._pool = opened.mapped.pool
        self._journal = opened.mapped.journal
        self._rows, self._labels = self._pool.rows, self._pool.labels
        self._counters, self._stage = self._pool.counters, self._pool.stage
        self._expected_size = segment_size(self.params.capacity, self.params.label_capacity)
        self._label_ids: dict[str, int] = {}
        self._label_names: list[str] = []
        self._watch_exit()
        forks.on_fork_in_child(self, SharedMemoryBackend._after_fork)
        mp_util.register_after_fork(self, SharedMemoryBackend._after_fork)

    def _watch_exit(self) -> None:
        """Leave the segment (removing it when last) at close(), at garbage collection, and at
        this process's exit (after multiprocessing joined its children: see EXIT_PRIORITY)."""
        self._finalizer = mp_util.Finalize(self, detach, (self._files,), exitpriority=EXIT_PRIORITY)

    def _after_fork(self) -> None:
        """In a child (forked, or a worker that unpickled this backend before multiprocessing
        cleared its finalizers): an exit hook of its own, to leave (an inherited attach: see
        :func:`detach`) at its exit."""
        if not self._closed:
            self._watch_exit()

    # -- the lock and the undo record ----------------------------------------------------------

    def _acquire(self) -> None:
        """Take the lock, check the segment is still ours, and undo a write its writer left."""
        if self._closed:
            raise PoolClosedError(f"pool {self.session_id!r} is closed in this process")
        self._lock.acquire()
        try:
            st = self._linked_stat()
            if st.st_size != self._expected_size:
                raise PoolCorruptedError(
                    f"{self.path} is now {st.st_size:,} bytes, but its pool needs "
                    f"{self._expected_size:,}: the segment was truncated or damaged"
                )
        except BaseException:
            self._lock.release()
            raise
        self._meta[META_INDEX["holder_pid"]] = os.getpid()
        self._recover()

    def _linked_stat(self) -> os.stat_result:
        """The segment's stat; PoolLostError once its file was removed (it is read on writes, and
        on reads when a view is due: a reader too must not take a dead pool for the live one)."""
        st = os.fstat(self._files.fd)
        if st.st_nlink == 0:
            raise PoolLostError(
                f"pool {self.session_id!r} was removed from {self.path} while this process was "
                "attached (destroy(), `rm`, or a clean-up of /dev/shm): it reaches no other process"
            )
        return st

    def _recover(self) -> None:
        """Roll back the write of a writer that died holding the lock (readers saw the seqlock
        odd all along), and close its seqlock."""
        seqlock = META_INDEX["seqlock"]
        if self._journal.pending:
            if self._meta[seqlock] % 2 == 0:
                self._meta[seqlock] += 1
            logger.warning(
                "pool %r: a process died in the middle of a write; rolled it back", self.session_id
            )
            self._journal.roll_back()
        if self._meta[seqlock] % 2:
            self._meta[seqlock] += 1

    def _release(self) -> None:
        self._meta[META_INDEX["holder_pid"]] = 0
        self._lock.release()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock; a change journaled inside (:meth:`_change`) commits at the end, or is
        rolled back when the block raises."""
        self._acquire()
        try:
            yield
        except BaseException:
            if self._journal.pending:
                self._journal.roll_back()
            raise
        finally:
            seqlock = META_INDEX["seqlock"]
            if self._journal.pending:
                self._journal.commit()
                if _CRASH_AT:
                    crash_point("committed")
            if self._meta[seqlock] % 2:
                self._meta[seqlock] += 1
            self._release()

    def _change(
        self,
        rows: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        *,
        stage: bool = False,
        ranges: bool = False,
    ) -> None:
        """Inside :meth:`_locked`: save what is about to change (all counters always), then
        open the seqlock. Call once, before the first change (a second call would replace the
        undo record)."""
        self._journal.save(rows, labels, stage=stage, ranges=ranges)
        self._meta[META_INDEX["seqlock"]] += 1

    def _count(self, name: str, amount: int = 1) -> None:
        self._counters[COUNTER_INDEX[name]] += amount

    def version(self) -> int:
        """Moves on every write.

        Raises:
            PoolLostError: the segment's file was removed.
        """
        self._linked_stat()
        return int(self._meta[META_INDEX["seqlock"]]) >> 1

    # -- writes ---------------------------------------------------------------------------------

    def reserve_sequence(self) -> int:
        """Take the next task sequence number."""
        with self._locked():
            self._change()
            seq = int(self._counters[COUNTER_INDEX["next_seq"]])
            self._count("next_seq")
            return seq

    def intern_label(self, name: str) -> int:
        """The label's id; new labels take the next free id (the last one is the overflow)."""
        cached = self._label_ids.get(name)
        if cached is not None:
            return cached
        encoded = encode_label(name)
        with self._locked():
            label_id = self._intern_locked(encoded)
        if len(self._label_ids) >= 2 * self.params.label_capacity:
            self._label_ids.clear()  # a cache of an append-only table: safe to drop
        self._label_ids[name] = label_id
        return label_id

    def _intern_locked(self, encoded: bytes) -> int:
        found = find_label(self._pool, encoded)
        if found is not None:
            return found
        label_id, stored = label_to_add(self._pool, encoded)
        if label_id >= self._pool.counter("num_labels"):
            if not self._journal.pending:  # import_state saved every label already
                self._change(labels=np.array([label_id], dtype=np.int64))
            add_label(self._pool, label_id, stored)
        return label_id

    def create_task(self, task_id: int, label_id: int, seq: int) -> int | None:
        """Claim the first free slot for a new task."""
        with self._locked():
            slot = free_slot(self._pool)
            if slot is None:
                return None
            self._change(np.array([slot], dtype=np.int64), label_ids(label_id))
            write_new_task(self._pool, slot, task_id, label_id, seq)
            self._count("num_active")
            return slot

    def replace_task(
        self, slot: int, expected_task_id: int, task_id: int, label_id: int, seq: int
    ) -> bool:
        """Compare-and-set eviction of ``expected_task_id`` followed by the new task's creation."""
        self._check_slot(slot)
        with self._locked():
            if int(self._rows["task_id"][slot]) != expected_task_id:
                return False
            old_label = int(self._rows["label_id"][slot])
            self._change(np.array([slot], dtype=np.int64), label_ids(old_label, label_id))
            evict(self._pool, slot)
            write_new_task(self._pool, slot, task_id, label_id, seq)
            return True

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < len(self._rows):
            raise BackendError(f"slot {slot} is outside the pool's {len(self._rows)} slots")

    def record(self, batch: WriteBatch) -> RecordResult:
        """Apply outcomes (in order per slot), sample counts and failures, all or nothing.

        Only the rows change; entries whose task was evicted meanwhile go to their label's stored
        counters (and count as late). The order of application is computed before the lock.
        """
        prepared = PreparedBatch.of(batch)
        touched = prepared.touched_slots(len(self._rows))
        if len(touched) and (touched.min() < 0 or touched.max() >= len(self._rows)):
            raise BackendError(f"batch names slots outside the pool: {touched.tolist()}")
        with self._locked():
            masks = prepared.live_masks(self._rows)
            self._change(touched, prepared.late_labels(masks))
            return apply_batch(self._pool, prepared, masks, self.params.ema)

    def update_stage(self, update: StageUpdate) -> tuple[StageState, int | None]:
        """Fold ``update`` into the stage record under the lock."""
        rule = self.params.stage_rule()
        if rule is None:
            raise BackendError(
                f"pool {self.session_id!r} is not the root pool of a staged curriculum"
            )
        with self._locked():
            self._change(stage=True)
            state = stage_from_record(self._stage.copy())
            ended = apply_stage_update(state, update, rule)
            self._stage[()] = stage_to_record(state)  # one copy of the whole record
            return state, ended

    def update_ranges(self, update: RangeUpdate) -> RangeState:
        """Fold ``update`` into the range record under the lock."""
        rule = self.params.range_rule()
        if rule is None:
            raise BackendError(f"pool {self.session_id!r} is not a range-expansion pool")
        with self._locked():
            self._change(ranges=True)
            state = range_from_record(self._pool.ranges.copy())
            apply_range_update(state, update, rule)
            self._pool.ranges[()] = range_to_record(state)  # one copy of the whole record
            return state

    def end_epoch(self) -> dict[str, int]:
        """Reset the epoch counters; their values before the reset."""
        with self._locked():
            self._change()
            before = {name: int(self._counters[COUNTER_INDEX[name]]) for name in EPOCH_COUNTERS}
            for name in EPOCH_COUNTERS:
                self._counters[COUNTER_INDEX[name]] = 0
            self._count("epoch")
            return before

    # -- reads ----------------------------------------------------------------------------------

    def stage_state(self) -> StageState:
        """The stage record, copied without the lock (retried when a write overlapped)."""
        return stage_from_record(self._read_consistently(self._stage.copy)[1])

    def range_state(self) -> RangeState:
        """The range record, copied without the lock (retried when a write overlapped)."""
        return range_from_record(self._read_consistently(self._pool.ranges.copy)[1])

    def snapshot(self) -> PoolSnapshot:
        """Copy the pool without the lock, retrying when a write overlapped the copy."""
        version, copied = self._read_consistently(self._copy)
        return _with_label_totals(PoolSnapshot(version, *copied))

    def _read_consistently(self, copy: Callable[[], T]) -> tuple[int, T]:
        """``copy()`` taken while no write was in progress, and the version it saw."""
        if self._closed:
            raise PoolClosedError(f"pool {self.session_id!r} is closed in this process")
        self._linked_stat()
        seqlock = META_INDEX["seqlock"]
        for _ in range(SNAPSHOT_RETRIES):
            before = int(self._meta[seqlock])
            if before & 1:
                time.sleep(0)
                continue
            copied = copy()
            if int(self._meta[seqlock]) == before:
                return before >> 1, copied
        # Writers keep overlapping, or one died mid-change: read under the lock (which rolls a
        # dead writer's change back first).
        with self._locked():
            return int(self._meta[seqlock]) >> 1, copy()

    def _copy(self) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, int]]:
        counters = dict(zip(COUNTER_NAMES, self._counters.tolist(), strict=True))
        labels = self._labels[: counters["num_labels"]].copy()
        rows = self._rows.copy()
        if len(self._label_names) < len(labels):
            self._label_names.extend(
                decode_label(n) for n in labels["name"][len(self._label_names) :]
            )
        return rows, labels, self._label_names[: len(labels)], counters

    # -- checkpoints ----------------------------------------------------------------------------

    def export_state(self) -> PoolState:
        """Everything in the pool, copied under the lock."""
        with self._locked():
            rows, labels, _, counters = self._copy()
            stage = stage_from_record(self._stage.copy())
            ranges = range_from_record(self._pool.ranges.copy())
        return PoolState(self.params, rows, labels, counters, stage, ranges)

    def import_state(self, state: PoolState) -> None:
        """Replace rows and counters; labels are merged by name so label ids never change."""
        if len(state.rows) != len(self._rows):
            raise PoolMismatchError(
                f"state has {len(state.rows)} slots, pool {self.session_id!r} has {len(self._rows)}"
            )
        with self._locked():
            folded = labels_folded(self._pool, state.labels["name"])
            if folded:
                raise labels_full_error(self.session_id, folded, len(self._labels))
            everything = np.arange(len(self._rows)), np.arange(len(self._labels))
            self._change(*everything, stage=True, ranges=True)
            mapping = np.array(
                [self._intern_locked(bytes(name)) for name in state.labels["name"]], dtype=np.int64
            )
            rows = state.rows.copy()
            has_label = rows["label_id"] >= 0
            rows["label_id"][has_label] = mapping[rows["label_id"][has_label]]
            self._rows[:] = rows
            if _CRASH_AT:
                crash_point("applying")
            count = int(self._counters[COUNTER_INDEX["num_labels"]])
            cleared = np.zeros(count, LABEL_DTYPE)
            cleared["name"] = self._labels["name"][:count]
            self._labels[:count] = cleared
            for field in LABEL_DTYPE.names:
                if field != "name":
                    self._labels[field][mapping] = state.labels[field]
            for name in COUNTER_NAMES:
                if name not in ("num_labels", "num_active"):
                    self._counters[COUNTER_INDEX[name]] = int(state.counters.get(name, 0))
            self._counters[COUNTER_INDEX["num_active"]] = int((rows["task_id"] != EMPTY_TASK).sum())
            self._stage[()] = stage_to_record(state.stage)
            ranges = state.ranges or self.params.initial_ranges()
            self._pool.ranges[()] = range_to_record(ranges)

    # -- lifetime -------------------------------------------------------------------------------

    def reattach(self, params: PoolParams) -> bool:
        """After PoolLostError: leave the removed segment and attach to the session's pool again,
        creating it (with ``params``) when absent. True when this process created it."""
        detach(self._files)  # leaves the old segment (never removes the new file at its path)
        self._finalizer.cancel()
        self._open(params, create=True)
        return self.created

    def close(self) -> None:
        """Leave the pool; the last process to leave removes it."""
        if self._closed:
            return
        self._closed = True
        detach(self._files)  # also in a forked child, where the finalizer would not run
        self._finalizer.cancel()

    def destroy(self) -> None:
        """Remove the segment now; processes still attached get PoolLostError at their next
        write."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path, follow_symlinks=False).st_ino == self._files.inode:
                os.unlink(self.path)
        self.close()


def _with_label_totals(snapshot: PoolSnapshot) -> PoolSnapshot:
    snapshot.labels = label_totals(snapshot.labels, snapshot.rows)
    return snapshot
