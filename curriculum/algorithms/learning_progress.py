"""Learning-progress scoring, sampling weights and eviction choice (pure, vectorised numpy).

Raw score per task (see :class:`~curriculum.config.LearningProgressConfig`):

- bidirectional: ``|r(fast) - r(slow)|`` where ``r`` is the progress-smoothing reweighting;
- basic: the variance of the score, ``max(reward_sq - reward**2, 0)``;
- plus ``performance_bonus_weight * perf``.

Sampling: warm tasks (at least ``min_samples_for_lp`` outcomes) are z-scored against each other;
cold tasks get the z-score ``exploration_bonus``, so both are on one scale. Weights are
``sigmoid(z_score_amplification * z)`` or, with a temperature T > 0, ``exp(z / T)``; they are
normalised and mixed with a uniform distribution at ``rand_task_rate``.
"""

from __future__ import annotations

import numpy as np

from backends.base import PoolSnapshot
from curriculum.algorithms.base import CurriculumAlgorithm, PoolView, active_slots
from curriculum.config import LearningProgressConfig

ZERO_LP = 1e-9


def reweight(p: np.ndarray, smoothing: float) -> np.ndarray:
    """Progress-smoothing reweighting of success rates in [0, 1]; identity when smoothing is 0.

    ``r(p) = p (1 - t) / (p + t (1 - 2 p))`` with ``t = 0.5 - smoothing``: a monotone map of
    [0, 1] onto itself that, as smoothing grows towards 0.5, stretches differences near p = 0.
    """
    if smoothing == 0.0:
        return p
    theta = 0.5 - smoothing
    return p * (1.0 - theta) / (p + theta * (1.0 - 2.0 * p))


def raw_learning_progress(rows: np.ndarray, config: LearningProgressConfig) -> np.ndarray:
    """Raw learning-progress score of each row."""
    if config.use_bidirectional:
        smoothing = config.progress_smoothing
        lp = np.abs(reweight(rows["fast"], smoothing) - reweight(rows["slow"], smoothing))
    else:
        lp = np.maximum(rows["reward_sq"] - rows["reward"] ** 2, 0.0)
    if config.performance_bonus_weight:
        lp = lp + config.performance_bonus_weight * rows["perf"]
    return lp


def sampling_probabilities(
    raw: np.ndarray, warm: np.ndarray, config: LearningProgressConfig
) -> np.ndarray:
    """Probabilities from raw scores; ``warm`` marks tasks whose score counts."""
    n = len(raw)
    if n == 0:
        return np.zeros(0)
    z = np.full(n, float(config.exploration_bonus))
    if warm.any():
        warm_raw = raw[warm]
        spread = warm_raw.std()
        z[warm] = (warm_raw - warm_raw.mean()) / spread if spread > 0 else 0.0
    if config.lp_score_temperature > 0:
        scaled = z / config.lp_score_temperature
        weights = np.exp(scaled - scaled.max())
    else:
        weights = 0.5 * (1.0 + np.tanh(0.5 * config.z_score_amplification * z))
    total = weights.sum()
    probabilities = weights / total if total > 0 else np.full(n, 1.0 / n)
    rate = config.rand_task_rate
    return (1.0 - rate) * probabilities + rate / n


def eviction_order(
    raw: np.ndarray,
    n_outcomes: np.ndarray,
    warm: np.ndarray,
    slots: np.ndarray,
    config: LearningProgressConfig,
) -> list[int]:
    """Slots that may be evicted, lowest score first.

    The threshold is the ``eviction_threshold_percentile`` quantile of the scores of all warm
    tasks (the whole pool's learning progress, not only of the tasks old enough to be evicted); a
    task may be evicted once it has ``min_presentations_for_eviction`` outcomes and its score is
    at or below that threshold.
    """
    eligible = n_outcomes >= config.min_presentations_for_eviction
    if not eligible.any():
        return []
    reference = raw[warm] if warm.any() else raw[eligible]
    threshold = np.quantile(reference, config.eviction_threshold_percentile)
    candidates = np.flatnonzero(eligible & (raw <= threshold))
    return slots[candidates[np.argsort(raw[candidates], kind="stable")]].tolist()


class LearningProgressAlgorithm(CurriculumAlgorithm):
    """Samples the tasks whose success is changing fastest; evicts the ones that stopped."""

    def __init__(self, config: LearningProgressConfig) -> None:
        """Score with ``config``."""
        self.config = config

    def view(self, snapshot: PoolSnapshot) -> PoolView:
        """Score every active task, derive probabilities and the eviction order."""
        active = active_slots(snapshot)
        rows = snapshot.rows[active]
        raw = raw_learning_progress(rows, self.config)
        warm = rows["n_outcomes"] >= self.config.min_samples_for_lp
        return PoolView(
            snapshot=snapshot,
            active=active,
            probabilities=sampling_probabilities(raw, warm, self.config),
            raw_scores=raw,
            eviction_order=eviction_order(raw, rows["n_outcomes"], warm, active, self.config),
        )
