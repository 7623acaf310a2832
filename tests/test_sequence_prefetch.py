"""Redis: a task creation also reserves the process's next sequence number (one round trip per
eviction), and no reserved number is ever used twice: not across processes, not after the pool
was lost and re-created, not by a forked child, not after a checkpoint was loaded. The view
refresher shows a task placed during a background refresh by what the slot held before it."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import make_config, remove_pool

from backends.layout import EMPTY_TASK
from curriculum import Curriculum
from curriculum.algorithms import DiscreteRandomAlgorithm
from curriculum.background import ViewRefresher
from curriculum.view_cache import ViewCache


@pytest.fixture(params=["fakeredis", "redis"])
def redis_backend_url(request: pytest.FixtureRequest) -> Any:
    """A Redis backend (the fake one and a real server)."""
    if request.param == "fakeredis":
        import redis_support

        redis_support.FAKE.reset()
        yield "fakeredis://"
    else:
        yield request.getfixturevalue("redis_url")


def _evicting_config(url: str | None, **fields: Any) -> Any:
    return make_config(
        num_active_tasks=8,
        lp_backend_url=url,
        lp_min_presentations_for_eviction=2,
        lp_eviction_confidence=0.0,
        write_batch_size=1,
        snapshot_max_age_s=0.0,
        refresh_cpu_share=1.0,
        **fields,
    )


def _count_scripts(curriculum: Curriculum) -> Counter[str]:
    """Counts the backend's script calls by name from now on."""
    calls: Counter[str] = Counter()
    backend = curriculum.backend
    inner = backend._call

    def counted(name: str, *args: Any) -> Any:
        calls[name] += 1
        return inner(name, *args)

    backend._call = counted  # type: ignore[method-assign]
    return calls


def _play(curriculum: Curriculum, episodes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        task = curriculum.get_task()
        # tasks with an even id are always solved, the others never: clear evictions
        curriculum.update_task_performance(task.task_id, float(task.task_id % 2 == 0))
        rng.random()


def _check_pool_sequence(curriculum: Curriculum) -> None:
    """Live tasks have distinct ids and sequence numbers, all below the pool's counter."""
    snapshot = curriculum.backend.snapshot()
    rows = snapshot.rows[snapshot.rows["task_id"] != EMPTY_TASK]
    assert len(set(rows["task_id"].tolist())) == len(rows)
    assert len(set(rows["seq"].tolist())) == len(rows)
    assert int(rows["seq"].max()) < snapshot.counters["next_seq"]


def test_an_eviction_costs_one_script_call(redis_backend_url: str) -> None:
    with Curriculum(_evicting_config(redis_backend_url)) as curriculum:
        _play(curriculum, 50)  # fill and warm
        calls = _count_scripts(curriculum)
        evicted = curriculum.stats()["curriculum/num_evicted"]
        _play(curriculum, 400)
        evictions = curriculum.stats()["curriculum/num_evicted"] - evicted
        assert evictions >= 10, "the test must drive evictions"
        assert calls["replace_task"] >= evictions
        assert calls["reserve_sequence"] == 0, calls
        _check_pool_sequence(curriculum)
        curriculum.destroy()


def test_deterministic_mode_reserves_each_number_when_it_is_used(redis_backend_url: str) -> None:
    config = _evicting_config(redis_backend_url, deterministic=True)
    with Curriculum(config) as curriculum:
        _play(curriculum, 50)
        calls = _count_scripts(curriculum)
        _play(curriculum, 400)
        assert calls["replace_task"] >= 10
        assert calls["reserve_sequence"] == calls["replace_task"], calls
        curriculum.destroy()


def _worker(curriculum: Curriculum, seed: int) -> None:
    _play(curriculum, 600, seed)
    curriculum.close()


def test_processes_never_share_a_reserved_number(redis_url: str) -> None:
    config = _evicting_config(redis_url)
    with Curriculum(config) as curriculum:
        ctx = mp.get_context("spawn")
        workers = [ctx.Process(target=_worker, args=(curriculum, i)) for i in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            assert worker.exitcode == 0
        stats = curriculum.stats()
        assert stats["curriculum/num_completed"] == 1800
        assert stats["curriculum/num_evicted"] >= 30
        # every creation took its own number (numbers of lost compare-and-sets and of closed
        # processes stay unused)
        assert curriculum.backend.snapshot().counters["next_seq"] >= stats["curriculum/num_created"]
        _check_pool_sequence(curriculum)
        curriculum.destroy()


def test_a_recreated_pool_never_gets_a_number_of_the_lost_one(redis_url: str) -> None:
    config = _evicting_config(redis_url)
    session_id = config.algorithm_config.session_id
    with Curriculum(config) as curriculum:
        _play(curriculum, 300)
        assert curriculum.backend._next_seq is not None  # a number of the old pool is reserved
        remove_pool(session_id, redis_url)
        _play(curriculum, 300)  # the pool is re-created (on_pool_lost="recreate")
        snapshot = curriculum.backend.snapshot()
        assert snapshot.counters["num_created"] > 8
        _check_pool_sequence(curriculum)
        curriculum.destroy()


def test_a_loaded_checkpoint_brings_its_own_sequence(redis_backend_url: str) -> None:
    with Curriculum(_evicting_config(redis_backend_url)) as source:
        _play(source, 60)
        state = source.get_state()
        _play(source, 300)
        assert source.backend._next_seq is not None
        source.load_state(state)  # next_seq goes back: the reserved number is not the pool's
        _play(source, 300)
        _check_pool_sequence(source)
        source.destroy()


def _child_reserves(curriculum: Curriculum, queue: Any) -> None:
    queue.put(curriculum.backend.reserve_sequence())


def test_a_forked_child_does_not_take_its_parents_reserved_number(redis_url: str) -> None:
    with Curriculum(_evicting_config(redis_url)) as curriculum:
        _play(curriculum, 300)
        assert curriculum.backend._next_seq is not None
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_reserves, args=(curriculum, queue))
        child.start()
        child_seq = queue.get(timeout=60)
        child.join(timeout=60)
        parent_seq = curriculum.backend.reserve_sequence()
        assert child_seq != parent_seq
        curriculum.destroy()


def test_a_task_placed_during_a_background_refresh_shows_by_what_it_replaced() -> None:
    """The snapshot of a refresh that ran while this process placed tasks shows a placed task
    when it still holds the task that was replaced, whatever the sequence numbers' order."""
    config = make_config(num_active_tasks=4)
    try:
        with Curriculum(config) as curriculum:
            _play(curriculum, 20)
            backend = curriculum.backend
            snapshot = backend.snapshot()
            views = ViewCache(
                DiscreteRandomAlgorithm(),
                capacity=4,
                max_age_s=0.0,
                refresh_after_outcomes=1,
                max_task_failures=3,
            )
            views.view = views.score(snapshot)
            held = [int(t) for t in snapshot.rows["task_id"]]
            refresher = ViewRefresher()
            refresher.start(backend, views, version=-1)  # reads the pool as it is now
            refresher.call.wait()  # type: ignore[union-attr]
            new_seq = 0  # lower than every number in the pool (reserved long ago)
            refresher.note_placed(0, held[0], 10**9, 0, new_seq)  # the snapshot holds held[0]
            refresher.note_placed(1, 12345, 10**9 + 1, 0, new_seq)  # slot 1 changed again since
            refresher.finish(views)
            assert views.view.task_id(0) == 10**9
            assert views.view.task_id(1) == held[1]
            assert 0 not in views.evictions
    finally:
        remove_pool(config.algorithm_config.session_id)


def test_an_eviction_tells_the_refresher_which_task_it_replaced() -> None:
    config = _evicting_config(None)
    try:
        with Curriculum(config) as curriculum:
            session = curriculum._session
            placed: list[tuple[int, int, int]] = []
            holder: dict[int, int] = {}  # slot -> task id, as this process placed them
            note = session.refresher.note_placed

            def noted(slot: int, replaced: int, task_id: int, label_id: int, seq: int) -> None:
                placed.append((slot, replaced, holder.get(slot, EMPTY_TASK)))
                holder[slot] = task_id
                note(slot, replaced, task_id, label_id, seq)

            session.refresher.note_placed = noted  # type: ignore[method-assign]
            _play(curriculum, 400)
            assert curriculum.stats()["curriculum/num_evicted"] >= 10
            # one process: the task a placement replaced is the one it placed there before
            assert [replaced for _, replaced, _ in placed] == [held for _, _, held in placed]
    finally:
        remove_pool(config.algorithm_config.session_id)
