"""How much learning progress outcome noise alone gives a task (pure, vectorised numpy).

A task whose success rate does not change still shows ``|fast - slow| > 0``: the two EMAs of its
noisy outcomes differ by chance. :func:`noise_learning_progress` estimates, per task, the root
mean square of that difference from the task's own statistics: the variance of its scores (the
reward EMAs, corrected for how few outcomes they have averaged) times the variance of a
difference of two EMAs after that many outcomes (both start at the first outcome, so the
difference grows from 0), through the slope of the progress-smoothing reweighting.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from curriculum.config import LearningProgressConfig


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


def _weight_products(rate1: float, rate2: float, m: np.ndarray) -> np.ndarray:
    """``sum over j < m of rate1 (1 - rate1)**j * rate2 (1 - rate2)**j`` (a geometric sum; for
    rates so small that ``(1 - rate1)(1 - rate2)`` rounds to 1, ``rate1 rate2 m``)."""
    q = (1.0 - rate1) * (1.0 - rate2)
    if 1.0 - q <= 0.0:
        return rate1 * rate2 * m
    return rate1 * rate2 * (1.0 - q**m) / (1.0 - q)


def ema_weight_square_sum(n: np.ndarray, rate: float) -> np.ndarray:
    """Sum of the squared weights of an EMA of rate ``rate`` over ``n >= 1`` outcomes that
    starts at the first outcome (1 for one outcome; ``rate / (2 - rate)`` in the limit)."""
    m = np.maximum(n, 1) - 1.0
    return (1.0 - rate) ** (2 * m) + _weight_products(rate, rate, m)


def ema_difference_variance_after(n: np.ndarray, fast_rate: float, slow_rate: float) -> np.ndarray:
    """Variance of ``fast EMA - slow EMA`` after ``n >= 1`` outcomes, both EMAs starting at the
    first outcome, when every later outcome has unit variance (0 after one outcome;
    :func:`ema_difference_variance` in the limit).

    The first outcome carries no noise into the EMAs: it sets the baseline, and its normalised
    score, where both EMAs start, is always 0.
    """
    a, b = fast_rate, slow_rate
    m = np.maximum(n, 1) - 1.0
    later = _weight_products(a, a, m) - 2.0 * _weight_products(a, b, m) + _weight_products(b, b, m)
    return np.maximum(later, 0.0)


def score_variance(rows: np.ndarray, rate: float | None = None) -> np.ndarray:
    """Each row's variance of the normalised score ``x`` the EMAs average, estimated from the
    reward EMAs (``reward_sq - reward**2``, the variance of the raw score ``s``).

    With ``rate`` (the reward EMAs' rate), the estimate is divided by ``1 - sum of squared
    weights`` (:func:`ema_weight_square_sum`): an EMA that has seen few outcomes underestimates
    the variance (after one outcome it is 0; that row's estimate stays 0).

    For scores that were only ever 0 or 1 (then ``reward == reward_sq``), ``x`` is ``s`` (or 0
    when ``s`` is at most the baseline), so the variance is that of ``s``. Other scores are
    stretched by ``1 / (1 - baseline)`` on their way to ``x``: their variance is divided by
    ``(1 - baseline)**2`` (an upper estimate: scores under the baseline are clipped to 0).
    """
    variance = np.maximum(rows["reward_sq"] - rows["reward"] ** 2, 0.0)
    continuous = rows["reward"] - rows["reward_sq"] > 1e-9
    stretch = np.where(continuous, 1.0 / (1.0 - rows["baseline"]) ** 2, 1.0)
    if rate is not None:
        n = rows["n_outcomes"].astype(np.float64)
        spread = 1.0 - ema_weight_square_sum(n, rate)
        stretch = stretch * np.where(n > 1, 1.0 / np.maximum(spread, 1e-12), 0.0)
    return variance * stretch


def noise_learning_progress(rows: np.ndarray, config: LearningProgressConfig) -> np.ndarray:
    """Bidirectional learning progress that outcome noise alone gives each row (its RMS).

    For a task whose success rate is not changing, ``fast - slow`` is a zero-mean difference of
    two EMAs of its outcomes. With the outcome variance ``v`` estimated by the reward EMAs
    (:func:`score_variance`, corrected for few outcomes), its root mean square is
    ``sqrt(v * D(n))`` (:func:`ema_difference_variance_after` ``n`` outcomes), times the slope
    of the progress-smoothing reweighting at the slow EMA. Zero for basic scoring (which has no
    floor).
    """
    if not config.use_bidirectional:
        return np.zeros(len(rows))
    rate = config.ema_timescale
    n = rows["n_outcomes"].astype(np.float64)
    spread = ema_difference_variance_after(n, rate, rate * config.slow_timescale_factor)
    variance = score_variance(rows, config.task_tracker_ema_alpha)
    return np.sqrt(variance * spread) * reweight_slope(rows["slow"], config.progress_smoothing)


def significance(progress: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``progress / noise`` per task: how many noise spreads its learning progress is from 0
    (0 when both are 0, inf when only the noise is)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = progress / noise
    return np.where(progress > 0, np.where(noise > 0, ratio, np.inf), 0.0)


@functools.lru_cache(maxsize=64)
def discounted_noise_factor(discount: float) -> float:
    """RMS of pure-noise learning progress after the noise discount, relative to before.

    A task that does not learn shows ``d = sd * |N|`` with ``N`` standard normal; discounted it
    scores ``sd * |N|**3 / (N**2 + c**2)``. Returns ``sqrt(E[N**6 / (N**2 + c**2)**2])``
    (1 without a discount), by Gauss-Hermite quadrature.
    """
    if discount <= 0:
        return 1.0
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    values = nodes**6 / (nodes**2 + discount**2) ** 2
    return float(np.sqrt((weights * values).sum() / weights.sum()))
