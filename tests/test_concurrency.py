"""Many processes on one shared pool: exact counts, labels, slot reuse and CAS evictions.

Every test runs on each backend several processes can share (``process_backend_url``: the
/dev/shm pool and a real Redis), through the autouse fixture ``pool_backend``: the module's
:func:`make_config` puts that backend's URL into every config, so one suite covers both.

Every test runs real processes (``multiprocessing`` with explicit ``fork`` / ``spawn`` contexts,
through :func:`workers.run_workers`); worker functions live at module level so ``spawn`` children
can import them. Workers report what they did (tasks played, tasks they created or evicted, labels
they saw) through a queue, and the parent checks the shared pool against those reports exactly.
Every wait is bounded.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
from collections import Counter
from collections.abc import Iterator
from typing import Any

import conftest
import numpy as np
import pytest
from conftest import nav_generator, remove_pool, unique_session
from workers import PlacementLog, audit_placements, open_handle, record, run_workers

from backends.layout import EMPTY_TASK
from backends.redis_backend import RedisBackend
from backends.shared_memory import SharedMemoryBackend
from curriculum import Curriculum, CurriculumConfig, Span
from curriculum.ema import BASELINE_CAP
from curriculum.task_ids import derive_task_id

# -- helpers ------------------------------------------------------------------------------------


_BACKEND_URL: str | None = None  # set per test by ``pool_backend``; read by make_config


@pytest.fixture(autouse=True)
def pool_backend(
    process_backend_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str | None]:
    """Run every test of this module on /dev/shm (None) and on a real Redis (its URL)."""
    monkeypatch.setitem(globals(), "_BACKEND_URL", process_backend_url)
    yield process_backend_url


@pytest.fixture
def session_id(pool_backend: str | None) -> Iterator[str]:
    """A session id no other test uses; its pool is removed even when the test fails.

    On /dev/shm that is the segment (normally unlinked by its creator's ``close``); on Redis,
    where a pool outlives its creator, every key of the session and its registry entry.
    """
    sid = unique_session("conc")
    yield sid
    remove_pool(sid, pool_backend)


def make_config(session_id: str, **fields: Any) -> CurriculumConfig:
    """:func:`conftest.make_config` on ``session_id``, on the test's backend."""
    return conftest.make_config(lp_session_id=session_id, lp_backend_url=_BACKEND_URL, **fields)


def opened_on_test_backend(cur: Curriculum) -> Curriculum:
    """``cur``, after checking that its pool lives on the backend the test is parametrised with."""
    expected = SharedMemoryBackend if _BACKEND_URL is None else RedisBackend
    assert isinstance(cur.backend, expected), f"{type(cur.backend).__name__} is not {expected}"
    return cur


def task_score(task_id: int) -> float:
    """A fixed score per task (spread over [0, 1]), so a row's stats follow from its task id."""
    return ((task_id * 0x9E3779B1) >> 7) % 1001 / 1000.0


# -- workers (module level: spawn children import them) ----------------------------------------


def _play_random(index: int, handle: Curriculum | bytes, n_plays: int) -> dict[str, Any]:
    """Play ``n_plays`` episodes with random scores; report everything needed to audit the pool."""
    cur = open_handle(handle)
    log = PlacementLog(cur.backend)
    rng = np.random.default_rng(1000 + index)
    plays: Counter[int] = Counter()
    labels: dict[int, str] = {}
    score_sum = 0.0
    for _ in range(n_plays):
        task = cur.get_task()
        score = float(rng.random())
        cur.update_task_performance(task.task_id, score)
        plays[task.task_id] += 1
        score_sum += score
        if task.task_id not in labels:
            labels[task.task_id] = task.get_label()
    cur.close()
    return {"plays": dict(plays), "labels": labels, "score_sum": score_sum, **log.report()}


def _play_fixed_scores(index: int, handle: Curriculum | bytes, n_plays: int) -> dict[str, Any]:
    """Play ``n_plays`` episodes, each task always scoring ``task_score(task_id)``."""
    cur = open_handle(handle)
    log = PlacementLog(cur.backend)
    plays: Counter[int] = Counter()
    for _ in range(n_plays):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, task_score(task.task_id))
        plays[task.task_id] += 1
    cur.close()
    return {"plays": dict(plays), **log.report()}


def _labels_then_read(index: int, cur: Curriculum, barrier: Any, n_plays: int) -> dict[str, Any]:
    """Create tasks (and so labels), wait for every worker, then read the pool's labels."""
    log = PlacementLog(cur.backend)
    generator = cur.config.task_generator.create()
    rng = np.random.default_rng(index)
    seen: set[str] = set()
    for _ in range(n_plays):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, float(rng.random()))
        seen.add(task.get_label())
    cur.flush()
    created = {generator.generate(t).label for _, t, _ in log.created}
    created |= {generator.generate(t).label for _, _, t, _ in log.replaced}
    barrier.wait(timeout=30)  # every worker has written its labels
    snapshot = cur.backend.snapshot()
    stats = cur.stats()
    wrong_rows = [
        (task_id, label_id)
        for task_id, label_id in zip(
            snapshot.rows["task_id"].tolist(), snapshot.rows["label_id"].tolist(), strict=True
        )
        if task_id != EMPTY_TASK
        and snapshot.label_names[label_id] != generator.generate(task_id).label
    ]
    cur.close()
    return {
        "seen": seen,
        "created": created,
        "names_after_barrier": list(snapshot.label_names),
        "stat_labels": {k.split("/")[1] for k in stats if k.startswith("label/")},
        "wrong_rows": wrong_rows,
    }


def _evict_after_barrier(index: int, handle: Curriculum | bytes, barrier: Any) -> dict[str, Any]:
    """Score the pool now, wait for every racer, then take one task from that (stale) view."""
    cur = open_handle(handle)
    log = PlacementLog(cur.backend)
    order = list(cur._session.view(fresh=True).eviction_order)
    barrier.wait(timeout=30)
    task = cur.get_task()
    cur.close()
    return {"order": order, "slot": task.slot, "task_id": task.task_id, **log.report()}


def _record_after_inheriting(index: int, cur: Curriculum, n_plays: int) -> None:
    record(cur, n_plays)
    cur.close()


# -- tests --------------------------------------------------------------------------------------

N_WORKERS = 4
N_PLAYS = 5_000
CAPACITY = 64


@pytest.mark.parametrize(
    ("method", "transport"),
    [("fork", "inherit"), ("fork", "pickle"), ("spawn", "inherit")],
    ids=["fork-inherited", "fork-pickled", "spawn"],
)
def test_four_processes_count_every_outcome_exactly(
    session_id: str, method: str, transport: str
) -> None:
    """4 x 5,000 outcomes (default write batching) with concurrent evictions: nothing is lost,
    duplicated or credited to the wrong task, label or slot."""
    ctx = mp.get_context(method)
    config = make_config(session_id, num_active_tasks=CAPACITY)
    min_presentations = config.algorithm_config.min_presentations_for_eviction
    generator = config.task_generator.create()
    with opened_on_test_backend(Curriculum(config)) as cur:
        handle: Curriculum | bytes = cur if transport == "inherit" else pickle.dumps(cur)
        reports = run_workers(_play_random, [(handle, N_PLAYS) for _ in range(N_WORKERS)], ctx=ctx)
        total = N_WORKERS * N_PLAYS
        stats = cur.stats()
        snapshot = cur.backend.snapshot()

        # totals
        assert stats["curriculum/num_completed"] == total
        assert stats["epoch/num_completed"] == total
        assert stats["curriculum/num_scheduled"] == total  # one per get_task call, all workers
        assert stats["curriculum/num_active_tasks"] == CAPACITY
        names = snapshot.label_names
        assert len(set(names)) == len(names), "a label was interned twice"
        assert sum(stats[f"label/{n}/completions"] for n in names) == total
        assert sum(stats[f"label/{n}/samples"] for n in names) == total
        assert int(snapshot.labels["late"].sum()) == snapshot.counters["num_late_outcomes"]
        score_sum = sum(r["score_sum"] for r in reports)
        assert stats["reward/mean"] == pytest.approx(score_sum / total, rel=1e-9)

        # per task and per label, against what the workers sent
        plays: Counter[int] = Counter()
        labels: dict[int, str] = {}
        for report in reports:
            plays.update(report["plays"])
            labels.update(report["labels"])
        assert sum(plays.values()) == total
        per_label: Counter[str] = Counter()
        for task_id, n in plays.items():
            assert labels[task_id] == generator.generate(task_id).label
            per_label[labels[task_id]] += n
        assert set(per_label) <= set(names), "a label a worker saw is missing in the parent"
        for name in names:
            assert stats[f"label/{name}/completions"] == per_label[name], name
            assert stats[f"label/{name}/samples"] == per_label[name], name

        # active rows: a task never evicted got every outcome and sample sent for it, no more
        rows = snapshot.rows[snapshot.rows["task_id"] != EMPTY_TASK]
        for row in rows:
            task_id = int(row["task_id"])
            assert row["n_outcomes"] == plays[task_id], f"task {task_id}"
            assert row["n_samples"] == plays[task_id], f"task {task_id}"
            assert names[int(row["label_id"])] == generator.generate(task_id).label
            assert derive_task_id(0, int(row["seq"])) == task_id
        active_ids = set(rows["task_id"].tolist())
        sent_to_evicted = sum(n for t, n in plays.items() if t not in active_ids)
        assert int(rows["n_outcomes"].sum()) + sent_to_evicted == total
        late = snapshot.counters["num_late_outcomes"]
        assert 0 <= late <= sent_to_evicted  # only outcomes of evicted tasks can arrive late
        applied_to_evicted = sent_to_evicted - late

        # evictions: compare-and-set, each evicted task had its min_presentations outcomes
        created, replaced = audit_placements(snapshot, reports, CAPACITY)
        num_evicted = snapshot.counters["num_evicted"]
        assert num_evicted > 0, "the test must drive evictions"
        assert stats["curriculum/num_evicted"] == num_evicted == len(replaced)
        assert stats["curriculum/num_created"] == CAPACITY + num_evicted
        assert num_evicted * min_presentations <= applied_to_evicted
        for _, task_id, label_id in created:
            assert names[label_id] == generator.generate(task_id).label
        for _, _, task_id, label_id in replaced:
            assert names[label_id] == generator.generate(task_id).label
        created_per_label = Counter(names[lab] for _, _, lab in created)
        created_per_label.update(names[lab] for _, _, _, lab in replaced)
        evicted_per_label = Counter(generator.generate(old).label for _, old, _, _ in replaced)
        active_per_label = Counter(names[int(lab)] for lab in rows["label_id"])
        for name in names:
            assert stats[f"label/{name}/created"] == created_per_label[name], name
            assert stats[f"label/{name}/evictions"] == evicted_per_label[name], name
            assert stats[f"label/{name}/active_tasks"] == active_per_label[name], name


def test_labels_created_in_one_process_are_readable_in_all(session_id: str) -> None:
    """Labels interned by any worker are visible, with the same ids, to every other process."""
    ctx = mp.get_context("spawn")
    # ~3,000 possible labels: each worker creates labels the others never created themselves
    config = make_config(
        session_id,
        num_active_tasks=16,
        generator=nav_generator(Span(8, 1_000)),
        lp_min_presentations_for_eviction=2,
        write_batch_size=4,
        refresh_cpu_share=1.0,  # short fast runs: refresh by outcome count, so tasks get evicted
    )
    generator = config.task_generator.create()
    with opened_on_test_backend(Curriculum(config)) as cur:
        assert cur.backend.snapshot().label_names == []  # the parent caches an empty table
        barrier = ctx.Barrier(3)
        reports = run_workers(_labels_then_read, [(cur, barrier, 150) for _ in range(3)], ctx=ctx)
        snapshot = cur.backend.snapshot()
        stats = cur.stats()

    every_label = set().union(*(r["seen"] | r["created"] for r in reports))
    assert any(every_label - r["seen"] - r["created"] for r in reports), (
        "test precondition: some worker must read labels only others created"
    )
    assert len(set(snapshot.label_names)) == len(snapshot.label_names)
    assert every_label <= set(snapshot.label_names)
    assert every_label <= {k.split("/")[1] for k in stats if k.startswith("label/")}
    for index, report in enumerate(reports):
        assert every_label <= set(report["names_after_barrier"]), f"worker {index}"
        assert every_label <= report["stat_labels"], f"worker {index}"
        assert report["wrong_rows"] == [], f"worker {index}: rows with a foreign label id"
        # label ids agree across processes: a shared prefix of one append-only table
        seen_by_worker = report["names_after_barrier"]
        assert snapshot.label_names[: len(seen_by_worker)] == seen_by_worker
    for row in snapshot.rows:
        task_id = int(row["task_id"])
        label = snapshot.label_names[int(row["label_id"])]
        assert label == generator.generate(task_id).label


def _check_fresh_row(row: np.ndarray, names: list[str], generator: Any) -> None:
    """A row's stats must be those of its own task alone (each task always scores the same)."""
    task_id = int(row["task_id"])
    if task_id == EMPTY_TASK:
        return
    where = f"slot row of task {task_id}"
    assert derive_task_id(0, int(row["seq"])) == task_id, f"{where}: seq of another task"
    assert names[int(row["label_id"])] == generator.generate(task_id).label, f"{where}: label"
    n = int(row["n_outcomes"])
    assert row["n_samples"] == n, f"{where}: {row['n_samples']} samples, {n} outcomes"
    s = task_score(task_id)
    if n == 0:
        for field in ("score_sum", "baseline", "fast", "slow", "perf", "reward", "reward_sq"):
            assert row[field] == 0.0, f"{where}: fresh task has {field}={row[field]}"
        assert row["n_success"] == 0, where
        return
    baseline = min(s, BASELINE_CAP)
    x = max(s - baseline, 0.0) / (1.0 - baseline)
    assert row["n_success"] == (n if s >= 0.5 else 0), where
    assert row["score_sum"] == pytest.approx(n * s, rel=1e-9, abs=1e-12), where
    assert row["baseline"] == pytest.approx(baseline, abs=1e-12), where
    for field, expected in (
        ("fast", x),
        ("slow", x),
        ("perf", s),
        ("reward", s),
        ("reward_sq", s * s),
    ):
        assert row[field] == pytest.approx(expected, abs=1e-12), f"{where}: {field}"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reused_slot_carries_nothing_of_the_evicted_task(session_id: str, method: str) -> None:
    """Heavy eviction on 8 slots: every row, in every snapshot taken while 4 workers play, holds
    only its own task's stats, samples, label and sequence; at the end exactly what was sent."""
    ctx = mp.get_context(method)
    capacity = 8
    config = make_config(
        session_id,
        num_active_tasks=capacity,
        lp_min_presentations_for_eviction=2,
        write_batch_size=1,
    )
    generator = config.task_generator.create()
    with opened_on_test_backend(Curriculum(config)) as cur:
        polls = [0]

        def check_live_snapshot() -> None:
            snapshot = cur.backend.snapshot()
            for row in snapshot.rows:
                _check_fresh_row(row, snapshot.label_names, generator)
            polls[0] += 1

        reports = run_workers(
            _play_fixed_scores,
            [(pickle.dumps(cur), 500) for _ in range(N_WORKERS)],
            ctx=ctx,
            while_waiting=check_live_snapshot,
        )
        snapshot = cur.backend.snapshot()
        stats = cur.stats()

    assert polls[0] > 0
    plays: Counter[int] = Counter()
    for report in reports:
        plays.update(report["plays"])
    replaced = [c for r in reports for c in r["replaced"]]
    assert len(replaced) >= capacity, "the test must reuse slots"
    assert len({slot for slot, *_ in replaced}) > 1
    for row in snapshot.rows:
        _check_fresh_row(row, snapshot.label_names, generator)
        task_id = int(row["task_id"])
        assert row["n_outcomes"] == plays[task_id], f"task {task_id}"
    for _, old, new, _ in replaced:
        assert old != new
    assert stats["curriculum/num_completed"] == N_WORKERS * 500
    assert stats["curriculum/num_evicted"] == len(replaced)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_racing_evictions_with_one_stale_view_replace_each_task_once(
    session_id: str, method: str
) -> None:
    """Four processes score the same full pool, then evict from that stale view at once: the
    compare-and-set makes them take four distinct slots; no task is evicted twice."""
    ctx = mp.get_context(method)
    capacity = 4
    config = make_config(
        session_id,
        num_active_tasks=capacity,
        lp_min_presentations_for_eviction=1,
        write_batch_size=1,
        snapshot_max_age_s=3600.0,  # a view is only refreshed after this process's own changes
    )
    with opened_on_test_backend(Curriculum(config)) as cur:
        first = [cur.get_task() for _ in range(capacity)]
        for task in first:
            cur.update_task_performance(task.task_id, 0.5)
        stats = cur.stats()  # refreshes this process's view: every task is now evictable
        assert stats["curriculum/num_created"] == capacity
        order = list(cur._session.view().eviction_order)
        assert sorted(order) == list(range(capacity))
        barrier = ctx.Barrier(capacity - 1)  # the parent races last, after the barrier
        blob = pickle.dumps(cur)
        reports = run_workers(
            _evict_after_barrier, [(blob, barrier) for _ in range(capacity - 1)], ctx=ctx
        )
        for report in reports:
            assert report["order"] == order, "racers must start from the same view"
        # the parent was the slowest racer: its view still names the tasks the others replaced
        log = PlacementLog(cur.backend)
        barrier_free = cur.get_task()
        racers = [*reports, {"slot": barrier_free.slot, **log.report()}]
        snapshot = cur.backend.snapshot()
        counters = snapshot.counters

        assert sorted(r["slot"] for r in racers) == list(range(capacity)), (
            "each racer must win a distinct slot"
        )
        replaced = [c for r in racers for c in r["replaced"]]
        assert len(replaced) == capacity
        assert sorted(old for _, old, _, _ in replaced) == sorted(t.task_id for t in first)
        assert counters["num_evicted"] == capacity
        assert counters["num_created"] == 2 * capacity
        assert sorted(snapshot.rows["task_id"].tolist()) == sorted(new for _, _, new, _ in replaced)
        assert log.cas_failures == capacity - 1, "the stale racer must fail 3 compare-and-sets"

        # a direct stale compare-and-set changes nothing (the version may move: it only
        # promises to move on every change)
        victim = first[0]
        assert not cur.backend.replace_task(victim.slot, victim.task_id, 12345, 0, 10**6)
        after = cur.backend.snapshot()
        assert np.array_equal(after.rows, snapshot.rows)
        assert np.array_equal(after.labels, snapshot.labels)
        assert after.counters == snapshot.counters


def test_stale_views_under_churn_never_double_evict(session_id: str) -> None:
    """Four processes on 4 slots, evictable after 1 outcome, sampling from views up to 20 ms
    stale: every replacement is accounted for exactly once."""
    ctx = mp.get_context("fork")
    capacity = 4
    config = make_config(
        session_id,
        num_active_tasks=capacity,
        lp_min_presentations_for_eviction=1,
        write_batch_size=2,
        snapshot_max_age_s=0.02,
    )
    with opened_on_test_backend(Curriculum(config)) as cur:
        reports = run_workers(
            _play_random, [(pickle.dumps(cur), 600) for _ in range(N_WORKERS)], ctx=ctx
        )
        stats = cur.stats()
        _, replaced = audit_placements(cur.backend.snapshot(), reports, capacity)
    total = N_WORKERS * 600
    assert stats["curriculum/num_completed"] == total
    assert stats["curriculum/num_scheduled"] == total
    assert stats["curriculum/num_evicted"] == len(replaced) > 0
    assert stats["curriculum/num_created"] == capacity + len(replaced)
    applied = total - stats["curriculum/num_late_outcomes"]
    assert len(replaced) <= applied  # each evicted task had at least one applied outcome


def test_fork_children_do_not_resend_the_parents_buffered_outcomes(session_id: str) -> None:
    """Outcomes the parent buffered before forking are written once, not once per child."""
    ctx = mp.get_context("fork")
    config = make_config(session_id, num_active_tasks=8)  # write_batch_size 64: outcomes wait
    with opened_on_test_backend(Curriculum(config)) as cur:
        for _ in range(5):
            task = cur.get_task()
            cur.update_task_performance(task.task_id, 0.5)
        assert cur.health()["health/pending_outcomes"] == 5  # buffered in the parent at fork time
        run_workers(_record_after_inheriting, [(cur, 10) for _ in range(3)], ctx=ctx)
        stats = cur.stats()
    assert stats["curriculum/num_completed"] == 5 + 3 * 10


def _record_and_return(cur: Curriculum, n: int) -> None:
    """A worker given the curriculum as a Process argument: record ``n`` outcomes (fewer than
    a write batch) and return without close() or flush()."""
    record(cur, n)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_worker_given_the_curriculum_as_an_argument_writes_its_outcomes_at_exit(
    session_id: str, method: str
) -> None:
    """Outcomes still buffered when a worker returns are written at its exit, however it was
    started. spawn and forkserver workers unpickle their arguments before multiprocessing
    clears the exit handlers registered so far: the curriculum must register its own again."""
    ctx = mp.get_context(method)
    with opened_on_test_backend(Curriculum(make_config(session_id))) as cur:
        worker = ctx.Process(target=_record_and_return, args=(cur, 7))
        worker.start()
        worker.join(timeout=60)
        assert worker.exitcode == 0
        assert cur.stats()["curriculum/num_completed"] == 7, f"{method}: buffered outcomes lost"
