"""Uniform sampling over the active tasks, without eviction."""

from __future__ import annotations

import numpy as np

from backends.base import PoolSnapshot
from curriculum.algorithms.base import CurriculumAlgorithm, PoolView, active_slots


class DiscreteRandomAlgorithm(CurriculumAlgorithm):
    """Every active task is equally likely; nothing is ever evicted."""

    def view(self, snapshot: PoolSnapshot) -> PoolView:
        """Uniform probabilities over the active slots."""
        active = active_slots(snapshot)
        n = max(len(active), 1)
        return PoolView(
            snapshot=snapshot,
            active=active,
            probabilities=np.full(len(active), 1.0 / n),
            raw_scores=np.zeros(len(active)),
        )
