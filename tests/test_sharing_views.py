"""Sharing a pool: the writers estimate (``health/writers``) counts this process's outcomes as the
snapshot it compares with did, whether the view was refreshed inline or in a helper thread;
other writers bring the refresh forward (within its CPU budget), and a refresh writes this
process's queued outcomes first."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backends.base import PoolSnapshot
from backends.layout import LABEL_DTYPE, empty_rows
from curriculum.algorithms import DiscreteRandomAlgorithm
from curriculum.background import ViewRefresher
from curriculum.errors import BackendUnavailableError
from curriculum.view_cache import ViewCache


def snapshot(version: int, completed: int) -> PoolSnapshot:
    rows = empty_rows(8)
    rows["task_id"] = np.arange(8)
    return PoolSnapshot(version, rows, np.zeros(0, LABEL_DTYPE), [], {"num_completed": completed})


class Pool:
    """A backend's read side: the version and snapshot a refresh reads."""

    def __init__(self, version: int, completed: int) -> None:
        self.current = snapshot(version, completed)

    def version(self) -> int:
        return self.current.version

    def snapshot(self) -> PoolSnapshot:
        return self.current


def cache(shared_cost_factor: float = 10.0) -> ViewCache:
    return ViewCache(
        DiscreteRandomAlgorithm(),
        capacity=8,
        max_age_s=60.0,
        refresh_after_outcomes=64,
        max_task_failures=3,
        cost_factor=0.0,
        shared_cost_factor=shared_cost_factor,
    )


def test_a_background_refresh_counts_own_outcomes_as_its_snapshot_did() -> None:
    """Four processes at one pace: the pool gained 400 outcomes while this process wrote 100.
    This process writes 64 more after the helper thread read the pool and before the view is
    installed; the estimate must compare 400 with 100, not with 164 (which read 2.4 writers
    where there are 4)."""
    views = cache()
    views.install(views.score(snapshot(1, 0)), 0.0)  # the first view marks (0, 0)
    views.own_outcomes = 100
    refresher = ViewRefresher()
    refresher.start(Pool(2, 400), views, version=1)  # type: ignore[arg-type]
    assert refresher.call is not None and refresher.call.wait(5.0)
    views.own_outcomes = 164  # written after the snapshot
    refresher.finish(views)
    assert views.writers == pytest.approx(1.0 + 0.5 * (400 / 100 - 1.0))


def test_an_inline_refresh_counts_own_outcomes_now() -> None:
    views = cache()
    views.install(views.score(snapshot(1, 0)), 0.0)
    views.own_outcomes = 100
    views.refreshed(snapshot(2, 200), time.thread_time())
    assert views.writers == pytest.approx(1.5)  # 2 writers seen, smoothed from 1


def test_other_writers_bring_a_refresh_forward_within_its_budget() -> None:
    """With 4 writers, a quarter of the refresh threshold of this process's outcomes makes the
    view due, but only once it is ``shared_cost_factor`` times its refresh cost old (a small
    pool's own threshold has no such bound)."""
    views = cache(shared_cost_factor=10.0)
    views.install(views.score(snapshot(1, 0)), 0.001)
    views.cost_s = 0.001
    views.outcomes_since = 16
    views.taken_at = time.monotonic() - 0.02  # twice the budget: 10 x 1 ms
    assert not views.due(), "one writer: a quarter of the threshold is not enough"
    views.writers = 4.0
    assert views.due()
    views.outcomes_since = 15
    assert not views.due()
    views.outcomes_since = 16
    views.taken_at = time.monotonic()  # younger than its budget
    assert not views.due(), "brought forward although the refresh budget is spent"
    views.outcomes_since = 64
    assert views.due(), "this process's own threshold is not bound by the budget"


def test_a_refresh_writes_the_queued_outcomes_first(curricula) -> None:
    """Outcomes below a batch are written when the view is refreshed: the new view, and the
    other processes' next ones, show them (deterministic mode did so already)."""
    curriculum = curricula(
        num_active_tasks=8, write_batch_size=64, write_max_delay_s=600.0, snapshot_max_age_s=5.0
    )
    tasks = [curriculum.get_task() for _ in range(12)]  # the pool is full: later draws sample
    for task in tasks[:10]:
        curriculum.update_task_performance(task.task_id, 1.0)

    queue = curriculum._session.queue

    def completed() -> float:
        return float(curriculum.backend.snapshot().counters["num_completed"])

    curriculum.get_task()
    assert (completed(), queue.open_outcomes) == (0, 10), "written before the view was due"
    curriculum._session.views.taken_at -= 10.0  # the view is now older than snapshot_max_age_s
    curriculum.get_task()
    assert queue.open_outcomes == 0
    # written, or on Redis sent ahead of its reply (which fakeredis runs when the reply is read)
    assert max(completed(), queue.outcomes_in_flight) == 10


@pytest.mark.parametrize(
    ("mode", "background"), [("buffer", False), ("raise", False), ("buffer", True)]
)
def test_a_refresh_whose_write_fails_does_not_wait_for_the_server_again(
    curricula, monkeypatch, mode: str, background: bool
) -> None:
    """The server hangs: the write before a refresh fails, and the call does not also try the
    read (which would wait as long again): buffer mode samples from the last view, raise mode
    raises the write's error. The outcomes stay queued and are written once afterwards."""
    from curriculum import session as session_module

    if background:  # the refresh would run in a helper thread
        monkeypatch.setattr(session_module, "BACKGROUND_REFRESH_S", -1.0)
        monkeypatch.setattr(session_module, "BACKGROUND_MIN_TASKS", 1)
    curriculum = curricula(
        num_active_tasks=8,
        write_batch_size=64,
        write_max_delay_s=600.0,
        snapshot_max_age_s=5.0,
        on_backend_unavailable=mode,
    )
    tasks = [curriculum.get_task() for _ in range(12)]
    for task in tasks[:10]:
        curriculum.update_task_performance(task.task_id, 1.0)
    backend = curriculum.backend
    attempts: list[str] = []

    def hung(name: str):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            attempts.append(name)
            raise BackendUnavailableError("no reply from the server within 5 s")

        return call

    saved = {
        name: getattr(backend, name) for name in ("record", "record_send", "version", "snapshot")
    }
    for name in saved:
        setattr(backend, name, hung(name))
    curriculum._session.views.taken_at -= 10.0  # the view is due
    try:
        if mode == "raise":
            with pytest.raises(BackendUnavailableError, match="no reply"):
                curriculum.get_task()
        else:
            curriculum.get_task()
    finally:
        for name, method in saved.items():
            setattr(backend, name, method)
    assert len(attempts) == 1, attempts
    assert curriculum.health()["health/pending_outcomes"] == 10
    curriculum.flush()
    assert curriculum.backend.snapshot().counters["num_completed"] == 10
