"""A Redis pool whose keys were partly lost (deleted, evicted under ``maxmemory``) or hold data
this library did not write: lost as a whole and re-created cleanly, or refused with
``PoolCorruptedError`` naming the key and slot; never half used."""

from __future__ import annotations

import logging
import os

import msgpack
import numpy as np
import pytest
import redis
import redis_support
from conftest import make_config

from backends.redis_keys import MARKER_FIELD, PoolKeys
from backends.redis_read import read_raw
from curriculum import Curriculum
from curriculum.cli import main
from curriculum.errors import PoolCorruptedError, PoolLostError

url = pytest.fixture(scope="module", name="url")(redis_support.own_redis_server)


def _play(cur: Curriculum, episodes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, float(rng.random()))


def _curriculum(url: str, **fields: object) -> Curriculum:
    fields.setdefault("write_batch_size", 4)
    fields.setdefault("snapshot_max_age_s", 0.0)
    fields.setdefault("num_active_tasks", 16)
    return Curriculum(make_config(lp_backend_url=url, **fields))


def _assert_whole(url: str, session: str) -> None:
    """Every key carries the meta hash's incarnation; label ids are one per name."""
    client = redis.Redis.from_url(url)
    try:
        keys = PoolKeys.of(session)
        raw = read_raw(client, keys)
        assert raw.meta and raw.damaged_keys() == []
        ids = {k: v for k, v in client.hgetall(keys.label_ids).items() if k != MARKER_FIELD}
        assert len(set(ids.values())) == len(ids), f"label ids shared by two names: {ids}"
        labels = {k for k in raw.labels if k != MARKER_FIELD}
        assert {v for v in ids.values()} == labels
    finally:
        client.close()


KEY_NAMES = ["meta", "rows", "free", "labels", "label_ids", "tokens"]


@pytest.mark.parametrize("lost", KEY_NAMES)
def test_a_pool_that_lost_one_key_is_lost_as_a_whole_and_recreated_cleanly(
    url: str, lost: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: DEL rows -> IndexError on every call; DEL meta -> a pool re-created over the old
    keys with label ids shared by two names; DEL label_ids -> ids issued again."""
    caplog.set_level(logging.WARNING, logger="curriculum")
    with _curriculum(url) as cur:
        _play(cur, 60)
        cur.flush()
        client = redis.Redis.from_url(url)
        client.delete(getattr(PoolKeys.of(cur.session_id), lost))
        client.close()
        _play(cur, 60, seed=1)  # no error: the pool is found lost, re-created, training goes on
        cur.flush()
        stats = cur.stats()
        assert stats["curriculum/num_completed"] <= 60 + 8  # the old pool's outcomes are gone
        _assert_whole(url, cur.session_id)
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "created it anew" in messages or "re-created it empty" in messages, messages
        cur.destroy()


@pytest.mark.parametrize("lost", KEY_NAMES)
def test_a_lost_key_raises_pool_lost_error_when_asked_to(url: str, lost: str) -> None:
    with _curriculum(url, on_pool_lost="raise") as cur:
        _play(cur, 20)
        cur.flush()
        client = redis.Redis.from_url(url)
        client.delete(getattr(PoolKeys.of(cur.session_id), lost))
        client.close()
        with pytest.raises(PoolLostError):
            _play(cur, 20)
            cur.flush()
            cur.stats()
    client = redis.Redis.from_url(url)
    client.delete(*PoolKeys.of(cur.session_id).as_list())
    client.close()


def test_a_key_of_another_pool_is_foreign(url: str) -> None:
    """A rows hash left from an earlier pool (another incarnation) is not used."""
    with _curriculum(url, on_pool_lost="raise") as cur:
        _play(cur, 20)
        cur.flush()
        keys = PoolKeys.of(cur.session_id)
        client = redis.Redis.from_url(url)
        client.hset(keys.rows, MARKER_FIELD, "0123456789abcdef")
        client.close()
        with pytest.raises(PoolLostError, match="rows"):
            cur.stats()
        cur.destroy()


def test_an_evicting_server_warns_at_attach_and_never_half_uses_a_pool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``maxmemory 2mb`` + ``allkeys-lru`` with other keys written meanwhile. Before: 762
    IndexErrors and 30 re-creations; now a warning at attach, and every call works on a whole
    pool (re-created when evicted)."""
    caplog.set_level(logging.WARNING, logger="curriculum")
    with redis_support.spawned_redis("--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru") as (
        evicting,
        _,
    ):
        filler = redis.Redis.from_url(evicting)
        with _curriculum(evicting, num_active_tasks=64) as cur:
            assert any("maxmemory-policy allkeys-lru" in r.getMessage() for r in caplog.records)
            lost_twice = 0
            for round_ in range(30):
                filler.mset({f"filler:{round_}:{i}": os.urandom(2048) for i in range(100)})
                try:  # nothing but a typed error: a pool evicted again while being re-created
                    _play(cur, 30, seed=round_)
                    cur.stats()
                except PoolLostError:
                    lost_twice += 1
            assert lost_twice < 30
            filler.flushdb()
            _play(cur, 30)
            cur.stats()
            _assert_whole(evicting, cur.session_id)
        filler.close()


def test_no_warning_for_noeviction(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="curriculum")
    with _curriculum(url) as cur:
        cur.destroy()
    assert not [r for r in caplog.records if "maxmemory" in r.getMessage()]


# -- garbage in a row ------------------------------------------------------------------------


GARBAGE = {
    "bad bytes": b"\xc1\xff\x00garbage",
    "too short": msgpack.packb([1, 2, 3]),
    "negative task id": msgpack.packb([-5, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0]),
    "task id 2**64-1": msgpack.packb(
        [2**64 - 1, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0]
    ),
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_garbage_in_a_row_raises_pool_corrupted_error_naming_key_and_slot(
    url: str, garbage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: FormatError/TypeError/ValueError/IndexError on every call (or the row was
    accepted), and a traceback from ``curriculum inspect``."""
    with _curriculum(url, on_pool_lost="raise") as cur:
        _play(cur, 30)
        cur.flush()
        keys = PoolKeys.of(cur.session_id)
        client = redis.Redis.from_url(url)
        client.hset(keys.rows, 3, GARBAGE[garbage])
        client.close()
        with pytest.raises(PoolCorruptedError, match=r"curriculum:\{.*\}:rows.*slot 3"):
            cur.stats()
        code = main(["inspect", "--url", url, "--session", cur.session_id])
        captured = capsys.readouterr()
        assert code == 2
        assert captured.err.count("\n") == 1 and "slot 3" in captured.err, captured.err
        assert "Traceback" not in captured.err
        cur.backend.destroy()


def test_a_script_that_reads_a_garbage_row_raises_pool_corrupted_error(url: str) -> None:
    with _curriculum(url, on_pool_lost="raise", write_batch_size=1) as cur:
        task = cur.get_task()
        slot = task.slot
        client = redis.Redis.from_url(url)
        client.hset(PoolKeys.of(cur.session_id).rows, slot, b"\xc1garbage")
        client.close()
        with pytest.raises(PoolCorruptedError, match=f"slot {slot}"):
            cur.update_task_performance(task.task_id, 0.5)
            cur.flush()
        cur.backend.destroy()


def test_a_refused_config_get_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """An ACL user without CONFIG (managed services): attach works, no warning, no error."""
    acl = ["--user", "default", "off", "--user", "trainer", "on", ">pw", "~*", "&*", "+@all"]
    acl += ["-config"]
    caplog.set_level(logging.WARNING, logger="curriculum")
    with redis_support.spawned_redis("--maxmemory-policy", "allkeys-lru", *acl) as (spawned, _):
        authed = spawned.replace("redis://", "redis://trainer:pw@")
        with _curriculum(authed) as cur:
            _play(cur, 10)
            cur.destroy()
    assert not [r for r in caplog.records if "maxmemory" in r.getMessage()]


@pytest.mark.parametrize("damage", ["row deleted", "free slot deleted", "free slot added"])
def test_a_slot_without_row_nor_free_entry_raises_pool_corrupted_error(
    url: str, damage: str
) -> None:
    """Before: a row deleted by hand (HDEL) read as an empty slot that was never free again,
    and a free slot deleted by hand was never used again: the pool shrank silently."""
    with _curriculum(url, on_pool_lost="raise", num_active_tasks=16) as cur:
        _play(cur, 10)  # 10 of the 16 slots hold a task
        cur.flush()
        keys = PoolKeys.of(cur.session_id)
        client = redis.Redis.from_url(url)
        taken = sorted(int(f) for f in client.hkeys(keys.rows) if f != MARKER_FIELD)
        if damage == "row deleted":
            client.hdel(keys.rows, taken[0])
        elif damage == "free slot deleted":  # a slot, not the marker (score -1)
            client.zrem(keys.free, client.zrangebyscore(keys.free, 0, "+inf")[0])
        else:
            client.zadd(keys.free, {str(taken[0]): taken[0]})
        client.close()
        with pytest.raises(PoolCorruptedError, match=r"curriculum:\{.*\}:rows.*restore"):
            cur.stats()
        cur.backend.destroy()
