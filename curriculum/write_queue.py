"""This process's writes to one pool, in order, with the one retry path.

Outcomes, sample counts and failures collect in an open :class:`~backends.base.WriteBatch`;
stage-record updates of a staged curriculum and range-record updates of range expansion queue
behind it. Sealing a write gives it its write id (numbered here, and nowhere else, per
process). A write leaves the queue only when the backend applied it. A write that failed stays
at the head of the queue, with its id, and is sent again before anything newer: a backend that
may already have applied it (a reply lost with its connection) recognises the id and does not
apply it twice.

On a backend that can (Redis), the hot path's write of a lone batch is sent ahead: the queue does
not wait for its reply, and reads it before it sends anything else or when asked to wait
(``flush(wait=True)``, the default). Until its reply is read, the batch stays at the head of the
queue and counts as pending.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from backends.base import RecordResult, TaskMemoryBackend, WriteBatch
from backends.range_state import RangeState, RangeUpdate
from backends.stage_state import StageState, StageUpdate, fold_scores

StageListener = Callable[[StageState, "int | None"], None]
RangeListener = Callable[[RangeState], None]


class WriteQueue:
    """Buffered writes of one process to one pool."""

    def __init__(self) -> None:
        self.open = WriteBatch()  # collecting; sealed into ``sealed`` by :meth:`flush`
        # in send order; the head may be a retry
        self.sealed: deque[WriteBatch | StageUpdate | RangeUpdate] = deque()
        self.opened_at: float | None = None  # monotonic time the open batch got its first entry
        self.retries = 0  # writes sent again after a failed attempt
        self._head_failed = False  # the head of ``sealed`` failed its last attempt
        self.in_flight = False  # the head of ``sealed`` was sent ahead; its reply is unread
        self._last_write_id = 0  # write ids are numbered here, once, when a write is sealed
        self.on_stage: StageListener | None = None
        # a staged curriculum's outcomes per stage, folded into one stage update each at seal()
        self.stage_scores: dict[int, list[float]] = {}
        self.stage_steps: dict[int, int] = {}
        self.stage_smoothing = 0.0
        self.stage_count = 0  # outcomes in stage_scores
        self.on_ranges: RangeListener | None = None
        # range expansion's boundary outcomes by (boundary, grid index), folded at seal()
        self.range_scores: dict[tuple[int, int], list[float]] = {}

    def __len__(self) -> int:
        return len(self.open) + len(self.sealed) + len(self.stage_scores) + len(self.range_scores)

    @property
    def open_outcomes(self) -> int:
        """Outcomes collected since the last seal (of the pool's tasks, or for the stage
        record: a staged curriculum's root pool gets both for its own episodes)."""
        return max(len(self.open.outcome_slots), self.stage_count)

    @property
    def pending_outcomes(self) -> int:
        """Outcomes accepted and not yet applied by the backend."""
        sealed = sum(len(w.outcome_slots) for w in self.sealed if isinstance(w, WriteBatch))
        return len(self.open.outcome_slots) + sealed

    @property
    def outcomes_in_flight(self) -> int:
        """Outcomes of the batch sent ahead whose reply is unread (0 when none is)."""
        head = self.sealed[0] if self.in_flight and self.sealed else None
        return len(head.outcome_slots) if isinstance(head, WriteBatch) else 0

    def pending_slots(self) -> set[int]:
        """Slots with outcomes not yet applied."""
        slots = set(self.open.outcome_slots)
        for write in self.sealed:
            if isinstance(write, WriteBatch):
                slots.update(write.outcome_slots)
        return slots

    def touch(self) -> None:
        """Note that an entry is about to be added to the open batch."""
        if self.opened_at is None:
            self.opened_at = time.monotonic()

    def add_stage_outcomes(self, stage: int, scores: list[float], steps: int) -> None:
        """Queue outcomes for the stage record (folded into one update per stage at seal)."""
        self.touch()
        self.stage_count += len(scores)
        self.stage_scores.setdefault(stage, []).extend(scores)
        self.stage_steps[stage] = self.stage_steps.get(stage, 0) + steps

    def take_back_stage_outcomes(self, stage: int, count: int, steps: int) -> None:
        """Undo the last :meth:`add_stage_outcomes` of ``count`` outcomes (their call raised)."""
        scores = self.stage_scores[stage]
        del scores[len(scores) - count :]
        self.stage_count -= count
        self.stage_steps[stage] -= steps
        if not scores:
            del self.stage_scores[stage], self.stage_steps[stage]

    def add_range_outcomes(self, entries: list[tuple[int, int, float]]) -> None:
        """Queue ``(boundary, grid index, score)`` outcomes for the range record."""
        for boundary, index, score in entries:
            self.range_scores.setdefault((boundary, index), []).append(score)

    def take_back_range_outcomes(self, entries: list[tuple[int, int, float]]) -> None:
        """Undo the last :meth:`add_range_outcomes` of ``entries`` (their call raised)."""
        for boundary, index, _ in reversed(entries):
            scores = self.range_scores[boundary, index]
            scores.pop()
            if not scores:
                del self.range_scores[boundary, index]

    def seal(self) -> None:
        """Close the open batch and fold the stage and range outcomes: from now on they keep
        their place and write ids."""
        self.opened_at = None
        if len(self.open):
            self.open.write_id = self._next_write_id()
            self.sealed.append(self.open)
            self.open = WriteBatch()
        for stage, scores in sorted(self.stage_scores.items()):
            decay, add = fold_scores(scores, self.stage_smoothing)
            update = StageUpdate(stage, len(scores), decay, add, self.stage_steps[stage])
            update.write_id = self._next_write_id()
            self.sealed.append(update)
        self.stage_scores, self.stage_steps, self.stage_count = {}, {}, 0
        if self.range_scores:
            entries = [(b, i, len(s), sum(s)) for (b, i), s in self.range_scores.items()]
            self.sealed.append(RangeUpdate(entries, self._next_write_id()))
            self.range_scores = {}

    def _next_write_id(self) -> int:
        self._last_write_id += 1
        return self._last_write_id

    def flush(self, backend: TaskMemoryBackend, *, wait: bool = True) -> RecordResult:
        """Send every queued write, oldest first; stops at (and raises) the first failure.

        ``wait=False`` sends the last batch ahead when the backend can and nothing else is
        queued before it (its reply is read by the next flush)."""
        self.seal()
        applied = late = 0
        if self.in_flight:
            self.in_flight = False
            self._head_failed = True  # until its reply says it was applied
            result = backend.record_receive()
            applied, late = result.applied, result.late
            self.sealed.popleft()
            self._head_failed = False
        while self.sealed:
            write = self.sealed[0]
            if self._head_failed:
                self.retries += 1
            ahead = (
                not wait
                and not self._head_failed
                and len(self.sealed) == 1
                and isinstance(write, WriteBatch)
                and backend.can_send_ahead
            )
            self._head_failed = True
            if ahead:
                backend.record_send(write)  # type: ignore[arg-type]
                self.in_flight = True
                self._head_failed = False
                break
            if isinstance(write, WriteBatch):
                result = backend.record(write)
                applied, late = applied + result.applied, late + result.late
                self.sealed.popleft()
                self._head_failed = False
            elif isinstance(write, RangeUpdate):
                ranges = backend.update_ranges(write)
                self.sealed.popleft()
                self._head_failed = False
                if self.on_ranges is not None:
                    self.on_ranges(ranges)
            else:
                state, ended = backend.update_stage(write)
                self.sealed.popleft()
                self._head_failed = False
                if self.on_stage is not None:
                    self.on_stage(state, ended)
        return RecordResult(applied=applied, late=late)

    def drop_head(self) -> int:
        """Drop the oldest sealed write (the backend refused it for good); its outcomes."""
        if not self.sealed:
            return 0
        head = self.sealed.popleft()
        self._head_failed = self.in_flight = False
        return len(head.outcome_slots) if isinstance(head, WriteBatch) else 0

    def discard(self) -> int:
        """Drop every queued write; returns the outcomes dropped with them."""
        dropped = self.pending_outcomes
        self.open = WriteBatch()
        self.sealed.clear()
        self.stage_scores, self.stage_steps, self.stage_count = {}, {}, 0
        self.range_scores = {}
        self.opened_at = None
        self._head_failed = self.in_flight = False
        return dropped
