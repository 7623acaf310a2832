"""Identify processes across pid reuse, and say whether one is alive, stopped or gone."""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def process_identity(pid: int | None = None) -> tuple[int, int]:
    """``(pid, start time in clock ticks)``; the pair names one process even if pids are reused."""
    pid = os.getpid() if pid is None else pid
    fields = _stat_fields(pid)
    return pid, int(fields[19]) if fields else 0


def describe_process(pid: int, start: int | None = None) -> tuple[str, bool]:
    """``(state, alive)`` of process ``pid``; not alive when it exited or ``start`` differs."""
    if pid <= 0:
        return "no process", False
    fields = _stat_fields(pid)
    if fields is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "exited", False
        except PermissionError:
            return "running", True
        return "running", True
    if start is not None and start and int(fields[19]) != start:
        return "exited (pid reused)", False
    state = {
        "R": "running",
        "S": "sleeping",
        "D": "in I/O",
        "T": "stopped",
        "t": "stopped",
        "Z": "zombie",
        "X": "dead",
    }.get(fields[0], fields[0])
    return state, fields[0] not in ("Z", "X")


def pid_namespace() -> int:
    """The inode of this process's pid namespace (0 when /proc cannot tell)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def describe_creator(pid: int, start: int, namespace: int) -> tuple[str, bool]:
    """Like :func:`describe_process` for a pool's creator, recorded with its pid namespace.

    A creator in another pid namespace (another container sharing /dev/shm) cannot be looked
    up here: it counts as alive, so its pool is never judged orphaned from outside.
    """
    mine = pid_namespace()
    if namespace and mine and namespace != mine:
        return "in another pid namespace", True
    return describe_process(pid, start)


def _pids() -> list[int] | None:
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    return sorted(int(name) for name in names if name.isdigit())


def _maps_targets(pid: int, targets: dict[tuple[int, int], set[int]], marker: str) -> None:
    """Add ``pid`` to the users of every target (device, inode) it maps."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:  # gone, or not ours to read
        return
    prefix = marker.encode()
    for line in lines:
        if prefix not in line:
            continue
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            major, minor = (int(x, 16) for x in parts[3].split(b":"))
            key = (os.makedev(major, minor), int(parts[4]))
        except ValueError:
            continue
        if key in targets:
            targets[key].add(pid)


def _fd_targets(pid: int, targets: dict[tuple[int, int], set[int]], marker: str) -> None:
    """Add ``pid`` to the users of every target (device, inode) it holds open."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return
    for fd in fds:
        try:
            if marker not in os.readlink(f"{base}/{fd}"):
                continue
            st = os.stat(f"{base}/{fd}")  # follows to the open file, even if unlinked
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in targets:
            targets[key].add(pid)


def processes_using(
    files: list[tuple[int, int]], marker: str
) -> dict[tuple[int, int], set[int]] | None:
    """The processes that map or hold open each file ``(device, inode)`` (whose path contains
    ``marker``), from one scan of /proc; None when /proc cannot be read."""
    pids = _pids()
    if pids is None:
        return None
    targets: dict[tuple[int, int], set[int]] = {key: set() for key in files}
    for pid in pids:
        _maps_targets(pid, targets, marker)
        _fd_targets(pid, targets, marker)
    return targets
