"""The simulated student of the demo and the quality benchmark (curriculum/simulation.py)."""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle

import numpy as np
import pytest

from curriculum.simulation import (
    CATEGORIES,
    DIFFICULTIES,
    IMPOSSIBLE,
    TRIVIAL,
    SimulatedStudent,
    category,
    task_space,
)


def graded(difficulty: float) -> dict:
    return {"label": "graded", "difficulty": difficulty}


def test_success_probability_follows_the_competence_gap() -> None:
    student = SimulatedStudent(sharpness=12.0, initial_competence=0.05)
    assert student.success_probability({"label": "impossible"}) == 0.0
    assert student.success_probability({"label": "trivial"}) == 1.0
    for d in DIFFICULTIES:
        expected = 1.0 / (1.0 + math.exp(-12.0 * (0.05 - d)))
        assert student.success_probability(graded(d)) == pytest.approx(expected)
    assert student.mastery() == pytest.approx(
        np.mean([student.success_probability(graded(d)) for d in DIFFICULTIES])
    )


def test_practice_teaches_most_at_the_edge_and_transfers_to_neighbours() -> None:
    rng = np.random.default_rng(0)
    student = SimulatedStudent(learning_rate=0.01, transfer=0.5)
    before = student.competence()
    p = student.success_probability(graded(0.1))
    student.play(graded(0.1), rng)
    gains = np.subtract(student.competence(), before)
    assert gains[0] == pytest.approx(0.01 * 4 * p * (1 - p))
    assert gains[1:] == pytest.approx(gains[0] * 0.5 ** np.arange(1, len(DIFFICULTIES)))
    # a level the student never solves (p ~ 0) teaches (almost) nothing
    hard = SimulatedStudent(learning_rate=0.01)
    hard.play(graded(0.9), rng)
    assert max(np.subtract(hard.competence(), before)) < 1e-5


def test_impossible_and_trivial_tasks_score_fixed_and_teach_nothing() -> None:
    rng = np.random.default_rng(1)
    student = SimulatedStudent(learning_rate=0.05)
    before = student.competence()
    assert [student.play({"label": "impossible"}, rng) for _ in range(50)] == [0.0] * 50
    assert [student.play({"label": "trivial"}, rng) for _ in range(50)] == [1.0] * 50
    assert student.competence() == before
    counts = student.category_counts()
    assert counts[IMPOSSIBLE] == counts[TRIVIAL] == 50 and counts.sum() == 100


def test_competence_is_capped_and_mastery_saturates() -> None:
    rng = np.random.default_rng(2)
    student = SimulatedStudent(learning_rate=0.5, max_competence=1.2)
    for _ in range(400):
        for d in DIFFICULTIES:
            student.play(graded(d), rng)
    assert max(student.competence()) <= 1.2
    assert student.mastery() > 0.95


def test_same_seed_same_outcomes_and_learning_curve() -> None:
    def run() -> tuple[list[float], np.ndarray]:
        rng = np.random.default_rng(3)
        student = SimulatedStudent(learning_rate=0.01, curve_every=10, curve_points=5)
        scores = [student.play(graded(DIFFICULTIES[i % 3]), rng) for i in range(60)]
        episodes, mastery = student.curve()
        assert episodes.tolist() == [10, 20, 30, 40, 50]  # at most curve_points records
        return scores, mastery

    first, second = run(), run()
    assert first[0] == second[0]
    assert np.array_equal(first[1], second[1])
    assert np.all(np.diff(first[1]) > 0)  # practice near the edge only ever helps


def test_task_space_labels_and_categories() -> None:
    generator = task_space(impossible_share=0.2, trivial_share=0.1).create()
    kinds = [category(generator.generate(task_id).env_cfg) for task_id in range(2000)]
    shares = np.bincount(kinds, minlength=len(CATEGORIES)) / len(kinds)
    assert shares[IMPOSSIBLE] == pytest.approx(0.2, abs=0.03)
    assert shares[TRIVIAL] == pytest.approx(0.1, abs=0.03)
    assert shares[:IMPOSSIBLE] == pytest.approx(np.full(len(DIFFICULTIES), 0.7 / 9), abs=0.03)
    assert generator.generate(1).label in {
        *(f"graded|difficulty:{d:g}" for d in DIFFICULTIES),
        "impossible",
        "trivial",
    }


def _play_share(student: SimulatedStudent, episodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(episodes):
        student.play(graded(DIFFICULTIES[i % len(DIFFICULTIES)]), rng)


def test_shared_student_counts_every_episode_of_every_process() -> None:
    student = SimulatedStudent(learning_rate=0.001, shared=True, curve_every=100, curve_points=20)
    context = mp.get_context("spawn")
    workers = [context.Process(target=_play_share, args=(student, 450, i)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert student.episodes == 900
    assert student.category_counts()[: len(DIFFICULTIES)].tolist() == [100.0] * 9
    episodes, mastery = student.curve()
    assert episodes.tolist() == list(range(100, 1000, 100)) and np.all(mastery > 0)
    # the same episodes in one process give the same competence (up to the order of updates)
    alone = SimulatedStudent(learning_rate=0.001)
    _play_share(alone, 900, 0)
    assert student.competence() == pytest.approx(alone.competence(), rel=1e-2)


def test_a_student_pickles_with_its_state() -> None:
    rng = np.random.default_rng(4)
    student = SimulatedStudent(learning_rate=0.01)
    student.play(graded(0.1), rng)
    copy = pickle.loads(pickle.dumps(student))
    assert copy.competence() == student.competence() and copy.episodes == 1


def test_forgetting_decays_every_level_towards_the_start() -> None:
    rng = np.random.default_rng(5)
    student = SimulatedStudent(learning_rate=0.0, initial_competence=0.05, forgetting=0.1)
    student._values[3] = 0.85  # a level learned earlier
    student.play({"label": "impossible"}, rng)  # teaches nothing, but time passes
    assert student.competence()[3] == pytest.approx(0.05 + 0.9 * 0.8)
    assert student.competence()[0] == pytest.approx(0.05)  # at the start: nothing to forget
    never = SimulatedStudent(learning_rate=0.0)
    never._values[3] = 0.85
    never.play({"label": "impossible"}, rng)
    assert never.competence()[3] == 0.85


def test_prerequisite_gates_learning_by_the_mastery_of_the_level_below() -> None:
    rng = np.random.default_rng(6)
    student = SimulatedStudent(learning_rate=0.01, transfer=0.5, prerequisite=0.5)
    before = student.competence()
    p = [student.success_probability(graded(d)) for d in DIFFICULTIES]
    student.play(graded(0.1), rng)
    gains = np.subtract(student.competence(), before)
    direct = 0.01 * 4 * p[0] * (1 - p[0])
    assert gains[0] == pytest.approx(direct)  # the first level has no prerequisite
    for level in range(1, len(DIFFICULTIES)):
        gate = min(1.0, p[level - 1] / 0.5)
        assert gains[level] == pytest.approx(direct * 0.5**level * gate)
    assert gains[2] < direct * 0.25 * 0.5  # level 0.2 is far from half mastered


def test_noisy_scores_are_continuous_clipped_and_centred_on_the_probability() -> None:
    rng = np.random.default_rng(7)
    student = SimulatedStudent(learning_rate=0.0, noise=0.2)
    p = student.success_probability(graded(0.1))
    scores = np.array([student.play(graded(0.1), rng) for _ in range(4000)])
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert len(np.unique(scores)) > 1000  # continuous, not 0/1
    assert scores.mean() == pytest.approx(p + 0.2 * 0.0, abs=0.02)
    impossible = np.array([student.play({"label": "impossible"}, rng) for _ in range(4000)])
    assert (impossible == 0.0).mean() == pytest.approx(0.5, abs=0.03)  # noise clipped at 0
    assert (impossible >= 0.5).mean() < 0.02  # hardly ever a success
    trivial = np.array([student.play({"label": "trivial"}, rng) for _ in range(4000)])
    assert (trivial == 1.0).mean() == pytest.approx(0.5, abs=0.03)


def test_noisy_student_is_deterministic_in_its_seed() -> None:
    def run(seed: int) -> list[float]:
        rng = np.random.default_rng(seed)
        student = SimulatedStudent(learning_rate=0.01, noise=0.2, forgetting=1e-3)
        return [student.play(graded(DIFFICULTIES[i % 4]), rng) for i in range(100)]

    assert run(8) == run(8)
    assert run(8) != run(9)
