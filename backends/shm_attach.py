"""Create or attach to a session's /dev/shm segment, and map it.

:func:`open_segment` returns a mapped segment this process is attached to (its attach lock held,
``meta.attached`` counted), after checking everything a segment must be: a regular file of this
user that nobody else may write, with our magic number, layout version and the size its header
implies, and a pool made with the same parameters. It never removes or changes a pool it refuses,
except a pool that was left cleanly by its last user while we were attaching (that one is
replaced by a new pool, as it would have been a moment later).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.base import PoolParams
from backends.file_lock import FileLock, hold_attach_lock, others_attached
from backends.layout import COUNTER_NAMES, LABEL_DTYPE, ROW_DTYPE, STRUCT_VERSION, empty_rows
from backends.process_info import (
    describe_creator,
    describe_process,
    pid_namespace,
    process_identity,
)
from backends.shm_journal import Journal
from backends.shm_records import PoolArrays
from backends.shm_segment import (
    COUNTERS_OFFSET,
    HEADER_BYTES,
    MAGIC,
    META,
    META_INDEX,
    OPEN_FLAGS,
    PARAMS_BYTES,
    PARAMS_OFFSET,
    RANGE_DTYPE,
    RANGE_OFFSET,
    ROWS_OFFSET,
    STAGE_DTYPE,
    STAGE_OFFSET,
    SegmentFiles,
    check_size,
    check_trusted,
    journal_offset,
    labels_offset,
    open_existing,
    range_to_record,
    reserve_space,
    segment_path,
    segment_size,
)
from curriculum.errors import (
    BackendError,
    PoolCorruptedError,
    PoolMismatchError,
    PoolNotFoundError,
)

logger = logging.getLogger("curriculum.shm")


@dataclass
class MappedSegment:
    """Views of a mapped segment."""

    meta: np.ndarray
    params_buf: np.ndarray
    pool: PoolArrays
    journal: Journal


@dataclass
class OpenedSegment:
    """A segment this process is attached to."""

    files: SegmentFiles
    mapped: MappedSegment
    params: PoolParams
    created: bool


def map_segment(files: SegmentFiles, capacity: int, label_capacity: int) -> MappedSegment:
    """Map the whole segment of a pool with these many slots and labels."""
    buf = files.map(segment_size(capacity, label_capacity))
    pool = PoolArrays(
        rows=np.ndarray((capacity,), ROW_DTYPE, buffer=buf, offset=ROWS_OFFSET),
        labels=np.ndarray(
            (label_capacity,), LABEL_DTYPE, buffer=buf, offset=labels_offset(capacity)
        ),
        counters=np.ndarray((len(COUNTER_NAMES),), np.int64, buffer=buf, offset=COUNTERS_OFFSET),
        stage=np.ndarray((), STAGE_DTYPE, buffer=buf, offset=STAGE_OFFSET),
        ranges=np.ndarray((), RANGE_DTYPE, buffer=buf, offset=RANGE_OFFSET),
    )
    journal = Journal(
        buf,
        journal_offset(capacity, label_capacity),
        pool.rows,
        pool.labels,
        pool.counters,
        pool.stage,
        pool.ranges,
    )
    return MappedSegment(
        meta=np.ndarray((len(META),), np.int64, buffer=buf, offset=0),
        params_buf=np.ndarray((PARAMS_BYTES,), np.uint8, buffer=buf, offset=PARAMS_OFFSET),
        pool=pool,
        journal=journal,
    )


def holder_describer(fd: int) -> Callable[[], str]:
    """A function naming the lock's holder from the header of the file open as ``fd``."""

    def describe() -> str:
        try:
            raw = os.pread(fd, 8, 8 * META_INDEX["holder_pid"])
        except OSError:
            raw = b""
        pid = int.from_bytes(raw, "little", signed=True) if len(raw) == 8 else 0
        if pid <= 0:
            return "the holder did not record itself (the pool is being created or attached)"
        state, alive = describe_process(pid)
        if alive:
            return f"held by process {pid} ({state})"
        return f"last held by process {pid} ({state})"

    return describe


def open_segment(
    session_id: str, params: PoolParams, *, create: bool, lock_timeout_s: float
) -> OpenedSegment:
    """Attach to the session's segment, creating it when absent and ``create`` is true.

    Raises:
        PoolMismatchError: the existing pool was made with different parameters.
        PoolNotFoundError: the pool does not exist and ``create`` is false.
        PoolCorruptedError: the segment is not a pool this library can trust or read.
        BackendError: a new segment does not fit in the shm file system.
        LockTimeoutError: the segment's lock stayed held (its holder hangs or is stopped).
    """
    path = segment_path(session_id)
    deadline = time.monotonic() + lock_timeout_s
    while True:
        created = False
        fd = -1
        if create:
            try:
                fd = os.open(path, OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
                created = True
            except FileExistsError:
                pass
        if not created:
            try:
                fd = open_existing(path)
            except FileNotFoundError:
                if create:
                    continue  # removed between our two opens: try creating again
                raise PoolNotFoundError(f"no pool for session {session_id!r} at {path}") from None
        try:
            if not created:
                check_trusted(fd, path)
            hold_attach_lock(fd)
            files = SegmentFiles(path, fd, FileLock(fd, lock_timeout_s, holder_describer(fd)))
        except BaseException:
            os.close(fd)
            if created:
                _unlink_if_same(path, None)
            raise
        if created:
            return _initialise(files, params)
        opened = _attach(files, session_id, params, deadline)
        if opened is not None:
            return opened


def _unlink_if_same(path: Path, inode: int | None) -> None:
    try:
        if inode is None or os.stat(path, follow_symlinks=False).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _initialise(files: SegmentFiles, params: PoolParams) -> OpenedSegment:
    """Size, map and fill a segment this process just created (nothing is left on failure)."""
    raw = params.to_json().encode("utf-8")
    try:
        if len(raw) > PARAMS_BYTES:
            raise BackendError(f"pool parameters take {len(raw)} bytes, over {PARAMS_BYTES}")
        with files.lock:
            size = segment_size(params.capacity, params.label_capacity)
            reserve_space(files.fd, files.path, size)
            mapped = map_segment(files, params.capacity, params.label_capacity)
            mapped.pool.rows[:] = empty_rows(params.capacity)
            mapped.pool.ranges[()] = range_to_record(params.initial_ranges())
            mapped.params_buf[: len(raw)] = np.frombuffer(raw, np.uint8)
            pid, start = process_identity()
            meta = {
                "struct_version": STRUCT_VERSION,
                "capacity": params.capacity,
                "label_capacity": params.label_capacity,
                "creator_pid": pid,
                "creator_start": start,
                "creator_pidns": pid_namespace(),
                "params_len": len(raw),
                "attached": 1,
            }
            for name, value in meta.items():
                mapped.meta[META_INDEX[name]] = value
            mapped.meta[META_INDEX["magic"]] = MAGIC  # last: marks the segment as ready
    except BaseException:
        _unlink_if_same(files.path, files.inode)
        files.release()
        raise
    return OpenedSegment(files, mapped, params, created=True)


def _read_header(files: SegmentFiles, deadline: float) -> np.ndarray | None:
    """The header of an initialised segment (waiting while its creator fills it), or None when
    the path no longer names our file. Returns with the lock held."""
    while True:
        files.lock.acquire()
        try:
            same = os.stat(files.path, follow_symlinks=False).st_ino == files.inode
        except FileNotFoundError:
            same = False
        if not same:
            files.lock.release()
            return None
        if os.fstat(files.fd).st_size >= HEADER_BYTES:
            head = np.frombuffer(os.pread(files.fd, 8 * len(META), 0), np.int64).copy()
            if head[META_INDEX["magic"]] == MAGIC:
                return head
        files.lock.release()
        if time.monotonic() > deadline:
            raise PoolCorruptedError(
                f"{files.path} is not an initialised pool (no header) after waiting; "
                "remove it or choose another session_id"
            )
        time.sleep(0.001)


def _attach(
    files: SegmentFiles, session_id: str, params: PoolParams, deadline: float
) -> OpenedSegment | None:
    """Map an existing segment; None when it vanished (or was left) and the caller should start
    over. Releases ``files`` on failure."""
    try:
        head = _read_header(files, deadline)
    except BaseException:
        files.release()
        raise
    if head is None:
        files.release()
        return None
    try:
        try:
            version = int(head[META_INDEX["struct_version"]])
            if version != STRUCT_VERSION:
                raise PoolMismatchError(
                    f"pool {session_id!r} uses layout version {version}, this library writes "
                    f"{STRUCT_VERSION}: choose another session_id, or let the processes of the "
                    "other library version finish (the last one removes the pool; "
                    "`curriculum shm clean` removes one nobody uses)"
                )
            capacity = int(head[META_INDEX["capacity"]])
            label_capacity = int(head[META_INDEX["label_capacity"]])
            if capacity <= 0 or label_capacity <= 0:
                raise PoolCorruptedError(
                    f"{files.path}: header names {capacity} slots and {label_capacity} labels"
                )
            check_size(files.fd, files.path, capacity, label_capacity)
            if not others_attached(files.fd):
                if head[META_INDEX["attached"]] == 0:  # its last user left it while we came
                    _unlink_if_same(files.path, files.inode)
                    files.lock.release()
                    files.release()
                    return None
                _refuse_orphan(files, session_id, head)
            mapped = map_segment(files, capacity, label_capacity)
            stored = _read_params(mapped, session_id)
            problems = stored.mismatches(params)
            if problems:
                raise PoolMismatchError(
                    f"pool {session_id!r} was created with other parameters: " + "; ".join(problems)
                )
            mapped.meta[META_INDEX["attached"]] += 1
        finally:
            if files.fd >= 0:
                files.lock.release()
    except BaseException:
        files.release()
        raise
    return OpenedSegment(files, mapped, stored, created=False)


def _refuse_orphan(files: SegmentFiles, session_id: str, head: np.ndarray) -> None:
    creator = int(head[META_INDEX["creator_pid"]])
    state, _ = describe_creator(
        creator, int(head[META_INDEX["creator_start"]]), int(head[META_INDEX["creator_pidns"]])
    )
    raise PoolCorruptedError(
        f"pool {session_id!r} at {files.path} is orphaned: no process is attached to it and its "
        f"last users died without leaving it (its creator, process {creator}, {state}); remove "
        "it (`curriculum shm clean`) or choose another session_id"
    )


def _read_params(mapped: MappedSegment, session_id: str) -> PoolParams:
    length = int(mapped.meta[META_INDEX["params_len"]])
    try:
        return PoolParams.from_dict(json.loads(mapped.params_buf[:length].tobytes()))
    except (ValueError, KeyError, TypeError) as exc:
        raise PoolCorruptedError(f"pool {session_id!r} has unreadable parameters: {exc}") from None
