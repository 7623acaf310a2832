"""One math, two backends: the Lua scripts and the numpy reference agree to the last bit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import make_config, pool_figures, unique_session

from backends import open_backend
from backends.base import TaskMemoryBackend, WriteBatch
from backends.layout import COUNTER_NAMES, ROW_DTYPE
from backends.stage_state import (
    CRITERIA,
    MAX_STAGES,
    StageRule,
    StageState,
    StageUpdate,
    fold_scores,
)
from curriculum import Curriculum
from curriculum.curriculum import pool_params
from curriculum.errors import BackendError
from curriculum.task_ids import MAX_TASK_ID

pytestmark = pytest.mark.filterwarnings("error")


def _open(url: str | None, session: str, staging: dict | None = None) -> TaskMemoryBackend:
    config = make_config(num_active_tasks=12, lp_session_id=session, lp_backend_url=url)
    params = pool_params(config, staging)
    # priorities folded by an EMA (not replaced), so the parity covers the whole update
    params = dataclasses.replace(
        params, ema=dataclasses.replace(params.ema, priority_ema_alpha=0.3)
    )
    return open_backend(url, session, params, create=True, lock_timeout_s=5.0)


def _drive(backend: TaskMemoryBackend, seed: int) -> list[tuple[int, int, int]]:
    """The same sequence of creations, outcomes, samples, evictions and epochs, on any backend."""
    rng = np.random.default_rng(seed)
    labels = [backend.intern_label(name) for name in ("nav|a:1", "nav|a:2", "ünïcode ✓")]
    tasks = []
    for i in range(12):
        seq = backend.reserve_sequence()
        task_id = MAX_TASK_ID - i if i % 3 == 0 else int(rng.integers(0, MAX_TASK_ID))
        slot = backend.create_task(task_id, labels[i % 3], seq)
        tasks.append((slot, task_id, labels[i % 3]))
    special = [0.0, 1.0, 0.75, 0.5, 1e-300, 0.1, 0.2 + 0.1, 1 - 1e-16]
    for round_ in range(30):
        batch = WriteBatch()
        for _ in range(int(rng.integers(1, 40))):
            slot, task_id, label = tasks[int(rng.integers(0, len(tasks)))]
            score = (
                special[int(rng.integers(0, len(special)))] if rng.random() < 0.3 else rng.random()
            )
            priority = None
            if rng.random() < 0.4:  # value-loss-like priorities: any sign, any magnitude
                priority = float(rng.normal() * 10.0 ** rng.integers(-3, 4))
            steps = int(rng.integers(0, 1000))
            batch.add_outcome(slot, task_id, label, float(score), steps, priority=priority)
            if rng.random() < 0.5:
                batch.add_sample(slot, task_id, label)
            if rng.random() < 0.05:
                batch.add_failure(slot, task_id, label)
        backend.record(batch)
        if round_ % 7 == 3:  # evict one task, then send a late outcome for it
            index = int(rng.integers(0, len(tasks)))
            slot, old_id, label = tasks[index]
            new_id = int(rng.integers(0, MAX_TASK_ID))
            assert backend.replace_task(slot, old_id, new_id, label, backend.reserve_sequence())
            assert not backend.replace_task(slot, old_id, 7, label, backend.reserve_sequence())
            tasks[index] = (slot, new_id, label)
            late = WriteBatch()
            late.add_outcome(slot, old_id, label, 0.5, priority=2.5)
            late.add_sample(slot, old_id, label)
            late.add_failure(slot, old_id, label)
            assert backend.record(late).late == 1
        if round_ == 20:
            backend.end_epoch()
    return tasks


@pytest.mark.parametrize("redis_kind", ["fakeredis", "redis"])
def test_lua_scripts_match_the_numpy_reference_field_by_field(redis_kind, request) -> None:
    url = "fakeredis://" if redis_kind == "fakeredis" else request.getfixturevalue("redis_url")
    if redis_kind == "fakeredis":
        import redis_support

        redis_support.FAKE.reset()
    shm = _open(None, unique_session("parity-shm"))
    remote = _open(url, unique_session("parity-redis"))
    try:
        assert _drive(shm, seed=11) == _drive(remote, seed=11)
        a, b = shm.snapshot(), remote.snapshot()
        live = a.rows["task_id"] >= 0
        assert (a.rows["n_priorities"][live] > 1).any()  # EMAs of priorities were compared
        assert len(set(a.rows["last_sampled"][live].tolist())) > 2  # so were staleness marks
        for field in ROW_DTYPE.names:
            assert np.array_equal(a.rows[field], b.rows[field]), field  # bit-exact floats
            assert b.rows[field].dtype == ROW_DTYPE[field]
        assert a.label_names == b.label_names
        assert a.labels.tolist() == b.labels.tolist()
        for name in COUNTER_NAMES:
            assert a.counters[name] == b.counters[name], name
    finally:
        shm.close()
        remote.destroy()


def _drive_stages(backend: TaskMemoryBackend, seed: int) -> list[tuple[StageState, int | None]]:
    """Stage updates of every kind (current, late, out of range, with and without a transition)."""
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(120):
        current = backend.stage_state().stage
        stage = current if rng.random() < 0.8 else int(rng.integers(0, MAX_STAGES + 2))
        scores = [float(x) for x in rng.random(int(rng.integers(1, 20))) ** 0.3]
        decay, add = fold_scores(scores, 0.07)
        update = StageUpdate(stage, len(scores), decay, add, int(rng.integers(0, 300)))
        results.append(backend.update_stage(update))
    return results


@pytest.mark.parametrize("redis_kind", ["fakeredis", "redis"])
@pytest.mark.parametrize("criteria", CRITERIA)
def test_stage_updates_match_the_python_reference_field_by_field(
    redis_kind, criteria, request
) -> None:
    url = "fakeredis://" if redis_kind == "fakeredis" else request.getfixturevalue("redis_url")
    if redis_kind == "fakeredis":
        import redis_support

        redis_support.FAKE.reset()
    rule = StageRule(
        criteria=criteria,
        threshold=0.83,
        budgets=(700, 1500, 900, 1),
        smoothing=0.07,
        names=("a", "b", "c", "d"),
    )
    shm = _open(None, unique_session("stage-shm"), rule.to_dict())
    remote = _open(url, unique_session("stage-redis"), rule.to_dict())
    try:
        mine, theirs = _drive_stages(shm, seed=5), _drive_stages(remote, seed=5)
        assert mine == theirs  # every record and every ended stage, floats bit for bit
        assert any(ended is not None for _, ended in mine)
        assert shm.export_state().stage == remote.export_state().stage == mine[-1][0]
    finally:
        shm.close()
        remote.destroy()


def test_stage_updates_need_a_staged_root_pool(backend_url) -> None:
    backend = _open(backend_url, unique_session("unstaged"))
    try:
        assert backend.stage_state() == StageState()
        with pytest.raises(BackendError, match="not the root pool of a staged curriculum"):
            backend.update_stage(StageUpdate(0, 1, 0.5, 0.5, 1))
    finally:
        backend.destroy()


def test_largest_task_ids_survive_the_round_trip(backend_url) -> None:
    backend = _open(backend_url, unique_session("ids"))
    try:
        label = backend.intern_label("x")
        for task_id in (MAX_TASK_ID, MAX_TASK_ID - 1, 2**52 + 1, 0):
            slot = backend.create_task(task_id, label, backend.reserve_sequence())
            assert int(backend.snapshot().rows["task_id"][slot]) == task_id
            batch = WriteBatch()
            batch.add_outcome(slot, task_id, label, 1.0)
            assert backend.record(batch).applied == 1  # the compare on the exact id matched
    finally:
        backend.destroy()


def test_integral_values_come_back_as_floats(backend_url) -> None:
    backend = _open(backend_url, unique_session("floats"))
    try:
        label = backend.intern_label("x")
        slot = backend.create_task(5, label, backend.reserve_sequence())
        batch = WriteBatch()
        for _ in range(3):
            batch.add_outcome(slot, 5, label, 1.0)
        backend.record(batch)
        snapshot = backend.snapshot()
        row = snapshot.rows[slot]
        assert row["score_sum"] == 3.0 and isinstance(row["score_sum"].item(), float)
        assert row["fast"] == 1.0 and row["baseline"] == 0.75
        assert snapshot.labels["score_sum"][label] == 3.0
        assert snapshot.labels["score_sum"].dtype == np.float64
    finally:
        backend.destroy()


def test_checkpoints_move_between_backends(curricula, backend_url) -> None:
    source = curricula(num_active_tasks=16)
    rng = np.random.default_rng(0)
    for _ in range(300):
        task = source.get_task()
        source.update_task_performance(task.task_id, float(rng.random()))
    state = json.loads(json.dumps(source.get_state()))
    other = None if backend_url else "fakeredis://"
    if other:
        import redis_support

        redis_support.FAKE.reset()
    target = Curriculum(
        source.config.model_copy(
            update={
                "algorithm_config": source.config.algorithm_config.model_copy(
                    update={"session_id": unique_session("moved"), "backend_url": other}
                )
            }
        )
    )
    try:
        target.load_state(state)
        assert pool_figures(target.stats()) == pool_figures(source.stats())
        assert np.array_equal(
            target.backend.snapshot().rows["slow"], source.backend.snapshot().rows["slow"]
        )
    finally:
        target.close()
