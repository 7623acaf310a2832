"""Learning-progress scoring, sampling weights and eviction choice (pure, vectorised numpy).

Raw score per task (see :class:`~curriculum.config.LearningProgressConfig`):

- bidirectional: ``|r(fast) - r(slow)|`` where ``r`` is the progress-smoothing reweighting;
- basic: the variance of the score, ``max(reward_sq - reward**2, 0)``;
- plus ``performance_bonus_weight * perf``.

Sampling: warm tasks (at least ``min_samples_for_lp`` outcomes) are z-scored against each other;
cold tasks get the z-score ``exploration_bonus``, so both are on one scale. The spread that
divides the z-scores is at least ``noise_floor`` times the root mean square of the learning
progress that outcome noise alone would give the warm tasks if none of them were learning
(:func:`noise_scale`), so differences within the noise are not stretched into strong
preferences. Weights are
``exp(z / T)`` with a temperature T > 0, or ``sigmoid(z_score_amplification * z)`` when T is 0;
they are normalised and mixed with a uniform distribution at ``rand_task_rate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from backends.base import PoolSnapshot
from curriculum.algorithms.base import CurriculumAlgorithm, PoolView, active_slots

if TYPE_CHECKING:
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


def reweight_slope(p: np.ndarray, smoothing: float) -> np.ndarray:
    """Derivative of :func:`reweight` at ``p`` (1 when smoothing is 0)."""
    if smoothing == 0.0:
        return np.ones_like(p)
    theta = 0.5 - smoothing
    return theta * (1.0 - theta) / (p + theta * (1.0 - 2.0 * p)) ** 2


def ema_difference_variance(fast_rate: float, slow_rate: float) -> float:
    """Variance of ``fast EMA - slow EMA`` of independent outcomes of unit variance.

    Each EMA of rate ``r`` has variance ``r / (2 - r)``; their covariance is
    ``r1 r2 / (r1 + r2 - r1 r2)``.
    """
    a, b = fast_rate, slow_rate
    return max(a / (2.0 - a) + b / (2.0 - b) - 2.0 * a * b / (a + b - a * b), 0.0)


def noise_learning_progress(rows: np.ndarray, config: LearningProgressConfig) -> np.ndarray:
    """Bidirectional learning progress that outcome noise alone gives each row (its RMS).

    For a task whose success rate is not changing, ``fast - slow`` is a zero-mean difference of
    two EMAs of its outcomes. With the outcome variance ``v`` estimated by the reward EMAs
    (``reward_sq - reward**2``), its root mean square is ``sqrt(v * D)``
    (:func:`ema_difference_variance`), times the slope of the progress-smoothing reweighting at
    the slow EMA. Zero for basic scoring (which has no floor).
    """
    if not config.use_bidirectional:
        return np.zeros(len(rows))
    variance = np.maximum(rows["reward_sq"] - rows["reward"] ** 2, 0.0)
    rate = config.ema_timescale
    spread = ema_difference_variance(rate, rate * config.slow_timescale_factor)
    return np.sqrt(variance * spread) * reweight_slope(rows["slow"], config.progress_smoothing)


def noise_scale(rows: np.ndarray, config: LearningProgressConfig) -> float:
    """The floor of the z-score spread: ``noise_floor`` times the root mean square, over
    ``rows``, of :func:`noise_learning_progress` (the spread of learning progress a pool of
    these tasks would show if none of them were learning)."""
    if config.noise_floor == 0 or len(rows) == 0 or not config.use_bidirectional:
        return 0.0
    noise = noise_learning_progress(rows, config)
    return config.noise_floor * float(np.sqrt(np.mean(noise * noise)))


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
    raw: np.ndarray,
    warm: np.ndarray,
    config: LearningProgressConfig,
    min_spread: float = 0.0,
) -> np.ndarray:
    """Probabilities from raw scores; ``warm`` marks tasks whose score counts.

    ``min_spread`` is the smallest spread the warm scores are z-scored with (see
    :func:`noise_scale`); 0 z-scores them with their own standard deviation.
    """
    n = len(raw)
    if n == 0:
        return np.zeros(0)
    z = np.full(n, float(config.exploration_bonus))
    if warm.any():
        warm_raw = raw[warm]
        spread = max(float(warm_raw.std()), min_spread)
        z[warm] = (warm_raw - warm_raw.mean()) / spread if spread > 0 else 0.0
    # Extreme but valid settings (a tiny temperature, a huge amplification or bonus) overflow
    # to +-inf; clipped to the largest finite value, the weights stay a distribution.
    largest = np.finfo(np.float64).max
    with np.errstate(over="ignore", invalid="ignore"):
        if config.lp_score_temperature > 0:
            scaled = np.clip(z / config.lp_score_temperature, -largest, largest)
            weights = np.exp(np.clip(scaled - scaled.max(), -largest, 0.0))
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
        config = self.config
        raw = raw_learning_progress(rows, config)
        warm = rows["n_outcomes"] >= config.min_samples_for_lp
        floor = noise_scale(rows[warm], config)
        return PoolView(
            snapshot=snapshot,
            active=active,
            probabilities=sampling_probabilities(raw, warm, config, floor),
            raw_scores=raw,
            eviction_order=eviction_order(raw, rows["n_outcomes"], warm, active, config),
        )
