"""Property-based tests: invariants of the statistics, scoring and eviction for any outcomes.

Over arbitrary outcome sequences (scores 0, 1, tiny, repeated; many tasks; any interleaving and
batching) and arbitrary valid ``LearningProgressConfig`` values:

- every EMA stays finite and in [0, 1] (the baseline in [0, 0.75]), and the counters count
  exactly what was applied, in the reference update (``curriculum.ema``) and in real pools;
- sampling probabilities are finite, non-negative and sum to 1;
- eviction never names a task with fewer than ``min_presentations_for_eviction`` outcomes, and a
  curriculum driven through ``get_task`` / ``update_task_performance`` never evicts one.

Hypothesis runs derandomized (the same examples every run) with a small example budget.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from conftest import make_config, unique_session
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from backends.base import PoolSnapshot
from backends.layout import EMPTY_TASK, empty_rows
from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
)
from curriculum.algorithms.learning_progress import LearningProgressAlgorithm
from curriculum.ema import BASELINE_CAP, EmaParams, apply_outcomes, rounds
from curriculum.errors import ConfigError

settings.register_profile(
    "curriculum-properties",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),  # no patch files
)
PROFILE = settings.get_profile("curriculum-properties")
# Tests that build real pools take function-scoped fixtures (a fresh session per example).
POOL_PROFILE = settings(
    PROFILE,
    max_examples=12,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

UNIT_FIELDS = ("fast", "slow", "perf", "reward", "reward_sq")
EMA_FIELDS = (*UNIT_FIELDS, "baseline")

# -- strategies ----------------------------------------------------------------------------------

SPECIAL_SCORES = (
    0.0,
    1.0,
    0.5,
    BASELINE_CAP,
    math.nextafter(BASELINE_CAP, 0.0),
    math.nextafter(BASELINE_CAP, 1.0),
    math.nextafter(1.0, 0.0),
    math.nextafter(0.0, 1.0),  # the smallest subnormal
    2.2250738585072014e-308,  # the smallest normal
    1e-300,
    1e-9,
    0.1 + 0.2,
)
scores = st.one_of(st.sampled_from(SPECIAL_SCORES), st.floats(0.0, 1.0))
rates = st.one_of(
    st.sampled_from((1.0, 0.5, 1e-300, math.nextafter(0.0, 1.0))),
    st.floats(0.0, 1.0, exclude_min=True),
)


@st.composite
def outcome_sequences(draw, max_tasks: int = 12, max_runs: int = 40) -> tuple[int, list]:
    """``(n_tasks, [(task index, score), ...])``: runs of repeated scores on one task, in any
    interleaving."""
    n_tasks = draw(st.integers(1, max_tasks))
    runs = draw(
        st.lists(
            st.tuples(st.integers(0, n_tasks - 1), scores, st.integers(1, 12)),
            max_size=max_runs,
        )
    )
    outcomes = [(task, score) for task, score, repeat in runs for _ in range(repeat)]
    return n_tasks, draw(st.permutations(outcomes)) if draw(st.booleans()) else outcomes


ema_params = st.builds(
    EmaParams,
    ema_timescale=rates,
    slow_timescale_factor=rates,
    task_tracker_ema_alpha=rates,
    success_threshold=st.one_of(st.sampled_from((0.0, 0.5, 1.0)), st.floats(0.0, 1.0)),
)

finite = {"allow_nan": False, "allow_infinity": False}
# Every LearningProgressConfig field that shapes scoring, drawn over its whole validated range.
lp_fields = st.fixed_dictionaries(
    {
        "use_bidirectional": st.booleans(),
        "ema_timescale": rates,
        "slow_timescale_factor": rates,
        "exploration_bonus": st.one_of(st.sampled_from((0.0, -3.0, 1e6)), st.floats(**finite)),
        "progress_smoothing": st.one_of(
            st.sampled_from((0.0, 0.25, math.nextafter(0.5, 0.0))),
            st.floats(0.0, 0.5, exclude_max=True),
        ),
        "performance_bonus_weight": st.one_of(
            st.sampled_from((0.0, 1.0, 1e6)), st.floats(min_value=0.0, max_value=1e6)
        ),
        "lp_score_temperature": st.one_of(
            st.sampled_from((0.0, 0.0, 1e-300, 1.0)), st.floats(min_value=0.0, **finite)
        ),
        "z_score_amplification": st.one_of(
            st.sampled_from((3.0, 1e-300, 1e300)),
            st.floats(min_value=0.0, exclude_min=True, **finite),
        ),
        "rand_task_rate": st.one_of(st.sampled_from((0.0, 1.0, 0.1)), st.floats(0.0, 1.0)),
        "min_samples_for_lp": st.integers(1, 20),
        "min_presentations_for_eviction": st.integers(1, 20),
        "eviction_threshold_percentile": st.one_of(
            st.sampled_from((1.0, 0.4)), st.floats(0.0, 1.0, exclude_min=True)
        ),
        "task_tracker_ema_alpha": rates,
        "success_threshold": st.floats(0.0, 1.0),
    }
)


def ema_of(config: LearningProgressConfig) -> EmaParams:
    return EmaParams(
        config.ema_timescale,
        config.slow_timescale_factor,
        config.task_tracker_ema_alpha,
        config.success_threshold,
    )


# -- checks ----------------------------------------------------------------------------------------


def reference_rows(
    n_tasks: int, outcomes: list[tuple[int, float]], params: EmaParams, batches: list[int]
) -> np.ndarray:
    """Apply ``outcomes`` with the reference update, cut into batches of the given sizes (each
    batch split into rounds, as the backends do)."""
    rows = empty_rows(n_tasks)
    rows["task_id"] = np.arange(n_tasks)
    start = 0
    sizes = iter(batches)
    while start < len(outcomes):
        chunk = outcomes[start : start + max(1, next(sizes, len(outcomes)))]
        start += len(chunk)
        slots = np.array([task for task, _ in chunk], dtype=np.int64)
        values = np.array([score for _, score in chunk], dtype=np.float64)
        for part in rounds(slots):
            updated = rows[slots[part]]
            apply_outcomes(updated, values[part], params)
            rows[slots[part]] = updated
    return rows


def check_rows(rows: np.ndarray, outcomes: list[tuple[int, float]], threshold: float) -> None:
    """Every EMA finite and in range; counters equal to what was applied, task by task."""
    per_task: dict[int, list[float]] = {}
    for task, score in outcomes:
        per_task.setdefault(task, []).append(score)
    for slot, row in enumerate(rows):
        applied = per_task.get(slot, [])
        for field in EMA_FIELDS:
            assert math.isfinite(row[field]), (slot, field, row)
        for field in UNIT_FIELDS:
            assert 0.0 <= row[field] <= 1.0, (slot, field, row[field])
        assert 0.0 <= row["baseline"] <= BASELINE_CAP, (slot, row["baseline"])
        assert row["n_outcomes"] == len(applied)
        total = 0.0
        for score in applied:  # the pool adds in arrival order
            total += score
        assert row["score_sum"] == total
        assert row["n_success"] == sum(score >= threshold for score in applied)
        if applied:
            assert row["baseline"] == min(applied[0], BASELINE_CAP)
        else:
            assert all(row[field] == 0.0 for field in EMA_FIELDS)


def check_view(view, config: LearningProgressConfig) -> None:
    """Probabilities form a distribution; eviction names only tasks that had their outcomes."""
    rows = view.snapshot.rows
    p = view.probabilities
    assert len(p) == len(view.active)
    assert np.isfinite(p).all(), p
    assert (p >= 0.0).all(), p
    if len(p):  # a pool with no task yet has nothing to sample
        assert abs(p.sum() - 1.0) <= 1e-9, p.sum()
    assert np.isfinite(view.raw_scores).all() and (view.raw_scores >= 0.0).all()
    order = view.eviction_order
    assert len(set(order)) == len(order)
    assert set(order) <= set(view.active.tolist())
    for slot in order:
        assert rows["n_outcomes"][slot] >= config.min_presentations_for_eviction, slot
    scores_in_order = [view.raw_scores[np.searchsorted(view.active, s)] for s in order]
    assert scores_in_order == sorted(scores_in_order)


# -- the reference update and the algorithm --------------------------------------------------------


@settings(PROFILE, max_examples=100)
@given(
    sequence=outcome_sequences(),
    params=ema_params,
    batches=st.lists(st.integers(1, 50), max_size=20),
)
def test_reference_update_keeps_emas_in_range_and_counts_every_outcome(
    sequence, params, batches
) -> None:
    n_tasks, outcomes = sequence
    rows = reference_rows(n_tasks, outcomes, params, batches)
    check_rows(rows, outcomes, params.success_threshold)
    # batching never changes the result: one outcome at a time gives the same rows, bit for bit
    one_by_one = reference_rows(n_tasks, outcomes, params, [1] * len(outcomes))
    for field in rows.dtype.names:
        assert np.array_equal(rows[field], one_by_one[field]), field


@settings(PROFILE, max_examples=150)
@given(
    sequence=outcome_sequences(max_tasks=16),
    fields=lp_fields,
    empty_slots=st.lists(st.booleans(), max_size=16),
)
def test_probabilities_form_a_distribution_for_any_valid_config(
    sequence, fields, empty_slots
) -> None:
    config = LearningProgressConfig(**fields)
    n_tasks, outcomes = sequence
    rows = reference_rows(n_tasks, outcomes, ema_of(config), [])
    # free slots between the tasks: the view scores only the active ones
    free = [i for i, empty in enumerate(empty_slots[:n_tasks]) if empty and i > 0]
    rows["task_id"][free] = EMPTY_TASK
    snapshot = PoolSnapshot(1, rows, np.zeros(0), [], {})
    with np.errstate(all="ignore"):  # overflow inside the weights is allowed, NaN out is not
        view = LearningProgressAlgorithm(config).view(snapshot)
    assert view.active.tolist() == [i for i in range(n_tasks) if i not in free]
    check_view(view, config)


# -- real pools ------------------------------------------------------------------------------------


def _pool_config(backend_url, fields: dict, **extra):
    lp = {f"lp_{k}": v for k, v in fields.items()}
    lp["lp_session_id"] = unique_session("prop")
    lp["lp_backend_url"] = backend_url
    return make_config(
        generator=BucketedTaskGenerator.Config(
            child_generator_config=SingleTaskGenerator.Config(env={"label": "prop"}),
            buckets={"level": Span(0, 2)},
        ),
        **lp,
        **extra,
    )


@settings(POOL_PROFILE)
@given(
    sequence=outcome_sequences(max_tasks=6, max_runs=12),
    fields=lp_fields,
    write_batch_size=st.sampled_from((1, 3, 64)),
    use_batches=st.lists(st.booleans(), max_size=20),
)
def test_a_real_pool_applies_any_outcome_sequence_like_the_reference(
    backend_url, sequence, fields, write_batch_size, use_batches
) -> None:
    n_tasks, outcomes = sequence
    fields = {**fields, "min_presentations_for_eviction": 10**6}  # no evictions: tasks stay put
    config = _pool_config(
        backend_url, fields, num_active_tasks=n_tasks, write_batch_size=write_batch_size
    )
    curriculum = Curriculum(config)
    try:
        tasks = [curriculum.get_task() for _ in range(n_tasks)]
        assert sorted(t.slot for t in tasks) == list(range(n_tasks))
        position, flags = 0, iter(use_batches)
        while position < len(outcomes):
            if next(flags, False):  # a batch call: the next few outcomes at once
                chunk = outcomes[position : position + 5]
                curriculum.update_task_performance_batch(
                    [tasks[i].task_id for i, _ in chunk], [s for _, s in chunk]
                )
            else:
                chunk = outcomes[position : position + 1]
                task, score = chunk[0]
                curriculum.update_task_performance(tasks[task].task_id, score)
            position += len(chunk)
        stats = curriculum.stats()
        assert stats["curriculum/num_completed"] == len(outcomes)
        assert stats["curriculum/num_evicted"] == 0
        # finite, but for an average over nothing (a label or pool without outcomes): NaN
        averages = ("mean_reward", "success_rate", "mean_lp", "mean", "mean_score", "score_std")
        assert all(
            math.isfinite(v) or (math.isnan(v) and k.endswith(averages)) for k, v in stats.items()
        ), stats
        rows = curriculum.backend.snapshot().rows
        by_task = rows[[t.slot for t in tasks]]
        check_rows(by_task, outcomes, config.algorithm_config.success_threshold)
        expected = reference_rows(n_tasks, outcomes, ema_of(config.algorithm_config), [])
        for field in (*EMA_FIELDS, "score_sum", "n_outcomes", "n_success"):
            assert by_task[field] == pytest.approx(expected[field], rel=1e-12, abs=1e-300), field
        with np.errstate(all="ignore"):
            check_view(curriculum._session.view(fresh=True), config.algorithm_config)
    finally:
        curriculum.destroy()


# A sequence of calls a trainer may make, in any order: draw a task and play it at once (most
# steps), draw a task without playing it, report an outcome for any task handed out so far
# (possibly evicted since: a late outcome), or flush.
KINDS = ("play",) * 6 + ("get", "report", "report", "flush")
actions = st.lists(
    st.tuples(st.sampled_from(KINDS), scores, st.integers(0, 10**6)), min_size=60, max_size=250
)
presentations = st.integers(1, 6)


def _drive(
    backend_url, fields: dict, needed: int, capacity: int, write_batch_size: int, steps: list
) -> None:
    fields = {**fields, "min_presentations_for_eviction": needed}
    config = _pool_config(
        backend_url, fields, num_active_tasks=capacity, write_batch_size=write_batch_size
    )
    curriculum = Curriculum(config)
    reported: Counter[int] = Counter()  # outcomes this test reported, per task
    handed: list[int] = []
    active = set()
    evicted: list[int] = []
    late = 0
    try:
        for action in steps:
            kind = action[0]
            if kind in ("play", "get"):
                task = curriculum.get_task()
                handed.append(task.task_id)
                now = set(curriculum.backend.snapshot().rows["task_id"].tolist()) - {EMPTY_TASK}
                gone = active - now
                for task_id in gone:  # evicted by this call: every outcome counted before it
                    assert reported[task_id] >= needed, (task_id, reported[task_id], needed)
                evicted.extend(gone)
                active = now
                assert task.task_id in active
                if kind == "play":
                    curriculum.update_task_performance(task.task_id, action[1])
                    reported[task.task_id] += 1
            elif kind == "report" and handed:
                task_id = handed[action[2] % len(handed)]
                late += task_id not in active
                curriculum.update_task_performance(task_id, action[1])
                reported[task_id] += 1
            elif kind == "flush":
                curriculum.flush()
        event(f"evictions: {min(len(evicted), 5)}{'+' if len(evicted) > 5 else ''}")
        event(f"late outcomes: {'yes' if late else 'no'}")
        stats = curriculum.stats()
        snapshot = curriculum.backend.snapshot()
        assert stats["curriculum/num_evicted"] == len(evicted)
        assert stats["curriculum/num_completed"] == sum(reported.values())
        assert stats["curriculum/num_late_outcomes"] == late
        assert len(evicted) <= (sum(reported.values()) - late) // needed
        # The pool's own account: an evicted task's counters fold into its label's stored
        # record, so per label (stored completions - late) >= evictions * needed.
        rows, labels = snapshot.rows, snapshot.labels
        live = rows["task_id"] != EMPTY_TASK
        for label_id in range(len(labels)):
            mine = live & (rows["label_id"] == label_id)
            stored = int(labels["completions"][label_id]) - int(rows["n_outcomes"][mine].sum())
            folded = stored - int(labels["late"][label_id])
            assert folded >= int(labels["evicted"][label_id]) * needed, label_id
        for row in rows[live]:
            for field in UNIT_FIELDS:
                assert 0.0 <= row[field] <= 1.0 and math.isfinite(row[field])
        with np.errstate(all="ignore"):
            check_view(curriculum._session.view(fresh=True), config.algorithm_config)
    finally:
        curriculum.destroy()


@settings(PROFILE, max_examples=30)
@given(
    fields=lp_fields,
    needed=presentations,
    capacity=st.integers(1, 5),
    write_batch_size=st.sampled_from((1, 2, 8, 64)),
    steps=actions,
)
def test_curriculum_never_evicts_a_task_before_its_presentations_shm(
    fields, needed, capacity, write_batch_size, steps
) -> None:
    _drive(None, fields, needed, capacity, write_batch_size, steps)


@settings(POOL_PROFILE, max_examples=6)
@given(
    fields=lp_fields,
    needed=presentations,
    capacity=st.integers(1, 4),
    write_batch_size=st.sampled_from((1, 8)),
    steps=actions,
)
def test_curriculum_never_evicts_a_task_before_its_presentations(
    backend_url, fields, needed, capacity, write_batch_size, steps
) -> None:
    _drive(backend_url, fields, needed, capacity, write_batch_size, steps)


def test_stats_stay_finite_for_the_largest_valid_performance_bonus_weight() -> None:
    with pytest.raises(ConfigError, match="performance_bonus_weight"):
        _pool_config(None, {"performance_bonus_weight": 1e308}, num_active_tasks=2)
    config = _pool_config(None, {"performance_bonus_weight": 1e6}, num_active_tasks=2)
    with Curriculum(config) as curriculum, np.errstate(all="ignore"):
        for _ in range(4):
            curriculum.update_task_performance(curriculum.get_task().task_id, 1.0)
        stats = curriculum.stats()
    bad = {key: value for key, value in stats.items() if not math.isfinite(value)}
    assert not bad
