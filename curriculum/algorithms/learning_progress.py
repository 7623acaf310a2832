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

Continuous scores: the warm tasks of a *flat* label (pooled, their progress is no more than
noise: :mod:`~curriculum.algorithms.flat_labels`) are scored as if their progress were 0, and
together they weigh at most a mean label's worth of tasks, in the weights and in the uniform share
(:func:`~curriculum.algorithms.flat_labels.flat_label_share`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backends.base import PoolSnapshot
from curriculum.algorithms.base import CurriculumAlgorithm, PoolView, active_slots
from curriculum.algorithms.flat_labels import flat_label_share, flat_label_tasks
from curriculum.algorithms.label_priors import dead_and_solved_tasks
from curriculum.algorithms.progress_noise import (
    discounted_noise_factor,
    ema_difference_variance,
    noise_learning_progress,
    reweight,
    reweight_slope,
    score_variance,
    significance,
)

if TYPE_CHECKING:
    from curriculum.config import LearningProgressConfig

__all__ = [
    "discounted_noise_factor",
    "ema_difference_variance",
    "eviction_order",
    "noise_learning_progress",
    "noise_scale",
    "progress_difference",
    "raw_learning_progress",
    "reweight",
    "reweight_slope",
    "sampling_probabilities",
    "score_variance",
    "significance",
]

ZERO_LP = 1e-9
# Learning-progress weight of a solved / dead task relative to its z-score's weight: next to
# nothing while any task is neither; when none is, their weights keep their order.
SOLVED_WEIGHT = 1e-3
DEAD_WEIGHT = 1e-6


def noise_scale(
    rows: np.ndarray, config: LearningProgressConfig, noise: np.ndarray | None = None
) -> float:
    """The floor of the z-score spread: ``noise_floor`` times the root mean square, over
    ``rows``, of :func:`noise_learning_progress` (the spread of learning progress a pool of
    these tasks would show if none of them were learning), after the noise discount
    (:func:`discounted_noise_factor`). ``noise``: that function's values for ``rows``, when
    the caller has them."""
    if config.noise_floor == 0 or len(rows) == 0 or not config.use_bidirectional:
        return 0.0
    if noise is None:
        noise = noise_learning_progress(rows, config)
    rms = float(np.sqrt(np.mean(noise * noise)))
    return config.noise_floor * rms * discounted_noise_factor(config.noise_discount)


def progress_difference(rows: np.ndarray, config: LearningProgressConfig) -> np.ndarray:
    """``|r(fast) - r(slow)|`` per row (bidirectional learning progress before any bonus)."""
    smoothing = config.progress_smoothing
    return np.abs(reweight(rows["fast"], smoothing) - reweight(rows["slow"], smoothing))


def raw_learning_progress(
    rows: np.ndarray, config: LearningProgressConfig, noise: np.ndarray | None = None
) -> np.ndarray:
    """Raw learning-progress score of each row.

    ``noise`` is :func:`noise_learning_progress` of the rows (computed when needed and not
    given): with ``noise_discount`` c, bidirectional progress ``d`` is multiplied by
    ``d**2 / (d**2 + (c * noise)**2)``.
    """
    if config.use_bidirectional:
        lp = progress_difference(rows, config)
        if config.noise_discount:
            if noise is None:
                noise = noise_learning_progress(rows, config)
            signal = lp * lp
            total = signal + (config.noise_discount * noise) ** 2
            with np.errstate(divide="ignore", invalid="ignore"):
                lp = np.where(total > 0, lp * signal / total, 0.0)
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
    dead: np.ndarray | None = None,
    solved: np.ndarray | None = None,
    share: np.ndarray | None = None,
) -> np.ndarray:
    """Probabilities from raw scores; ``warm`` marks tasks whose score counts.

    ``min_spread`` is the smallest spread the warm scores are z-scored with (see
    :func:`noise_scale`); 0 z-scores them with their own standard deviation. Tasks marked
    ``solved`` or ``dead`` (see :mod:`~curriculum.algorithms.label_priors`) get next to no
    learning-progress weight (``SOLVED_WEIGHT`` and ``DEAD_WEIGHT`` times it): while any task
    is neither, the uniform share ``rand_task_rate`` is what samples them; when none is, solved
    tasks come before dead ones, each in the order of their z-scores. ``share`` multiplies each
    task's learning-progress weight and its part of the uniform share (flat labels' cap,
    :func:`~curriculum.algorithms.flat_labels.flat_label_share`); None: 1 for every task.
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
    if solved is not None:
        weights[solved] *= SOLVED_WEIGHT
    if dead is not None:
        weights[dead] *= DEAD_WEIGHT
    if share is not None:
        weights = weights * share
    total = weights.sum()
    probabilities = weights / total if total > 0 else np.full(n, 1.0 / n)
    rate = config.rand_task_rate
    if share is not None:
        return (1.0 - rate) * probabilities + rate * (share / share.sum())
    return (1.0 - rate) * probabilities + rate / n


def eviction_order(
    raw: np.ndarray,
    n_outcomes: np.ndarray,
    warm: np.ndarray,
    slots: np.ndarray,
    config: LearningProgressConfig,
    *,
    margin: np.ndarray | None = None,
    dead: np.ndarray | None = None,
) -> list[int]:
    """Slots that may be evicted: dead tasks first, then the rest, lowest score first.

    The threshold is the ``eviction_threshold_percentile`` quantile of the scores of all warm
    tasks (the whole pool's learning progress, not only of the tasks old enough to be evicted); a
    task may be evicted once it has ``min_presentations_for_eviction`` outcomes, its score is
    at or below that threshold, also when ``margin`` (a confidence margin per task) is added.
    Tasks marked ``dead`` (see :mod:`~curriculum.algorithms.label_priors`) with at least
    ``dead_task_outcomes`` outcomes come first, whatever their score.
    """
    eligible = n_outcomes >= config.min_presentations_for_eviction
    first = np.zeros(len(raw), bool)
    if dead is not None:
        first = dead & (n_outcomes >= config.dead_task_outcomes)
    if not eligible.any() and not first.any():
        return []
    regular = np.zeros(len(raw), bool)
    if eligible.any():
        reference = raw[warm] if warm.any() else raw[eligible]
        threshold = np.quantile(reference, config.eviction_threshold_percentile)
        upper = raw if margin is None else raw + margin
        regular = eligible & (upper <= threshold) & ~first
    ahead = np.flatnonzero(first)
    candidates = np.flatnonzero(regular)
    ahead = ahead[np.argsort(raw[ahead], kind="stable")]
    candidates = candidates[np.argsort(raw[candidates], kind="stable")]
    return slots[np.concatenate([ahead, candidates])].tolist()


@dataclass
class LearningProgressView(PoolView):
    """A learning-progress view; also counts the tasks of flat labels
    (:mod:`~curriculum.algorithms.flat_labels`)."""

    num_flat: int = 0

    def extra_stats(self) -> dict[str, float]:
        """``lp/num_flat``: warm continuous-score tasks sampled as progress-free (flat label)."""
        return {"lp/num_flat": float(self.num_flat)}


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
        noise = noise_learning_progress(rows, config)
        raw = raw_learning_progress(rows, config, noise)
        warm = rows["n_outcomes"] >= config.min_samples_for_lp
        flat = np.zeros(len(rows), bool)
        if config.use_bidirectional and config.flat_label_min_tasks:
            flat = flat_label_tasks(
                rows, progress_difference(rows, config), noise, warm, config.flat_label_min_tasks
            )
        # Flat labels' tasks sample as if their progress (and its noise) were 0, keeping any
        # performance bonus, and each flat label's tasks together weigh at most a mean label's
        # worth of tasks (flat_label_share); the eviction rule below still sees both.
        sampled_raw, sampled_noise = raw, noise
        if flat.any():
            bonus = config.performance_bonus_weight * rows["perf"]
            sampled_raw = np.where(flat, bonus, raw)
            sampled_noise = np.where(flat, 0.0, noise)
        floor = noise_scale(rows[warm], config, sampled_noise[warm])
        dead, solved = dead_and_solved_tasks(rows, snapshot.labels, config)
        margin = config.eviction_confidence * noise if config.eviction_confidence else None
        return LearningProgressView(
            snapshot=snapshot,
            active=active,
            probabilities=sampling_probabilities(
                sampled_raw,
                warm,
                config,
                floor,
                dead,
                solved,
                flat_label_share(rows, flat, config.flat_label_cap),
            ),
            raw_scores=raw,
            num_flat=int(np.count_nonzero(flat)),
            eviction_order=eviction_order(
                raw,
                rows["n_outcomes"],
                warm,
                active,
                config,
                margin=margin,
                dead=dead,
            ),
        )
