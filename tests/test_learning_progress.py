"""The statistics update and learning-progress scoring, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from backends.layout import empty_rows
from curriculum import LearningProgressConfig
from curriculum.algorithms.learning_progress import (
    ema_difference_variance,
    eviction_order,
    noise_learning_progress,
    noise_scale,
    raw_learning_progress,
    reweight,
    reweight_slope,
    sampling_probabilities,
)
from curriculum.config import LEARNING_PROGRESS_PRESETS
from curriculum.ema import EmaParams, apply_outcomes, rounds
from curriculum.errors import ConfigError

PARAMS = EmaParams(
    ema_timescale=0.5, slow_timescale_factor=0.5, task_tracker_ema_alpha=0.25, success_threshold=0.5
)


def feed(scores: list[float], params: EmaParams = PARAMS) -> np.ndarray:
    row = empty_rows(1)
    for score in scores:
        apply_outcomes(row, np.array([score]), params)
    return row


def test_first_outcome_sets_baseline_and_initialises_every_ema() -> None:
    row = feed([0.2])[0]
    assert row["baseline"] == pytest.approx(0.2)
    assert row["fast"] == row["slow"] == 0.0  # normalised: max(0.2 - 0.2, 0) / 0.8
    assert row["perf"] == row["reward"] == pytest.approx(0.2)
    assert row["reward_sq"] == pytest.approx(0.04)
    assert (row["n_outcomes"], row["n_success"]) == (1, 0)


def test_ema_sequence_matches_hand_computed_values() -> None:
    # s = 0.2, 1.0, 0.5 with a = 0.5, k = 0.5, b = 0.25 (worked by hand in the comments)
    row = feed([0.2, 1.0, 0.5])[0]
    assert row["baseline"] == pytest.approx(0.2)
    assert row["fast"] == pytest.approx(0.4375)  # 0 -> 0.5 -> 0.5 + 0.5 (0.375 - 0.5)
    assert row["slow"] == pytest.approx(0.28125)  # 0 -> 0.25 -> 0.25 + 0.25 (0.375 - 0.25)
    assert row["perf"] == pytest.approx(0.55)  # 0.2 -> 0.6 -> 0.6 + 0.5 (0.5 - 0.6)
    assert row["reward"] == pytest.approx(0.425)  # 0.2 -> 0.4 -> 0.4 + 0.25 (0.5 - 0.4)
    assert row["reward_sq"] == pytest.approx(0.2725)  # 0.04 -> 0.28 -> 0.28 + 0.25 (0.25 - 0.28)
    assert row["score_sum"] == pytest.approx(1.7)
    assert (row["n_outcomes"], row["n_success"]) == (3, 2)


def test_baseline_is_capped_so_a_first_success_still_leaves_room() -> None:
    row = feed([1.0, 0.875])[0]
    assert row["baseline"] == 0.75
    assert row["fast"] == pytest.approx(1.0 + 0.5 * (0.5 - 1.0))  # x = 0.125 / 0.25 = 0.5


def test_bidirectional_and_basic_scores_match_hand_computed_values() -> None:
    row = feed([0.2, 1.0, 0.5])
    bidirectional = LearningProgressConfig(progress_smoothing=0.0)
    assert raw_learning_progress(row, bidirectional)[0] == pytest.approx(0.4375 - 0.28125)
    smoothed = LearningProgressConfig(progress_smoothing=0.2)  # theta = 0.3
    fast = 0.4375 * 0.7 / (0.4375 + 0.3 * (1 - 2 * 0.4375))
    slow = 0.28125 * 0.7 / (0.28125 + 0.3 * (1 - 2 * 0.28125))
    assert raw_learning_progress(row, smoothed)[0] == pytest.approx(fast - slow)
    basic = LearningProgressConfig(use_bidirectional=False)
    assert raw_learning_progress(row, basic)[0] == pytest.approx(0.2725 - 0.425**2)
    bonus = LearningProgressConfig(progress_smoothing=0.0, performance_bonus_weight=2.0)
    assert raw_learning_progress(row, bonus)[0] == pytest.approx(0.15625 + 2.0 * 0.55)


def test_reweight_is_identity_without_smoothing_and_monotone_with_it() -> None:
    p = np.linspace(0.0, 1.0, 101)
    assert np.array_equal(reweight(p, 0.0), p)
    for smoothing in (0.1, 0.3, 0.49):
        r = reweight(p, smoothing)
        assert r[0] == 0.0 and r[-1] == pytest.approx(1.0)
        assert np.all(np.diff(r) > 0)
        assert np.all(r[1:50] > p[1:50])  # progress at low success rates is stretched


def test_sigmoid_probabilities_are_symmetric_around_the_mean() -> None:
    config = LearningProgressConfig(
        lp_score_temperature=0.0, z_score_amplification=1.0, rand_task_rate=0.0
    )
    p = sampling_probabilities(np.array([0.0, 1.0, 2.0]), np.ones(3, bool), config)
    assert p.sum() == pytest.approx(1.0)
    assert p[1] == pytest.approx(1.0 / 3.0)  # sigmoid(z) + sigmoid(-z) = 1, so the sum is 1.5
    assert p[2] == pytest.approx(1.0 / (1.0 + np.exp(-np.sqrt(1.5))) / 1.5)


def test_temperature_switches_to_softmax_of_z_scores() -> None:
    config = LearningProgressConfig(lp_score_temperature=0.5, rand_task_rate=0.0)
    p = sampling_probabilities(np.array([0.0, 1.0, 2.0]), np.ones(3, bool), config)
    z = np.array([-1.0, 0.0, 1.0]) * np.sqrt(1.5)
    expected = np.exp(z / 0.5) / np.exp(z / 0.5).sum()
    assert p == pytest.approx(expected)


def test_rand_task_rate_mixes_in_uniform_sampling() -> None:
    raw = np.array([0.0] * 9 + [5.0])
    warm = np.ones(10, bool)
    uniform = sampling_probabilities(raw, warm, LearningProgressConfig(rand_task_rate=1.0))
    assert uniform == pytest.approx(np.full(10, 0.1))
    mixed = sampling_probabilities(raw, warm, LearningProgressConfig(rand_task_rate=0.3))
    pure = sampling_probabilities(raw, warm, LearningProgressConfig(rand_task_rate=0.0))
    assert mixed == pytest.approx(0.7 * pure + 0.03)
    assert mixed.min() >= 0.03


def test_cold_tasks_are_weighted_on_the_same_scale_as_warm_ones() -> None:
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.exponential(0.05, 900), np.zeros(100)])
    warm = np.arange(1000) < 900
    config = LearningProgressConfig(
        exploration_bonus=0.0, rand_task_rate=0.0, lp_score_temperature=0.0
    )
    p = sampling_probabilities(raw, warm, config)
    cold_share = p[~warm].sum()
    # Cold tasks count like an average warm task: about their 10% share of the pool, not more.
    assert 0.05 < cold_share < 0.15
    keen = sampling_probabilities(raw, warm, config.model_copy(update={"exploration_bonus": 2.0}))
    assert keen[~warm].sum() > cold_share  # the bonus raises them, on the warm tasks' scale
    # with the softmax (the default), a cold task weighs what a warm task at the mean weighs
    softmax = LearningProgressConfig(exploration_bonus=0.0, rand_task_rate=0.0)
    at_mean = np.append(raw, raw[warm].mean())
    q = sampling_probabilities(at_mean, np.append(warm, True), softmax)
    assert q[~np.append(warm, True)] == pytest.approx(q[-1], rel=1e-3)


def test_all_cold_pool_is_sampled_uniformly() -> None:
    p = sampling_probabilities(np.zeros(8), np.zeros(8, bool), LearningProgressConfig())
    assert p == pytest.approx(np.full(8, 1 / 8))


def test_eviction_needs_presentations_and_a_low_score_within_the_whole_pool() -> None:
    config = LearningProgressConfig(
        min_presentations_for_eviction=5, eviction_threshold_percentile=0.5
    )
    raw = np.array([0.0, 0.1, 0.2, 0.3, 0.0, 0.9, 0.05, 0.6, 0.7, 0.8])
    n = np.array([5, 5, 5, 5, 4, 9, 3, 3, 3, 3])
    warm = n >= 3
    slots = np.arange(10, 20)
    order = eviction_order(raw, n, warm, slots, config)
    # the median over all warm tasks is 0.25: only eligible tasks at or below it qualify
    assert order == [10, 11, 12]  # lowest score first
    assert 14 not in order  # too few presentations, however low its score
    assert 13 not in order  # eligible, but above the pool's median
    young = np.array([9, 3, 3, 3, 3, 3, 3, 3, 3, 3])
    # the only eligible task is the best in the pool: it is not evicted for being the lowest
    # of the (one) eligible task
    high = np.array([0.9, 0.1, 0.2, 0.3, 0.0, 0.2, 0.05, 0.6, 0.7, 0.8])
    assert eviction_order(high, young, young >= 3, slots, config) == []
    assert eviction_order(raw, np.zeros(10, int), np.zeros(10, bool), slots, config) == []


def _learning_curve(steps: int, rng: np.random.Generator, params: EmaParams) -> np.ndarray:
    """Feed a task whose success rate rises from 0 to 1 over ``steps`` outcomes (60% of them)."""
    row = empty_rows(1)
    for step in range(int(steps * 0.6)):
        apply_outcomes(row, np.array([float(rng.random() < step / steps)]), params)
    return row


def ema_params(config: LearningProgressConfig) -> EmaParams:
    return EmaParams(
        config.ema_timescale,
        config.slow_timescale_factor,
        config.task_tracker_ema_alpha,
        config.success_threshold,
    )


def bernoulli_rows(p: list[float], outcomes: int, rng: np.random.Generator, params: EmaParams):
    """One row per success rate in ``p``, fed ``outcomes`` Bernoulli outcomes."""
    return np.concatenate(
        [feed([float(rng.random() < q) for _ in range(outcomes)], params) for q in p]
    )


@pytest.mark.parametrize(
    ("config", "steps", "margin"),
    [
        # the defaults follow tasks that improve by 2% per outcome (the quality benchmark's
        # student improves a task by about that much)...
        (LearningProgressConfig(), 50, 1.5),
        # ... the slower EMAs of the reference preset also separate 1% per outcome
        (LearningProgressConfig.preset("reference"), 100, 1.2),
    ],
)
def test_learning_tasks_outscore_flat_impossible_and_mastered_ones(
    config: LearningProgressConfig, steps: int, margin: float
) -> None:
    params = ema_params(config)
    rng = np.random.default_rng(1)
    learning = np.concatenate([_learning_curve(steps, rng, params) for _ in range(20)])
    flat = bernoulli_rows([0.5] * 20, 60, rng, params)
    impossible = feed([0.0] * 60, params)
    mastered = feed([1.0] * 60, params)
    lp_learning = raw_learning_progress(learning, config)
    lp_flat = raw_learning_progress(flat, config)
    assert lp_learning.mean() > margin * lp_flat.mean()
    assert raw_learning_progress(impossible, config)[0] == 0.0
    assert raw_learning_progress(mastered, config)[0] == 0.0
    rows = np.concatenate([learning, flat, impossible, mastered])
    warm = np.ones(len(rows), bool)
    raw = raw_learning_progress(rows, config)
    p = sampling_probabilities(raw, warm, config, noise_scale(rows, config))
    assert p[:20].mean() > p[20:40].mean() > p[40:].mean()


def test_reweight_slope_is_the_derivative_of_the_reweighting() -> None:
    p = np.linspace(0.01, 0.99, 50)
    assert np.array_equal(reweight_slope(p, 0.0), np.ones(50))
    for smoothing in (0.1, 0.3, 0.45):
        h = 1e-6
        numeric = (reweight(p + h, smoothing) - reweight(p - h, smoothing)) / (2 * h)
        assert reweight_slope(p, smoothing) == pytest.approx(numeric, rel=1e-5)


def test_noise_of_a_stationary_task_matches_the_ema_difference_variance() -> None:
    config = LearningProgressConfig(progress_smoothing=0.0)
    params = ema_params(config)
    rng = np.random.default_rng(0)
    row = empty_rows(1)
    differences = []
    for i in range(40_000):
        apply_outcomes(row, np.array([float(rng.random() < 0.3)]), params)
        if i >= 200:
            differences.append(row["fast"][0] - row["slow"][0])
    rate = config.ema_timescale
    expected = 0.3 * 0.7 * ema_difference_variance(rate, rate * config.slow_timescale_factor)
    assert np.var(differences) == pytest.approx(expected, rel=0.1)
    # the per-row estimate uses the reward EMAs' variance instead of the true 0.21
    estimate = noise_learning_progress(row, config)[0] ** 2
    assert estimate == pytest.approx(expected, rel=0.6)
    basic = LearningProgressConfig(use_bidirectional=False)
    assert noise_learning_progress(row, basic)[0] == 0.0 and noise_scale(row, basic) == 0.0


def test_noise_floor_keeps_sampling_broad_when_no_task_progresses() -> None:
    config = LearningProgressConfig(rand_task_rate=0.0)
    rng = np.random.default_rng(0)
    rows = bernoulli_rows([0.5] * 20 + [0.95] * 20, 80, rng, ema_params(config))
    raw, warm = raw_learning_progress(rows, config), np.ones(40, bool)
    unfloored = config.model_copy(update={"noise_floor": 0.0})
    assert noise_scale(rows, unfloored) == 0.0
    without = sampling_probabilities(raw, warm, unfloored, noise_scale(rows, unfloored))
    floored = sampling_probabilities(raw, warm, config, noise_scale(rows, config))
    assert noise_scale(rows, config) > raw.std()  # noise is all there is to see
    # without the floor the noisiest tasks take the episodes; with it, the others keep some
    assert without[20:].sum() < 0.01 < 0.05 < floored[20:].sum()
    assert floored.max() < 0.6 * without.max()


def test_noise_floor_leaves_real_progress_ahead() -> None:
    config = LearningProgressConfig(rand_task_rate=0.0)
    params = ema_params(config)
    rng = np.random.default_rng(0)
    flat = bernoulli_rows([0.5] * 20 + [0.95] * 20, 80, rng, params)
    learning = np.concatenate([_learning_curve(50, rng, params) for _ in range(5)])
    rows = np.concatenate([flat, learning])
    raw, warm = raw_learning_progress(rows, config), np.ones(45, bool)
    unfloored = config.model_copy(update={"noise_floor": 0.0})
    without = sampling_probabilities(raw, warm, unfloored)
    floored = sampling_probabilities(raw, warm, config, noise_scale(rows, config))
    # the 5 learning tasks (11% of the pool) keep several times their share of the episodes
    assert without[40:].sum() > floored[40:].sum() > 3 * 5 / 45
    assert floored[40:].mean() > 3 * floored[:40].mean()


def test_presets_are_named_configs_with_overrides() -> None:
    assert LearningProgressConfig.preset("default") == LearningProgressConfig()
    for name, values in LEARNING_PROGRESS_PRESETS.items():
        config = LearningProgressConfig.preset(name, session_id="exp1")
        assert config.session_id == "exp1"
        assert all(getattr(config, key) == value for key, value in values.items())
    assert LearningProgressConfig.preset("fast", ema_timescale=0.5).ema_timescale == 0.5
    reference = LearningProgressConfig.preset("reference")
    assert (reference.ema_timescale, reference.slow_timescale_factor) == (0.1, 0.2)
    assert reference.lp_score_temperature == 0.0 and reference.noise_floor == 0.0
    with pytest.raises(ConfigError, match=r"'nope'.*'stable'"):
        LearningProgressConfig.preset("nope")
    with pytest.raises(ConfigError, match="ema_timescale"):
        LearningProgressConfig.preset("stable", ema_timescale=2.0)


def test_rounds_keep_per_slot_order_and_cover_every_position() -> None:
    slots = np.array([3, 1, 3, 2, 3, 1])
    parts = rounds(slots)
    assert [slots[p].tolist() for p in parts] == [[3, 1, 2], [3, 1], [3]]
    assert sorted(np.concatenate(parts).tolist()) == list(range(6))
    for part in parts:
        assert len(set(slots[part].tolist())) == len(part)


def test_batched_application_equals_sequential_application() -> None:
    rng = np.random.default_rng(2)
    slots = rng.integers(0, 5, 200)
    scores = rng.random(200)
    sequential = empty_rows(5)
    for slot, score in zip(slots, scores, strict=True):
        one = sequential[[slot]]
        apply_outcomes(one, np.array([score]), PARAMS)
        sequential[slot] = one[0]
    batched = empty_rows(5)
    for part in rounds(slots):
        chunk = batched[slots[part]]
        apply_outcomes(chunk, scores[part], PARAMS)
        batched[slots[part]] = chunk
    for field in sequential.dtype.names:
        assert np.array_equal(sequential[field], batched[field]), field
