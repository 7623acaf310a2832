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
