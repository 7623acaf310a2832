"""One process's side of range expansion: new task ids in the shared ranges, boundary outcomes
queued for the shared range record, and the ``range/`` stats.

The range record lives in the pool (:mod:`backends.range_state`). This process keeps the copy
it last read or wrote: read when the session opens, read again when older than
``snapshot_max_age_s`` as a new task is drawn (never by time in deterministic mode), and
replaced by the record every range write returns. Views are scored against this copy.
Outcomes of tasks placed at a bound are queued in the session's write queue, behind the
outcomes of the same call, and folded at seal into one
:class:`~backends.range_state.RangeUpdate` per write: a call that raised queued nothing, a
call that returned is folded exactly once (a failed write is sent again, with its id, by the
queue's one retry path).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from backends.range_state import RangeState
from curriculum.range_ids import RangeIds, RangeTaskGenerator

if TYPE_CHECKING:
    from curriculum.session import PoolSession


class RangeTracker:
    """The range record as this process knows it, and the way outcomes reach it."""

    def __init__(self, session: PoolSession, generator: RangeTaskGenerator) -> None:
        """Track the range record of ``session``'s pool, whose tasks ``generator`` builds."""
        self.session = session
        self.generator = generator
        self.ids: RangeIds = generator.ids
        self.rule = self.ids.rule
        self.config = session.config.algorithm_config
        self.max_age_s = session.config.snapshot_max_age_s
        self.by_time = not session.config.deterministic
        self.state = RangeState()
        self.read_at = -float("inf")
        session.queue.on_ranges = self.adopt
        self.current()  # the views score against this copy: never against an unread record

    def adopt(self, state: RangeState) -> None:
        """Take ``state`` as the current record (read, or returned by a write)."""
        self.state = state
        self.read_at = time.monotonic()

    def current(self, *, fresh: bool = False) -> RangeState:
        """The record: read again when ``fresh``, or older than the bound (by time)."""
        due = self.by_time and time.monotonic() - self.read_at >= self.max_age_s
        if fresh or due or self.read_at == -float("inf"):
            self.adopt(self.session.backend.range_state())
        return self.state

    def new_task_id(self, seq: int) -> int:
        """The id of the pool's ``seq``-th task, drawn in the current ranges."""
        backend = self.session.backend
        return self.ids.new_task_id(
            self.current(), backend.params.pool_seed, seq, self.config.boundary_prob
        )

    def outside(self, task_ids: np.ndarray) -> np.ndarray:
        """Per task: outside the ranges this process knows, or at a bound that moved."""
        return self.ids.outside(task_ids, self.state)

    @contextlib.contextmanager
    def outcomes(self, task_ids: list[int], scores: list[float]) -> Iterator[None]:
        """Queue the boundary tasks' outcomes around recording them in the pool (taken back
        if that raised). Outcomes of a lost pool's tasks are dropped, as the pool drops them."""
        entries = []
        registry = self.session.registry
        for task_id, score in zip(task_ids, scores, strict=True):
            found = self.ids.boundary_of(task_id)
            if found is not None and not (
                registry.get(task_id) is None and registry.was_lost(task_id)
            ):
                entries.append((*found, score))
        queue = self.session.queue
        queue.add_range_outcomes(entries)
        try:
            yield
        except BaseException:
            queue.take_back_range_outcomes(entries)
            raise

    def stats(self) -> dict[str, float]:
        """The ``range/`` keys (docs/stats.md), from a fresh read of the record."""
        state = self.current(fresh=True)
        stats = {}
        for axis, path in enumerate(self.rule.paths):
            stats[f"range/{path}/low"] = float(self.generator.axis_value(axis, state.low[axis]))
            stats[f"range/{path}/high"] = float(self.generator.axis_value(axis, state.high[axis]))
        stats["range/version"] = float(state.version)
        stats["range/widened"] = float(state.widened)
        stats["range/narrowed"] = float(state.narrowed)
        stats["range/stale_outcomes"] = float(state.stale)
        return stats


def range_tracker(session: PoolSession) -> RangeTracker | None:
    """The tracker of a range-expansion session, else None."""
    generator = session.generator
    return RangeTracker(session, generator) if isinstance(generator, RangeTaskGenerator) else None
