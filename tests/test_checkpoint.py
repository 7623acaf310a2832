"""Checkpoints: plain data, round trips into fresh sessions, and refusal of bad ones."""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing as mp

import msgpack
import numpy as np
import pytest
from conftest import make_config, pool_figures, unique_session

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    LearningProgressConfig,
    SingleTaskGenerator,
)
from curriculum.errors import CheckpointError


def _played(curricula, episodes: int = 400, **fields) -> Curriculum:
    curriculum = curricula(num_active_tasks=16, **fields)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, float(rng.random()))
    return curriculum


def _fresh_session(curriculum: Curriculum, **updates) -> Curriculum:
    algorithm = curriculum.config.algorithm_config.model_copy(
        update={"session_id": unique_session("restore"), **updates}
    )
    return Curriculum(curriculum.config.model_copy(update={"algorithm_config": algorithm}))


def _rows_by_task(curriculum: Curriculum) -> dict[int, tuple]:
    snapshot = curriculum.backend.snapshot()
    out = {}
    for row in snapshot.rows:
        if row["task_id"] >= 0:
            values = [row[f] for f in row.dtype.names if f != "label_id"]
            out[int(row["task_id"])] = (snapshot.label_names[row["label_id"]], *values)
    return out


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_round_trip_into_a_fresh_session_restores_everything(curricula, encoding) -> None:
    source = _played(curricula, deterministic=True)  # views refresh by outcome count
    state = source.get_state()
    if encoding == "json":
        state = json.loads(json.dumps(state))
    else:
        state = msgpack.unpackb(msgpack.packb(state), strict_map_key=False)
    target = _fresh_session(source)
    try:
        target.get_task()  # the fresh pool already has a label and a task of its own
        target.load_state(state)
        assert _rows_by_task(target) == _rows_by_task(source)
        source_stats, target_stats = source.stats(), target.stats()
        assert target_stats == source_stats
        # the RNG travels too: both now sample the same tasks
        assert [target.get_task().task_id for _ in range(20)] == [
            source.get_task().task_id for _ in range(20)
        ]
    finally:
        target.close()


def test_loaded_pool_keeps_training(curricula) -> None:
    source = _played(curricula)
    state = source.get_state()
    target = _fresh_session(source)
    try:
        target.load_state(state)
        for _ in range(50):
            task = target.get_task()
            target.update_task_performance(task.task_id, 0.5)
        assert target.stats()["curriculum/num_completed"] == 450
    finally:
        target.close()


def _train(curriculum: Curriculum, episodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, float(rng.random()))
    curriculum.close()


def test_round_trip_after_a_multi_process_run(process_backend_url) -> None:
    config = make_config(
        num_active_tasks=16,
        lp_min_presentations_for_eviction=5,
        lp_eviction_confidence=0.0,  # random scores: evict by score alone, so tasks get evicted
        lp_backend_url=process_backend_url,
        refresh_cpu_share=1.0,  # short fast runs: refresh by outcome count, so tasks get evicted
    )
    with Curriculum(config) as source:
        _check_multi_process_round_trip(source)


def _check_multi_process_round_trip(source: Curriculum) -> None:
    context = mp.get_context("spawn")
    workers = [context.Process(target=_train, args=(source, 500, i)) for i in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    state = source.get_state()
    assert state["counters"]["num_completed"] == 1500
    assert state["counters"]["num_evicted"] > 0
    target = _fresh_session(source)
    try:
        target.load_state(json.loads(json.dumps(state)))
        assert _rows_by_task(target) == _rows_by_task(source)
        assert pool_figures(target.stats()) == pool_figures(source.stats())
    finally:
        target.close()


def _corrupt(state: dict, path: str, value) -> dict:
    broken = copy.deepcopy(state)
    *parents, leaf = path.split(".")
    node = broken
    for part in parents:
        node = node[part]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format", "something-else", "something-else"),
        ("version", 99, "99"),
        ("params", KeyError, "params"),
        ("rows.fast", [0.1, 0.2], "fast"),
        ("rows.seq", KeyError, "seq"),
        ("labels.name", [1, 2], "label names"),
        ("counters.num_created", "many", "many"),
    ],
)
def test_damaged_checkpoints_raise_and_leave_the_pool_intact(curricula, path, value, message):
    curriculum = _played(curricula)
    state = curriculum.get_state()
    before = curriculum.stats()
    with pytest.raises(CheckpointError) as caught:
        curriculum.load_state(_corrupt(state, path, value))
    assert message in str(caught.value)
    assert curriculum.stats() == before


def test_non_finite_statistics_and_dangling_labels_are_refused(curricula) -> None:
    curriculum = _played(curricula)
    state = curriculum.get_state()
    nan_state = copy.deepcopy(state)
    nan_state["rows"]["slow"][0] = float("nan")
    with pytest.raises(CheckpointError, match="slow"):
        curriculum.load_state(nan_state)
    dangling = copy.deepcopy(state)
    dangling["rows"]["label_id"][0] = 10_000
    with pytest.raises(CheckpointError, match="10000"):
        curriculum.load_state(dangling)
    for foreign in (None, [], "state", {"format": "curriculum-state"}):
        with pytest.raises(CheckpointError):
            curriculum.load_state(foreign)


def test_mismatched_parameters_need_an_explicit_override(curricula, caplog) -> None:
    source = _played(curricula)
    state = source.get_state()
    target = _fresh_session(source, ema_timescale=0.3)
    try:
        with pytest.raises(CheckpointError, match="ema_timescale"):
            target.load_state(state)
        with caplog.at_level(logging.WARNING, logger="curriculum"):
            target.load_state(state, allow_param_mismatch=True)
        warned = [r.getMessage() for r in caplog.records if "other parameters" in r.getMessage()]
        assert len(warned) == 1 and "ema_timescale" in warned[0]
        assert target.stats()["curriculum/num_completed"] == 400
    finally:
        target.close()


def test_a_checkpoint_of_another_size_is_refused_even_with_override(curricula) -> None:
    source = _played(curricula)
    state = source.get_state()
    other = make_config(
        num_active_tasks=32, lp_backend_url=source.config.algorithm_config.backend_url
    )
    target = Curriculum(other)
    try:
        with pytest.raises(CheckpointError, match="16 slots"):
            target.load_state(state, allow_param_mismatch=True)
    finally:
        target.close()


def test_state_is_versioned_and_carries_parameters(curricula) -> None:
    curriculum = _played(curricula, episodes=10)
    state = curriculum.get_state()
    assert state["format"] == "curriculum-state" and state["version"] == 2
    assert state["params"]["capacity"] == 16
    default = LearningProgressConfig()
    assert state["params"]["ema"]["ema_timescale"] == default.ema_timescale
    assert len(state["rows"]["task_id"]) == 16


# -- values that would break the pool's invariants after loading --------------------------------


def _state_of_played(curricula) -> tuple[Curriculum, dict]:
    source = _played(curricula)
    return source, json.loads(json.dumps(source.get_state()))


def test_a_lowered_next_seq_is_refused(curricula) -> None:
    """Before: it loaded, and two slots then held the same task id."""
    source, state = _state_of_played(curricula)
    state["counters"]["next_seq"] = 0
    with pytest.raises(CheckpointError, match="'next_seq' is 0, not above"):
        source.load_state(state)


def test_an_overflowing_stage_count_is_a_checkpoint_error(curricula) -> None:
    """Before: OverflowError."""
    source, state = _state_of_played(curricula)
    state["stage"]["total_steps"] = 2**70
    with pytest.raises(CheckpointError, match="'total_steps'"):
        source.load_state(state)


def test_an_unsigned_64_bit_task_id_is_refused(curricula) -> None:
    """2**64-1 through msgpack is a uint64 column; cast to int64 it read as an empty slot."""
    source = _played(curricula)
    state = msgpack.unpackb(msgpack.packb(source.get_state()), strict_map_key=False)
    state["rows"]["task_id"] = [2**64 - 1] * len(state["rows"]["task_id"])
    with pytest.raises(CheckpointError, match="'task_id' holds 18446744073709551615"):
        source.load_state(state)


def _many_labels() -> BucketedTaskGenerator.Config:
    """Tasks with one of 1,000 labels each (a bucket of 1,000 values)."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "nav"}),
        buckets={"v": list(range(1000))},
    )


def _labelled(curricula, seed: int, episodes: int = 40) -> Curriculum:
    curriculum = curricula(num_active_tasks=8, max_labels=12, seed=seed, generator=_many_labels())
    for i in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, float(i % 2))
    return curriculum


def label_completions(stats: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in stats.items() if k.startswith("label/") and k.endswith("/completions")}


def test_labels_that_would_not_fit_beside_the_pools_own_are_refused(curricula) -> None:
    """Loading into a used pool keeps the pool's own labels (their ids stay valid in every
    process). When the checkpoint's labels would not all fit beside them, load_state refuses
    and changes nothing, instead of counting some under '(other)' (or, on Redis, renaming it)."""
    source = _labelled(curricula, seed=1)
    state = source.get_state()
    expected = label_completions(source.stats())
    assert len(expected) > 6
    target = _labelled(curricula, seed=2)
    before = target.stats()
    with pytest.raises(
        CheckpointError, match=r"would be counted under '\(other\)' \(max_labels=12\)"
    ):
        target.load_state(state)
    assert target.stats() == before
    roomy = _labelled(curricula, seed=2, episodes=1)  # one label of its own: all fit
    roomy.load_state(state)
    after = label_completions(roomy.stats())
    assert {k: after[k] for k in expected} == expected
    assert "label/(other)/completions" not in after
