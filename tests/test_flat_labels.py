"""Flat labels (curriculum/algorithms/flat_labels.py): continuous-score tasks whose label shows,
pooled, no more learning progress than noise are sampled as progress-free; eviction is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from test_noise_and_priors import CONFIG, feed_many

from backends.base import PoolSnapshot
from backends.layout import empty_rows
from curriculum import Curriculum, CurriculumConfig, LearningProgressConfig
from curriculum.algorithms.flat_labels import (
    FLAT_CONFIDENCE,
    continuous_rows,
    flat_label_share,
    flat_label_tasks,
)
from curriculum.algorithms.learning_progress import (
    LearningProgressAlgorithm,
    noise_learning_progress,
    progress_difference,
)
from curriculum.simulation import IMPOSSIBLE, SimulatedStudent, task_space


def feed(scores: np.ndarray, label_id: int, first_task: int = 0) -> np.ndarray:
    """One row per line of ``scores`` (tasks x outcomes), every outcome applied in order."""
    rows = feed_many(scores, label_id)
    rows["task_id"] += first_task
    return rows


def clipped_noise(rng: np.random.Generator, tasks: int, outcomes: int, mean: float = 0.0):
    """Scores ``clip(mean + 0.2 N(0, 1), 0, 1)``: what an impossible task (mean 0) reports."""
    return np.clip(mean + 0.2 * rng.standard_normal((tasks, outcomes)), 0.0, 1.0)


def rising(rng: np.random.Generator, tasks: int, outcomes: int) -> np.ndarray:
    """Continuous scores of tasks being learned: the mean climbs from 0.1 to 0.9."""
    return clipped_noise(rng, tasks, outcomes) + np.linspace(0.1, 0.9, outcomes)


def flags(rows: np.ndarray, min_tasks: int = 8, warm: np.ndarray | None = None) -> np.ndarray:
    noise = noise_learning_progress(rows, CONFIG)
    warm = rows["n_outcomes"] >= CONFIG.min_samples_for_lp if warm is None else warm
    return flat_label_tasks(rows, progress_difference(rows, CONFIG), noise, warm, min_tasks)


def test_a_label_of_pure_noise_is_flat_and_a_learning_one_is_not() -> None:
    rng = np.random.default_rng(0)
    noise_only = feed(clipped_noise(rng, 200, 20), label_id=0)
    learning = feed(np.clip(rising(rng, 30, 20), 0, 1), label_id=1, first_task=200)
    rows = np.concatenate([noise_only, learning])
    flat = flags(rows)
    assert flat[:200].all()
    assert not flat[200:].any()


def test_binary_scores_are_never_judged() -> None:
    rng = np.random.default_rng(1)
    coin = (rng.random((100, 20)) < 0.5).astype(float)  # flat, but 0/1: its variance is the cue
    rows = feed(coin, label_id=0)
    assert not continuous_rows(rows).any()
    assert not flags(rows).any()


def continuous_label(tasks: int) -> np.ndarray:
    """``tasks`` rows of one label with continuous scores (statistics set by hand)."""
    rows = empty_rows(tasks)
    rows["label_id"] = 0
    rows["reward"], rows["reward_sq"] = 0.1, 0.02
    return rows


def test_small_labels_cold_tasks_and_a_zero_minimum_are_left_alone() -> None:
    rows = continuous_label(7)
    noise, progress, warm = np.full(7, 0.05), np.full(7, 0.01), np.ones(7, bool)  # Q = 0.04
    assert not flat_label_tasks(rows, progress, noise, warm, 8).any()  # too few to judge
    assert flat_label_tasks(rows, progress, noise, warm, 7).all()
    assert not flat_label_tasks(rows, progress, noise, warm, 0).any()
    assert not flat_label_tasks(rows, progress, noise, np.zeros(7, bool), 7).any()


def test_the_margin_needs_more_evidence_from_fewer_tasks() -> None:
    # Hand-set progress: every task's squared progress is 0.7 of its noise's (Q = 0.7).
    rows = continuous_label(400)
    noise = np.full(400, 0.05)
    progress = np.sqrt(0.7) * noise
    warm = np.ones(400, bool)
    few = flat_label_tasks(rows[:20], progress[:20], noise[:20], warm[:20], 8)
    many = flat_label_tasks(rows, progress, noise, warm, 8)
    assert FLAT_CONFIDENCE == 4.0
    assert not few.any()  # 0.7 * (1 + 4 sqrt(2 / 20)) > 1: could be noise, or not
    assert many.all()  # 0.7 * (1 + 4 sqrt(2 / 400)) < 1


def snapshot_of(rows: np.ndarray) -> PoolSnapshot:
    return PoolSnapshot(1, rows, np.zeros(0), [], {})


def test_flat_tasks_sample_as_progress_free_and_eviction_is_unchanged() -> None:
    rng = np.random.default_rng(3)
    impossible = feed(clipped_noise(rng, 120, 25), label_id=0)
    learning = feed(np.clip(rising(rng, 20, 25), 0, 1), label_id=1, first_task=120)
    rows = np.concatenate([impossible, learning])
    on = LearningProgressAlgorithm(LearningProgressConfig()).view(snapshot_of(rows.copy()))
    off_config = LearningProgressConfig(flat_label_min_tasks=0)
    off = LearningProgressAlgorithm(off_config).view(snapshot_of(rows.copy()))
    assert on.extra_stats()["lp/num_flat"] == 120
    assert off.extra_stats()["lp/num_flat"] == 0
    # The impossible label loses most of its share; uniform mixing still reaches it (capped
    # to a mean label's worth of tasks: 70 of its 120).
    assert on.probabilities[:120].sum() < 0.5 * off.probabilities[:120].sum()
    uniform = CONFIG.rand_task_rate * (70 / 120) / (70 + 20)
    assert on.probabilities[:120].min() >= uniform * (1 - 1e-9)
    assert on.probabilities.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(on.raw_scores, off.raw_scores)
    assert on.eviction_order == off.eviction_order


def test_basic_scoring_has_no_flat_labels() -> None:
    rng = np.random.default_rng(4)
    rows = feed(clipped_noise(rng, 50, 12), label_id=0)
    view = LearningProgressAlgorithm(LearningProgressConfig(use_bidirectional=False)).view(
        snapshot_of(rows)
    )
    assert view.extra_stats()["lp/num_flat"] == 0


def test_a_flat_label_weighs_at_most_a_mean_labels_worth_of_tasks() -> None:
    # A large flat label (400 tasks of noise), a small flat one (40) and a learning one (60):
    # the mean label has 500 / 3 tasks, so the large label's tasks weigh 500 / 3 / 400 each.
    rng = np.random.default_rng(7)
    large = feed(clipped_noise(rng, 400, 25), label_id=0)
    small = feed(clipped_noise(rng, 40, 25), label_id=1, first_task=400)
    learning = feed(np.clip(rising(rng, 60, 25), 0, 1), label_id=2, first_task=440)
    rows = np.concatenate([large, small, learning])
    flat = flags(rows)
    assert flat[:440].all() and not flat[440:].any()
    share = flat_label_share(rows, flat, LearningProgressConfig().flat_label_cap)
    assert LearningProgressConfig().flat_label_cap == 1.0
    np.testing.assert_allclose(share[:400], 500 / 3 / 400)
    np.testing.assert_array_equal(share[400:], 1.0)
    assert flat_label_share(rows, np.zeros(len(rows), bool), 1.0) is None
    assert flat_label_share(rows, flat, 0.0) is None  # 0: no cap

    p = LearningProgressAlgorithm(LearningProgressConfig()).view(snapshot_of(rows)).probabilities
    # Both flat labels sample as progress-free: without the cap every flat task would have the
    # same probability; with it the large label together weighs 500 / 3 tasks of the small one,
    # in the learning-progress weights and the uniform share alike.
    assert p[:400].sum() == pytest.approx(500 / 3 * p[400:440].mean(), rel=1e-9)
    assert p[:400].max() < 0.5 * p[400:440].min()
    assert p[:440].sum() < 0.5 * p[440:].sum()
    assert p.sum() == pytest.approx(1.0)


def test_cold_tasks_and_unlabelled_tasks_are_not_capped() -> None:
    rows = continuous_label(300)
    rows["label_id"][:100] = -1  # unlabelled tasks are never flat nor counted in the mean
    rows["label_id"][100:120] = 1
    flat = np.zeros(300, bool)
    flat[150:] = True  # 150 warm tasks of label 0; its 30 others are cold
    share = flat_label_share(rows, flat, 1.0)
    # mean label size (200 labelled tasks, 2 labels) = 100, over 150 flat tasks
    np.testing.assert_allclose(share[150:], 100 / 150)
    np.testing.assert_array_equal(share[:150], 1.0)


def impossible_share(flat_label_min_tasks: int, flat_label_cap: float = 1.0) -> float:
    """A short deterministic run of a noisy continuous-score student: 300 tasks, 40% impossible."""
    student = SimulatedStudent(learning_rate=0.002, noise=0.2)
    config = CurriculumConfig(
        task_generator=task_space(0.4, 0.1),
        num_active_tasks=300,
        deterministic=True,
        seed=5,
        algorithm_config=LearningProgressConfig(
            flat_label_min_tasks=flat_label_min_tasks, flat_label_cap=flat_label_cap
        ),
    )
    rng = np.random.default_rng(5)
    with Curriculum(config) as curriculum:
        for _ in range(12_000):
            task = curriculum.get_task()
            curriculum.update_task_performance(task.task_id, student.play(task.get_env_cfg(), rng))
        flat = curriculum.stats()["lp/num_flat"]
    assert (flat > 0) == (flat_label_min_tasks > 0)
    counts = student.category_counts()
    return counts[IMPOSSIBLE] / counts.sum()


def test_continuous_scores_of_impossible_tasks_are_not_read_as_progress() -> None:
    # Before flat labels, clipped noise on impossible tasks drew about their share of the pool.
    without = impossible_share(0)
    with_flat = impossible_share(8)
    assert without > 0.25
    assert with_flat < 0.5 * without
    # Without the cap, the impossible label (40% of the pool) kept its share of the uniform
    # part and of the progress-free weight.
    uncapped = impossible_share(8, flat_label_cap=0.0)
    assert with_flat < 0.75 * uncapped


def test_a_flat_task_keeps_its_performance_bonus() -> None:
    rng = np.random.default_rng(6)
    rows = feed(clipped_noise(rng, 120, 25, mean=0.5), label_id=0)
    config = LearningProgressConfig(performance_bonus_weight=1.0)
    plain = LearningProgressConfig(performance_bonus_weight=1.0, flat_label_min_tasks=0)
    view = LearningProgressAlgorithm(config).view(snapshot_of(rows.copy()))
    assert view.extra_stats()["lp/num_flat"] == 120
    # every task is flat: each samples by its bonus alone, so the best performer comes first
    order = np.argsort(rows["perf"])
    assert np.all(np.diff(view.probabilities[order]) >= -1e-12)
    assert not np.allclose(view.probabilities, view.probabilities[0])
    unflat = LearningProgressAlgorithm(plain).view(snapshot_of(rows.copy()))
    assert unflat.extra_stats()["lp/num_flat"] == 0
