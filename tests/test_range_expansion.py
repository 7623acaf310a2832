"""Range expansion (ADR): config checks, id-encoded tasks, the shared range record on every
backend (one spec, two implementations), outcomes folded exactly once, checkpoints."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conftest
import numpy as np
import pytest
from conftest import unique_session
from workers import open_handle, run_workers

from backends import open_backend
from backends.base import TaskMemoryBackend
from backends.range_state import RangeRule, RangeState, RangeUpdate, apply_range_update
from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    SingleTaskGenerator,
    Span,
)
from curriculum.config import RangeAxis, RangeExpansionConfig
from curriculum.errors import (
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    PoolMismatchError,
    UnknownTaskError,
)
from curriculum.pool_params import pool_params
from curriculum.range_ids import RangeIds, RangeTaskGenerator, make_generator
from curriculum.range_rule import range_rule
from curriculum.task_ids import MAX_TASK_ID

STATS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "stats.md"


def generator() -> BucketedTaskGenerator.Config:
    """Difficulty and size expand; kind is a list bucket, seed a Span that does not expand."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": "nav", "difficulty": 0.0, "size": 0, "kind": "", "seed": 0}
        ),
        buckets={
            "difficulty": Span(0.0, 1.0),
            "size": Span(8, 32),
            "kind": ["a", "b"],
            "seed": Span(0, 1_000_000),
        },
    )


def adr(**fields: Any) -> RangeExpansionConfig:
    fields.setdefault("session_id", unique_session("adr"))
    fields.setdefault("axes", {"difficulty": RangeAxis(), "size": RangeAxis(low=12, high=20)})
    fields.setdefault("grid", 11)
    return RangeExpansionConfig(**fields)


def config(url: str | None = None, **fields: Any) -> CurriculumConfig:
    rest = {k: fields.pop(k) for k in list(fields) if k in CurriculumConfig.model_fields}
    rest.setdefault("num_active_tasks", 16)
    return CurriculumConfig(
        task_generator=generator(), algorithm_config=adr(backend_url=url, **fields), **rest
    )


@pytest.fixture(params=["shm", "fakeredis", "redis"])
def url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Where the test's pool lives: /dev/shm (None), fakeredis or a real Redis."""
    yield from conftest._backend(request)


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "what"), [("kind", "is not a Span bucket"), ("speed", "is not a bucket")]
)
def test_an_axis_must_be_a_span_bucket(path: str, what: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(axes={path: RangeAxis()})
    message = str(raised.value)
    assert f"axis {path!r} {what}" in message
    assert "Span buckets are ['difficulty', 'seed', 'size']" in message
    assert "\n" not in message


def test_the_grid_must_fit_in_a_task_id() -> None:
    axes = {"difficulty": RangeAxis(), "size": RangeAxis(), "seed": RangeAxis()}
    with pytest.raises(ConfigError, match="lower grid or expand fewer axes"):
        config(axes=axes, grid=1 << 16)
    config(axes=axes, grid=1024)  # 2 + 10 + 5 + 10 bits: fits


def test_other_bad_configs_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"initial range \[0.5, 0.25\].*Span \[0.0, 1.0\]"):
        config(axes={"difficulty": RangeAxis(low=0.5, high=0.25)})
    with pytest.raises(ConfigError, match=r"Span \[8, 32\]"):
        config(axes={"size": RangeAxis(low=40)})
    with pytest.raises(ConfigError, match=r"narrow_at=0\.8 must be below widen_at=0\.7"):
        adr(widen_at=0.7, narrow_at=0.8)
    single = SingleTaskGenerator.Config(env={"difficulty": 0.0})
    with pytest.raises(ConfigError, match="needs a BucketedTaskGeneratorConfig"):
        CurriculumConfig(task_generator=single, algorithm_config=adr())


def test_the_rule_snaps_initial_ranges_to_the_grid() -> None:
    rule = range_rule(adr(), generator())
    assert rule.paths == ("difficulty", "size")
    assert rule.grid == (11, 11)  # size: 25 integers, 11 points
    assert (rule.initial_low, rule.initial_high) == ((0, 2), (0, 5))  # size 12.8 -> 13 ~ 12
    gen = RangeTaskGenerator(generator(), adr())
    assert [gen.axis_value(1, i) for i in (0, 2, 5, 10)] == [8, 13, 20, 32]
    assert [gen.axis_value(0, i) for i in (0, 5, 10)] == [0.0, 0.5, 1.0]


# -- ids ----------------------------------------------------------------------------------------


def test_ids_round_trip_and_stay_task_ids() -> None:
    ids = RangeIds(range_rule(adr(), generator()))
    rng = np.random.default_rng(3)
    for _ in range(500):
        code = int(rng.integers(0, 5))
        indices = [int(i) for i in rng.integers(0, 11, size=2)]
        seed = int(rng.integers(0, 1 << ids.seed_bits))
        task_id = ids.encode(code, indices, seed)
        assert 0 <= task_id <= MAX_TASK_ID
        assert ids.decode(task_id) == (code, indices, seed)
        codes, many = ids.decode_many(np.array([task_id]))
        assert (int(codes[0]), many[0].tolist()) == (code, indices)


def test_new_ids_lie_in_the_ranges_and_boundary_ids_at_a_bound() -> None:
    ids = RangeIds(range_rule(adr(), generator()))
    state = ids.rule.initial_state()
    state.high[0] = 6  # difficulty [0, 6]; its low bound is the Span's and the initial one
    seen: Counter[int] = Counter()
    for seq in range(2000):
        task_id = ids.new_task_id(state, pool_seed=7, seq=seq, boundary_prob=0.5)
        assert task_id == ids.new_task_id(state, pool_seed=7, seq=seq, boundary_prob=0.5)
        code, (d, s), _ = ids.decode(task_id)
        assert 0 <= d <= 6 and 2 <= s <= 5
        found = ids.boundary_of(task_id)
        if found is not None:
            assert found[1] == state.bound(found[0])
        seen[code] += 1
    # every bound that can move is used; difficulty's low bound cannot move, and is not
    assert set(seen) == {0, 2, 3, 4} and seen[0] > 800
    state.low[0] = 2
    assert not ids.outside(np.array([ids.encode(1, [2, 3], 1)]), state)[0]
    state.low[0] = 1  # the low bound moved: a task made at 2 is stale, one at 0 outside
    assert ids.outside(np.array([ids.encode(1, [2, 3], 1), ids.encode(0, [0, 3], 1)]), state).all()


def _configs(task_ids: list[int]) -> list[Any]:
    cfg = config(session_id="unused")
    gen = make_generator(cfg)
    return [gen.generate(t).env_cfg for t in task_ids]


def test_task_configs_are_pure_functions_of_the_id() -> None:
    cfg = config()
    ids = RangeIds(range_rule(cfg.algorithm_config, cfg.task_generator))
    task_ids = [ids.encode(c, [d, s], seed) for c, d, s, seed in [(0, 3, 4, 1), (2, 10, 0, 99)]]
    gen = make_generator(cfg)
    mine = [gen.generate(t) for t in task_ids]
    assert mine[0].env_cfg["difficulty"] == 0.3 and mine[0].env_cfg["size"] == 18
    assert mine[1].env_cfg["difficulty"] == 1.0 and mine[1].env_cfg["size"] == 8
    assert "difficulty:0.9" in mine[1].label and "size:8" in mine[1].label  # binned labels
    with mp.get_context("spawn").Pool(1) as pool:  # a fresh process and generator
        theirs = pool.apply(_configs, (task_ids,))
    assert theirs == [task.env_cfg for task in mine]


# -- the record's spec --------------------------------------------------------------------------


RULE = RangeRule(
    paths=("difficulty",),
    grid=(5,),
    initial_low=(1,),
    initial_high=(2,),
    step=1,
    buffer_size=3,
    widen_at=0.8,
    narrow_at=0.2,
)


def _decide(state: RangeState, boundary: int, score: float) -> None:
    apply_range_update(state, RangeUpdate([(boundary, state.bound(boundary), 3, 3 * score)]), RULE)


def test_bounds_widen_after_m_mastered_outcomes_never_past_the_span() -> None:
    state = RULE.initial_state()
    apply_range_update(state, RangeUpdate([(1, 2, 2, 2.0)]), RULE)
    assert (state.high[0], state.counts[1], state.version) == (2, 2, 0)  # buffer not full
    apply_range_update(state, RangeUpdate([(1, 2, 1, 1.0)]), RULE)
    assert (state.high[0], state.counts[1], state.sums[1], state.version) == (3, 0, 0.0, 1)
    for _ in range(4):
        _decide(state, 1, 1.0)
        _decide(state, 0, 0.9)
    assert (state.low[0], state.high[0]) == (0, 4)  # the Span's ends
    assert (state.widened, state.version) == (3, 9)  # decisions at a limit move nothing


def test_bounds_narrow_after_m_failed_outcomes_never_inside_the_initial_range() -> None:
    state = RULE.initial_state()
    state.low[0], state.high[0] = 0, 4
    for _ in range(4):
        _decide(state, 0, 0.1)
        _decide(state, 1, 0.15)
    assert (state.low[0], state.high[0]) == (1, 2)  # the initial range
    assert state.narrowed == 3  # low 0 -> 1, high 4 -> 3 -> 2
    _decide(state, 1, 0.5)  # between the thresholds: the buffer clears, the bound stays
    assert (state.high[0], state.counts[1], state.version) == (2, 0, 9)


def test_stale_boundary_outcomes_are_counted_not_folded() -> None:
    state = RULE.initial_state()
    apply_range_update(state, RangeUpdate([(1, 3, 5, 5.0), (0, 1, 1, 0.5), (7, 0, 2, 1.0)]), RULE)
    assert state.stale == 7  # index 3 is not the high bound (2); boundary 7 names no axis
    assert state.counts[:2] == [1, 0] and state.sums[0] == 0.5
    apply_range_update(state, RangeUpdate([(1, 2, 3, 3.0), (1, 2, 2, 2.0)]), RULE)
    assert state.high[0] == 3 and state.stale == 9  # the second entry came after the move


# -- both backends ------------------------------------------------------------------------------


def _open(url: str | None, session: str, **fields: Any) -> TaskMemoryBackend:
    params = pool_params(config(url, session_id=session, **fields))
    return open_backend(url, session, params, create=True, lock_timeout_s=5.0)


def _drive(backend: TaskMemoryBackend, seed: int) -> list[RangeState]:
    rng = np.random.default_rng(seed)
    special = [0.0, 1.0, 0.1, 0.2 + 0.1, 1e-300, 1 - 1e-16]
    states = []
    for _ in range(120):
        current = backend.range_state()
        entries = []
        for _ in range(int(rng.integers(1, 6))):
            boundary = int(rng.integers(0, 5))  # 4 boundaries, and one that names no axis
            index = current.bound(boundary) if rng.random() < 0.8 else int(rng.integers(0, 11))
            count = int(rng.integers(1, 4))
            scores = [special[int(rng.integers(0, 6))] if rng.random() < 0.3 else rng.random()]
            total = float(sum(scores * count)) * float(rng.choice([1.0, 0.2, 0.9]))
            entries.append((boundary, index, count, total))
        states.append(backend.update_ranges(RangeUpdate(entries)))
    return states


@pytest.mark.parametrize("redis_kind", ["fakeredis", "redis"])
def test_the_record_is_identical_on_shm_and_redis(redis_kind: str, request) -> None:
    remote_url = (
        "fakeredis://" if redis_kind == "fakeredis" else request.getfixturevalue("redis_url")
    )
    if redis_kind == "fakeredis":
        import redis_support

        redis_support.FAKE.reset()
    shm = _open(None, unique_session("range-shm"), buffer_size=4, widen_at=0.6, narrow_at=0.4)
    remote = _open(
        remote_url, unique_session("range-redis"), buffer_size=4, widen_at=0.6, narrow_at=0.4
    )
    try:
        assert shm.range_state() == remote.range_state() == shm.params.initial_ranges()
        mine, theirs = _drive(shm, seed=5), _drive(remote, seed=5)
        assert mine == theirs  # every record after every update, sums bit for bit
        last = mine[-1]
        assert last.widened and last.narrowed and last.stale  # the drive moved every way
        assert shm.export_state().ranges == remote.export_state().ranges == last
        assert shm.range_state() == remote.range_state() == last
    finally:
        shm.close()
        remote.destroy()


def test_a_pool_made_with_another_range_rule_is_refused(url: str | None) -> None:
    session = unique_session("range-rule")
    with Curriculum(config(url, session_id=session, buffer_size=5)) as cur:
        with pytest.raises(PoolMismatchError, match="buffer_size"):
            Curriculum(config(url, session_id=session, buffer_size=6))
        cur.destroy()


# -- through the curriculum ---------------------------------------------------------------------


def _play(cur: Curriculum, episodes: int, score: Any) -> None:
    for _ in range(episodes):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, score(task.get_env_cfg()))


def test_a_curriculum_widens_to_the_span_and_narrows_back(url: str | None) -> None:
    cfg = config(url, buffer_size=4, write_batch_size=4, snapshot_max_age_s=0.0)
    with Curriculum(cfg) as cur:
        _play(cur, 800, lambda env: 1.0)
        stats = cur.stats()
        assert (stats["range/difficulty/low"], stats["range/difficulty/high"]) == (0.0, 1.0)
        assert (stats["range/size/low"], stats["range/size/high"]) == (8.0, 32.0)
        assert stats["range/widened"] == 10 + 2 + 5
        _play(cur, 1600, lambda env: 0.0)
        stats = cur.stats()
        assert (stats["range/difficulty/low"], stats["range/difficulty/high"]) == (0.0, 0.0)
        assert (stats["range/size/low"], stats["range/size/high"]) == (13.0, 20.0)
        assert stats["range/narrowed"] == 10 + 2 + 5
        state = cur.backend.range_state()
        assert stats["range/version"] == state.version >= 34
        for _ in range(40):  # every draw replaces a task outside the ranges first
            cur.get_task()
        for task_id in cur.task_probabilities():
            env = cur.task_for_id(task_id).get_env_cfg()
            assert env["difficulty"] == 0.0 and 13 <= env["size"] <= 20
        cur.destroy()


def test_a_call_that_raised_queues_nothing_and_a_failed_write_is_sent_once(
    url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(
        url, buffer_size=10_000, boundary_prob=1.0, write_batch_size=1000, write_max_delay_s=1e3
    )
    with Curriculum(cfg) as cur:
        session = cur._session
        ids = RangeIds(range_rule(cfg.algorithm_config, cfg.task_generator))
        stranger = ids.encode(2, [0, 2], 12345)  # a boundary id this pool never handed out
        with pytest.raises(UnknownTaskError):
            cur.update_task_performance(stranger, 1.0)
        with pytest.raises(UnknownTaskError):
            cur.update_task_performance_batch([stranger], [1.0])
        assert session.queue.range_scores == {}
        tasks = [cur.get_task() for _ in range(16)]
        for task in tasks:
            cur.update_task_performance(task.task_id, 0.5)
        real = type(cur.backend).update_ranges
        calls = []

        def failing_once(backend: Any, update: RangeUpdate) -> RangeState:
            calls.append(update.write_id)
            if len(calls) == 1:
                raise BackendUnavailableError("the server went away")
            return real(backend, update)

        monkeypatch.setattr(type(cur.backend), "update_ranges", failing_once)
        with pytest.raises(BackendUnavailableError):
            cur.flush()
        cur.flush()
        assert len(calls) == 2 and calls[0] == calls[1]  # the same write, sent again
        assert cur.health()["health/write_retries"] == 1
        state = cur.backend.range_state()
        assert sum(state.counts) == 16 and sum(state.sums) == 8.0 and state.stale == 0
        cur.destroy()


def _report_boundaries(index: int, handle: Curriculum | bytes, plays: int) -> dict[str, Any]:
    cur = open_handle(handle)
    ids = cur._session.ranges.ids  # type: ignore[union-attr]
    rng = np.random.default_rng(100 + index)
    counts: Counter[int] = Counter()
    sums: dict[int, float] = {}
    for _ in range(plays):
        task = cur.get_task()
        score = float(rng.random())
        cur.update_task_performance(task.task_id, score)
        found = ids.boundary_of(task.task_id)
        if found is not None:
            counts[found[0]] += 1
            sums[found[0]] = sums.get(found[0], 0.0) + score
    cur.close()
    return {"counts": dict(counts), "sums": sums}


@pytest.mark.parametrize("kind", ["shm", "redis"])
def test_processes_reporting_to_one_pool_fold_every_outcome_once(kind: str, request) -> None:
    url = None if kind == "shm" else request.getfixturevalue("redis_url")
    axes = {"difficulty": RangeAxis(low=0.2, high=0.6), "size": RangeAxis(low=12, high=20)}
    cfg = config(url, axes=axes, buffer_size=1 << 30, num_active_tasks=8)
    with Curriculum(cfg) as cur:
        reports = run_workers(
            _report_boundaries,
            [(pickle.dumps(cur), 1500) for _ in range(3)],
            ctx=mp.get_context("fork"),
        )
        state = cur.backend.range_state()
        expected: Counter[int] = Counter()
        for report in reports:
            expected.update({int(b): n for b, n in report["counts"].items()})
        assert state.counts[:4] == [expected[b] for b in range(4)]
        assert all(expected[b] > 100 for b in range(4))
        for b in range(4):
            total = sum(r["sums"].get(b, 0.0) for r in reports)
            assert state.sums[b] == pytest.approx(total, rel=1e-12)
        assert (state.stale, state.version) == (0, 0)
        assert cur.stats()["curriculum/num_completed"] == 4500
        cur.destroy()


# -- checkpoints and docs -----------------------------------------------------------------------


def test_checkpoints_carry_the_range_record(url: str | None) -> None:
    cfg = config(url, buffer_size=4, write_batch_size=1)
    with Curriculum(cfg) as cur:
        _play(cur, 300, lambda env: float(env["difficulty"] < 0.45))
        saved = cur.get_state()
        before = cur.backend.range_state()
        assert before.widened and before.version
        _play(cur, 100, lambda env: 0.0)
        assert cur.backend.range_state() != before
        cur.load_state(pickle.loads(pickle.dumps(saved)))
        assert cur.backend.range_state() == before
        cur.destroy()


def test_ranges_on_another_grid_are_refused_even_with_the_override(url: str | None) -> None:
    """A range record holds grid indices: on another grid they name other values (past the
    Span, even), so such a checkpoint is refused and the pool left as it was."""
    with Curriculum(config(url, buffer_size=4, write_batch_size=1)) as source:
        _play(source, 200, lambda env: 1.0)
        saved = source.get_state()
        source.destroy()
    with Curriculum(config(url, grid=21, buffer_size=4, write_batch_size=1)) as target:
        _play(target, 20, lambda env: 0.5)
        before = target.backend.range_state()
        with pytest.raises(CheckpointError, match=r"grids \[11, 11\].*\[21, 21\]"):
            target.load_state(saved, allow_param_mismatch=True)
        assert target.backend.range_state() == before
        target.destroy()


def test_a_checkpoint_of_the_previous_layout_still_loads(url: str | None) -> None:
    lp = conftest.make_config(lp_backend_url=url, num_active_tasks=8)
    with Curriculum(lp) as cur:
        _play(cur, 50, lambda env: 0.5)
        state = cur.get_state()
        state["params"]["struct_version"] = 4  # as layout version 4 wrote it
        del state["params"]["ranges"], state["ranges"]
        cur.load_state(state)
        assert cur.stats()["curriculum/num_completed"] == 50
        cur.destroy()
    adr_cfg = config(url)
    with Curriculum(adr_cfg) as cur:
        rule_state = cur.backend.range_state()
        state = cur.get_state()
        del state["ranges"]
        cur.load_state(state)  # no record: the pool's initial ranges
        assert cur.backend.range_state() == rule_state == cur.backend.params.initial_ranges()
        cur.destroy()


def test_every_range_stats_key_is_documented() -> None:
    page = STATS_PAGE.read_text()
    with Curriculum(config()) as cur:
        _play(cur, 20, lambda env: 1.0)
        keys = [k for k in cur.stats() if k.startswith("range/")]
    assert len(keys) == 8
    for key in keys:
        shown = re.sub(r"^range/(difficulty|size)/", "range/<path>/", key)
        assert f"`{shown}`" in page, key


def test_learning_progress_pools_have_no_range_rule() -> None:
    params = pool_params(conftest.make_config())
    assert params.ranges is None and params.initial_ranges() == RangeState()
    assert "ranges" in params.to_dict()  # compared on attach like every other parameter


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("applied", [True, False], ids=["reply-lost", "not-sent"])
def test_a_range_update_whose_reply_was_lost_is_applied_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, applied: bool
) -> None:
    cfg = config(redis_url, boundary_prob=1.0, buffer_size=1000, write_batch_size=1)
    cur = Curriculum(cfg)
    try:
        backend = cur.backend
        real_call = backend._call

        def call(name: str, *args: Any) -> Any:
            if name != "update_ranges":
                return real_call(name, *args)
            monkeypatch.setattr(backend, "_call", real_call)  # once
            if applied:
                real_call(name, *args)  # the server ran the script, the reply never came
            raise BackendUnavailableError("Redis connection lost")

        monkeypatch.setattr(backend, "_call", call)
        task = cur.get_task()
        assert cur._session.ranges.ids.boundary_of(task.task_id) is not None  # type: ignore[union-attr]
        cur.update_task_performance(task.task_id, 0.75)  # its range write fails: stays queued
        assert cur.health()["health/pending_outcomes"] == 0  # the pool's outcome is written
        cur.flush()  # sent again, with its write id
        state = backend.range_state()
        assert (sum(state.counts), sum(state.sums)) == (1, 0.75)
        assert cur.health()["health/write_retries"] == 1
    finally:
        cur.destroy()


def _die_inside_a_range_write(session: str) -> None:
    import os

    import backends.shared_memory as shm

    cur = Curriculum(config(session_id=session, boundary_prob=1.0, write_batch_size=1))
    real = shm.apply_range_update

    def apply_then_die(state: RangeState, update: RangeUpdate, rule: RangeRule) -> None:
        real(state, update, rule)
        cur.backend._pool.ranges[()] = shm.range_to_record(state)  # type: ignore[attr-defined]
        os._exit(86)  # killed after changing the record, before the write commits

    shm.apply_range_update = apply_then_die
    task = cur.get_task()
    cur.update_task_performance(task.task_id, 1.0)


def test_a_range_write_killed_midway_is_rolled_back() -> None:
    session = unique_session("range-crash")
    with Curriculum(config(session_id=session, boundary_prob=1.0)) as cur:
        before = cur.backend.range_state()
        child = mp.get_context("spawn").Process(target=_die_inside_a_range_write, args=(session,))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 86
        assert cur.backend.range_state() == before  # the next lock holder rolled it back
        assert not cur.backend._journal.pending
        cur.destroy()


def test_a_process_attaching_to_a_full_pool_evicts_nothing_in_range(url: str | None) -> None:
    cfg = config(url)
    with Curriculum(cfg) as first:
        for _ in range(16):
            first.get_task()
        first.flush()
        second = Curriculum(cfg)  # attaches: its view must use the pool's ranges at once
        try:
            view = second._session.view(fresh=True)
            assert len(view.active) == 16 and view.eviction_order == []
        finally:
            second.close()
        first.destroy()


def test_boundary_outcomes_of_a_lost_pool_are_dropped_with_it(redis_url: str) -> None:
    cfg = config(redis_url, boundary_prob=1.0, buffer_size=1000, write_batch_size=1)
    cur = Curriculum(cfg)
    try:
        task = cur.get_task()
        cur.flush()
        with Curriculum(cfg) as destroyer:  # another process removes the pool
            destroyer.destroy()
        cur.update_task_performance(task.task_id, 1.0)  # re-created empty; the outcome dropped
        cur.update_task_performance(task.task_id, 1.0)  # a task of the lost pool: dropped
        assert cur.health()["health/dropped_outcomes"] == 2
        cur.flush()
        state = cur.backend.range_state()
        assert sum(state.counts) == 0 and state.stale == 0
        fresh = cur.get_task()
        cur.update_task_performance(fresh.task_id, 1.0)
        cur.flush()
        assert sum(cur.backend.range_state().counts) == 1
    finally:
        cur.destroy()


def _deterministic_run(url: str | None) -> tuple[list[int], tuple[float, ...]]:
    cfg = config(url, buffer_size=4, write_batch_size=4, deterministic=True, seed=3)
    rng = np.random.default_rng(0)
    picked = []
    with Curriculum(cfg) as cur:
        for _ in range(600):
            task = cur.get_task()
            picked.append(task.task_id)
            p = 0.9 - 0.5 * task.get_env_cfg()["difficulty"]
            cur.update_task_performance(task.task_id, float(rng.random() < p))
        stats = cur.stats()
        cur.destroy()
    keys = ("range/difficulty/low", "range/difficulty/high", "range/widened", "range/narrowed")
    return picked, tuple(stats[key] for key in keys)


def test_deterministic_mode_replays_the_same_tasks_and_ranges(url: str | None) -> None:
    first, ranges = _deterministic_run(url)
    again, ranges_again = _deterministic_run(url)
    assert first == again
    assert ranges == ranges_again
    assert ranges[2] > 0 and ranges[3] > 0  # the ranges moved both ways on the way
