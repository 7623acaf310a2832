"""The ``curriculum shm list|clean`` command: text and JSON of :mod:`curriculum.shm_admin`."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from backends.shm_segment import SEGMENT_PREFIX, shm_dir
from curriculum.shm_admin import CleanReport, SegmentInfo, clean_segments, list_segments

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
