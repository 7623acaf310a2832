"""The scored view one process samples from, and when to recompute it.

By default (``refresh="time"``) the view is recomputed when the pool's version moved and either
the view is older than ``snapshot_max_age_s`` or this process alone wrote
``max(write_batch_size, capacity // 8)`` outcomes since: a fast loop in one process sees its own
progress quickly, and a large pool is not re-scored after every batch. Either way the view of a
pool of 512 slots or more lives at least ``cost_factor`` (``1 / refresh_cpu_share``, default 10)
times the CPU time a refresh takes (in the thread that made it; the smaller of the last two, so
that a one-off slow refresh does not hold a view), so that refreshing takes at most about a tenth
of a process's CPU however fast its loop runs: a loop of tens of thousands of episodes a second
on a pool slow to read (Redis, 1,000 tasks: ~4 ms of CPU a refresh) would otherwise spend a third
of a core re-reading it, and two such processes would add little to one. Smaller pools refresh
cheaply and have no such bound.

With ``refresh="outcomes"`` (deterministic mode) the clock plays no part: the view is recomputed
after every ``max(write_batch_size, capacity // 8)`` outcomes this process recorded, so one
process with a seed picks the same tasks for the same outcomes.

Sharing: each refresh compares how many outcomes the pool gained since the last one with how
many this process wrote (both as the snapshot counted them: an outcome written after a helper
thread read the pool is not in its count, and an outcome queued or buffered through an outage is
not another process's): a smoothed estimate of the number of processes writing at this one's pace
(:attr:`ViewCache.writers`, shown as ``health/writers``). With ``w`` writers the view is also due
after ``refresh_after_outcomes / w`` of this process's outcomes, so that it sees the pool move
about as far as one process alone would between refreshes; and the session writes its queued
outcomes before each refresh, so that the other processes see them as soon. Those earlier
refreshes are taken only within the refresh budget (``shared_cost_factor`` times the refresh's
CPU time, also for small pools), so a loop too fast for them keeps its batches. Four processes
of the quality benchmark's noisy student reached 0.985-0.989x one process's AUC with them,
against 0.977-0.986x without; dividing the write batch itself by the estimate cost two
processes of the hot loop a fifth of their throughput, a write having a fixed cost (both:
BENCHMARKS.md, "Sharing lag").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from backends.base import PoolSnapshot
from curriculum.algorithms import CurriculumAlgorithm, PoolView
from curriculum.background import BACKGROUND_MIN_TASKS

if TYPE_CHECKING:
    from curriculum.config import CurriculumConfig

# A view lives at least this many times what a refresh costs, by default (so that refreshing
# takes at most about a tenth of a process's CPU time): 1 / CurriculumConfig.refresh_cpu_share.
REFRESH_COST_FACTOR = 10.0
# The largest writers estimate (a process the machine starves sees the pool run away).
MAX_WRITERS = 16.0


def refresh_cost_factor(config: CurriculumConfig, capacity: int) -> float:
    """How many times its refresh cost a view lives at least: ``1 / refresh_cpu_share`` for a
    pool of ``BACKGROUND_MIN_TASKS`` slots or more, none (0) for a smaller one, whose refresh
    is cheap."""
    return 1.0 / config.refresh_cpu_share if capacity >= BACKGROUND_MIN_TASKS else 0.0


class ViewCache:
    """The last scored view of a pool and its refresh rule."""

    def __init__(
        self,
        algorithm: CurriculumAlgorithm,
        *,
        capacity: int,
        max_age_s: float,
        refresh_after_outcomes: int,
        max_task_failures: int,
        by_time: bool = True,
        cost_factor: float = REFRESH_COST_FACTOR,
        shared_cost_factor: float = REFRESH_COST_FACTOR,
        running: Mapping[int, int] | None = None,
        played: Mapping[int, object] | None = None,
    ) -> None:
        self.algorithm = algorithm
        self.capacity = capacity
        self.max_age_s = max_age_s
        self.refresh_after_outcomes = refresh_after_outcomes
        self.max_task_failures = max_task_failures
        self.by_time = by_time
        self.cost_factor = cost_factor
        self.shared_cost_factor = shared_cost_factor  # the budget of refreshes other writers ask
        self.running = running if running is not None else {}  # given to every view installed
        self.played = played if played is not None else {}  # likewise
        self.view: PoolView | None = None
        # the view's eviction candidates not yet tried, most evictable LAST (popped from the end)
        self.evictions: list[int] = []
        self.taken_at = 0.0  # monotonic time of the last refresh (or check)
        # CPU seconds of a refresh, for the budget: the smaller of the last two (a one-off slow
        # one, such as the first of a process, does not hold its view for long)
        self.cost_s = 0.0
        self._last_cost_s = 0.0  # CPU seconds the last refresh took (the thread that made it)
        self.outcomes_since = 0  # outcomes this process recorded since the last refresh
        self.maybe_free_slots = True  # a free slot may exist (false after a create failed)
        self.writers = 1.0  # estimated processes writing to the pool at this one's pace
        self.own_outcomes = 0  # outcomes this process wrote, ever (the pool counts them so)
        self._mark: tuple[int, int] | None = None  # (pool completed, own outcomes) at a refresh

    def due(self) -> bool:
        """Whether the view should be refreshed now."""
        if self.view is None:
            return True
        if not self.by_time:
            return self.outcomes_since >= self.refresh_after_outcomes
        age = time.monotonic() - self.taken_at
        if age < self.cost_factor * self.cost_s:
            return False  # refreshing takes at most refresh_cpu_share of this process's CPU
        if self.outcomes_since >= self.refresh_after_outcomes or age >= self.max_age_s:
            return True
        # other processes move the pool too: as often as one process alone would see it move
        return (
            self.outcomes_since * self.writers >= self.refresh_after_outcomes
            and age >= self.shared_cost_factor * self.cost_s
        )

    def refreshed(self, snapshot: PoolSnapshot | None, started: float) -> PoolView:
        """Take ``snapshot`` (None: the pool did not change) as the current state of the pool;
        ``started`` is this thread's ``time.thread_time()`` when the refresh began."""
        view = None if snapshot is None else self.score(snapshot)
        return self.install(view, time.thread_time() - started)

    def install(
        self, view: PoolView | None, cost_s: float, own_outcomes: int | None = None
    ) -> PoolView:
        """Take ``view`` (None: the pool did not change) as the current one; the refresh that
        made it (or found the pool unchanged) took ``cost_s`` of CPU time. ``own_outcomes``:
        :attr:`own_outcomes` when its snapshot was read (None: now)."""
        if view is not None:
            view.running, view.played = self.running, self.played
            self.view = view
            self.evictions = view.eviction_order[::-1]
            if self.by_time:
                own = self.own_outcomes if own_outcomes is None else own_outcomes
                self._estimate_writers(int(view.snapshot.counters["num_completed"]), own)
            if len(view.active) < self.capacity:
                self.maybe_free_slots = True
            self.cost_s = min(cost_s, self._last_cost_s)
            self._last_cost_s = cost_s
        self.taken_at = time.monotonic()
        self.outcomes_since = 0
        assert self.view is not None
        return self.view

    def _estimate_writers(self, pool_completed: int, own_outcomes: int) -> None:
        """Update :attr:`writers` from the pool's and this process's outcomes (both as the
        snapshot counted them) since the last refresh (only over spans with enough of this
        process's outcomes to mean something)."""
        mark = self._mark
        if mark is None or pool_completed < mark[0]:  # first view, or the pool was replaced
            self._mark = (pool_completed, own_outcomes)
            return
        own = own_outcomes - mark[1]
        if own < 16:
            return
        ratio = min(max((pool_completed - mark[0]) / own, 1.0), MAX_WRITERS)
        self.writers += 0.5 * (ratio - self.writers)
        self._mark = (pool_completed, own_outcomes)

    def score(self, snapshot: PoolSnapshot) -> PoolView:
        """The algorithm's view, with tasks whose env config keeps failing evicted first."""
        view = self.algorithm.view(snapshot)
        failures = snapshot.rows["n_failures"][view.active]
        broken = view.active[failures >= self.max_task_failures].tolist()
        if broken:
            first = set(broken)
            view.eviction_order = broken + [s for s in view.eviction_order if s not in first]
            view.forced_evictions = len(broken)
        return view

    def invalidate(self) -> None:
        """Forget the view (after this process changed the pool in a way it does not show)."""
        self.view = None
        self.evictions = []

    def restart_writers_estimate(self) -> None:
        """The pool's counters jumped (a checkpoint was loaded): measure sharing afresh."""
        self._mark = None
