"""Redis faults during a run: restarts with and without persistence, timeouts, retried writes.

Every test runs its own redis-server (:func:`redis_support.restartable_redis`, on a free port;
never the shared one on 6379) that it kills and starts again on the same port and directory,
and that is killed however the test ends. Workers are real processes (``spawn``, through
:func:`workers.run_workers`) that build their curriculum from the config's JSON, as a trainer on
another host would. Every wait is bounded.

- A restart with AOF (``appendfsync always``: every acknowledged write survives): workers keep
  training through the outage; their outcomes are buffered and written once after the reconnect
  (``on_backend_unavailable="buffer"``) or the calls raise ``BackendUnavailableError`` and keep
  the outcome buffered (``"raise"``). Either way the pool ends up with exactly the outcomes the
  workers reported. Past ``max_buffered_outcomes`` a buffered outcome raises (and is kept).
- A reply that never comes in time (``socket_timeout`` from the URL) while the server is paused
  or busy: redis-py sends the script again, and the write id keeps it from counting twice.
- A restart without persistence (the pool is gone): the attached processes re-create it (one
  creates, the others attach to it) or raise ``PoolLostError``, as configured; a checkpoint
  restores it.
- ``stats()`` while the server is down: the last stats, or an error naming the host without
  the password.

(Lost replies and retries injected into redis-py are covered by ``test_redis_integration.py``
and ``test_redis_send_ahead.py``.)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue as queue_module
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import conftest
import numpy as np
import pytest
import redis
import redis_support
import workers
from conftest import unique_session

from backends.redis_backend import REGISTRY_KEY, load_script, session_keys
from curriculum import Curriculum, CurriculumConfig
from curriculum.checkpoint import decode_state
from curriculum.errors import BackendUnavailableError, PoolLostError, PoolNotFoundError

WORKER_TIMEOUT_S = 45.0  # a worker run (spawn, warm-up, outage, recovery) ends well within this
PHASE_LIMIT_S = 20.0  # each phase a test waits for (progress, recovery) is reached within this
DOWN_S = 1.0  # how long a killed server stays down
STEP_S = 0.001  # a "training step" between episodes
N_ENVS = 4  # environments per worker, each with a task in flight
PASSWORD = "s3cret-pw"

RECREATED = "re-created it empty"
ATTACHED = "attached to the pool another process re-created"


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def aof_server() -> Iterator[redis_support.RestartableRedis]:
    """A redis-server of this test's own with AOF (every write fsynced before its reply)."""
    with redis_support.restartable_redis(aof=True) as server:
        yield server


@pytest.fixture
def volatile_server() -> Iterator[redis_support.RestartableRedis]:
    """A redis-server of this test's own without persistence: a restart loses every key."""
    with redis_support.restartable_redis(aof=False) as server:
        yield server


def make_config(url: str, session_id: str | None = None, **fields: Any) -> CurriculumConfig:
    """:func:`conftest.make_config` on the Redis at ``url`` (a fresh session unless given)."""
    return conftest.make_config(
        lp_backend_url=url, lp_session_id=session_id or unique_session("faults"), **fields
    )


def session_of(config: CurriculumConfig) -> str:
    session_id = config.algorithm_config.session_id
    assert session_id is not None
    return session_id


@contextlib.contextmanager
def admin_client(url: str) -> Iterator[redis.Redis]:
    """A short-lived client of the test's own (not the library's), with short timeouts."""
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        yield client
    finally:
        client.close()


def meta_counter(url: str, session_id: str, name: str) -> int:
    """A counter of the pool's meta hash, read directly (0 when the pool is absent)."""
    with admin_client(url) as client:
        return int(client.hget(session_keys(session_id)[0], name) or 0)


def play(cur: Curriculum, episodes: int, rng: np.random.Generator) -> int:
    """Play ``episodes`` episodes with random scores; the number of outcomes reported."""
    for _ in range(episodes):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, float(rng.random()))
    return episodes


class MessageLog(logging.Handler):
    """Collects the messages of the ``curriculum`` loggers (in a worker process)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def recovered(self) -> bool:
        return any(RECREATED in m or ATTACHED in m for m in self.messages)


# -- workers (module level: spawn children import them) ----------------------------------------


def _train_through_outage(
    index: int, config_json: str, ready: Any, hit: Any, stop: Any, seed: int
) -> dict[str, Any]:
    """Train ``N_ENVS`` environments round-robin until the parent says stop: when an env's
    episode ends its outcome is reported and the env gets its next task (an env whose
    ``get_task`` failed plays its task again). Catches only BackendUnavailableError (what
    ``on_backend_unavailable="raise"`` raises); then closes, which writes what is still
    buffered. Tells the parent (``hit``) when the outage first hit it: when it went into an
    outage (buffer mode) or a call raised (raise mode). Reports the outcomes it handed to
    the curriculum."""
    cur = Curriculum(CurriculumConfig.model_validate_json(config_json))
    rng = np.random.default_rng(seed + index)
    reported = get_errors = update_errors = 0
    messages: list[str] = []
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    tasks = [cur.get_task() for _ in range(N_ENVS)]
    handed_out = N_ENVS
    ready.put(index)
    env, told = 0, False
    while not stop.is_set():
        assert time.monotonic() < deadline, "the parent never said stop"
        time.sleep(STEP_S)  # the episode
        try:
            cur.update_task_performance(tasks[env].task_id, float(rng.random()))
            reported += 1  # a call that returned recorded its outcome, now or later
        except BackendUnavailableError as exc:  # a call that raised recorded nothing
            update_errors += 1
            messages.append(str(exc))
        if not told and (update_errors or get_errors or cur.health()["health/outages"]):
            hit.put(index)
            told = True
        try:
            tasks[env] = cur.get_task()
            handed_out += 1
        except BackendUnavailableError as exc:
            get_errors += 1
            messages.append(str(exc))
        env = (env + 1) % N_ENVS
    in_outage = cur.health()["health/in_outage"]
    cur.close()  # writes the buffer; the server is up again by now
    return {
        "reported": reported,
        "handed_out": handed_out,
        "get_errors": get_errors,
        "update_errors": update_errors,
        "outages": cur.health()["health/outages"],
        "dropped": cur.health()["health/dropped_outcomes"],
        "pending_after_close": cur.health()["health/pending_outcomes"],
        "in_outage_at_stop": in_outage,
        "messages": messages[:5],
    }


def _play_until_recovered(index: int, config_json: str, stop: Any, progress: Any) -> dict[str, Any]:
    """Attach to the pool and play until the parent says stop and this process has recovered
    from the loss of the pool (logged); report the recovery log lines and the incarnation."""
    log = MessageLog()
    logging.getLogger("curriculum").addHandler(log)
    cur = Curriculum(CurriculumConfig.model_validate_json(config_json))
    attached_as_creator = cur.backend.created
    rng = np.random.default_rng(index)
    plays = 0
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not (stop.is_set() and log.recovered()):
        assert time.monotonic() < deadline, "no stop, or no recovery from the lost pool"
        play(cur, 1, rng)
        plays += 1
        if plays == 100:
            progress.put(index)
        time.sleep(STEP_S)
    report = {
        "attached_as_creator": attached_as_creator,
        "created_after_recovery": cur.backend.created,
        "incarnation": cur.backend._incarnation,
        "messages": log.messages,
        "dropped": cur.health()["health/dropped_outcomes"],
        "plays": plays,
    }
    cur.close()
    return report


# -- a restart with AOF -------------------------------------------------------------------------


def _run_through_a_restart(
    server: redis_support.RestartableRedis, config: CurriculumConfig, n_workers: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Workers train on ``config``'s pool; once they made progress the server is SIGKILLed,
    stays down ``DOWN_S`` (and until the outage hit every worker) and is started again (same
    port, same AOF); once they made progress again they are stopped. Returns their reports and
    what the parent saw."""
    ctx = mp.get_context("spawn")
    ready, hit, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    sid = session_of(config)
    seen: dict[str, int] = {}
    started: set[int] = set()
    hit_workers: set[int] = set()
    state = {"phase": "starting", "since": time.monotonic()}

    def completed() -> int:
        return meta_counter(server.url, sid, "num_completed")

    def drive() -> None:
        phase, now = state["phase"], time.monotonic()
        assert now - state["since"] < PHASE_LIMIT_S, f"stuck in phase {phase}"
        if phase == "starting":
            with contextlib.suppress(queue_module.Empty):
                started.add(ready.get_nowait())
            if len(started) == n_workers:  # every worker is training
                seen["all_started"] = completed()
                state.update(phase="warm-up", since=now)
        elif phase == "warm-up":
            if completed() >= seen["all_started"] + 300:
                seen["before_kill"] = completed()
                server.kill()
                state.update(phase="down", since=now)
        elif phase == "down":
            with contextlib.suppress(queue_module.Empty):
                hit_workers.add(hit.get_nowait())
            # down at least DOWN_S, and until the outage hit every worker
            if now - state["since"] >= DOWN_S and len(hit_workers) == n_workers:
                server.start()
                seen["after_restart"] = completed()
                state.update(phase="recovering", since=time.monotonic())
        elif phase == "recovering":
            if completed() >= seen["after_restart"] + 300 and now - state["since"] >= 1.0:
                stop.set()
                state.update(phase="stopped", since=now)
        else:
            time.sleep(0.01)

    reports = workers.run_workers(
        _train_through_outage,
        [(config.model_dump_json(), ready, hit, stop, 1000) for _ in range(n_workers)],
        ctx=ctx,
        while_waiting=drive,
        timeout_s=WORKER_TIMEOUT_S,
    )
    assert state["phase"] == "stopped"
    return reports, seen


def _assert_counted_exactly_once(
    server: redis_support.RestartableRedis, config: CurriculumConfig, reports: list[dict[str, Any]]
) -> None:
    reported = sum(r["reported"] for r in reports)
    with Curriculum(config) as cur:
        assert not cur.backend.created, "the pool must have survived the restart"
        stats = cur.stats()
    assert all(r["dropped"] == 0 and r["pending_after_close"] == 0 for r in reports), reports
    assert stats["curriculum/num_completed"] == reported, (
        f"{stats['curriculum/num_completed']:.0f} outcomes in the pool, {reported} reported"
    )
    completions = sum(v for k, v in stats.items() if k.endswith("/completions"))
    assert completions == reported
    # only the outcomes of evicted tasks whose reply came after the eviction are late
    assert stats["curriculum/num_late_outcomes"] <= reported
    # every task handed out counts as scheduled once; in raise mode a get_task that raised
    # after buffering its sample count may count one more (its task was never handed out)
    handed_out = sum(r["handed_out"] for r in reports)
    unhanded = sum(r["get_errors"] for r in reports)
    assert handed_out <= stats["curriculum/num_scheduled"] <= handed_out + unhanded


def test_aof_restart_in_buffer_mode_loses_nothing_and_counts_once(
    aof_server: redis_support.RestartableRedis,
) -> None:
    """3 workers share a pool while its server is SIGKILLed and restarted from its AOF: none
    raises, each goes through an outage (sampling from its last view, buffering), and after the
    reconnect the pool holds exactly the outcomes they reported."""
    config = make_config(
        aof_server.url,
        num_active_tasks=32,
        write_batch_size=8,
        outage_retry_s=0.2,
        lp_min_presentations_for_eviction=20,  # evictions (scripts) keep happening too
    )
    reports, seen = _run_through_a_restart(aof_server, config, n_workers=3)

    assert seen["after_restart"] >= seen["before_kill"], "the AOF lost acknowledged writes"
    for report in reports:
        assert report["outages"] >= 1, f"a worker never noticed the outage: {report}"
        assert report["get_errors"] == report["update_errors"] == 0
        assert not report["in_outage_at_stop"], "a worker never reconnected"
    _assert_counted_exactly_once(aof_server, config, reports)


def test_aof_restart_in_raise_mode_raises_and_keeps_the_failed_outcomes(
    aof_server: redis_support.RestartableRedis,
) -> None:
    """``on_backend_unavailable="raise"``: during the outage the workers' get_task calls raise
    BackendUnavailableError naming the host; updates never raise for a failed write (their
    outcomes stay queued), so a worker that catches the error and goes on loses nothing and
    nothing is applied twice."""
    config = make_config(
        aof_server.url,
        num_active_tasks=32,
        write_batch_size=2,  # a flush is due at most updates (which then fail and stay queued)
        on_backend_unavailable="raise",
        lp_min_presentations_for_eviction=20,
    )
    reports, seen = _run_through_a_restart(aof_server, config, n_workers=2)

    assert seen["after_restart"] >= seen["before_kill"], "the AOF lost acknowledged writes"
    for report in reports:
        assert report["get_errors"] > 0, report  # get_task needs the server: it raises
        assert report["update_errors"] == 0, report  # a failed write never makes them raise
        assert report["outages"] >= 1, report  # counted in raise mode too
        for message in report["messages"]:
            assert f"127.0.0.1:{aof_server.port}" in message, message
    _assert_counted_exactly_once(aof_server, config, reports)


def test_outcomes_over_max_buffered_outcomes_raise_and_stay_buffered(
    aof_server: redis_support.RestartableRedis,
) -> None:
    """Buffer mode with ``max_buffered_outcomes=10``: during an outage the 11th and every later
    outcome raise BackendUnavailableError naming the limit and are not recorded (a call that
    raised recorded nothing); the 10 queued ones are written, once, after the reconnect."""
    config = make_config(
        aof_server.url,
        num_active_tasks=8,
        write_batch_size=1,
        outage_retry_s=30.0,  # the whole outage is one retry interval: no reconnect attempts
        max_buffered_outcomes=10,
        background_refresh=False,  # the next get_task's refresh meets the outage itself
    )
    rng = np.random.default_rng(4)
    with Curriculum(config) as cur:
        reported = play(cur, 20, rng)
        cur.flush()
        task = cur.get_task()
        aof_server.kill()
        time.sleep(0.1)  # the cached view is stale: the next get_task asks the server
        assert cur.get_task().task_id >= 0  # from the last view
        assert cur.health()["health/in_outage"] and cur.health()["health/outages"] == 1

        raised: list[str] = []
        for _ in range(20):
            try:
                cur.update_task_performance(task.task_id, 0.5)
                reported += 1
            except BackendUnavailableError as exc:
                raised.append(str(exc))
        assert len(raised) == 10, raised
        assert "max_buffered_outcomes=10" in raised[0] and "were not recorded" in raised[0]
        assert cur.health()["health/pending_outcomes"] == 10

        aof_server.start()
        cur.flush()
        assert cur.health()["health/pending_outcomes"] == 0
        stats = cur.stats()
    assert stats["curriculum/num_completed"] == reported
    assert meta_counter(aof_server.url, session_of(config), "num_completed") == reported


# -- a reply that comes too late ----------------------------------------------------------------


def _busy_server(url: str, seconds: float) -> threading.Thread:
    """Keep the server busy (a Lua loop of another client) for ``seconds``, from a thread."""
    loop = """
    local start = redis.call('TIME')
    local t0 = start[1] * 1000000 + start[2]
    while true do
      local now = redis.call('TIME')
      if now[1] * 1000000 + now[2] - t0 >= tonumber(ARGV[1]) then return 1 end
    end
    """

    def run() -> None:
        with admin_client(url) as client:
            client.eval(loop, 0, int(seconds * 1_000_000))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def stalled(url: str, how: str) -> Iterator[None]:
    """The server holds back every write (``CLIENT PAUSE ... WRITE``) or is busy running
    another client's script (``busy``) for 0.8 s, starting now."""
    if how == "pause":
        with admin_client(url) as client:
            assert client.execute_command("CLIENT", "PAUSE", 800, "WRITE")
        yield
        return
    thread = _busy_server(url, 0.8)
    try:
        time.sleep(0.05)  # let the loop start before the write is sent
        yield
    finally:
        thread.join(timeout=10)
        assert not thread.is_alive()


def _evalsha_calls(url: str) -> int:
    with admin_client(url) as client:
        return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def _connections_received(url: str) -> int:
    with admin_client(url) as client:
        return int(client.info("stats")["total_connections_received"])


@pytest.mark.parametrize("how", ["pause", "busy"])
@pytest.mark.parametrize("path", ["flush", "send_ahead"])
def test_a_script_reply_that_times_out_is_retried_and_counted_once(
    aof_server: redis_support.RestartableRedis, how: str, path: str
) -> None:
    """``?socket_timeout=0.2`` in the URL (redis-py's query parameters win over the library's
    defaults) while the server holds the ``record`` script back for 0.8 s: the call times out
    after the bound (a timeout is not retried within a call: the server may hang), the write
    stays pending with its write id and is sent again by a later call (``flush``, or the
    send-ahead confirmation); every outcome counts once, whether or not the server ran copies
    of it.

    ``flush``: one batch written by ``flush()``; ``send_ahead``: immediate writes (sent ahead,
    their reply read by the next call) while episodes go on through the stall."""
    url = f"{aof_server.url}?socket_timeout=0.2"
    config = make_config(
        url,
        num_active_tasks=8,
        write_batch_size=1_000 if path == "flush" else 1,
        write_max_delay_s=600.0,
        lp_min_presentations_for_eviction=1_000_000,  # no evictions: only records write
    )
    rng = np.random.default_rng(0)
    with Curriculum(config) as cur:
        kwargs = cur.backend._client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == 0.2, "the URL's socket_timeout must win"
        # the library's bound (backend_timeout_s), untouched by the URL
        assert kwargs["socket_connect_timeout"] == config.backend_timeout_s
        reported = play(cur, 40, rng)
        cur.flush()
        assert cur.stats()["curriculum/num_completed"] == reported

        calls_before = _evalsha_calls(aof_server.url)
        connections_before = _connections_received(aof_server.url)
        started = time.monotonic()
        if path == "flush":
            reported += play(cur, 50, rng)  # buffered
            with stalled(aof_server.url, how):
                with pytest.raises(BackendUnavailableError):
                    cur.flush()  # the bound passes first: the batch stays pending, with its id
                elapsed = 1.0  # the stall, waited out by the context
            for _ in range(50):  # a CLIENT PAUSE may outlast the context: send until it is over
                try:
                    cur.flush()
                    break
                except BackendUnavailableError:
                    time.sleep(0.1)
        else:
            with stalled(aof_server.url, how):
                while time.monotonic() - started < 1.2:
                    reported += play(cur, 1, rng)
            cur.flush()
            elapsed = time.monotonic() - started
        calls = _evalsha_calls(aof_server.url) - calls_before
        # the test's own three connections since (stall, and the two reads above) aside
        reconnects = _connections_received(aof_server.url) - connections_before - 3

        assert elapsed >= 0.5, "the write did not wait for the stalled server"
        assert reconnects >= 1, "the client never timed out and reconnected"
        stats = cur.stats()
    assert stats["curriculum/num_completed"] == reported
    assert stats["curriculum/num_scheduled"] == reported
    assert sum(v for k, v in stats.items() if k.endswith("/completions")) == reported
    if (how, path) == ("busy", "flush"):
        # the busy server ran the first copy after the client had given up on it, then the
        # copy the client sent again: the script replayed the first reply for the second
        assert calls >= 2, f"the server ran {calls} copies of the write"


# -- a restart without persistence: the pool is lost --------------------------------------------


def test_a_lost_pool_is_recreated_once_and_a_checkpoint_restores_it(
    volatile_server: redis_support.RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """The server restarts empty while this process and a spawned one use the pool
    (``on_pool_lost="recreate"``): the next calls of both recover without raising, exactly one
    of them re-creates the pool and the other attaches to that pool; loading a checkpoint taken
    before the loss then restores the counts exactly."""
    url = volatile_server.url
    config = make_config(
        url,
        num_active_tasks=16,
        write_batch_size=8,
        outage_retry_s=0.2,
        lp_min_presentations_for_eviction=10,
    )
    sid = session_of(config)
    ctx = mp.get_context("spawn")
    stop, progress = ctx.Event(), ctx.Queue()
    rng = np.random.default_rng(1)
    checkpoint: dict[str, Any] = {}
    state = {"phase": "wait-for-worker", "since": time.monotonic()}

    caplog.set_level(logging.WARNING, logger="curriculum")
    cur = Curriculum(config)
    try:
        assert cur.backend.created
        old_incarnation = cur.backend._incarnation
        play(cur, 200, rng)

        def drive() -> None:
            phase, now = state["phase"], time.monotonic()
            assert now - state["since"] < PHASE_LIMIT_S, f"stuck in phase {phase}"
            if phase == "wait-for-worker":
                with contextlib.suppress(queue_module.Empty):
                    progress.get_nowait()
                    play(cur, 50, rng)
                    checkpoint.update(cur.get_state())
                    play(cur, 50, rng)  # the pool moves on past the checkpoint
                    volatile_server.kill()
                    time.sleep(0.5)
                    volatile_server.start()  # empty
                    with admin_client(url) as client:  # (or re-created by the worker already)
                        incarnation = client.hget(session_keys(sid)[0], "incarnation")
                        assert incarnation != old_incarnation.encode()
                    state.update(phase="recover", since=time.monotonic())
            elif phase == "recover":
                play(cur, 20, rng)  # the first call notices the loss: no exception
                assert any(
                    RECREATED in r.getMessage() or ATTACHED in r.getMessage()
                    for r in caplog.records
                ), "this process never recovered"
                stop.set()
                state.update(phase="stopped", since=now)
            else:
                time.sleep(0.01)

        [report] = workers.run_workers(
            _play_until_recovered,
            [(config.model_dump_json(), stop, progress)],
            ctx=ctx,
            while_waiting=drive,
            timeout_s=WORKER_TIMEOUT_S,
        )
        assert not report["attached_as_creator"]

        mine = [r.getMessage() for r in caplog.records if sid in r.getMessage()]
        recoveries = {
            "parent": [m for m in mine if RECREATED in m or ATTACHED in m],
            "worker": [m for m in report["messages"] if RECREATED in m or ATTACHED in m],
        }
        assert all(len(found) == 1 for found in recoveries.values()), recoveries
        creators = [who for who, found in recoveries.items() if RECREATED in found[0]]
        assert len(creators) == 1, f"exactly one process must re-create the pool: {recoveries}"
        assert cur.backend.created == (creators == ["parent"])
        assert report["created_after_recovery"] == (creators == ["worker"])

        with admin_client(url) as client:
            assert client.smembers(REGISTRY_KEY) == {sid.encode()}
            incarnation = client.hget(session_keys(sid)[0], "incarnation").decode()
        assert incarnation != old_incarnation
        assert cur.backend._incarnation == report["incarnation"] == incarnation

        # the checkpoint restores the lost pool, counts and all
        cur.load_state(checkpoint)
        saved, _ = decode_state(checkpoint)
        restored = cur.backend.export_state()
        restored_names = cur.backend.snapshot().label_names
        saved_names = checkpoint["labels"]["name"]
        for name in saved.rows.dtype.names:
            if name != "label_id":  # ids are the pool's (labels are merged by name)
                np.testing.assert_array_equal(restored.rows[name], saved.rows[name], name)
        for restored_id, saved_id in zip(
            restored.rows["label_id"], saved.rows["label_id"], strict=True
        ):
            assert (restored_id < 0) == (saved_id < 0)
            if saved_id >= 0:
                assert restored_names[restored_id] == saved_names[saved_id]
        for name in ("num_created", "num_evicted", "num_completed", "num_scheduled"):
            assert restored.counters[name] == saved.counters[name], name
        stats = cur.stats()
        for name in ("created", "evicted", "completed", "scheduled", "late_outcomes", "steps"):
            assert stats[f"curriculum/num_{name}"] == saved.counters[f"num_{name}"], name

        # the same checkpoint in a fresh session of the same config
        algorithm = config.algorithm_config.model_copy(update={"session_id": unique_session()})
        reference = Curriculum(config.model_copy(update={"algorithm_config": algorithm}))
        try:
            reference.load_state(checkpoint)
            expected = reference.stats()
        finally:
            reference.destroy()
        differing = {
            key: (stats.get(key), value)
            for key, value in expected.items()
            if key != "curriculum/num_labels"
            and not key.startswith("health/")  # this process's own figures, not the pool's
            and stats.get(key) != pytest.approx(value, nan_ok=True)  # NaN: nothing to average
        }
        assert not differing, f"the restored pool's stats differ: {differing}"

        play(cur, 10, rng)  # and it keeps training
        assert cur.stats()["curriculum/num_completed"] == saved.counters["num_completed"] + 10
    finally:
        cur.close()


def test_close_after_the_pool_was_lost_drops_the_buffer_and_does_not_raise(
    volatile_server: redis_support.RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """``on_pool_lost="recreate"`` (the default) promises that writes meant for a lost pool
    are dropped, logged with their count, and the process goes on. ``close()`` with outcomes
    still buffered for a pool lost in a restart without persistence must therefore close the
    handle without raising (a trainer's ``with Curriculum(...)`` block ends normally)."""
    config = make_config(
        volatile_server.url, num_active_tasks=8, write_batch_size=1_000, write_max_delay_s=600.0
    )
    sid = session_of(config)
    caplog.set_level(logging.WARNING, logger="curriculum")
    cur = Curriculum(config)
    try:
        play(cur, 20, np.random.default_rng(5))  # buffered since the first view was read
        pending = int(cur.health()["health/pending_outcomes"])
        assert pending > 0
        volatile_server.kill()
        volatile_server.start()  # empty: the pool is lost
        cur.close()
    finally:
        assert cur._closed  # the handle is closed either way
    said = f"{pending} unwritten outcomes dropped"
    assert any(sid in r.getMessage() and said in r.getMessage() for r in caplog.records)


def test_a_retried_attach_that_recreated_the_pool_still_counts_as_created(
    volatile_server: redis_support.RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """The pool was lost; this (only) process re-creates it, but the server is busy while the
    ``attach`` script is on its way, so the reply times out (``?socket_timeout=0.2``) and
    redis-py sends the script again. The first copy creates the pool (with this process's
    incarnation token), the second finds it: the process must still know it created the pool,
    register it in ``curriculum:sessions`` and log that it re-created it."""
    url = f"{volatile_server.url}?socket_timeout=0.2"
    config = make_config(url, num_active_tasks=4)
    sid = session_of(config)
    caplog.set_level(logging.WARNING, logger="curriculum")
    cur = Curriculum(config)
    try:
        play(cur, 20, np.random.default_rng(6))
        cur.flush()
        volatile_server.kill()
        volatile_server.start()  # empty: the pool is lost
        with admin_client(volatile_server.url) as client:  # as after any script call since
            client.script_load(load_script("attach"))

        attach = cur.backend._attach

        def attach_on_a_busy_server(params: Any, *, create: bool) -> None:
            with stalled(volatile_server.url, "busy"):
                attach(params, create=create)

        cur.backend._attach = attach_on_a_busy_server  # type: ignore[method-assign]
        time.sleep(0.1)  # the cached view is stale: the next get_task asks the server
        cur.get_task()  # notices the loss, re-creates the pool (no other process is there)
        del cur.backend._attach

        with admin_client(volatile_server.url) as client:
            incarnation = client.hget(session_keys(sid)[0], "incarnation")
            registered = client.sismember(REGISTRY_KEY, sid)
        assert incarnation == cur.backend._incarnation.encode()  # the pool this process made
        messages = [r.getMessage() for r in caplog.records if sid in r.getMessage()]
        assert cur.backend.created, f"the creator thinks it attached: {messages}"
        assert any(RECREATED in m for m in messages), messages
        assert registered, "the re-created pool is missing from curriculum:sessions"
    finally:
        cur.close()


def test_a_lost_pool_raises_pool_lost_in_raise_mode_and_recreates_nothing(
    volatile_server: redis_support.RestartableRedis,
) -> None:
    """``on_pool_lost="raise"``: after the server restarted empty every call that needs the
    pool raises PoolLostError (a PoolNotFoundError) naming the session, and no key of the
    pool, nor its registry entry, is written again."""
    url = volatile_server.url
    config = make_config(url, num_active_tasks=8, write_batch_size=4, on_pool_lost="raise")
    sid = session_of(config)
    rng = np.random.default_rng(2)
    cur = Curriculum(config)
    try:
        play(cur, 50, rng)
        cur.flush()
        task = cur.get_task()
        cur.update_task_performance(task.task_id, 0.5)  # buffered: lost with the pool
        volatile_server.kill()
        volatile_server.start()  # empty

        # every call that needs the pool (an update_task_performance that only buffers does not;
        # flush() does once, and then nothing is left: what was queued for the lost pool is
        # dropped and counted when the loss is raised)
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("flush", cur.flush),
            ("get_task", cur.get_task),
            (
                "update_task_performance_batch",
                lambda: cur.update_task_performance_batch([task.task_id], [0.5]),
            ),
            ("report_task_failure", lambda: cur.report_task_failure(task.task_id)),
            ("stats", cur.stats),
            ("get_state", cur.get_state),
            ("on_epoch_end", cur.on_epoch_end),
            ("get_task again", cur.get_task),
        ]
        for name, call in calls:
            time.sleep(0.06)  # older than snapshot_max_age_s: the cached view is not used
            with pytest.raises(PoolLostError) as raised:
                call()
                pytest.fail(f"{name} did not raise")
            assert isinstance(raised.value, PoolNotFoundError)
            assert sid in str(raised.value), f"{name}: {raised.value}"
            with admin_client(url) as client:
                assert client.dbsize() == 0, f"{name} wrote keys: {client.keys('*')}"
        assert cur.health()["health/dropped_outcomes"] >= 1  # the outcome queued at the loss
    finally:
        with contextlib.suppress(Exception):
            cur.close()
    with admin_client(url) as client:
        assert client.dbsize() == 0


# -- stats while the server is down -------------------------------------------------------------


def pool_figures(stats: dict[str, float]) -> dict[str, float]:
    """The pool's keys of ``stats``, without this process's ``health/`` figures."""
    return {k: v for k, v in stats.items() if not k.startswith("health/")}


@pytest.mark.parametrize("mode", ["buffer", "raise"])
def test_stats_during_an_outage(mode: str) -> None:
    """While the server is down, ``stats()`` returns the last stats (``buffer``) or raises
    BackendUnavailableError naming the host and never the password (``raise``); once the server
    is back the outcomes reported meanwhile count, once."""
    with redis_support.restartable_redis("--requirepass", PASSWORD, aof=True) as server:
        url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
        config = make_config(
            url,
            num_active_tasks=8,
            write_batch_size=4,
            outage_retry_s=0.2,
            on_backend_unavailable=mode,
        )
        rng = np.random.default_rng(3)
        with Curriculum(config) as cur:
            reported = play(cur, 40, rng)
            before = cur.stats()
            assert before["curriculum/num_completed"] == reported
            server.kill()

            started = time.monotonic()
            if mode == "buffer":
                assert pool_figures(cur.stats()) == pool_figures(before)
                reported += play(cur, 20, rng)  # buffered, sampled from the last view
                during = cur.stats()
                assert pool_figures(during) == pool_figures(before)
                assert during["health/in_outage"] == 1 and during["health/outages"] == 1
                assert cur.health()["health/pending_outcomes"] > 0
            else:
                with pytest.raises(BackendUnavailableError) as raised:
                    cur.stats()
                texts, seen = [], raised.value
                while seen is not None:
                    texts += [str(seen), repr(seen)]
                    seen = seen.__cause__ or seen.__context__
                assert f"127.0.0.1:{server.port}" in str(raised.value), str(raised.value)
                assert session_of(config) in str(raised.value)
                for text in texts:
                    assert PASSWORD not in text, f"the password leaked: {text}"
            assert time.monotonic() - started < 15, "an unreachable server must fail fast"

            server.start()
            after = cur.stats()
        assert after["curriculum/num_completed"] == reported
        assert meta_counter(url, session_of(config), "num_completed") == reported
