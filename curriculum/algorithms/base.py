"""What every curriculum algorithm produces from a pool snapshot: a scored view to sample from.

Algorithms are pure: they read a :class:`~backends.base.PoolSnapshot` and return a
:class:`PoolView` (vectorised numpy, O(n) per refresh); sampling from the view is O(log n).
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from backends.base import PoolSnapshot
from backends.layout import EMPTY_TASK, empty_rows


@dataclass
class PoolView:
    """A scored snapshot: which slots hold tasks, how likely each is sampled, what to evict.

    Attributes:
        snapshot: The pool copy the view was computed from.
        active: Slots that hold a task.
        probabilities: Sampling probability per active slot (sums to 1).
        raw_scores: The algorithm's raw score per active slot (learning progress, or 0).
        eviction_order: Slots that may be evicted, most evictable first.
        forced_evictions: How many of the first ``eviction_order`` slots must go whatever the
            algorithm's draw rule (tasks whose env config keeps failing).
        running: Task id -> episodes this process started and has not reported (the session's
            own record, shared by reference when the view is installed).
        played: The tasks this process handed out (running, or their outcome recorded, which
            the view may not show yet: it may still sit in this process's write queue), or
            looked up for an outcome; shared by reference likewise.
    """

    snapshot: PoolSnapshot
    active: np.ndarray
    probabilities: np.ndarray
    raw_scores: np.ndarray
    eviction_order: list[int] = field(default_factory=list)
    forced_evictions: int = 0
    running: Mapping[int, int] = field(default_factory=dict)
    played: Mapping[int, object] = field(default_factory=dict)
    _cdf: list[float] | None = None  # cumulative probabilities, as floats for bisect
    _slots: list[int] | None = None  # ``active`` as ints

    def prepare_sampling(self) -> None:
        """Build the tables :meth:`sample_slot` searches (done at the first sample otherwise)."""
        self._cdf = np.cumsum(self.probabilities).tolist()
        self._slots = self.active.tolist()

    def sample_slot(self, rng: np.random.Generator) -> int:
        """Draw one active slot with the view's probabilities (O(log n))."""
        cdf = self._cdf
        if cdf is None:
            self.prepare_sampling()
            cdf = self._cdf
            assert cdf is not None
        slots = self._slots
        assert slots is not None
        position = bisect.bisect_right(cdf, rng.random() * cdf[-1])
        return slots[min(position, len(slots) - 1)]

    def wants_eviction(self, rng: np.random.Generator) -> bool:
        """Whether this draw should evict the next eviction candidate and play the new task
        (asked only while candidates remain). By default: always."""
        return True

    def extra_stats(self) -> dict[str, float]:
        """The algorithm's own stats keys (none by default)."""
        return {}

    def place_new_task(self, slot: int, task_id: int, label_id: int, seq: int) -> None:
        """Show a task this process just put into ``slot``, until the view is refreshed.

        The slot gets a fresh row and the probability of an average task, so sampling goes on
        from this view instead of re-reading and re-scoring the whole pool after every eviction.
        """
        row = empty_rows(1)
        row["task_id"], row["label_id"], row["seq"] = task_id, label_id, seq
        row["last_sampled"] = self.snapshot.counters.get("num_scheduled", 0)
        self.snapshot.rows[slot] = row[0]
        position = int(np.searchsorted(self.active, slot))
        if position < len(self.active) and self.active[position] == slot:
            self.probabilities[position] = 1.0 / len(self.active)
            self.raw_scores[position] = 0.0
            self._cdf = None

    def task_id(self, slot: int) -> int:
        """The task id the snapshot holds in ``slot``."""
        return int(self.snapshot.rows["task_id"][slot])

    def label_id(self, slot: int) -> int:
        """The label id the snapshot holds in ``slot``."""
        return int(self.snapshot.rows["label_id"][slot])


def active_slots(snapshot: PoolSnapshot) -> np.ndarray:
    """Slots of the snapshot that hold a task."""
    return np.flatnonzero(snapshot.rows["task_id"] != EMPTY_TASK)


class CurriculumAlgorithm(ABC):
    """Scores a snapshot; no I/O, no locks, no state shared between processes."""

    @abstractmethod
    def view(self, snapshot: PoolSnapshot) -> PoolView:
        """Score ``snapshot`` into a view to sample from."""
