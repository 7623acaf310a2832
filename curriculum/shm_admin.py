"""List and clean up /dev/shm pool segments (the ``curriculum shm`` command).

A /dev/shm pool is the file ``<shm_dir>/curriculum.<session>`` (see
:mod:`backends.shared_memory`). Its creator removes it at ``close()`` or at exit; a creator that
is killed (SIGKILL, OOM killer, a crash in native code) leaves it behind, and a new pool with the
same session then refuses to attach to it ("orphaned").

:func:`list_segments` reports every file of the shm directory whose name starts with
``curriculum.``, in one of four states:

- ``live``: a pool of this library whose creator (pid *and* start time, so a reused pid does not
  count) is still running;
- ``orphaned``: a pool of this library whose creator is gone;
- ``not ours``: no pool header (no magic number, too short, not a regular file): a foreign file,
  or a pool whose creator is still initialising it (or died while doing so);
- ``unreadable``: a pool header this library cannot use (another layout version, a size that
  does not match its header) or a file it may not open.

Each entry also says whether a process holds the segment's lock right now (a non-blocking shared
``flock`` probe on a read-only descriptor of our own, released at once: it never writes and never
makes a writer wait more than a few microseconds) and which processes use it.

"In use" means: some process has the segment's file (same device and inode) mapped (a line of
``/proc/<pid>/maps``) or open (a ``/proc/<pid>/fd`` entry), or holds its lock. Every backend
that attached to a pool keeps both a descriptor and a mapping until it closes, and forked children
inherit both, so a worker that attached before its creator died is seen. Before an orphan is kept
for its users, they are scanned again :data:`SETTLE_S` later and only pids seen both times count
(another ``curriculum shm`` run holds a descriptor for microseconds). Processes whose ``/proc``
entries this user may not read (other users' processes, unless run as root) and processes in
other pid namespaces (containers sharing /dev/shm) are not seen; see :func:`clean_segments`.

:func:`clean_segments` removes a segment only when all of these hold, checked again immediately
before the removal: it is a pool of this library (valid magic and layout), its creator is gone,
no visible process maps or opens it, and an exclusive non-blocking ``flock`` on it succeeds; and
the path still names the inode that was checked (a pool re-created under the same name in the
meantime is left alone). Everything else is kept, with the reason. Nothing else is ever written.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np

from backends.layout import STRUCT_VERSION
from backends.process_info import describe_creator, processes_using
from backends.shared_memory import (
    MAGIC,
    META,
    META_INDEX,
    PARAMS_BYTES,
    PARAMS_OFFSET,
    SEGMENT_PREFIX,
    _segment_size,
    shm_dir,
)

State = Literal["live", "orphaned", "not ours", "unreadable"]
Action = Literal["removed", "would remove", "kept", "gone"]

HEADER_BYTES = PARAMS_OFFSET + PARAMS_BYTES  # a pool's fixed header: meta, counters, params
SETTLE_S = 0.05  # a user must be seen twice this far apart (see _confirmed)
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass
class SegmentInfo:
    """What :func:`list_segments` found about one ``curriculum.*`` file of the shm directory."""

    session: str
    """The session id: the file name after ``curriculum.``."""
    path: str
    state: State
    reason: str
    """Why the segment has its state, in words."""
    size: int | None = None
    """Bytes (``st_size``); None when the file could not be examined."""
    inode: int | None = None
    device: int | None = None
    uid: int | None = None
    """The file's owner."""
    capacity: int | None = None
    """Slots of the pool (from its header); None unless the header is readable."""
    label_capacity: int | None = None
    struct_version: int | None = None
    creator_pid: int | None = None
    creator_start: int | None = None
    """The creator's start time in clock ticks since boot (0: not recorded)."""
    creator_alive: bool | None = None
    """Whether the process with ``creator_pid`` *and* ``creator_start`` still runs."""
    creator_state: str | None = None
    """``running``, ``sleeping``, ``stopped``, ``exited``, ``exited (pid reused)``, ..."""
    lock_held: bool | None = None
    """Whether some process held the segment's flock when it was probed; None: not probed."""
    users: list[int] | None = field(default=None)
    """Pids that map or hold open the segment (this process included); None: /proc unreadable."""

    @property
    def in_use(self) -> bool | None:
        """Whether a process maps, opens or locks the segment; None when that cannot be told."""
        if self.lock_held or self.users:
            return True
        if self.users is None:
            return None
        return False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, with ``in_use``."""
        data = asdict(self)
        data["in_use"] = self.in_use
        return data


@dataclass
class CleanAction:
    """What :func:`clean_segments` did with one segment, and why."""

    segment: SegmentInfo
    action: Action
    """``removed``, ``would remove`` (dry run), ``kept``, or ``gone`` (vanished meanwhile)."""
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "session": self.segment.session,
            "path": self.segment.path,
            "action": self.action,
            "reason": self.reason,
            "segment": self.segment.to_dict(),
        }


@dataclass
class CleanReport:
    """The outcome of :func:`clean_segments`: one action per segment considered."""

    dry_run: bool
    directory: str
    session: str | None = None
    actions: list[CleanAction] = field(default_factory=list)

    @property
    def removed(self) -> list[CleanAction]:
        """Segments removed (or, in a dry run, that would be)."""
        return [a for a in self.actions if a.action in ("removed", "would remove")]

    @property
    def kept(self) -> list[CleanAction]:
        """Segments left in place."""
        return [a for a in self.actions if a.action == "kept"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "dry_run": self.dry_run,
            "directory": self.directory,
            "session": self.session,
            "actions": [a.to_dict() for a in self.actions],
        }


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
    expected = _segment_size(info.capacity, info.label_capacity)
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
    if info.creator_alive:
        info.state = "live"
        info.reason = f"creator {info.creator_pid} is {info.creator_state}"
    else:
        info.state = "orphaned"
        info.reason = f"creator {info.creator_pid} {info.creator_state}"


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
        try:
            meta = _read_meta(fd)
            if (
                meta is None
                or int(meta[META_INDEX["magic"]]) != MAGIC
                or int(meta[META_INDEX["creator_pid"]]) != info.creator_pid
                or int(meta[META_INDEX["creator_start"]]) != info.creator_start
            ):
                return "kept", "its header changed since it was examined; left alone"
            namespace = int(meta[META_INDEX["creator_pidns"]])
            if describe_creator(info.creator_pid or 0, info.creator_start or 0, namespace)[1]:
                return "kept", f"creator {info.creator_pid} is running again; left alone"
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


# -- the command --------------------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def format_segments(infos: list[SegmentInfo], out: TextIO) -> None:
    """The text table of ``curriculum shm list``."""
    if not infos:
        out.write(f"no {SEGMENT_PREFIX}* segments in {shm_dir()}\n")
        return
    rows = [["SESSION", "STATE", "SIZE", "SLOTS", "CREATOR", "LOCK", "USERS", "NOTE"]]
    for s in infos:
        creator = "-" if s.creator_pid is None else f"{s.creator_pid} ({s.creator_state})"
        lock = "-" if s.lock_held is None else ("held" if s.lock_held else "free")
        users = "?" if s.users is None else (",".join(map(str, s.users)) or "-")
        note = s.reason if s.state in ("not ours", "unreadable") else ""
        rows.append(
            [
                s.session,
                s.state,
                _size(s.size),
                "-" if s.capacity is None else str(s.capacity),
                creator,
                lock,
                users,
                note,
            ]
        )
    _table(rows, out)


def format_clean(report: CleanReport, out: TextIO) -> None:
    """The text output of ``curriculum shm clean``."""
    if not report.actions:
        what = f"session {report.session!r}" if report.session else f"{SEGMENT_PREFIX}* segments"
        out.write(f"no {what} in {report.directory}\n")
    if report.actions:
        _table([[a.action, a.segment.session, a.reason] for a in report.actions], out)
    verb = "would remove" if report.dry_run else "removed"
    gone = [a for a in report.actions if a.action == "gone"]
    summary = f"{len(report.removed)} {verb}, {len(report.kept)} kept"
    if gone:
        summary += f", {len(gone)} already gone"
    out.write(summary + (" (dry run: nothing removed)" if report.dry_run else "") + "\n")


def run(
    command: str,
    *,
    session: str | None = None,
    dry_run: bool = False,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """``curriculum shm list|clean``: print the listing or the clean report; exit code 0."""
    import sys

    out = out or sys.stdout
    if command == "list":
        infos = list_segments(session)
        if as_json:
            json.dump([s.to_dict() for s in infos], out, indent=2)
            out.write("\n")
        else:
            format_segments(infos, out)
        return 0
    report = clean_segments(dry_run=dry_run, session=session)
    if as_json:
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    else:
        format_clean(report, out)
    return 0


__all__ = [
    "CleanAction",
    "CleanReport",
    "SegmentInfo",
    "clean_segments",
    "format_clean",
    "format_segments",
    "list_segments",
    "run",
]
