"""Prioritized Level Replay on the shared pool (pure, vectorised numpy).

The rule (see :class:`~curriculum.plr_config.PrioritizedLevelReplayConfig`): a task is *seen*
once the pool holds a score for it (an outcome; a priority with ``score_function="priority"``).
Each draw explores with probability ``1 - replay_prob``: it plays an unseen task of the view
(each at most once per view, and none that this process is still playing: one process does not
play a new task again before its first score arrives), or, when the view has none left, evicts
the lowest-scoring evictable task and plays the new task created in its slot. Otherwise it
replays a seen task with ``P = (1 - rho) P_S + rho P_C``.

Across processes: each process decides per draw from its own view, so the pool-wide share of
episodes on unseen tasks is ``1 - replay_prob`` too; two processes may explore the same unseen
task before either outcome is written (it is still a task without a score for both), and a
task's staleness counts every process's draws (``last_sampled`` is kept by the pool, see
:mod:`backends.layout`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from backends.base import PoolSnapshot
from curriculum.algorithms.base import CurriculumAlgorithm, PoolView, active_slots

if TYPE_CHECKING:
    from curriculum.plr_config import PrioritizedLevelReplayConfig


def task_scores(rows: np.ndarray, config: PrioritizedLevelReplayConfig) -> np.ndarray:
    """Each row's PLR score under ``config.score_function`` (0 for unseen rows)."""
    function = config.score_function
    if function == "learnability":
        p = rows["perf"]
        scores = p * (1.0 - p)
    elif function == "progress":
        scores = np.abs(rows["fast"] - rows["slow"])
    elif function == "score_variance":
        scores = np.maximum(rows["reward_sq"] - rows["reward"] ** 2, 0.0)
    else:
        scores = rows["priority"].copy()
    return np.where(seen_rows(rows, config), scores, 0.0)


def seen_rows(rows: np.ndarray, config: PrioritizedLevelReplayConfig) -> np.ndarray:
    """Which rows have a score: an outcome, or a priority with ``score_function="priority"``."""
    counts = rows["n_priorities"] if config.uses_priorities() else rows["n_outcomes"]
    return counts > 0


def rank_weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Rank prioritisation ``h = (1 / rank) ** (1 / temperature)``, normalised; rank 1 is the
    highest score, and tied scores share the best rank among them (so equal scores get equal
    weight)."""
    n = len(scores)
    if n == 0:
        return np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    best = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    ranks = np.empty(n)
    ranks[order] = best + 1.0
    with np.errstate(under="ignore"):
        weights = (1.0 / ranks) ** (1.0 / temperature)
    return weights / weights.sum()  # rank 1 has weight 1: the sum is at least 1


def staleness(rows: np.ndarray, num_scheduled: int) -> np.ndarray:
    """Draws (by every process) since each task's sample count was last written."""
    return np.maximum(num_scheduled - rows["last_sampled"], 0).astype(np.float64)


def replay_probabilities(
    scores: np.ndarray, stale: np.ndarray, config: PrioritizedLevelReplayConfig
) -> np.ndarray:
    """``(1 - rho) P_S + rho P_C`` over seen tasks (uniform ``P_C`` when none is stale)."""
    n = len(scores)
    if n == 0:
        return np.zeros(0)
    total = stale.sum()
    by_staleness = stale / total if total > 0 else np.full(n, 1.0 / n)
    rho = config.staleness_coef
    return (1.0 - rho) * rank_weights(scores, config.temperature) + rho * by_staleness


@dataclass
class ReplayView(PoolView):
    """A view whose draws explore unseen tasks or replay seen ones (see the module docstring).

    ``probabilities`` is the nominal distribution of one draw (explore mass spread over the
    unseen tasks), for stats and ``task_figures``; sampling follows the explore/replay rule.
    """

    explore_prob: float = 0.0
    unseen: list[int] = field(default_factory=list)  # unseen slots not yet explored here
    seen_slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    replay: np.ndarray = field(default_factory=lambda: np.zeros(0))  # P over seen_slots
    figures: dict[str, float] = field(default_factory=dict)
    _pending: bool | None = None  # the explore decision wants_eviction made for this draw
    _replay_cdf: list[float] | None = None
    _replay_slots: list[int] | None = None

    def prepare_sampling(self) -> None:
        """Build the tables the draws search."""
        super().prepare_sampling()
        self._replay_cdf = np.cumsum(self.replay).tolist()
        self._replay_slots = self.seen_slots.tolist()

    def wants_eviction(self, rng: np.random.Generator) -> bool:
        """Evict when a forced eviction is due, or this draw explores and no unseen task is
        left in the view."""
        if self.forced_evictions > 0:
            self.forced_evictions -= 1
            return True
        explore = bool(rng.random() < self.explore_prob)
        if explore and not self._unseen_left():
            self._pending = None
            return True
        self._pending = explore
        return False

    def _unseen_left(self) -> bool:
        """Whether an unseen task this process has not played is left (drops the ones it has
        from the end of the list; the others are skipped when drawn)."""
        unseen, task_ids = self.unseen, self.snapshot.rows["task_id"]
        while unseen and self._played_here(int(task_ids[unseen[-1]])):
            unseen.pop()
        return bool(unseen)

    def _played_here(self, task_id: int) -> bool:
        """Whether this process is playing ``task_id`` or has played it: its outcome may sit in
        this process's write queue, unseen by the view, and exploring it again would replay
        it instead of exploring."""
        return task_id in self.running or task_id in self.played

    def sample_slot(self, rng: np.random.Generator) -> int:
        """An unseen task (explore) or a seen one by replay probability."""
        explore = self._pending
        self._pending = None
        if explore is None:
            explore = bool(rng.random() < self.explore_prob)
        if explore:
            unseen, task_ids = self.unseen, self.snapshot.rows["task_id"]
            while unseen:
                i = int(rng.integers(len(unseen)))
                unseen[i], unseen[-1] = unseen[-1], unseen[i]
                slot = unseen.pop()
                if not self._played_here(int(task_ids[slot])):
                    return slot
        if self._replay_cdf is None:
            self.prepare_sampling()
        cdf, slots = self._replay_cdf, self._replay_slots
        assert cdf is not None and slots is not None
        if not slots:  # nothing seen: every task is new (and each was explored once already)
            return super().sample_slot(rng)
        position = bisect.bisect_right(cdf, rng.random() * cdf[-1])
        return slots[min(position, len(slots) - 1)]

    def place_new_task(self, slot: int, task_id: int, label_id: int, seq: int) -> None:
        """The new task (being played now) is unseen: it leaves the replay tables."""
        super().place_new_task(slot, task_id, label_id, seq)
        keep = self.seen_slots != slot
        if not keep.all():
            self.seen_slots = self.seen_slots[keep]
            replay = self.replay[keep]
            total = replay.sum()
            self.replay = replay / total if total > 0 else replay
            self._replay_cdf = None

    def extra_stats(self) -> dict[str, float]:
        """The ``plr/`` keys (docs/stats.md)."""
        return dict(self.figures)


class PrioritizedReplayAlgorithm(CurriculumAlgorithm):
    """Replays the tasks with the highest PLR scores, explores new ones at a fixed share."""

    def __init__(self, config: PrioritizedLevelReplayConfig) -> None:
        """Score with ``config``."""
        self.config = config

    def view(self, snapshot: PoolSnapshot) -> ReplayView:
        """Seen / unseen tasks, replay probabilities, and the eviction order."""
        config = self.config
        active = active_slots(snapshot)
        rows = snapshot.rows[active]
        seen = seen_rows(rows, config)
        scores = task_scores(rows, config)
        stale = staleness(rows, int(snapshot.counters.get("num_scheduled", 0)))
        replay = replay_probabilities(scores[seen], stale[seen], config)
        n_seen, n_unseen = int(seen.sum()), len(active) - int(seen.sum())
        evictable = seen & (rows["n_outcomes"] >= config.min_presentations_for_eviction)
        candidates = np.flatnonzero(evictable)
        # lowest score first; among equal scores, the least likely to be replayed first
        replay_all = np.zeros(len(active))
        replay_all[seen] = replay
        candidates = candidates[np.lexsort((replay_all[candidates], scores[candidates]))]
        if n_seen == 0:
            explore = 1.0
        elif n_unseen == 0 and len(candidates) == 0:
            explore = 0.0
        else:
            explore = 1.0 - config.replay_prob
        probabilities = np.zeros(len(active))
        if n_unseen:
            probabilities[~seen] = (explore if n_seen else 1.0) / n_unseen
        probabilities[seen] = (1.0 - explore if n_unseen else 1.0) * replay
        if probabilities.sum() <= 0:  # no unseen task, nothing evictable: replay only
            probabilities[seen] = replay
        figures = {
            "plr/num_seen": float(n_seen),
            "plr/unseen_share": float(n_unseen / len(active)) if len(active) else 0.0,
            "plr/explore_share": float(explore),
            "plr/num_evictable": float(len(candidates)),
            # over the seen tasks: NaN while none is (curriculum.stats.NO_DATA)
            "plr/mean_staleness": float(stale[seen].mean()) if n_seen else math.nan,
            "plr/max_staleness": float(stale[seen].max()) if n_seen else math.nan,
            "plr/score_mean": float(scores[seen].mean()) if n_seen else math.nan,
            "plr/score_std": float(scores[seen].std()) if n_seen else math.nan,
            "plr/score_max": float(scores[seen].max()) if n_seen else math.nan,
        }
        return ReplayView(
            snapshot=snapshot,
            active=active,
            probabilities=probabilities,
            raw_scores=scores,
            eviction_order=active[candidates].tolist(),
            explore_prob=explore,
            unseen=active[~seen].tolist(),
            seen_slots=active[seen],
            replay=replay,
            figures=figures,
        )
