"""The per-process session: reproducible runs, the raised-call rule, health figures, forks."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from typing import Any

import numpy as np
import pytest
from conftest import make_config, remove_pool, unique_session

from curriculum import Curriculum
from curriculum.errors import BackendUnavailableError, ConfigError, LockTimeoutError, ScoreError
from curriculum.generators import SingleTaskGenerator
from curriculum.view_cache import MAX_WRITERS


def _play(curriculum: Curriculum, episodes: int, seed: int = 7) -> list[int]:
    """Task ids handed out while playing coin-flip-ish outcomes that depend only on the id."""
    rng = np.random.default_rng(seed)
    picked = []
    for _ in range(episodes):
        task = curriculum.get_task()
        picked.append(task.task_id)
        p = (task.task_id % 97) / 97
        curriculum.update_task_performance(task.task_id, float(rng.random() < p))
    return picked


def test_deterministic_mode_picks_the_same_tasks_for_the_same_outcomes(curricula) -> None:
    first = curricula(num_active_tasks=24, deterministic=True, seed=3)
    second = curricula(num_active_tasks=24, deterministic=True, seed=3)
    assert _play(first, 1500) == _play(second, 1500)
    assert first.stats()["curriculum/num_evicted"] > 0  # evictions happened along the way


def test_a_restored_checkpoint_continues_the_same_sequence(curricula) -> None:
    source = curricula(num_active_tasks=24, deterministic=True, seed=5)
    _play(source, 800)
    state = source.get_state()
    target = curricula(num_active_tasks=24, deterministic=True, seed=5)  # the same config
    target.load_state(state)
    assert _play(target, 600, seed=11) == _play(source, 600, seed=11)


def test_bool_and_huge_scores_are_refused_and_record_nothing(curricula) -> None:
    curriculum = curricula()
    task = curriculum.get_task()
    for bad in (True, np.bool_(False), 10**400, -(10**400)):
        with pytest.raises(ScoreError, match="score"):
            curriculum.update_task_performance(task.task_id, bad)
    with pytest.raises(ScoreError, match="too large"):
        curriculum.update_task_performance_batch([task.task_id], [10**400])
    assert curriculum.stats()["curriculum/num_completed"] == 0


def test_a_label_named_like_the_overflow_bucket_is_refused(curricula) -> None:
    generator = SingleTaskGenerator.Config(env={"label": "(other)"})
    curriculum = curricula(generator=generator)
    with pytest.raises(ConfigError, match="overflow"):
        curriculum.get_task()


def test_a_full_label_table_is_said_once(curricula, caplog) -> None:
    from conftest import nav_generator

    curriculum = curricula(generator=nav_generator(), max_labels=2, num_active_tasks=16)
    with caplog.at_level(logging.WARNING, logger="curriculum"):
        for _ in range(40):
            task = curriculum.get_task()
            curriculum.update_task_performance(task.task_id, 0.5)
    said = [r for r in caplog.records if "label table is full" in r.getMessage()]
    assert len(said) == 1
    assert "max_labels=2" in said[0].getMessage()


def test_health_figures_are_public_and_in_stats(curricula) -> None:
    curriculum = curricula(write_batch_size=50)
    for _ in range(5):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, 1.0)
    assert curriculum.health()["health/pending_outcomes"] == 5
    stats = curriculum.stats()  # writes the queue first
    assert stats["health/pending_outcomes"] == 0
    assert stats["health/writers"] == 1.0  # one process
    for key in ("outages", "in_outage", "dropped_outcomes", "late_outcomes", "write_retries"):
        assert stats[f"health/{key}"] == 0


def test_task_stats_and_probabilities(curricula) -> None:
    curriculum = curricula(num_active_tasks=8)
    _play(curriculum, 200)
    probabilities = curriculum.task_probabilities()
    assert len(probabilities) == 8
    assert sum(probabilities.values()) == pytest.approx(1.0)
    task_id = next(iter(probabilities))
    figures = curriculum.task_stats(task_id)
    assert figures["task_id"] == task_id
    assert figures["probability"] == pytest.approx(probabilities[task_id])
    assert figures["outcomes"] > 0 and 0.0 <= figures["mean_score"] <= 1.0
    assert figures["label"].startswith("nav")


class _StuckLock:
    """Stands in for a lock held by a hung process: every write times out."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls = 0

    def record(self, batch, *, wait=True):
        self.calls += 1
        raise LockTimeoutError("lock of pool held by pid 1 for 10 s")


def test_a_write_that_times_out_never_makes_the_call_raise_nor_counts_twice(curricula) -> None:
    curriculum = curricula(write_batch_size=1)
    task = curriculum.get_task()
    backend = curriculum.backend
    stuck = _StuckLock(backend)
    real_record, real_send = backend.record, backend.record_send
    backend.record = backend.record_send = stuck.record  # type: ignore[method-assign]
    try:
        curriculum.update_task_performance(task.task_id, 1.0)  # does not raise: queued
        assert stuck.calls == 1
        assert curriculum.health()["health/pending_outcomes"] == 1
        assert curriculum.health()["health/outages"] == 1
    finally:
        backend.record, backend.record_send = real_record, real_send  # type: ignore[method-assign]
    curriculum.flush()
    stats = curriculum.stats()
    assert stats["curriculum/num_completed"] == 1  # written exactly once
    assert stats["health/write_retries"] == 1


def test_a_full_outage_buffer_refuses_the_outcome_and_keeps_the_rest(curricula) -> None:
    curriculum = curricula(write_batch_size=1, max_buffered_outcomes=2)
    task = curriculum.get_task()
    backend = curriculum.backend
    real_record, real_send = backend.record, backend.record_send
    backend.record = backend.record_send = _StuckLock(backend).record  # type: ignore[method-assign]
    try:
        curriculum.update_task_performance(task.task_id, 1.0)
        curriculum.update_task_performance(task.task_id, 1.0)
        with pytest.raises(BackendUnavailableError, match="were not recorded"):
            curriculum.update_task_performance(task.task_id, 1.0)
    finally:
        backend.record, backend.record_send = real_record, real_send  # type: ignore[method-assign]
    curriculum.flush()
    assert curriculum.stats()["curriculum/num_completed"] == 2


def _child_plays(curriculum: Curriculum, queue) -> None:
    before = curriculum.health()["health/pending_outcomes"]
    task = curriculum.get_task()
    curriculum.update_task_performance(task.task_id, 1.0)
    curriculum.flush()
    queue.put((before, os.getpid()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_writes_what_its_parent_queued(tmp_path) -> None:
    config = make_config(write_batch_size=100, num_active_tasks=8)
    session = config.algorithm_config.session_id
    try:
        with Curriculum(config) as parent:
            for _ in range(5):
                task = parent.get_task()
                parent.update_task_performance(task.task_id, 0.0)
            ctx = mp.get_context("fork")
            queue = ctx.Queue()
            child = ctx.Process(target=_child_plays, args=(parent, queue))
            child.start()
            before, pid = queue.get(timeout=60)
            child.join(60)
            assert child.exitcode == 0 and pid != os.getpid()
            assert before == 0  # the child's queue starts empty
            stats = parent.stats()
            assert stats["curriculum/num_completed"] == 6  # 5 of the parent's, 1 of the child's
    finally:
        remove_pool(session)


def test_session_names_are_generated_for_private_pools() -> None:
    config = make_config()
    private = config.model_copy(
        update={"algorithm_config": config.algorithm_config.model_copy(update={"session_id": None})}
    )
    with Curriculum(private) as curriculum:
        assert curriculum.location.private
        assert curriculum.session_id.startswith("auto-")
    assert unique_session()  # the helper still works for the others


def _write_alongside(index: int, config_json: str, barrier: Any, episodes: int) -> float:
    """Play ``episodes`` episodes after the others are ready; the largest writers estimate."""
    from curriculum import CurriculumConfig

    rng = np.random.default_rng(index)
    with Curriculum(CurriculumConfig.model_validate_json(config_json)) as curriculum:
        barrier.wait(timeout=60)
        estimates = []
        for episode in range(episodes):
            task = curriculum.get_task()
            curriculum.update_task_performance(task.task_id, float(rng.random() < 0.5))
            if episode % 500 == 499:
                estimates.append(curriculum.health()["health/writers"])
        return max(estimates)  # while the three overlapped (one may finish alone)


def test_processes_sharing_a_pool_see_each_other_as_writers() -> None:
    """Three processes writing into one pool each see the pool move faster than their own
    outcomes: about three writers at one pace, more for a process the machine runs slower (a
    single process estimates one: see test_health_figures_are_public_and_in_stats)."""
    from workers import run_workers

    config = make_config(num_active_tasks=64)
    session = config.algorithm_config.session_id
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    try:
        with Curriculum(config):  # the pool outlives the workers
            estimates = run_workers(
                _write_alongside,
                [(config.model_dump_json(), barrier, 6000) for _ in range(3)],
                ctx=ctx,
            )
    finally:
        remove_pool(session)
    assert all(1.8 <= e <= MAX_WRITERS for e in estimates), estimates


def test_large_pools_refresh_their_view_off_the_calling_thread(monkeypatch) -> None:
    """Once a refresh costs more than BACKGROUND_REFRESH_S (here: always), get_task samples on
    from its view while a helper thread re-reads and re-scores the pool; tasks this process
    places meanwhile still show in the new view, and no outcome is lost."""
    import threading

    from curriculum import session as session_module

    monkeypatch.setattr(session_module, "BACKGROUND_REFRESH_S", -1.0)
    monkeypatch.setattr(session_module, "BACKGROUND_MIN_TASKS", 1)
    config = make_config(num_active_tasks=64, write_batch_size=8, snapshot_max_age_s=0.0)
    session_id = config.algorithm_config.session_id
    try:
        with Curriculum(config) as curriculum:
            backend = curriculum.backend
            readers: list[str] = []
            real_snapshot = backend.snapshot

            def snapshot():  # type: ignore[no-untyped-def]
                readers.append(threading.current_thread().name)
                return real_snapshot()

            backend.snapshot = snapshot  # type: ignore[method-assign]
            played = _play(curriculum, 3000)
            reported = len(played)
            backend.snapshot = real_snapshot  # type: ignore[method-assign]
            now_active = set(backend.snapshot().rows["task_id"].tolist())
            evicted = set(played) - now_active
            outcomes = {t: played.count(t) for t in evicted}
            # a task placed while a refresh ran is never evicted on its predecessor's score
            assert min(outcomes.values()) >= 10, sorted(outcomes.values())[:5]
            assert readers.count("curriculum-view-refresh") >= 10, readers[-20:]
            in_caller = [r for r in readers[5:] if r != "curriculum-view-refresh"]
            assert not in_caller, "re-reads on the calling thread once warm"
            stats = curriculum.stats()
            assert stats["curriculum/num_completed"] == reported
            assert stats["curriculum/num_evicted"] > 0
            active = set(curriculum.task_probabilities())
            assert len(active) == 64
    finally:
        remove_pool(session_id)


def test_background_refresh_can_be_turned_off(monkeypatch) -> None:
    import threading

    from curriculum import session as session_module

    monkeypatch.setattr(session_module, "BACKGROUND_REFRESH_S", -1.0)
    monkeypatch.setattr(session_module, "BACKGROUND_MIN_TASKS", 1)
    config = make_config(num_active_tasks=32, background_refresh=False, snapshot_max_age_s=0.0)
    session_id = config.algorithm_config.session_id
    try:
        with Curriculum(config) as curriculum:
            before = threading.active_count()
            _play(curriculum, 500)
            assert not curriculum._session._background
            assert threading.active_count() == before
    finally:
        remove_pool(session_id)


def test_clipping_is_said_once(curricula, caplog, monkeypatch) -> None:
    from curriculum import validation

    monkeypatch.setattr(validation, "_clip_said", False)
    curriculum = curricula(clip_scores=True)
    task = curriculum.get_task()
    with caplog.at_level(logging.WARNING, logger="curriculum"):
        curriculum.update_task_performance(task.task_id, 3.0)
        curriculum.update_task_performance(task.task_id, -1.0)
        curriculum.update_task_performance_batch([task.task_id], [7.0])
    said = [r for r in caplog.records if "clipped" in r.getMessage()]
    assert len(said) == 1 and "3.0" in said[0].getMessage()
    assert curriculum.stats()["curriculum/num_completed"] == 3


def test_a_view_lives_at_least_ten_times_its_refresh_cost_by_either_rule() -> None:
    """However fast a process records outcomes, it refreshes its view at most about once per
    REFRESH_COST_FACTOR times the CPU time the last refresh took; deterministic mode counts
    outcomes only."""
    import time

    from curriculum.algorithms import DiscreteRandomAlgorithm
    from curriculum.view_cache import REFRESH_COST_FACTOR, ViewCache

    def cache(by_time: bool) -> ViewCache:
        views = ViewCache(
            DiscreteRandomAlgorithm(),
            capacity=8,
            max_age_s=0.05,
            refresh_after_outcomes=16,
            max_task_failures=3,
            by_time=by_time,
        )
        assert views.due()  # no view yet
        views.view = object()  # type: ignore[assignment]
        views.cost_s = 0.01
        views.outcomes_since = 1_000  # far past the outcome rule
        return views

    timed = cache(by_time=True)
    timed.taken_at = time.monotonic()
    assert not timed.due(), "re-read although the view is younger than 10x its cost"
    timed.taken_at = time.monotonic() - REFRESH_COST_FACTOR * timed.cost_s
    assert timed.due()
    timed.outcomes_since = 0  # the age rule alone: max(max_age_s, 10x cost)
    assert timed.due()
    timed.taken_at = time.monotonic() - 0.06
    timed.cost_s = 0.0
    assert timed.due()
    timed.taken_at = time.monotonic()
    assert not timed.due()

    counted = cache(by_time=False)
    counted.taken_at = time.monotonic()
    assert counted.due(), "deterministic mode refreshes by outcome count, whatever the clock"
    counted.outcomes_since = 15
    assert not counted.due()


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5, float("nan")])
def test_refresh_cpu_share_out_of_range_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="refresh_cpu_share"):
        make_config(refresh_cpu_share=share)


def test_only_large_pools_bound_their_refresh_cpu() -> None:
    from curriculum.view_cache import refresh_cost_factor

    assert refresh_cost_factor(make_config(num_active_tasks=511), 511) == 0.0
    assert refresh_cost_factor(make_config(num_active_tasks=512), 512) == 10.0
    config = make_config(num_active_tasks=1024, refresh_cpu_share=0.25)
    assert refresh_cost_factor(config, 1024) == 4.0


def test_a_stale_view_waits_for_its_refresh_on_shared_memory() -> None:
    """A fast loop keeps the GIL from the helper thread that refreshes a large pool's view;
    once the view is the refresh threshold of outcomes old, get_task waits a little for the
    helper, so the view installed never lags far behind this process's own outcomes."""
    config = make_config(num_active_tasks=1000, refresh_cpu_share=1.0)
    session_id = config.algorithm_config.session_id
    try:
        with Curriculum(config) as curriculum:
            session = curriculum._session
            assert session._catch_up
            views = session.views
            lags: list[int] = []
            install = views.install

            def record(view, cost, own_outcomes=None):  # type: ignore[no-untyped-def]
                lags.append(views.outcomes_since)
                return install(view, cost, own_outcomes)

            views.install = record  # type: ignore[method-assign]
            _play(curriculum, 8000)
            assert len(lags) > 20
            # without the wait: thousands of outcomes (measured 4,000-8,500)
            assert max(lags[3:]) <= 2 * views.refresh_after_outcomes, sorted(lags)[-5:]
    finally:
        remove_pool(session_id)


def test_only_in_memory_reads_make_a_stale_view_wait() -> None:
    from curriculum.background import STALE_WAIT_S, ViewRefresher

    class Pending:
        def __init__(self) -> None:
            self.waits: list[float | None] = []

        def done(self) -> bool:
            return False

        def wait(self, timeout: float | None = None) -> bool:
            self.waits.append(timeout)
            return False

    class Views:
        refresh_after_outcomes = 100
        outcomes_since = 99

    refresher, call, views = ViewRefresher(), Pending(), Views()
    refresher.call = call  # type: ignore[assignment]
    assert not refresher.overdue(views, catch_up=True)  # type: ignore[arg-type]
    assert call.waits == []  # not stale yet: no wait
    views.outcomes_since = 100
    assert not refresher.overdue(views, catch_up=False)  # type: ignore[arg-type]
    assert call.waits == []  # Redis: never waits
    assert not refresher.overdue(views, catch_up=True)  # type: ignore[arg-type]
    assert call.waits == [STALE_WAIT_S]


def test_a_lone_process_counts_one_writer_through_batches_and_an_outage(curricula) -> None:
    """The writers estimate compares the pool's outcomes with this process's over a span: an
    outcome recorded before a span and written in it (queued in a batch, or buffered through an
    outage) must not count as another process's."""
    curriculum = curricula(
        num_active_tasks=16, write_batch_size=64, snapshot_max_age_s=0.0, outage_retry_s=0.001
    )
    backend = curriculum.backend
    real_record, real_send = backend.record, backend.record_send

    def unreachable(batch, *, wait=True):
        raise BackendUnavailableError("connection refused (the test's outage)")

    estimates = []
    for episode in range(3000):
        if episode == 1000:
            backend.record = backend.record_send = unreachable  # type: ignore[method-assign]
        if episode == 1400:
            backend.record, backend.record_send = real_record, real_send  # type: ignore[method-assign]
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, float(episode % 3 == 0))
        estimates.append(curriculum.health()["health/writers"])
    assert curriculum.health()["health/outages"] >= 1
    # the buffer was written: what is left is at most the open batch and one sent ahead
    assert curriculum.health()["health/pending_outcomes"] < 2 * 64
    assert max(estimates) == pytest.approx(1.0)
