"""What ``curriculum shm list|clean`` report: one :class:`SegmentInfo` per segment, and the
:class:`CleanReport` of a clean-up (see :mod:`curriculum.shm_admin`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

State = Literal["live", "orphaned", "not ours", "unreadable"]
Action = Literal["removed", "would remove", "kept", "gone"]


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
    attached: bool | None = None
    """Whether some process holds the segment's attach lock (is attached to the pool)."""
    users: list[int] | None = field(default=None)
    """Pids that map or hold open the segment (this process included); None: /proc unreadable."""

    @property
    def in_use(self) -> bool | None:
        """Whether a process maps, opens or locks the segment; None when that cannot be told."""
        if self.lock_held or self.attached or self.users:
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
