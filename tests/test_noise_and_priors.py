"""Noise-aware learning progress and label priors (curriculum/algorithms: progress_noise,
label_priors, and their use in learning-progress sampling and eviction)."""

from __future__ import annotations

import numpy as np
import pytest

from backends.layout import LABEL_DTYPE, empty_rows
from curriculum import LearningProgressConfig
from curriculum.algorithms.label_priors import (
    dead_and_solved_tasks,
    label_success_rates,
    task_success_rates,
)
from curriculum.algorithms.learning_progress import (
    ema_difference_variance,
    eviction_order,
    noise_learning_progress,
    raw_learning_progress,
    sampling_probabilities,
    score_variance,
)
from curriculum.algorithms.progress_noise import (
    ema_difference_variance_after,
    ema_weight_square_sum,
)
from curriculum.ema import EmaParams, apply_outcomes

CONFIG = LearningProgressConfig()
PARAMS = EmaParams(
    CONFIG.ema_timescale,
    CONFIG.slow_timescale_factor,
    CONFIG.task_tracker_ema_alpha,
    CONFIG.success_threshold,
)


def feed_many(scores: np.ndarray, label_id: int = 0) -> np.ndarray:
    """One row per line of ``scores`` (tasks x outcomes), every outcome applied in order."""
    rows = empty_rows(len(scores))
    rows["task_id"] = np.arange(len(scores))
    rows["label_id"] = label_id
    for column in scores.T:
        apply_outcomes(rows, column, PARAMS)
    return rows


def labels(*records: tuple[int, int]) -> np.ndarray:
    """A label table with (completions, successes) per label id."""
    table = np.zeros(len(records), dtype=LABEL_DTYPE)
    for i, (completions, successes) in enumerate(records):
        table[i]["completions"], table[i]["successes"] = completions, successes
    return table


# -- how much learning progress noise alone gives ------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_ema_difference_variance_after_n_outcomes_matches_simulation(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = 0.2, 0.07
    fast = np.zeros(200_000)  # both EMAs start at the first outcome (a constant)
    slow = np.zeros(200_000)
    for _ in range(n - 1):
        x = rng.standard_normal(len(fast))
        fast += a * (x - fast)
        slow += b * (x - slow)
    assert np.var(fast - slow) == pytest.approx(
        ema_difference_variance_after(np.array([n]), a, b)[0], rel=0.03
    )
    assert ema_difference_variance_after(np.array([1]), a, b)[0] == 0.0
    far = ema_difference_variance_after(np.array([10_000]), a, b)[0]
    assert far == pytest.approx(ema_difference_variance(a, b))


def test_score_variance_is_corrected_for_few_outcomes() -> None:
    rng = np.random.default_rng(0)
    rate = CONFIG.task_tracker_ema_alpha
    for n in (2, 4, 8):
        rows = feed_many((rng.random((20_000, n)) < 0.3).astype(float))
        corrected = score_variance(rows, rate)
        assert corrected.mean() == pytest.approx(0.21, rel=0.05)
        assert score_variance(rows).mean() < 0.75 * 0.21  # the raw EMAs underestimate it
    one = feed_many(np.array([[1.0]]))
    assert score_variance(one, rate)[0] == 0.0 and ema_weight_square_sum(np.array([1]), rate) == 1


def test_continuous_scores_are_stretched_by_their_baseline_binary_ones_are_not() -> None:
    rng = np.random.default_rng(1)
    binary = feed_many((rng.random((1, 50)) < 0.5).astype(float))
    binary_first_success = feed_many(np.array([[1.0] + [0.0, 1.0] * 20]))
    assert binary_first_success["baseline"][0] == 0.75
    for rows in (binary, binary_first_success):
        plain = np.maximum(rows["reward_sq"] - rows["reward"] ** 2, 0.0)
        assert score_variance(rows) == pytest.approx(plain)
    continuous = feed_many(np.array([[0.5, *np.clip(0.5 + 0.2 * rng.random(50), 0, 1)]]))
    plain = np.maximum(continuous["reward_sq"] - continuous["reward"] ** 2, 0.0)
    assert score_variance(continuous) == pytest.approx(plain / 0.25)


# -- finding: continuous noise read as progress, and evictions it caused --------------------------


def noisy_scores(p: np.ndarray, rng: np.random.Generator, noise: float = 0.2) -> np.ndarray:
    return np.clip(p + noise * rng.standard_normal(p.shape), 0.0, 1.0)


def test_noisy_but_flat_tasks_score_lower_than_truly_improving_ones() -> None:
    rng = np.random.default_rng(2)
    steps = np.linspace(0.0, 0.6, 30)  # success rising by 2% per outcome
    improving = feed_many(noisy_scores(np.tile(steps, (200, 1)), rng))
    flat = feed_many(noisy_scores(np.full((200, 30), 0.3), rng))
    impossible = feed_many(noisy_scores(np.zeros((200, 30)), rng))
    lp = {
        name: raw_learning_progress(rows, CONFIG).mean()
        for name, rows in (("improving", improving), ("flat", flat), ("impossible", impossible))
    }
    assert lp["improving"] > 2 * lp["flat"] and lp["improving"] > 2 * lp["impossible"]

    # a flat task's progress is within its own noise; an improving task's is well above it
    def signal_to_noise(rows: np.ndarray) -> float:
        ratio = raw_learning_progress(rows, CONFIG) / noise_learning_progress(rows, CONFIG)
        return float(np.median(ratio))

    assert signal_to_noise(flat) < 1 < 2 < signal_to_noise(improving)


def test_noisy_flat_tasks_are_not_evicted_for_dips_within_their_noise() -> None:
    rng = np.random.default_rng(3)
    flat = feed_many(noisy_scores(np.full((60, 20), 0.3), rng))
    steps = np.linspace(0.0, 0.4, 20)
    improving = feed_many(noisy_scores(np.tile(steps, (40, 1)), rng))
    impossible = feed_many(np.zeros((10, 20)))  # binary: always 0, no noise at all
    rows = np.concatenate([flat, improving, impossible])
    slots = np.arange(len(rows))
    warm = rows["n_outcomes"] >= CONFIG.min_samples_for_lp

    def order(config: LearningProgressConfig) -> list[int]:
        raw = raw_learning_progress(rows, config)
        margin = config.eviction_confidence * noise_learning_progress(rows, config)
        return eviction_order(raw, rows["n_outcomes"], warm, slots, config, margin=margin)

    without = order(CONFIG.model_copy(update={"eviction_confidence": 0.0}))
    assert sum(slot < 60 for slot in without) > 10  # noise alone made flat tasks evictable
    evicted = order(CONFIG)
    assert CONFIG.eviction_confidence > 0
    assert sum(slot < 60 for slot in evicted) <= 2
    assert set(range(100, 110)) <= set(evicted)  # tasks with no progress and no noise still go


# -- finding: episodes on impossible tasks (label priors) -----------------------------------------


def test_task_rates_shrink_towards_the_label_and_one_lucky_success_does_not_revive() -> None:
    # label 0: 1,000 failures of evicted tasks, then 1 success in 20 of its live task;
    # label 1: 40% success; label 2: 1,000 failures of evicted tasks, then 3 successes in 5
    table = labels((1021, 1), (400, 160), (1005, 3))
    rows = empty_rows(4)
    rows["task_id"] = np.arange(4)
    rows["label_id"] = [0, 0, 1, 2]
    rows["n_outcomes"] = [0, 20, 0, 5]
    rows["n_success"] = [0, 1, 0, 3]
    rates = task_success_rates(rows, table)
    label_rate = label_success_rates(table, rows)
    assert rates[0] == pytest.approx(label_rate[0]) and label_rate[0] < 0.02  # cold: the label's
    assert rates[2] == pytest.approx(label_rate[2]) == pytest.approx(17 / 42)  # history: 0.1 each
    config = LearningProgressConfig(dead_label_rate=0.05)
    dead, solved = dead_and_solved_tasks(rows, table, config)
    assert dead.tolist() == [True, True, False, False]  # 1 in 20: still dead; 3 in 5: alive
    assert not solved.any()


def test_label_history_counts_less_than_the_live_tasks() -> None:
    # 1,000 failures of evicted tasks, then the live tasks of the label start to succeed
    rows = empty_rows(3)
    rows["task_id"], rows["label_id"] = np.arange(3), 0
    rows["n_outcomes"], rows["n_success"] = 10, 6
    table = labels((1030, 18))
    assert 18 / 1030 < 0.05  # dead by the plain totals
    assert label_success_rates(table, rows)[0] > 0.1  # not dead: the live tasks weigh more


def test_uninformative_labels_leave_every_task_to_its_own_outcomes() -> None:
    rng = np.random.default_rng(4)
    rows = feed_many((rng.random((50, 6)) < 0.3).astype(float))
    table = labels((300, int(rows["n_success"].sum())))
    dead, solved = dead_and_solved_tasks(rows, table, LearningProgressConfig(dead_label_rate=0.05))
    assert not dead.any() and not solved.any()


def pool_with_a_dead_label(failures: int) -> tuple[np.ndarray, np.ndarray]:
    """Label 0 ("impossible": never solved in 300 outcomes), label 1 (graded, 40% success).
    Rows: an impossible and a hard learnable task, each with ``failures`` failures, then warm
    learnable tasks, then one cold task of each label."""
    zeros = np.zeros((1, failures))
    rng = np.random.default_rng(5)
    impossible = feed_many(zeros, label_id=0)
    hard = feed_many(zeros, label_id=1)
    learning = feed_many(noisy_scores(np.tile(np.linspace(0, 0.5, 8), (6, 1)), rng), 1)
    cold = empty_rows(2)
    cold["label_id"] = [0, 1]
    rows = np.concatenate([impossible, hard, learning, cold])
    rows["task_id"] = np.arange(len(rows))
    return rows, labels((300, 0), (300, 120))


def test_an_impossible_task_with_k_failures_is_evicted_before_a_learnable_one() -> None:
    config = LearningProgressConfig(dead_label_rate=0.05)
    k = config.dead_task_outcomes
    assert k < config.min_presentations_for_eviction
    rows, table = pool_with_a_dead_label(k)
    dead, _ = dead_and_solved_tasks(rows, table, config)
    raw = raw_learning_progress(rows, config)
    warm = rows["n_outcomes"] >= config.min_samples_for_lp
    slots = np.arange(len(rows))
    order = eviction_order(raw, rows["n_outcomes"], warm, slots, config, dead=dead)
    assert order == [0]  # the hard learnable task (1) failed as often, but its label succeeds
    fewer, _ = pool_with_a_dead_label(k - 1)
    dead_fewer, _ = dead_and_solved_tasks(fewer, table, config)
    assert eviction_order(raw, fewer["n_outcomes"], warm, slots, config, dead=dead_fewer) == []
    off = LearningProgressConfig(dead_label_rate=0.0)
    assert not dead_and_solved_tasks(rows, table, off)[0].any()


def test_tasks_of_a_dead_label_get_only_the_uniform_share() -> None:
    config = LearningProgressConfig(dead_label_rate=0.05)
    rows, table = pool_with_a_dead_label(4)
    dead, solved = dead_and_solved_tasks(rows, table, config)
    raw = raw_learning_progress(rows, config)
    warm = rows["n_outcomes"] >= config.min_samples_for_lp
    p = sampling_probabilities(raw, warm, config, 0.0, dead, solved)
    uniform = config.rand_task_rate / len(rows)
    assert p[0] == pytest.approx(uniform, rel=0.01)  # warm impossible task
    assert p[-2] == pytest.approx(uniform, rel=0.01)  # cold task of the dead label: no bonus
    assert p[-1] > 3 * uniform  # cold task of a live label: explored
    before = sampling_probabilities(raw, warm, config.model_copy(update={"dead_label_rate": 0}))
    assert before[-2] > 3 * uniform


def test_solved_tasks_come_before_dead_ones_and_both_keep_their_order() -> None:
    config = LearningProgressConfig(rand_task_rate=0.0)
    raw = np.array([0.0, 0.1, 0.3, 0.2])
    warm = np.ones(4, bool)
    dead = np.array([True, True, False, False])
    solved = np.array([False, False, True, True])
    p = sampling_probabilities(raw, warm, config, 0.0, dead, solved)
    plain = sampling_probabilities(raw, warm, config)
    assert p[2:].sum() > 0.99  # no task is promising: the solved ones first...
    assert p[2:] / p[2:].sum() == pytest.approx(plain[2:] / plain[2:].sum())  # ... in order
    assert p[1] > p[0] > 0
    promising = np.array([False, False, False, True])
    q = sampling_probabilities(raw, warm, config, 0.0, dead, solved & ~promising)
    assert q[3] > 0.99
