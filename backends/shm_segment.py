"""A pool's /dev/shm segment: where it lives, its layout, and how a process opens and leaves it.

Layout of the segment ``<shm_dir>/curriculum.<session>``::

    0       meta     int64[len(META)]        magic, layout, creator, seqlock, lock holder, ...
    256     counters int64[len(COUNTER_NAMES)]
    512     stage    STAGE_DTYPE: the staged curriculum's stage record
    1024    ranges   RANGE_DTYPE: range expansion's range record (backends.range_state)
    2048    params   UTF-8 JSON of PoolParams (at most PARAMS_BYTES)
    16384   rows     ROW_DTYPE[capacity]
    ...     labels   LABEL_DTYPE[label_capacity]
    ...     journal  the undo record of the write in progress (see backends.shm_journal)

Lifetime: every attached process holds an attach lock (see :mod:`backends.file_lock`) on its open
file description; the process that leaves last (``close()``, garbage collection or exit) removes
the file. ``meta.attached`` counts attaches minus clean detaches: a segment nobody holds with a
count of zero was left cleanly (a new process that raced the last one out starts a new pool), a
non-zero count means its users died (the pool is orphaned and refused until removed).

Safety: segments are opened with ``O_NOFOLLOW`` and must be regular files owned by this user
and not writable by group or others. A new segment's space is reserved with ``posix_fallocate``
after checking the file system's free space, so a full /dev/shm raises an error instead of
killing the process with SIGBUS later.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import pwd
import stat
import tempfile
from pathlib import Path

import numpy as np

from backends.file_lock import FileLock, others_attached
from backends.layout import LABEL_DTYPE, ROW_DTYPE
from backends.range_state import MAX_AXES, MAX_BOUNDARIES, RangeState
from backends.shm_journal import journal_size
from backends.stage_state import MAX_STAGES, StageState
from curriculum import forks
from curriculum.errors import BackendError, PoolCorruptedError

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
    "attached",  # attaches minus clean detaches (see the module docstring)
)
META_INDEX = {name: i for i, name in enumerate(META)}
COUNTERS_OFFSET = 256
STAGE_OFFSET = 512
STAGE_DTYPE = np.dtype(
    [
        ("counters", np.int64, 4),  # stage, transitions, stage_steps, total_steps
        ("performance", np.float64, MAX_STAGES),
        ("outcomes", np.int64, MAX_STAGES),
    ]
)
RANGE_OFFSET = 1024
RANGE_DTYPE = np.dtype(
    [
        ("counters", np.int64, 4),  # version, widened, narrowed, stale
        ("low", np.int64, MAX_AXES),
        ("high", np.int64, MAX_AXES),
        ("counts", np.int64, MAX_BOUNDARIES),
        ("sums", np.float64, MAX_BOUNDARIES),
    ]
)


def stage_from_record(record: np.ndarray) -> StageState:
    """The stage record of a segment as a :class:`StageState`."""
    stage, transitions, stage_steps, total_steps = record["counters"].tolist()
    return StageState(
        stage=stage,
        transitions=transitions,
        stage_steps=stage_steps,
        total_steps=total_steps,
        performance=record["performance"].tolist(),
        outcomes=record["outcomes"].tolist(),
    )


def stage_to_record(state: StageState) -> np.ndarray:
    """``state`` as a segment's stage record."""
    record = np.zeros((), STAGE_DTYPE)
    record["counters"] = (state.stage, state.transitions, state.stage_steps, state.total_steps)
    record["performance"] = state.performance
    record["outcomes"] = state.outcomes
    return record


def range_from_record(record: np.ndarray) -> RangeState:
    """The range record stored in a segment (a RANGE_DTYPE scalar array)."""
    return RangeState(
        *record["counters"].tolist(),
        low=record["low"].tolist(),
        high=record["high"].tolist(),
        counts=record["counts"].tolist(),
        sums=record["sums"].tolist(),
    )


def range_to_record(state: RangeState) -> np.ndarray:
    """``state`` as one RANGE_DTYPE record (written with one copy)."""
    record = np.zeros((), RANGE_DTYPE)
    record["counters"] = (state.version, state.widened, state.narrowed, state.stale)
    record["low"], record["high"] = state.low, state.high
    record["counts"], record["sums"] = state.counts, state.sums
    return record


PARAMS_OFFSET = 2048
PARAMS_BYTES = 14 * 1024
HEADER_BYTES = PARAMS_OFFSET + PARAMS_BYTES
ROWS_OFFSET = 16 * 1024
SEGMENT_PREFIX = "curriculum."
OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


def shm_dir() -> Path:
    """Where segments live: /dev/shm when present, else the temp directory."""
    return Path("/dev/shm") if os.path.isdir("/dev/shm") else Path(tempfile.gettempdir())


def segment_path(session_id: str) -> Path:
    """The file of a session's segment."""
    return shm_dir() / f"{SEGMENT_PREFIX}{session_id}"


def _align(offset: int) -> int:
    return (offset + 63) // 64 * 64


def labels_offset(capacity: int) -> int:
    """Where the label table starts."""
    return _align(ROWS_OFFSET + capacity * ROW_DTYPE.itemsize)


def journal_offset(capacity: int, label_capacity: int) -> int:
    """Where the undo record starts."""
    return _align(labels_offset(capacity) + label_capacity * LABEL_DTYPE.itemsize)


def segment_size(capacity: int, label_capacity: int) -> int:
    """Bytes of the segment of a pool with these many slots and labels."""
    return journal_offset(capacity, label_capacity) + journal_size(capacity, label_capacity)


def _owner_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_trusted(fd: int, path: Path) -> os.stat_result:
    """The file's status, or PoolCorruptedError when another user could have planted or could
    change it: not a regular file, not owned by this user, or writable by group or others."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise PoolCorruptedError(
            f"{path} is not a regular file; remove it or choose another session_id"
        )
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid() or mode & 0o022:
        raise PoolCorruptedError(
            f"{path} is owned by {_owner_name(st.st_uid)} with mode {mode:04o}: a pool must be "
            f"owned by this user ({_owner_name(os.geteuid())}) and writable by nobody else; "
            "refusing to attach. Remove the file if it is not yours, or choose another session_id"
        )
    return st


def open_existing(path: Path) -> int:
    """Open an existing segment without following a symbolic link.

    Raises:
        FileNotFoundError: there is no such file.
        PoolCorruptedError: the path is a symbolic link or cannot be opened.
    """
    try:
        return os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PoolCorruptedError(
                f"{path} is a symbolic link; a pool segment must be a regular file: remove it or "
                "choose another session_id"
            ) from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise PoolCorruptedError(f"cannot open {path}: {exc.strerror}") from None


def reserve_space(fd: int, path: Path, size: int) -> None:
    """Give a new segment its ``size`` bytes for real, or raise BackendError (the caller removes
    the file): a tmpfs page that cannot be allocated later would kill the process with SIGBUS."""
    directory = path.parent
    try:
        vfs = os.statvfs(directory)
        free = vfs.f_bavail * vfs.f_frsize
    except OSError:
        free = None
    if free is not None and free < size:
        raise BackendError(
            f"not enough free space in {directory} for pool {path.name}: it needs {size:,} bytes, "
            f"{free:,} are free; free space there (`curriculum shm clean`, `df {directory}`), "
            "or lower num_active_tasks / max_labels"
        )
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate here: size it plainly
            os.ftruncate(fd, size)
            return
        raise BackendError(
            f"cannot reserve {size:,} bytes in {directory} for pool {path.name} "
            f"({exc.strerror}; {'unknown' if free is None else f'{free:,}'} bytes were free); "
            "free space there or lower num_active_tasks / max_labels"
        ) from None


def check_size(fd: int, path: Path, capacity: int, label_capacity: int) -> None:
    """PoolCorruptedError unless the file has the size its header implies."""
    expected = segment_size(capacity, label_capacity)
    size = os.fstat(fd).st_size
    if size != expected:
        raise PoolCorruptedError(
            f"{path} is {size:,} bytes, but its header ({capacity} slots, {label_capacity} "
            f"labels) needs {expected:,}: the segment was truncated or damaged; remove it "
            "(`curriculum shm clean` keeps pools in use) or choose another session_id"
        )


class SegmentFiles:
    """The descriptors and mapping one backend holds on its segment, released exactly once.

    Holds no reference to the backend, so the backend's finalizer can release it after the
    backend is gone (see :func:`detach`).
    """

    def __init__(self, path: Path, fd: int, lock: FileLock) -> None:
        """Own ``fd`` (which holds this process's attach lock) and ``lock``."""
        self.path = path
        self.fd = fd
        self.lock = lock
        self.inode = os.fstat(fd).st_ino
        self.mm: mmap.mmap | None = None
        # True in a forked child: ``fd`` is the parent's description (the parent's attach, which
        # the child shares and must not count as its own when it leaves).
        self.inherited = False
        forks.on_fork_in_child(self, SegmentFiles._after_fork)

    def _after_fork(self) -> None:
        self.inherited = True

    def map(self, size: int) -> mmap.mmap:
        """Map the first ``size`` bytes (the whole segment).

        The mapping gets an open file description of its own (``mmap`` keeps a duplicate of the
        descriptor it maps): only ``fd``'s description may hold this process's attach lock.
        """
        map_fd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            self.mm = mmap.mmap(map_fd, size)
        finally:
            os.close(map_fd)
        return self.mm

    def release(self) -> None:
        """Close the descriptors. The mapping is not closed here: arrays made with
        ``np.ndarray(buffer=...)`` do not pin it, so closing it under an array still in use (a
        view refresh in another thread, a late ``version()``) would crash the process. It is
        unmapped (and its descriptor closed) when the last array on it is garbage-collected."""
        self.lock.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.mm = None


def _meta_view(files: SegmentFiles) -> np.ndarray | None:
    if files.mm is None:
        return None
    return np.ndarray((len(META),), np.int64, buffer=files.mm, offset=0)


def detach(files: SegmentFiles) -> bool:
    """Leave the segment: count the clean detach, drop the attach lock, and remove the file when
    no other process is attached. True when this call removed it.

    Safe to call more than once, at interpreter exit, and in a forked child: its descriptor
    shares the parent's attach (the parent still counts as attached), so the child only lets go
    of it, and removes the file when the parent had already left.
    """
    if files.fd < 0:
        return False
    removed = False
    try:
        files.lock.acquire()
    except Exception:  # a hung holder or a vanished file: just let go of our handles
        files.release()
        return False
    try:
        meta = _meta_view(files)
        if meta is not None and meta[META_INDEX["attached"]] > 0 and not files.inherited:
            meta[META_INDEX["attached"]] -= 1
        del meta
        os.close(files.fd)  # drops this description's attach lock (unless a fork child shares it)
        files.fd = -1
        if not others_attached(files.lock.descriptor()):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(files.path, follow_symlinks=False).st_ino == files.inode:
                    os.unlink(files.path)
                    removed = True
    finally:
        files.lock.release()
        files.release()
    return removed
