"""List and clean up /dev/shm pool segments (the ``curriculum shm`` command).

A /dev/shm pool is the file ``<shm_dir>/curriculum.<session>`` (see
:mod:`backends.shm_segment`). The last process attached to it removes it when it leaves
(``close()``, garbage collection or exit); when every process attached to it was killed
(SIGKILL, OOM killer, a crash in native code) it stays, and a new pool with the same session
refuses to attach to it ("orphaned").

:func:`list_segments` reports every file of the shm directory whose name starts with
``curriculum.``, in one of four states:

- ``live``: a pool of this library that some process is attached to (holds its attach lock, an
  open-file-description lock the kernel drops when the process dies; see
  :mod:`backends.file_lock`), whatever that process's user or pid namespace;
- ``orphaned``: a pool of this library that no process is attached to;
- ``not ours``: no pool header (no magic number, too short, not a regular file): a foreign file,
  or a pool whose creator is still initialising it (or died while doing so);
- ``unreadable``: a pool header this library cannot use (another layout version, a size that
  does not match its header) or a file it may not open.

Each entry also says whether a process holds the segment's write lock right now (a non-blocking
shared ``flock`` probe on a read-only descriptor of our own, released at once), its creator
(pid *and* start time, so a reused pid does not count as running) and which processes map or
hold it open (``/proc/<pid>/maps`` and ``/proc/<pid>/fd``; processes of other users are visible
only to root). Users seen by /proc are confirmed by a second scan :data:`SETTLE_S` later
(another ``curriculum shm`` run holds a descriptor for microseconds).

:func:`clean_segments` removes a segment only when all of these hold, checked again immediately
before the removal: it is a pool of this library (valid magic and layout), no process is
attached to it, none maps or opens it, an exclusive non-blocking ``flock`` on it succeeds, and the
path still names the inode that was checked (a pool re-created under the same name in the
meantime is left alone). Everything else is kept, with the reason. Nothing else is ever written.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from backends.file_lock import others_attached
from backends.layout import STRUCT_VERSION
from backends.process_info import describe_creator, processes_using
from backends.shm_segment import (
    HEADER_BYTES,
    MAGIC,
    META,
    META_INDEX,
    SEGMENT_PREFIX,
    segment_size,
    shm_dir,
)
from curriculum.shm_report import Action, CleanAction, CleanReport, SegmentInfo

SETTLE_S = 0.05  # a user must be seen twice this far apart (see _confirmed)
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


# -- examining one file -------------------------------------------------------------------------


def _probe_lock(fd: int) -> bool:
    """Whether another process holds the file's flock (exclusively, as every writer does).

    A shared non-blocking lock on our own open file description, dropped at once: it never waits,
    and a writer that tries its lock in those microseconds just retries (see backends.file_lock).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _read_meta(fd: int) -> np.ndarray | None:
    raw = os.pread(fd, 8 * len(META), 0)
    if len(raw) < 8 * len(META):
        return None
    return np.frombuffer(raw, np.int64)


def _examine_header(info: SegmentInfo, fd: int) -> None:
    """Fill in the header fields and the state of a regular file open as ``fd``."""
    size = info.size or 0
    meta = _read_meta(fd) if size >= HEADER_BYTES else None
    magic = None if meta is None else int(meta[META_INDEX["magic"]])
    if magic != MAGIC:
        info.state = "not ours"
        if magic is None or magic == 0:  # a creator writes the magic number last
            info.reason = (
                "no pool header: a foreign file, or a pool being created (or whose creator died "
                "while creating it)"
            )
        else:
            info.reason = "no pool header (another magic number): a foreign file"
        return
    info.struct_version = int(meta[META_INDEX["struct_version"]])
    if info.struct_version != STRUCT_VERSION:
        info.state = "unreadable"
        info.reason = (
            f"layout version {info.struct_version}; this library reads version {STRUCT_VERSION}"
        )
        return
    info.capacity = int(meta[META_INDEX["capacity"]])
    info.label_capacity = int(meta[META_INDEX["label_capacity"]])
    info.creator_pid = int(meta[META_INDEX["creator_pid"]])
    info.creator_start = int(meta[META_INDEX["creator_start"]])
    if info.capacity <= 0 or info.label_capacity <= 0:
        info.state = "unreadable"
        info.reason = f"header names {info.capacity} slots and {info.label_capacity} labels"
        return
    expected = segment_size(info.capacity, info.label_capacity)
    if size != expected:
        info.state = "unreadable"
        info.reason = (
            f"{size} bytes, but its header ({info.capacity} slots, {info.label_capacity} labels) "
            f"makes {expected}"
        )
        return
    info.creator_state, info.creator_alive = describe_creator(
        info.creator_pid, info.creator_start, int(meta[META_INDEX["creator_pidns"]])
    )
    info.attached = others_attached(fd)
    if info.attached:
        info.state = "live"
        info.reason = f"processes are attached (creator {info.creator_pid} {info.creator_state})"
    else:
        info.state = "orphaned"
        info.reason = (
            f"no process is attached; its users died without leaving it (creator "
            f"{info.creator_pid} {info.creator_state})"
        )


def _examine(path: Path) -> SegmentInfo | None:
    """One file's :class:`SegmentInfo` without its users; None when it vanished."""
    info = SegmentInfo(
        session=path.name[len(SEGMENT_PREFIX) :], path=str(path), state="unreadable", reason=""
    )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        info.reason = f"cannot stat: {exc.strerror}"
        return info
    info.size, info.inode, info.device, info.uid = st.st_size, st.st_ino, st.st_dev, st.st_uid
    if not stat.S_ISREG(st.st_mode):
        info.state = "not ours"
        info.reason = "not a regular file"
        return info
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        info.reason = f"cannot open: {exc.strerror}"
        return info
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between lstat and open
            info.state = "not ours"
            info.reason = "not a regular file"
            return info
        info.size, info.inode, info.device, info.uid = st.st_size, st.st_ino, st.st_dev, st.st_uid
        info.lock_held = _probe_lock(fd)
        try:
            _examine_header(info, fd)
        except OSError as exc:
            info.state = "unreadable"
            info.reason = f"cannot read: {exc.strerror}"
    finally:
        os.close(fd)
    return info


# -- who uses a segment -------------------------------------------------------------------------


def _find_users(segments: Iterable[SegmentInfo]) -> None:
    """Set ``users`` of each segment (with a known inode) from one scan of /proc."""
    keyed = [
        ((s.device, s.inode), s) for s in segments if s.inode is not None and s.device is not None
    ]
    if not keyed:
        return
    targets = processes_using([key for key, _ in keyed], SEGMENT_PREFIX)
    if targets is None:
        return  # users stay None: unknown
    for key, s in keyed:
        s.users = sorted(targets[key])


# -- the API ------------------------------------------------------------------------------------


def list_segments(session: str | None = None) -> list[SegmentInfo]:
    """Every ``curriculum.*`` file of the shm directory (or only ``session``'s), by session id.

    Read-only: files are opened read-only, their lock is probed without waiting and released at
    once, and nothing is written or removed.
    """
    directory = shm_dir()
    try:
        names = os.listdir(directory)
    except OSError:
        names = []
    if session is not None:  # matched against the listing: a session never names another path
        names = [n for n in names if n == f"{SEGMENT_PREFIX}{session}"]
    paths = [directory / n for n in sorted(names) if n.startswith(SEGMENT_PREFIX)]
    infos = [info for info in map(_examine, paths) if info is not None]
    _find_users(infos)
    return infos


def _describe_users(info: SegmentInfo) -> str:
    parts = []
    if info.users:
        pids = ", ".join(str(p) for p in info.users)
        parts.append(f"mapped or open by process{'es' if len(info.users) > 1 else ''} {pids}")
    if info.lock_held:
        parts.append("its lock is held")
    if info.attached:
        parts.append("a process is attached to it")
    return " and ".join(parts)


def _verdict(info: SegmentInfo) -> str | None:
    """Why ``info`` must be kept, or None when it may be removed."""
    if info.state == "live":
        return f"live: {info.reason}"
    if info.state != "orphaned":
        return f"{info.state}: {info.reason}; never touched"
    if info.in_use:
        return (
            f"orphaned ({info.reason}) but still in use: {_describe_users(info)}; "
            "an attached worker may still be training"
        )
    if info.in_use is None:
        return f"orphaned ({info.reason}) but /proc is unreadable, so its users are unknown"
    return None


def _confirmed(info: SegmentInfo) -> SegmentInfo | None:
    """``info`` examined again after :data:`SETTLE_S`, its users (and lock) counted only when
    seen both times; None when the file vanished or was replaced meanwhile.

    Another ``curriculum shm`` run opens and locks each segment for microseconds; a worker keeps
    its descriptor, its mapping (and between writes, nothing else) for its whole life. Requiring
    two sightings keeps such probes from passing for users, never a real user from being seen.
    """
    time.sleep(SETTLE_S)
    again = _examine(Path(info.path))
    if again is None or (again.device, again.inode) != (info.device, info.inode):
        return None
    _find_users([again])
    if info.users is not None and again.users is not None:
        again.users = sorted(set(info.users) & set(again.users))
    again.lock_held = bool(info.lock_held and again.lock_held)
    again.attached = bool(info.attached and again.attached)
    return again


def _lock_exclusive(fd: int) -> bool:
    """Take an exclusive flock without waiting more than :data:`SETTLE_S` in all."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)


def _remove_checked(info: SegmentInfo) -> tuple[Action, str]:
    """Remove an orphaned, unused segment, re-checking everything just before the unlink.

    The users are scanned again (holding no descriptor of the file ourselves; users seen are
    confirmed by a second scan), then the file is opened without following links, must still be
    the inode that was examined, must take an exclusive non-blocking flock (so no process is
    inside a write), must still carry the same header with a dead creator, and the path must
    still name that inode when it is unlinked.
    """
    again = SegmentInfo(**{**asdict(info), "users": None, "lock_held": False})
    _find_users([again])
    if again.users:
        confirmed = _confirmed(again)
        if confirmed is None:
            return "kept", "replaced or removed since it was examined; left alone"
        again = confirmed
    if again.users is None or again.users:
        return "kept", _verdict(again) or "in use"
    path = info.path
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return "gone", "removed by another process meanwhile"
    except OSError as exc:
        return "kept", f"cannot open: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (info.device, info.inode):
            return "kept", "replaced by another file since it was examined; left alone"
        if not _lock_exclusive(fd):
            return "kept", "orphaned but a process holds its lock; left alone"
        if others_attached(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return "kept", "a process attached to it meanwhile; left alone"
        try:
            meta = _read_meta(fd)
            if (
                meta is None
                or int(meta[META_INDEX["magic"]]) != MAGIC
                or int(meta[META_INDEX["creator_pid"]]) != info.creator_pid
                or int(meta[META_INDEX["creator_start"]]) != info.creator_start
            ):
                return "kept", "its header changed since it was examined; left alone"
            try:
                if os.stat(path).st_ino != info.inode:
                    return "kept", "replaced by another file since it was examined; left alone"
                os.unlink(path)
            except FileNotFoundError:
                return "gone", "removed by another process meanwhile"
            except PermissionError as exc:
                return "kept", f"cannot remove: {exc.strerror}"
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return "removed", f"orphaned: {info.reason}; no process maps, opens or locks it"


def clean_segments(dry_run: bool = False, session: str | None = None) -> CleanReport:
    """Remove the orphaned pools of this library that no process uses.

    Args:
        dry_run: Decide, report, but remove nothing (actions say ``would remove``).
        session: Consider only this session's segment.

    Only segments that are pools of this library (valid magic, layout and size) whose creator is
    gone and that no visible process maps, holds open or locks are removed; each is re-checked
    right before the unlink (see :func:`_remove_checked`). Live pools, orphaned pools still used
    by an attached worker, and files that are not ours are kept, with the reason. A process this
    user cannot see in /proc (another user's, another pid namespace's) is not detected.
    """
    report = CleanReport(dry_run=dry_run, directory=str(shm_dir()), session=session)
    for info in list_segments(session):
        if info.state == "orphaned" and info.in_use:
            confirmed = _confirmed(info)
            if confirmed is None:
                report.actions.append(
                    CleanAction(info, "gone", "replaced or removed since it was examined")
                )
                continue
            info = confirmed
        reason = _verdict(info)
        if reason is not None:
            report.actions.append(CleanAction(info, "kept", reason))
        elif dry_run:
            report.actions.append(
                CleanAction(info, "would remove", f"orphaned: {info.reason}; unused")
            )
        else:
            action, why = _remove_checked(info)
            report.actions.append(CleanAction(info, action, why))
    return report


__all__ = [
    "CleanAction",
    "CleanReport",
    "SegmentInfo",
    "clean_segments",
    "list_segments",
]
