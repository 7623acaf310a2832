"""The writers estimate (``health/writers``) counts this process's outcomes as the snapshot it
compares with did, whether the view was refreshed inline or in a helper thread."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backends.base import PoolSnapshot
from backends.layout import LABEL_DTYPE, empty_rows
from curriculum.algorithms import DiscreteRandomAlgorithm
from curriculum.background import ViewRefresher
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


def cache() -> ViewCache:
    return ViewCache(
        DiscreteRandomAlgorithm(),
        capacity=8,
        max_age_s=60.0,
        refresh_after_outcomes=64,
        max_task_failures=3,
        cost_factor=0.0,
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
