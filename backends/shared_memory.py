"""The embedded backend: one pool per session in a /dev/shm segment, shared by every process.

Layout of the segment ``/dev/shm/curriculum.<session>``::

    0       meta     int64[len(META)]        magic, layout, creator, seqlock, lock holder
    256     counters int64[len(COUNTER_NAMES)]
    512     stage    STAGE_DTYPE: the staged curriculum's stage record
    1024    params   UTF-8 JSON of PoolParams (at most PARAMS_BYTES)
    16384   rows     ROW_DTYPE[capacity]
    ...     labels   LABEL_DTYPE[label_capacity]

Writes take an exclusive ``flock`` on the segment (see :mod:`backends.file_lock`) and bump a
seqlock around the change, so snapshots copy without the lock and retry when a write overlapped.
Rows are updated as whole records (one copy per row), never field by field.

The creating process removes the segment at ``close()`` and at interpreter exit; processes that
attach never remove it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import tempfile
import time
from collections.abc import Callable
from multiprocessing import util as mp_util
from pathlib import Path
from typing import TypeVar

import numpy as np

from backends.base import (
    PoolParams,
    PoolSnapshot,
    PoolState,
    RecordResult,
    TaskMemoryBackend,
    WriteBatch,
)
from backends.file_lock import FileLock
from backends.layout import (
    COUNTER_NAMES,
    EMPTY_TASK,
    EPOCH_COUNTERS,
    LABEL_DTYPE,
    OVERFLOW_LABEL,
    ROW_DTYPE,
    STRUCT_VERSION,
    decode_label,
    empty_rows,
    encode_label,
    fold_row_into_label,
    label_totals,
)
from backends.process_info import (
    describe_creator,
    describe_process,
    pid_namespace,
    process_identity,
    processes_using,
)
from backends.stage_state import MAX_STAGES, StageState, StageUpdate, apply_stage_update
from curriculum.ema import apply_outcomes, rounds
from curriculum.errors import (
    BackendError,
    PoolClosedError,
    PoolCorruptedError,
    PoolMismatchError,
    PoolNotFoundError,
)

logger = logging.getLogger("curriculum.shm")
T = TypeVar("T")

MAGIC = 0x4C4F4F5043525543  # b"CURCPOOL" little-endian
META = (
    "magic",
    "struct_version",
    "capacity",
    "label_capacity",
    "creator_pid",
    "creator_start",
    "seqlock",
    "holder_pid",
    "params_len",
    "creator_pidns",
)
META_INDEX = {name: i for i, name in enumerate(META)}
COUNTER_INDEX = {name: i for i, name in enumerate(COUNTER_NAMES)}
COUNTERS_OFFSET = 256
STAGE_OFFSET = 512
STAGE_DTYPE = np.dtype(
    [
        ("counters", np.int64, 4),  # stage, transitions, stage_steps, total_steps
        ("performance", np.float64, MAX_STAGES),
        ("outcomes", np.int64, MAX_STAGES),
    ]
)
PARAMS_OFFSET = 1024
PARAMS_BYTES = 15 * 1024
ROWS_OFFSET = 16 * 1024
SEGMENT_PREFIX = "curriculum."
SNAPSHOT_RETRIES = 8


def shm_dir() -> Path:
    """Where segments live: /dev/shm when present, else the temp directory."""
    return Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())


def segment_path(session_id: str) -> Path:
    """The file of a session's segment."""
    return shm_dir() / f"{SEGMENT_PREFIX}{session_id}"


def _labels_offset(capacity: int) -> int:
    end = ROWS_OFFSET + capacity * ROW_DTYPE.itemsize
    return (end + 63) // 64 * 64


def _segment_size(capacity: int, label_capacity: int) -> int:
    return _labels_offset(capacity) + label_capacity * LABEL_DTYPE.itemsize


class SharedMemoryBackend(TaskMemoryBackend):
    """A pool in a /dev/shm segment, locked with flock, read through a seqlock."""

    thread_safe_reads = True  # reads copy the segment under its sequence counter, lock-free

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
            PoolCorruptedError: the segment is not a pool this library can read.
        """
        self.session_id = session_id
        self.path = segment_path(session_id)
        self._closed = False
        self._label_ids: dict[str, int] = {}
        self._label_names: list[str] = []
        deadline = time.monotonic() + lock_timeout_s
        while True:
            self.created = False
            if create:
                try:
                    fd = os.open(
                        self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                    )
                    self.created = True
                except FileExistsError:
                    fd = -1
            if not self.created:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    if create:
                        continue  # removed between our two opens: try creating again
                    raise PoolNotFoundError(
                        f"no pool for session {session_id!r} at {self.path}"
                    ) from None
            self._fd = fd
            self._lock = FileLock(fd, lock_timeout_s, self._describe_holder)
            if self.created:
                self._initialise(params)
                break
            if self._attach(params, deadline):
                break
        self._register_cleanup()

    # -- set-up ---------------------------------------------------------------------------------

    def _map(self, capacity: int, label_capacity: int) -> None:
        size = _segment_size(capacity, label_capacity)
        self._mm = mmap.mmap(self._fd, size)
        buf = self._mm
        self._meta = np.ndarray((len(META),), np.int64, buffer=buf, offset=0)
        self._counters = np.ndarray(
            (len(COUNTER_NAMES),), np.int64, buffer=buf, offset=COUNTERS_OFFSET
        )
        self._stage = np.ndarray((), STAGE_DTYPE, buffer=buf, offset=STAGE_OFFSET)
        self._params_buf = np.ndarray((PARAMS_BYTES,), np.uint8, buffer=buf, offset=PARAMS_OFFSET)
        self._rows = np.ndarray((capacity,), ROW_DTYPE, buffer=buf, offset=ROWS_OFFSET)
        self._labels = np.ndarray(
            (label_capacity,), LABEL_DTYPE, buffer=buf, offset=_labels_offset(capacity)
        )

    def _initialise(self, params: PoolParams) -> None:
        raw = params.to_json().encode("utf-8")
        if len(raw) > PARAMS_BYTES:
            self._discard_new_segment()
            raise BackendError(f"pool parameters take {len(raw)} bytes, over {PARAMS_BYTES}")
        with self._lock:
            os.ftruncate(self._fd, _segment_size(params.capacity, params.label_capacity))
            self._map(params.capacity, params.label_capacity)
            self._rows[:] = empty_rows(params.capacity)
            self._params_buf[: len(raw)] = np.frombuffer(raw, np.uint8)
            pid, start = process_identity()
            meta = {
                "struct_version": STRUCT_VERSION,
                "capacity": params.capacity,
                "label_capacity": params.label_capacity,
                "creator_pid": pid,
                "creator_start": start,
                "creator_pidns": pid_namespace(),
                "params_len": len(raw),
            }
            for name, value in meta.items():
                self._meta[META_INDEX[name]] = value
            self._meta[META_INDEX["magic"]] = MAGIC  # last: marks the segment as ready
        self.params = params
        self._creator_pid = pid

    def _discard_new_segment(self) -> None:
        os.unlink(self.path)
        os.close(self._fd)

    def _attach(self, params: PoolParams, deadline: float) -> bool:
        """Map an existing segment; False when it vanished and the caller should start over."""
        header_size = PARAMS_OFFSET + PARAMS_BYTES
        while True:
            with self._lock:
                try:
                    same_file = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
                except FileNotFoundError:
                    same_file = False
                if not same_file:
                    os.close(self._fd)
                    return False
                if os.fstat(self._fd).st_size >= header_size:
                    head = np.frombuffer(os.pread(self._fd, 8 * len(META), 0), np.int64)
                    if head[META_INDEX["magic"]] == MAGIC:
                        break
            if time.monotonic() > deadline:
                os.close(self._fd)
                raise PoolCorruptedError(
                    f"{self.path} is not an initialised pool (no header) after waiting; "
                    "remove it or choose another session_id"
                )
            time.sleep(0.001)
        if head[META_INDEX["struct_version"]] != STRUCT_VERSION:
            os.close(self._fd)
            raise PoolMismatchError(
                f"pool {self.session_id!r} uses layout version "
                f"{int(head[META_INDEX['struct_version']])}, this library writes {STRUCT_VERSION}"
            )
        self._map(int(head[META_INDEX["capacity"]]), int(head[META_INDEX["label_capacity"]]))
        self._creator_pid = int(self._meta[META_INDEX["creator_pid"]])
        creator_alive = describe_creator(
            self._creator_pid,
            int(self._meta[META_INDEX["creator_start"]]),
            int(self._meta[META_INDEX["creator_pidns"]]),
        )[1]
        if not creator_alive:
            users = self._other_users()
            if not users:
                self._release_mapping()
                raise PoolCorruptedError(
                    f"pool {self.session_id!r} at {self.path} is orphaned: its creator, process "
                    f"{self._creator_pid}, has exited and no process uses it; remove it "
                    "(`curriculum shm clean`) or choose another session_id"
                )
            logger.warning(
                "pool %r: its creator, process %d, has exited, but processes %s still use it: "
                "attaching; nobody removes it at exit now (`curriculum shm clean` does, once "
                "the run is over)",
                self.session_id,
                self._creator_pid,
                sorted(users),
            )
        stored = self._read_params()
        problems = stored.mismatches(params)
        if problems:
            self._release_mapping()
            raise PoolMismatchError(
                f"pool {self.session_id!r} was created with other parameters: "
                + "; ".join(problems)
            )
        self.params = stored
        return True

    def _other_users(self) -> set[int]:
        """Other processes that map or hold open this segment (empty when unknown)."""
        st = os.fstat(self._fd)
        found = processes_using([(st.st_dev, st.st_ino)], SEGMENT_PREFIX)
        return (found or {}).get((st.st_dev, st.st_ino), set()) - {os.getpid()}

    def _read_params(self) -> PoolParams:
        length = int(self._meta[META_INDEX["params_len"]])
        try:
            return PoolParams.from_dict(json.loads(self._params_buf[:length].tobytes()))
        except (ValueError, KeyError, TypeError) as exc:
            raise PoolCorruptedError(
                f"pool {self.session_id!r} has unreadable parameters: {exc}"
            ) from None

    def _register_cleanup(self) -> None:
        owner = os.getpid() if self.created else -1
        ino = os.fstat(self._fd).st_ino
        # multiprocessing's Finalize also runs when a fork-started child exits (os._exit skips
        # atexit and weakref.finalize there); the callback itself checks the creating pid.
        self._finalizer = mp_util.Finalize(
            self, _remove_segment, args=(str(self.path), ino, owner), exitpriority=10
        )

    def _describe_holder(self) -> str:
        raw = os.pread(self._fd, 8, 8 * META_INDEX["holder_pid"])
        pid = int.from_bytes(raw, "little", signed=True) if len(raw) == 8 else 0
        if pid <= 0:
            return "the holder did not record itself (the pool is being created or attached)"
        state, alive = describe_process(pid)
        return (
            f"held by process {pid} ({state})" if alive else f"last held by process {pid} ({state})"
        )

    # -- locked writes --------------------------------------------------------------------------
    # The seqlock is odd while a change is in progress. A writer that finds it odd under the lock
    # knows its predecessor died mid-change, and moves it on to an odd value of its own.

    def _acquire(self) -> None:
        if self._closed:
            raise PoolClosedError(f"pool {self.session_id!r} is closed in this process")
        self._lock.acquire()
        self._meta[META_INDEX["holder_pid"]] = os.getpid()

    def _start_change(self) -> None:
        seqlock = int(self._meta[META_INDEX["seqlock"]])
        self._meta[META_INDEX["seqlock"]] = seqlock + 1 if seqlock % 2 == 0 else seqlock + 2

    def _begin_write(self) -> None:
        self._acquire()
        self._start_change()

    def _end_write(self) -> None:
        """Close the change (if one was started) and release the lock."""
        if int(self._meta[META_INDEX["seqlock"]]) % 2:
            self._meta[META_INDEX["seqlock"]] += 1
        self._meta[META_INDEX["holder_pid"]] = 0
        self._lock.release()

    def _count(self, name: str, amount: int = 1) -> None:
        self._counters[COUNTER_INDEX[name]] += amount

    def version(self) -> int:
        """Moves on every write."""
        return int(self._meta[META_INDEX["seqlock"]]) >> 1

    def reserve_sequence(self) -> int:
        """Take the next task sequence number."""
        self._begin_write()
        try:
            seq = int(self._counters[COUNTER_INDEX["next_seq"]])
            self._count("next_seq")
            return seq
        finally:
            self._end_write()

    def intern_label(self, name: str) -> int:
        """The label's id; new labels take the next free id (the last one is the overflow)."""
        cached = self._label_ids.get(name)
        if cached is not None:
            return cached
        encoded = encode_label(name)
        self._begin_write()
        try:
            label_id = self._intern_locked(encoded)
        finally:
            self._end_write()
        if len(self._label_ids) >= 2 * self.params.label_capacity:
            self._label_ids.clear()  # a cache of an append-only table: safe to drop
        self._label_ids[name] = label_id
        return label_id

    def _intern_locked(self, encoded: bytes) -> int:
        count = int(self._counters[COUNTER_INDEX["num_labels"]])
        found = np.flatnonzero(self._labels["name"][:count] == encoded)
        if len(found):
            return int(found[0])
        if count >= len(self._labels) - 1 and encoded != OVERFLOW_LABEL.encode():
            return self._intern_locked(OVERFLOW_LABEL.encode())
        record = np.zeros((), LABEL_DTYPE)
        record["name"] = encoded
        self._labels[count] = record
        self._count("num_labels")
        return count

    def create_task(self, task_id: int, label_id: int, seq: int) -> int | None:
        """Claim the first free slot for a new task."""
        self._begin_write()
        try:
            free = np.flatnonzero(self._rows["task_id"] == EMPTY_TASK)
            if len(free) == 0:
                return None
            slot = int(free[0])
            self._write_new_task(slot, task_id, label_id, seq)
            self._count("num_active")
            return slot
        finally:
            self._end_write()

    def replace_task(
        self, slot: int, expected_task_id: int, task_id: int, label_id: int, seq: int
    ) -> bool:
        """Compare-and-set eviction of ``expected_task_id`` followed by the new task's creation."""
        self._check_slot(slot)
        self._acquire()
        try:
            if int(self._rows["task_id"][slot]) != expected_task_id:
                return False
            self._start_change()
            old_label = int(self._rows["label_id"][slot])
            if old_label >= 0:
                label = self._labels[old_label].copy()  # written back as one record
                fold_row_into_label(label, self._rows[slot])
                label["evicted"] += 1
                self._labels[old_label] = label
            self._count("num_evicted")
            self._count("epoch_evicted")
            self._write_new_task(slot, task_id, label_id, seq)
            return True
        finally:
            self._end_write()

    def _write_new_task(self, slot: int, task_id: int, label_id: int, seq: int) -> None:
        row = empty_rows(1)
        row["task_id"] = task_id
        row["seq"] = seq
        row["label_id"] = label_id
        self._rows[slot] = row[0]
        if label_id >= 0:
            self._labels["created"][label_id] += 1
        self._count("num_created")
        self._count("epoch_created")

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < len(self._rows):
            raise BackendError(f"slot {slot} is outside the pool's {len(self._rows)} slots")

    def record(self, batch: WriteBatch, *, wait: bool = True) -> RecordResult:
        """Apply outcomes (in order per slot), sample counts and failures under one lock.

        Only the rows change; entries whose task was evicted meanwhile go to their label's stored
        counters (and count as late). The order of application is computed before the lock.
        """
        slots = np.asarray(batch.outcome_slots, dtype=np.int64)
        task_ids = np.asarray(batch.outcome_task_ids, dtype=np.int64)
        scores = np.asarray(batch.outcome_scores, dtype=np.float64)
        s_slots = np.asarray(batch.sample_slots, dtype=np.int64)
        f_slots = np.asarray(batch.failure_slots, dtype=np.int64)
        for array in (slots, s_slots, f_slots):
            if len(array) and (array.min() < 0 or array.max() >= len(self._rows)):
                raise BackendError(f"batch names slots outside the pool: {array.tolist()}")
        parts = rounds(slots)
        self._begin_write()
        try:
            live = self._rows["task_id"][slots] == task_ids
            all_live = bool(live.all())
            for positions in parts:
                chosen = positions if all_live else positions[live[positions]]
                row_index = slots[chosen]
                updated = self._rows[row_index]  # fancy indexing: a copy
                apply_outcomes(updated, scores[chosen], self.params.ema)
                self._rows[row_index] = updated  # whole records, one copy each
            late = ~live
            if late.any():
                self._credit_late(np.asarray(batch.outcome_labels)[late], scores[late])
            applied = len(slots) - int(late.sum())
            self._count("num_completed", len(slots))
            self._count("epoch_completed", len(slots))
            self._count("num_late_outcomes", len(slots) - applied)
            for slots_, ids, labels, row_field, label_field, counter in (
                (
                    s_slots,
                    batch.sample_task_ids,
                    batch.sample_labels,
                    "n_samples",
                    "samples",
                    "scheduled",
                ),
                (
                    f_slots,
                    batch.failure_task_ids,
                    batch.failure_labels,
                    "n_failures",
                    "failures",
                    "failures",
                ),
            ):
                if len(slots_):
                    self._count_events(slots_, ids, labels, row_field, label_field)
                    self._count(f"num_{counter}", len(slots_))
                    self._count(f"epoch_{counter}", len(slots_))
            self._count("num_steps", batch.steps)
            self._count("epoch_steps", batch.steps)
            return RecordResult(applied=applied, late=len(slots) - applied)
        finally:
            self._end_write()

    def _credit_late(self, labels: np.ndarray, scores: np.ndarray) -> None:
        known = labels >= 0
        ids, scores = labels[known], scores[known]
        np.add.at(self._labels["completions"], ids, 1)
        np.add.at(self._labels["late"], ids, 1)
        np.add.at(self._labels["score_sum"], ids, scores)
        np.add.at(self._labels["successes"], ids, scores >= self.params.ema.success_threshold)

    def _count_events(
        self,
        slots: np.ndarray,
        task_ids: list[int],
        labels: list[int],
        row_field: str,
        label_field: str,
    ) -> None:
        """Count samples or failures on live rows; those of evicted tasks on their labels."""
        live = self._rows["task_id"][slots] == np.asarray(task_ids, dtype=np.int64)
        np.add.at(self._rows[row_field], slots[live], 1)
        gone = np.asarray(labels, dtype=np.int64)[~live]
        np.add.at(self._labels[label_field], gone[gone >= 0], 1)

    def stage_state(self) -> StageState:
        """The stage record, copied without the lock (retried when a write overlapped)."""
        return _stage_from_record(self._read_consistently(self._stage.copy)[1])

    def update_stage(self, update: StageUpdate) -> tuple[StageState, int | None]:
        """Fold ``update`` into the stage record under the lock."""
        rule = self.params.stage_rule()
        if rule is None:
            raise BackendError(
                f"pool {self.session_id!r} is not the root pool of a staged curriculum"
            )
        self._begin_write()
        try:
            state = _stage_from_record(self._stage.copy())
            ended = apply_stage_update(state, update, rule)
            self._stage[()] = _stage_to_record(state)  # one copy of the whole record
            return state, ended
        finally:
            self._end_write()

    def end_epoch(self) -> dict[str, int]:
        """Reset the epoch counters; their values before the reset."""
        self._begin_write()
        try:
            before = {name: int(self._counters[COUNTER_INDEX[name]]) for name in EPOCH_COUNTERS}
            for name in EPOCH_COUNTERS:
                self._counters[COUNTER_INDEX[name]] = 0
            self._count("epoch")
            return before
        finally:
            self._end_write()

    # -- reads ----------------------------------------------------------------------------------

    def snapshot(self) -> PoolSnapshot:
        """Copy the pool without the lock, retrying when a write overlapped the copy."""
        version, copied = self._read_consistently(self._copy)
        return _with_label_totals(PoolSnapshot(version, *copied))

    def _read_consistently(self, copy: Callable[[], T]) -> tuple[int, T]:
        """``copy()`` taken while no write was in progress, and the version it saw."""
        if self._closed:
            raise PoolClosedError(f"pool {self.session_id!r} is closed in this process")
        seqlock = META_INDEX["seqlock"]
        for _ in range(SNAPSHOT_RETRIES):
            before = int(self._meta[seqlock])
            if before & 1:
                time.sleep(0)
                continue
            copied = copy()
            if int(self._meta[seqlock]) == before:
                return before >> 1, copied
        self._acquire()  # writers keep overlapping, or one died mid-change: read under the lock
        try:
            return int(self._meta[seqlock]) >> 1, copy()
        finally:
            self._end_write()

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
        if self._closed:
            raise PoolClosedError(f"pool {self.session_id!r} is closed in this process")
        self._acquire()
        try:
            rows, labels, _, counters = self._copy()
            stage = _stage_from_record(self._stage.copy())
        finally:
            self._end_write()
        return PoolState(
            params=self.params, rows=rows, labels=labels, counters=counters, stage=stage
        )

    def import_state(self, state: PoolState) -> None:
        """Replace rows and counters; labels are merged by name so label ids never change."""
        if len(state.rows) != len(self._rows):
            raise PoolMismatchError(
                f"state has {len(state.rows)} slots, pool {self.session_id!r} has {len(self._rows)}"
            )
        self._begin_write()
        try:
            mapping = np.array(
                [self._intern_locked(bytes(name)) for name in state.labels["name"]], dtype=np.int64
            )
            rows = state.rows.copy()
            has_label = rows["label_id"] >= 0
            rows["label_id"][has_label] = mapping[rows["label_id"][has_label]]
            self._rows[:] = rows
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
            self._stage[()] = _stage_to_record(state.stage)
        finally:
            self._end_write()

    # -- lifetime -------------------------------------------------------------------------------

    def _release_mapping(self) -> None:
        self._lock.close()
        for name in ("_meta", "_counters", "_stage", "_params_buf", "_rows", "_labels"):
            self.__dict__.pop(name, None)
        if getattr(self, "_mm", None) is not None:
            self._mm.close()
            self._mm = None
        os.close(self._fd)

    def close(self) -> None:
        """Unmap; the creating process also removes the segment."""
        if self._closed:
            return
        self._closed = True
        self._release_mapping()
        self._finalizer()

    def destroy(self) -> None:
        """Remove the segment now (processes still attached keep their mapping until they close)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.close()


def _stage_from_record(record: np.ndarray) -> StageState:
    stage, transitions, stage_steps, total_steps = record["counters"].tolist()
    return StageState(
        stage=stage,
        transitions=transitions,
        stage_steps=stage_steps,
        total_steps=total_steps,
        performance=record["performance"].tolist(),
        outcomes=record["outcomes"].tolist(),
    )


def _stage_to_record(state: StageState) -> np.ndarray:
    record = np.zeros((), STAGE_DTYPE)
    record["counters"] = (state.stage, state.transitions, state.stage_steps, state.total_steps)
    record["performance"] = state.performance
    record["outcomes"] = state.outcomes
    return record


def _with_label_totals(snapshot: PoolSnapshot) -> PoolSnapshot:
    snapshot.labels = label_totals(snapshot.labels, snapshot.rows)
    return snapshot


def _remove_segment(path: str, ino: int, owner_pid: int) -> None:
    """Unlink the creator's segment, unless this is not the creating process or it was replaced."""
    if owner_pid != os.getpid():
        return
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_ino == ino:
            os.unlink(path)
