"""``curriculum pools list|delete|prune``: Redis (``--backend-url``) and /dev/shm."""

from __future__ import annotations

import json
import os

import pytest
import redis
import redis_support
from conftest import make_config

from backends.redis_keys import PoolKeys
from curriculum import Curriculum
from curriculum.cli import main

url = pytest.fixture(scope="module", name="url")(redis_support.own_redis_server)


def _pool(url: str | None, outcomes: int = 5) -> Curriculum:
    cur = Curriculum(make_config(lp_backend_url=url))
    for _ in range(outcomes):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, 0.5)
    cur.flush()
    return cur


def _exists(url: str, session: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.exists(*PoolKeys.of(session).as_list()))
    finally:
        client.close()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["pools", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_age_outcomes_and_creator(url: str, capsys) -> None:
    cur = _pool(url, outcomes=7)
    try:
        code, out, _ = _run(capsys, "list", "--backend-url", url, "--json")
        assert code == 0
        [info] = [i for i in json.loads(out) if i["session"] == cur.session_id]
        assert info["state"] == "ok" and info["outcomes"] == 7
        assert info["creator"].endswith(f"pid {os.getpid()}")
        assert info["created_s_ago"] >= 0 and info["idle_s"] >= 0
        code, out, _ = _run(capsys, "list", "--backend-url", url)
        assert cur.session_id in out and "idle" in out.splitlines()[0]
    finally:
        cur.destroy()


def test_delete_asks_for_the_session_id(url: str, capsys, monkeypatch) -> None:
    cur = _pool(url)
    session = cur.session_id
    cur.close()
    answers = iter(["no", session])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    code, _, err = _run(capsys, "delete", session, "--backend-url", url)
    assert code == 1 and "not deleted" in err and _exists(url, session)
    code, out, _ = _run(capsys, "delete", session, "--backend-url", url)
    assert code == 0 and f"deleted {session}" in out and not _exists(url, session)


def test_delete_with_yes_and_an_unknown_session(url: str, capsys) -> None:
    cur = _pool(url)
    cur.close()
    code, _, _ = _run(capsys, "delete", cur.session_id, "--backend-url", url, "--yes")
    assert code == 0 and not _exists(url, cur.session_id)
    code, _, err = _run(capsys, "delete", "no-such-pool", "--backend-url", url, "--yes")
    assert code == 2 and "no pool 'no-such-pool'" in err


def test_prune_removes_only_idle_pools(url: str, capsys) -> None:
    old, fresh = _pool(url), _pool(url)
    old.close()
    fresh.close()
    client = redis.Redis.from_url(url)
    now_ms = int(client.time()[0]) * 1000
    client.hset(PoolKeys.of(old.session_id).meta, "touched_ms", now_ms - 8 * 86400 * 1000)
    client.close()
    code, out, _ = _run(capsys, "prune", "--older-than", "7d", "--backend-url", url, "--dry-run")
    assert code == 0 and old.session_id in out and fresh.session_id not in out
    assert _exists(url, old.session_id)
    code, out, _ = _run(capsys, "prune", "--older-than", "7d", "--backend-url", url, "--yes")
    assert code == 0
    assert not _exists(url, old.session_id) and _exists(url, fresh.session_id)
    code, _, _ = _run(capsys, "delete", fresh.session_id, "--backend-url", url, "--yes")


def test_list_shows_dev_shm_pools_without_a_url(capsys) -> None:
    cur = _pool(None)
    try:
        code, out, _ = _run(capsys, "list", "--json")
        assert code == 0
        assert cur.session_id in {i["session"] for i in json.loads(out)}
        # a live pool is never deleted
        code, out, _ = _run(capsys, "delete", cur.session_id, "--yes")
        assert code == 2 and "kept" in out
    finally:
        cur.close()


def test_a_bad_duration_is_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["pools", "prune", "--older-than", "soon"])
    assert "not a duration" in capsys.readouterr().err
