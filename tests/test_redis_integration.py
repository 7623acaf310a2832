"""The Redis backend against a real server: independent clients, evict races, script cache loss,
idempotent retries, attach errors (mismatched config, missing or destroyed pool) and an
unreachable server.

Workers are real processes (``spawn``, through :func:`workers.run_workers`; module-level
functions). Unless a test says otherwise a worker builds its own ``Curriculum`` from the config's
JSON, as a trainer on another host would: nothing crosses the process boundary but text. Every
wait is bounded; no test asserts on timing.

The pools live on a Redis server of this module's own (spawned on a free port) when
``redis-server`` is on PATH, else on the ``redis_url`` server; each test removes its sessions.
Tests that flush the script cache use a server of their own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import multiprocessing as mp
import os
import pickle
import queue as queue_module
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import conftest
import msgpack
import numpy as np
import pytest
import redis
import redis_support
import workers
from conftest import nav_generator, remove_pool, unique_session
from workers import PlacementLog, audit_placements

from backends.layout import EMPTY_TASK
from backends.redis_backend import REGISTRY_KEY, RedisBackend, load_script, session_keys
from curriculum import Curriculum, CurriculumConfig, SingleTaskGenerator, Span
from curriculum.errors import BackendError, PoolMismatchError, PoolNotFoundError

WORKER_TIMEOUT_S = 60.0
UNREACHABLE_LIMIT_S = 30.0  # an unreachable server must be reported well within this


# -- servers and sessions -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real Redis for this module: spawned (isolated from other runs), else ``redis_url``."""
    with contextlib.ExitStack() as stack:
        try:
            url, _ = stack.enter_context(redis_support.spawned_redis())
        except RuntimeError:  # no redis-server binary (e.g. CI with a Redis service)
            url = request.getfixturevalue("redis_url")
        yield url


@pytest.fixture
def own_server() -> Iterator[str]:
    """A redis-server of this test's own, for tests that flush its script cache."""
    with contextlib.ExitStack() as stack:
        try:
            url, _ = stack.enter_context(redis_support.spawned_redis())
        except RuntimeError as exc:
            if os.environ.get("CI"):
                pytest.fail(f"this test must run on CI, but no redis-server can be spawned: {exc}")
            pytest.skip(f"no redis-server to spawn: {exc}")
        yield url


@pytest.fixture
def new_session(server_url: str) -> Iterator[Callable[[], str]]:
    """Hands out unique session ids; their pools on ``server_url`` are removed after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(unique_session("redis-it"))
        return made[-1]

    yield make
    for sid in made:
        remove_pool(sid, server_url)


def make_config(url: str, session_id: str, **fields: Any) -> CurriculumConfig:
    """:func:`conftest.make_config` on ``session_id``, on the Redis at ``url``."""
    return conftest.make_config(lp_backend_url=url, lp_session_id=session_id, **fields)


def pool_contents(url: str, session_id: str) -> dict[str, Any]:
    """Every key of a pool, read raw (hashes as dicts, the free set with its scores)."""
    client = redis.Redis.from_url(url)
    try:
        meta, rows, free, labels, label_ids, tokens, ranges = session_keys(session_id)
        return {
            "meta": client.hgetall(meta),
            "rows": client.hgetall(rows),
            "free": client.zrange(free, 0, -1, withscores=True),
            "labels": client.hgetall(labels),
            "label_ids": client.hgetall(label_ids),
            "tokens": client.hgetall(tokens),
            "ranges": client.hgetall(ranges),
            "registered": bool(client.sismember(REGISTRY_KEY, session_id)),
        }
    finally:
        client.close()


# -- running workers ----------------------------------------------------------------------------


# workers.run_workers, with this module's bound on a run (a test may pass its own)
run_workers = functools.partial(workers.run_workers, timeout_s=WORKER_TIMEOUT_S)


# -- workers (module level: spawn children import them) ----------------------------------------


def _own_curriculum(config_json: str) -> Curriculum:
    """What another host does: rebuild the config from its JSON and open the pool with it."""
    cur = Curriculum(CurriculumConfig.model_validate_json(config_json))
    assert isinstance(cur.backend, RedisBackend)
    return cur


def _play_independently(
    index: int, config_json: str, barrier: Any, n_plays: int, seed: int
) -> dict[str, Any]:
    """Open an own curriculum (all workers at once: they race to create the pool), play
    ``n_plays`` episodes with buffered writes, and report everything needed to audit the pool."""
    barrier.wait(timeout=30)
    cur = _own_curriculum(config_json)
    created = cur.backend.created
    client_id = cur.backend._client_id
    log = PlacementLog(cur.backend)
    rng = np.random.default_rng(seed + index)
    plays: Counter[int] = Counter()
    labels: dict[int, str] = {}
    for _ in range(n_plays):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, float(rng.random()))
        plays[task.task_id] += 1
        labels.setdefault(task.task_id, task.get_label())
    cur.close()
    return {
        "created_pool": created,
        "client_id": client_id,
        "plays": dict(plays),
        "labels": labels,
        **log.report(),
    }


def _record_through_script_flushes(
    index: int, config_json: str, progress: Any, go: Any, stop: Any, rounds: int, chunk: int
) -> int:
    """Record in ``rounds`` lock-step chunks (the parent flushes the script cache after each),
    then without pause until the parent says stop; the number of outcomes sent."""
    cur = _own_curriculum(config_json)
    rng = np.random.default_rng(index)
    sent = 0

    def play(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            task = cur.get_task()
            cur.update_task_performance(task.task_id, float(rng.random()))
            sent += 1

    for round_index in range(rounds):
        play(chunk)
        cur.flush()
        progress.put(round_index)
        assert go.get(timeout=30) == round_index
    deadline = time.monotonic() + 30
    while not stop.is_set():
        assert time.monotonic() < deadline, "the parent never said stop"
        play(chunk // 4)
    play(chunk)
    cur.close()
    return sent


def _attach_unpickled(index: int, blob: bytes) -> dict[str, Any]:
    """Unpickle a curriculum (attach to its session) and report what was raised."""
    try:
        cur = pickle.loads(blob)
    except Exception as exc:
        return {"type": type(exc).__name__, "is_not_found": isinstance(exc, PoolNotFoundError)}
    cur.close()
    return {"type": None}


def _open_unreachable(index: int, config_json: str) -> dict[str, Any]:
    """Open a curriculum on a server that is not there; report the error and its causes."""
    try:
        cur = _own_curriculum(config_json)
    except Exception as exc:
        texts = []
        seen: BaseException | None = exc
        while seen is not None:
            texts += [str(seen), repr(seen)]
            seen = seen.__cause__ or seen.__context__
        return {
            "type": type(exc).__name__,
            "is_backend_error": isinstance(exc, BackendError),
            "message": str(exc),
            "texts": texts,
        }
    cur.close()
    return {"type": None}


# -- tests --------------------------------------------------------------------------------------

N_WORKERS = 4
N_PLAYS = 5_000
CAPACITY = 64


def test_four_independent_clients_count_every_outcome_exactly(
    server_url: str, new_session: Callable[[], str]
) -> None:
    """4 processes, each with its own client and curriculum, race to open one pool and record
    5,000 outcomes each (default write batching): every count is exact, no slot owned twice."""
    config = make_config(server_url, new_session(), num_active_tasks=CAPACITY)
    assert config.write_batch_size > 1  # the buffered (batch) write path
    generator = config.task_generator.create()
    barrier = mp.get_context("spawn").Barrier(N_WORKERS)
    reports = run_workers(
        _play_independently,
        [(config.model_dump_json(), barrier, N_PLAYS, 100) for _ in range(N_WORKERS)],
    )
    total = N_WORKERS * N_PLAYS

    assert sum(r["created_pool"] for r in reports) == 1, "exactly one racer creates the pool"
    assert len({r["client_id"] for r in reports}) == N_WORKERS, "clients must be independent"

    with Curriculum(config) as cur:  # the pool outlived every worker (and its creator)
        assert not cur.backend.created
        stats = cur.stats()
        snapshot = cur.backend.snapshot()

    assert stats["curriculum/num_completed"] == total
    assert stats["curriculum/num_scheduled"] == total
    names = snapshot.label_names
    assert len(set(names)) == len(names), "a label was interned twice"
    assert sum(stats[f"label/{n}/completions"] for n in names) == total
    assert sum(stats[f"label/{n}/samples"] for n in names) == total

    plays: Counter[int] = Counter()
    per_label: Counter[str] = Counter()
    for report in reports:
        plays.update(report["plays"])
        for task_id, n in report["plays"].items():
            label = report["labels"][task_id]
            assert label == generator.generate(task_id).label
            per_label[label] += n
    assert sum(plays.values()) == total
    for name in names:
        assert stats[f"label/{name}/completions"] == per_label[name], name

    rows = snapshot.rows[snapshot.rows["task_id"] != EMPTY_TASK]
    active_ids = rows["task_id"].tolist()
    assert len(active_ids) == CAPACITY == stats["curriculum/num_active_tasks"]
    assert len(set(active_ids)) == CAPACITY, "a task owns two slots"
    for row in rows:  # a task still active got every outcome and sample sent for it, no more
        assert row["n_outcomes"] == plays[int(row["task_id"])]
        assert row["n_samples"] == plays[int(row["task_id"])]

    # each slot created once, no task evicted twice, every replacement in one slot's chain
    _, replaced = audit_placements(snapshot, reports, CAPACITY)
    assert stats["curriculum/num_evicted"] == len(replaced) > 0
    assert stats["curriculum/num_created"] == CAPACITY + len(replaced)


def test_evict_races_between_independent_clients_never_double_evict(
    server_url: str, new_session: Callable[[], str]
) -> None:
    """A small, churny pool (4 slots, evictable after 2 outcomes) shared by 4 independent
    clients: each eviction in the workers' logs hit a distinct (slot, task), and the pool's
    counters agree with the logs exactly."""
    capacity = 4
    config = make_config(
        server_url,
        new_session(),
        num_active_tasks=capacity,
        lp_min_presentations_for_eviction=2,
        lp_eviction_confidence=0.0,  # evict on any low score: the test needs churn
        write_batch_size=1,
        snapshot_max_age_s=0.01,
    )
    barrier = mp.get_context("spawn").Barrier(N_WORKERS)
    reports = run_workers(
        _play_independently,
        [(config.model_dump_json(), barrier, 600, 200) for _ in range(N_WORKERS)],
    )
    with Curriculum(config) as cur:
        stats = cur.stats()
        snapshot = cur.backend.snapshot()

    total = N_WORKERS * 600
    assert stats["curriculum/num_completed"] == total
    num_evicted = stats["curriculum/num_evicted"]
    assert num_evicted == stats["curriculum/num_created"] - stats["curriculum/num_active_tasks"]
    assert stats["curriculum/num_active_tasks"] == capacity

    # no task id placed twice, no task evicted twice, and each slot's replacements form one
    # chain of owners ending at the task it holds now
    _, replaced = audit_placements(snapshot, reports, capacity)
    assert len(replaced) == num_evicted > capacity, "the test must drive many evictions"
    hits = [(slot, old) for slot, old, _, _ in replaced]
    assert len(set(hits)) == len(hits), "two evictions hit the same (slot, task)"
    applied = total - stats["curriculum/num_late_outcomes"]
    assert 2 * num_evicted <= applied  # each evicted task had its 2 outcomes first


def test_script_flush_mid_run_reloads_scripts_and_counts_exactly(own_server: str) -> None:
    """SCRIPT FLUSH while a worker records (lock-step rounds, then free-running): the client
    reloads the scripts on NOSCRIPT, nothing fails, and every outcome counts exactly once.

    Free-running, the pool is full and evicts nothing, so ``record`` is the only script the
    worker runs, and each flush waits for a record after the previous one: no flush can land
    inside a reload (that interleaving is the next test's)."""
    ctx = mp.get_context("spawn")
    config = make_config(
        own_server,
        unique_session("flush"),
        num_active_tasks=16,
        write_batch_size=8,
        lp_min_presentations_for_eviction=1_000_000,
    )
    record_sha = hashlib.sha1(load_script("record").encode()).hexdigest()
    admin = redis.Redis.from_url(own_server)
    progress, go, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    rounds, chunk = 3, 200
    state = {"round": 0, "free_flushes": 0, "completed_at_flush": -1, "flushed_at": 0.0}

    def completed() -> int:
        value = admin.hget(session_keys(config.algorithm_config.session_id)[0], "num_completed")
        return int(value or 0)

    def drive() -> None:
        if state["round"] < rounds:  # lock-step: flush after each chunk, then let it go on
            try:
                round_index = progress.get_nowait()
            except queue_module.Empty:
                return
            assert round_index == state["round"]
            assert admin.script_exists(record_sha) == [True], "the worker must have reloaded"
            assert admin.script_flush() is True
            assert admin.script_exists(record_sha) == [False]  # the worker waits for ``go``
            state["round"] += 1
            state["completed_at_flush"] = completed()
            state["flushed_at"] = time.monotonic()
            go.put(round_index)
        elif state["free_flushes"] < 3:  # free-running: flush once progress follows the last
            if (
                completed() > state["completed_at_flush"]
                and time.monotonic() - state["flushed_at"] > 0.02
            ):
                assert admin.script_flush() is True  # the worker may reload at once
                state["free_flushes"] += 1
                state["completed_at_flush"] = completed()
                state["flushed_at"] = time.monotonic()
        elif completed() > state["completed_at_flush"]:
            stop.set()

    try:
        assert admin.info("errorstats").get("errorstat_NOSCRIPT") is None
        [sent] = run_workers(
            _record_through_script_flushes,
            [(config.model_dump_json(), progress, go, stop, rounds, chunk)],
            ctx=ctx,
            while_waiting=drive,
        )
        noscript = admin.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0)
        with Curriculum(config) as cur:
            stats = cur.stats()
    finally:
        admin.close()

    assert state["round"] == rounds and state["free_flushes"] == 3
    assert noscript >= rounds + 3, "every flush must have cost the client a NOSCRIPT"
    assert sent >= rounds * chunk + chunk
    assert stats["curriculum/num_completed"] == sent
    assert stats["curriculum/num_scheduled"] == sent
    completions = sum(v for k, v in stats.items() if k.endswith("/completions"))
    assert completions == sent


def test_a_script_flushed_again_during_its_reload_still_runs(
    own_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second SCRIPT FLUSH lands between the client's reload (SCRIPT LOAD after NOSCRIPT) and
    the EVALSHA it then sends: the write must still be applied, once, without an error."""
    sid = unique_session("reflush")
    config = make_config(own_server, sid, num_active_tasks=4, write_batch_size=1_000)
    admin = redis.Redis.from_url(own_server)
    with contextlib.ExitStack() as stack:
        stack.callback(admin.close)
        cur = stack.enter_context(Curriculum(config))
        tasks = [cur.get_task() for _ in range(4)]
        cur.flush()
        for task in tasks:
            cur.update_task_performance(task.task_id, 0.5)

        reloads: list[str] = []
        script_load = redis.Redis.script_load

        def load_then_flush_once(client: Any, script: Any) -> Any:
            sha = script_load(client, script)
            reloads.append(sha)
            if len(reloads) == 1:
                assert admin.script_flush() is True  # e.g. an operator, or a failover
            return sha

        admin.script_flush()
        monkeypatch.setattr(redis.Redis, "script_load", load_then_flush_once)
        cur.flush()
        monkeypatch.undo()

        assert reloads, "the client never reloaded a script"
        stats = cur.stats()
        assert stats["curriculum/num_completed"] == len(tasks)
        assert stats["curriculum/num_scheduled"] == len(tasks)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"num_active_tasks": 32}, "num_active_tasks: pool=16, requested=32"),
        ({"lp_ema_timescale": 0.3}, "ema_timescale: pool=0.2, requested=0.3"),
        (
            {"generator": nav_generator(Span(8, 64))},
            "task_generator fields buckets.size.high: pool=32",
        ),
    ],
    ids=["num_active_tasks", "ema_timescale", "generator"],
)
def test_attaching_with_a_mismatched_config_fails_and_leaves_the_pool_unharmed(
    server_url: str, new_session: Callable[[], str], change: dict[str, Any], named: str
) -> None:
    """A process whose config differs from the pool's gets PoolMismatchError naming the field;
    the pool (every key, byte for byte) and its users are unaffected."""
    sid = new_session()
    fields: dict[str, Any] = {"num_active_tasks": 16, "write_batch_size": 1}
    with Curriculum(make_config(server_url, sid, **fields)) as cur:
        rng = np.random.default_rng(0)
        for _ in range(100):
            task = cur.get_task()
            cur.update_task_performance(task.task_id, float(rng.random()))
        stats_before = cur.stats()
        contents_before = pool_contents(server_url, sid)

        with pytest.raises(PoolMismatchError, match=re.escape(named)) as raised:
            Curriculum(make_config(server_url, sid, **{**fields, **change}))
        assert sid in str(raised.value)

        assert pool_contents(server_url, sid) == contents_before, "a failed attach wrote"
        assert cur.stats() == stats_before
        task = cur.get_task()  # the pool's users carry on
        cur.update_task_performance(task.task_id, 0.5)
        completed = cur.stats()["curriculum/num_completed"]
        assert completed == stats_before["curriculum/num_completed"] + 1


def test_unpickled_worker_attaching_to_a_missing_session_raises_pool_not_found(
    server_url: str, new_session: Callable[[], str]
) -> None:
    """A curriculum unpickled in a worker after its pool was destroyed raises PoolNotFoundError
    (an attach never creates), in the worker as in this process."""
    sid = new_session()
    cur = Curriculum(make_config(server_url, sid, num_active_tasks=8))
    blob = pickle.dumps(cur)
    cur.backend.destroy()
    cur.close()
    assert pool_contents(server_url, sid)["meta"] == {}

    [report] = run_workers(_attach_unpickled, [(blob,)])
    assert report["type"] == "PoolNotFoundError" and report["is_not_found"]
    with pytest.raises(PoolNotFoundError, match=sid):
        pickle.loads(blob)
    contents = pool_contents(server_url, sid)
    assert not contents["registered"]
    assert all(not v for k, v in contents.items()), f"an attach left keys behind: {contents}"


def test_a_process_attached_to_a_destroyed_pool_gets_pool_not_found(
    server_url: str, new_session: Callable[[], str]
) -> None:
    """A pool destroyed while a process is attached (``on_pool_lost="raise"``): that process's
    next ``get_task`` raises PoolNotFoundError and recreates none of the pool's keys."""
    sid = new_session()
    config = make_config(
        server_url,
        sid,
        num_active_tasks=4,
        write_batch_size=1,
        generator=SingleTaskGenerator.Config(env={"label": "one"}),  # its label stays cached
        on_pool_lost="raise",
    )
    cur = Curriculum(config)
    try:
        cur.get_task()
        cur.flush()
        destroyer = pickle.loads(pickle.dumps(cur))
        destroyer.backend.destroy()
        destroyer.close()
        assert not any(pool_contents(server_url, sid).values())

        with pytest.raises(PoolNotFoundError, match=sid):
            cur.get_task()
        contents = pool_contents(server_url, sid)
        assert not any(contents.values()), f"a destroyed pool was partly recreated: {contents}"
    finally:
        with contextlib.suppress(BackendError):
            cur.close()


def test_a_retried_record_is_applied_once(
    server_url: str, new_session: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after the server ran a ``record`` script: redis-py's Retry sends it
    again with the same client id and write number, and the script replays its first reply."""
    sid = new_session()
    config = make_config(server_url, sid, num_active_tasks=8, write_batch_size=1_000)
    record_sha = hashlib.sha1(load_script("record").encode()).hexdigest()
    with Curriculum(config) as cur:
        tasks = [cur.get_task() for _ in range(8)]
        cur.flush()  # samples of the first 8 tasks: the script is loaded, the pool full
        before = cur.backend.snapshot()

        sent: list[tuple[Any, ...]] = []  # every EVALSHA of the record script sent
        replies: list[Any] = []  # every reply it got
        injected: list[Any] = []
        send_command = redis.connection.AbstractConnection.send_command
        parse_response = redis.Redis.parse_response

        def send_and_note(conn: Any, *args: Any, **kwargs: Any) -> None:
            send_command(conn, *args, **kwargs)  # (re)connecting sends handshake commands first
            conn._test_last_command = args[:2]
            if args[:2] == ("EVALSHA", record_sha):
                sent.append(args)

        def parse_then_drop_once(client: Any, conn: Any, command_name: str, **options: Any) -> Any:
            reply = parse_response(client, conn, command_name, **options)
            if getattr(conn, "_test_last_command", None) == ("EVALSHA", record_sha):
                replies.append(reply)
                if not injected:  # the server has run the script; its reply is lost
                    injected.append(reply)
                    raise redis.ConnectionError("injected: connection lost after the reply")
            return reply

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", send_and_note)
        monkeypatch.setattr(redis.Redis, "parse_response", parse_then_drop_once)

        scores = [0.1 * (i + 1) for i in range(len(tasks))]
        for task, score in zip(tasks, scores, strict=True):
            cur.update_task_performance(task.task_id, score)
        result = cur._session.flush()
        monkeypatch.undo()

        assert len(injected) == 1, "the record call must have been interrupted once"
        assert len(sent) == 2 and sent[0] == sent[1], "Retry must re-send the same write"
        assert replies == [injected[0], injected[0]], "the retry must get the first reply"
        assert (result.applied, result.late) == (len(tasks), 0)

        after = cur.backend.snapshot()
        assert after.counters["num_completed"] == before.counters["num_completed"] + len(tasks)
        assert after.version == before.version + 1, "the replayed write moved the version"
        by_slot = {t.slot: (t.task_id, s) for t, s in zip(tasks, scores, strict=True)}
        for slot, (task_id, score) in by_slot.items():
            row = after.rows[slot]
            assert row["task_id"] == task_id
            assert row["n_outcomes"] == 1
            assert row["score_sum"] == pytest.approx(score)
        completions = int(after.labels["completions"].sum())
        assert completions == int(before.labels["completions"].sum()) + len(tasks)
        assert cur.stats()["curriculum/num_completed"] == len(tasks)


def test_a_script_called_twice_with_one_write_number_applies_once(
    server_url: str, new_session: Callable[[], str]
) -> None:
    """Calling ``record`` / ``replace_task`` again with the same client id and write number
    returns the first reply and changes nothing; a new write number applies again."""
    sid = new_session()
    config = make_config(server_url, sid, num_active_tasks=4, write_batch_size=1)
    with Curriculum(config) as cur:
        tasks = [cur.get_task() for _ in range(4)]
        cur.flush()
        task = tasks[0]
        label_id = int(cur.backend.snapshot().rows["label_id"][task.slot])

    client = redis.Redis.from_url(server_url)
    try:
        keys = session_keys(sid)
        incarnation = client.hget(keys[0], "incarnation")  # every script's last argument
        record = client.register_script(load_script("record"))
        replace = client.register_script(load_script("replace_task"))
        # a batch as the backend sends it: 1 outcome, no samples, no failures
        outcome = [
            msgpack.packb([1, task.slot, task.task_id, label_id, 0.75, 0, 0, 1]),
            incarnation,
        ]

        first = record(keys=keys, args=["test-client", 1, *outcome])
        assert first == b"1:0"
        once = pool_contents(server_url, sid)
        assert record(keys=keys, args=["test-client", 1, *outcome]) == first
        assert pool_contents(server_url, sid) == once, "a replayed record changed the pool"

        assert record(keys=keys, args=["test-client", 2, *outcome]) == b"1:0"  # a new write
        twice = pool_contents(server_url, sid)
        assert int(twice["meta"][b"num_completed"]) == int(once["meta"][b"num_completed"]) + 1

        new_task = [task.slot, task.task_id, 4242, label_id, 10**6, incarnation]
        assert replace(keys=keys, args=["test-client", 3, *new_task]) == b"1"
        replaced = pool_contents(server_url, sid)
        # replayed, a successful compare-and-set reports success again and evicts nothing
        assert replace(keys=keys, args=["test-client", 3, *new_task]) == b"1"
        assert pool_contents(server_url, sid) == replaced
        assert int(replaced["meta"][b"num_evicted"]) == 1
        # the same change under a new write number is a stale compare-and-set
        assert replace(keys=keys, args=["test-client", 4, *new_task]) == b"0"
        assert int(pool_contents(server_url, sid)["meta"][b"num_evicted"]) == 1
    finally:
        client.close()


def test_an_unreachable_redis_raises_backend_error_without_the_password() -> None:
    """Opening a pool on a port nothing listens on raises BackendError (bounded by the retry
    policy), and no text of the error or its causes shows the URL's password."""
    port = redis_support.free_port()
    url = f"redis://user:s3cret@127.0.0.1:{port}/0"
    config = make_config(url, unique_session("gone"), num_active_tasks=4)
    assert "s3cret" not in repr(config)
    [report] = run_workers(
        _open_unreachable, [(config.model_dump_json(),)], timeout_s=UNREACHABLE_LIMIT_S
    )
    assert report["type"] is not None, "opening a pool on an unreachable Redis succeeded"
    assert report["is_backend_error"], f"{report['type']} is not a BackendError"
    assert str(port) in report["message"], report["message"]
    for text in report["texts"]:
        assert "s3cret" not in text, f"the password leaked: {text}"
