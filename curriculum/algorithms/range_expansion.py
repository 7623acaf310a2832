"""Range expansion's sampling and turnover (pure, vectorised numpy).

Sampling is uniform over the active tasks, as in ADR, where every episode draws a fresh
environment from the current ranges. Turnover stands in for the fresh draw: tasks outside the
current ranges, or placed at a bound that has moved since (their outcomes would be stale), are
evicted first, then tasks with ``task_outcomes`` outcomes or more (most outcomes first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from backends.base import PoolSnapshot
from curriculum.algorithms.base import CurriculumAlgorithm, PoolView, active_slots

if TYPE_CHECKING:
    from curriculum.config import RangeExpansionConfig


class RangeExpansionAlgorithm(CurriculumAlgorithm):
    """Uniform sampling; eviction of out-of-range tasks first, then of played ones."""

    def __init__(self, config: RangeExpansionConfig, ranges: Any) -> None:
        """Score against ``ranges``: anything with ``outside(task_ids) -> bool array`` (the
        session's :class:`~curriculum.range_session.RangeTracker`, holding the record it
        last read; no I/O here)."""
        self.config = config
        self.ranges = ranges

    def view(self, snapshot: PoolSnapshot) -> PoolView:
        """Uniform probabilities; the eviction order described above."""
        active = active_slots(snapshot)
        rows = snapshot.rows[active]
        outside = self.ranges.outside(rows["task_id"]) if len(active) else np.zeros(0, bool)
        outcomes = rows["n_outcomes"]
        played = ~outside & (outcomes >= self.config.task_outcomes)
        order = np.argsort(-outcomes[played], kind="stable")
        eviction = [*active[outside].tolist(), *active[played][order].tolist()]
        n = max(len(active), 1)
        return PoolView(
            snapshot=snapshot,
            active=active,
            probabilities=np.full(len(active), 1.0 / n),
            raw_scores=np.zeros(len(active)),
            eviction_order=eviction,
        )
