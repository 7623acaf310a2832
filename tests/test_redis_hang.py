"""A Redis that accepts connections and then hangs (a stopped server process) never freezes
training longer than ``backend_timeout_s``; a write that timed out keeps its write id and counts
once when it is sent again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import redis_support
from conftest import make_config, unique_session

from backends.base import WriteBatch
from backends.redis_backend import RedisBackend
from curriculum import Curriculum
from curriculum.curriculum import pool_params
from curriculum.errors import BackendUnavailableError

# If a call blocks on the stopped server, this resumes it after SAFETY_S so the test ends (and
# fails: the call returned only because the server came back).
SAFETY_S = 30.0


@pytest.fixture
def server() -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of the test's own (it gets stopped)."""
    try:
        with redis_support.spawned_redis() as spawned:
            yield spawned
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"this test must run on CI, but no redis-server can be spawned: {exc}")
        pytest.skip(f"no redis-server to spawn: {exc}")


class Stopped:
    """The server process stopped (SIGSTOP) until the block ends, or SAFETY_S have passed."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.resumed_by_safety = threading.Event()
        self._timer = threading.Timer(SAFETY_S, self._resume_for_safety)

    def _resume_for_safety(self) -> None:
        self.resumed_by_safety.set()
        os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> Stopped:
        os.kill(self.process.pid, signal.SIGSTOP)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        os.kill(self.process.pid, signal.SIGCONT)


def _config(url: str, **fields: object):
    return make_config(
        lp_backend_url=url,
        num_active_tasks=16,
        backend_timeout_s=0.2,
        outage_retry_s=0.2,
        write_batch_size=1,
        snapshot_max_age_s=0.0,
        **fields,
    )


def test_a_stopped_server_does_not_block_training_in_buffer_mode(server) -> None:
    """Before: ``get_task`` waited for the hung server (10 s socket timeout, retried)."""
    url, process = server
    rng = np.random.default_rng(0)
    with Curriculum(_config(url)) as cur:
        for _ in range(40):
            task = cur.get_task()
            cur.update_task_performance(task.task_id, float(rng.random()))
        cur.flush()
        reported = 40
        with Stopped(process) as stopped:
            for _ in range(20):
                task = cur.get_task()
                cur.update_task_performance(task.task_id, float(rng.random()))
                reported += 1
            assert not stopped.resumed_by_safety.is_set(), "a call waited for the server"
            assert cur.health()["health/outages"] == 1
        cur.flush()
        stats = cur.stats()
    assert stats["curriculum/num_completed"] == reported  # each outcome once


def test_a_stopped_server_raises_after_the_bound_in_raise_mode(server) -> None:
    url, process = server
    with Curriculum(_config(url, on_backend_unavailable="raise")) as cur:
        cur.get_task()
        with Stopped(process) as stopped:
            with pytest.raises(BackendUnavailableError, match="TimeoutError") as raised:
                cur.get_task()
            assert not stopped.resumed_by_safety.is_set(), "get_task waited for the server"
        assert raised.value.__cause__ is None and raised.value.__suppress_context__
        cur.get_task()  # the server is back


def test_a_timed_out_write_is_sent_again_with_its_id_and_counts_once(server) -> None:
    """The server runs the script it received while stopped once it resumes; the client,
    which gave up at the bound, sends the same batch (same write id) again: applied once."""
    url, process = server
    config = _config(url)
    session = unique_session("hang")
    backend = RedisBackend(url, session, pool_params(config), timeout_s=0.2)
    try:
        slot = backend.create_task(7, -1, 0)
        assert slot is not None
        batch = WriteBatch()
        for _ in range(5):
            batch.add_outcome(slot, 7, -1, 0.5, 1)
        with Stopped(process), pytest.raises(BackendUnavailableError):
            backend.record(batch)
        assert batch.write_id, "the batch lost its write id"
        for _attempt in range(50):  # the server may need a moment after SIGCONT
            with contextlib.suppress(BackendUnavailableError):
                backend.record(batch)
                break
        else:
            pytest.fail("the server did not answer again")
        snapshot = backend.snapshot()
        assert snapshot.counters["num_completed"] == 5
        assert int(snapshot.rows["n_outcomes"][slot]) == 5
    finally:
        backend.destroy()
