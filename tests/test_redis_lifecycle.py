"""The lifecycle of Redis pools: private pools expire, write tokens are pruned, an attach to an
existing pool is logged, a mismatch says how to remove the old pool, errors fit one screen."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import redis
import redis_support
from conftest import make_config, nav_generator, unique_session

from backends import redis_backend
from backends.redis_keys import KEY_PARTS, MARKER_FIELD, PoolKeys
from curriculum import Curriculum, Span
from curriculum.errors import PoolMismatchError

url = pytest.fixture(scope="module", name="url")(redis_support.own_redis_server)


def _play(cur: Curriculum, episodes: int) -> None:
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, float(rng.random()))


def _ttls(url: str, session: str) -> list[int]:
    client = redis.Redis.from_url(url)
    try:
        return [client.pttl(key) for key in PoolKeys.of(session).as_list()]
    finally:
        client.close()


def test_a_private_pool_expires_unless_used(url: str) -> None:
    """Before: a private pool (session_id=None) never closed stayed forever."""
    config = make_config(lp_backend_url=url, lp_session_id=None, private_pool_ttl_s=600.0)
    cur = Curriculum(config)
    try:
        ttls = _ttls(url, cur.session_id)
        assert all(0 < ttl <= 600_000 for ttl in ttls), ttls
        client = redis.Redis.from_url(url)
        for key in PoolKeys.of(cur.session_id).as_list():
            client.pexpire(key, 100_000)
        client.close()
        _play(cur, 100)
        cur.flush()
        assert all(ttl > 100_000 for ttl in _ttls(url, cur.session_id)), "not refreshed"
    finally:
        cur.close()  # the creator of a private pool removes it
    assert _ttls(url, cur.session_id) == [-2] * len(KEY_PARTS)


def test_a_named_pool_does_not_expire(url: str) -> None:
    config = make_config(lp_backend_url=url)
    with Curriculum(config) as cur:
        _play(cur, 20)
        cur.flush()
        assert _ttls(url, cur.session_id) == [-1] * len(KEY_PARTS)
        cur.destroy()


def test_write_tokens_are_pruned_at_attach(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the token hash grew by two entries per attach, forever."""
    config = make_config(lp_backend_url=url, write_batch_size=1)
    session = config.algorithm_config.session_id
    tokens_key = PoolKeys.of(session).tokens
    client = redis.Redis.from_url(url)
    try:
        for _ in range(10):
            with Curriculum(config) as cur:
                _play(cur, 3)
        grown = client.hlen(tokens_key)
        assert grown > 10  # one or more per attach, within the window
        monkeypatch.setattr(redis_backend, "TOKEN_WINDOW_S", 0.0)
        with Curriculum(config) as cur:
            assert list(client.hkeys(tokens_key)) == [MARKER_FIELD]
            cur.destroy()
    finally:
        client.close()


def test_attaching_to_an_existing_pool_logs_its_age_outcomes_and_creator(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(lp_backend_url=url)
    with Curriculum(config) as creator:
        _play(creator, 30)
        creator.flush()
        caplog.set_level(logging.INFO, logger="curriculum")
        with Curriculum(config):
            pass
        lines = [
            r.getMessage() for r in caplog.records if "attached to the existing" in r.getMessage()
        ]
        assert len(lines) == 1, lines
        assert "30 outcomes recorded" in lines[0] and f"pid {os.getpid()}" in lines[0], lines
        assert "created" in lines[0] and "ago" in lines[0]
        creator.destroy()


def test_a_mismatch_names_generator_fields_and_how_to_remove_the_pool(url: str) -> None:
    session = unique_session("mismatch")
    config = make_config(lp_backend_url=url, lp_session_id=session)
    other = make_config(
        lp_backend_url=url, lp_session_id=session, generator=nav_generator(Span(8, 99))
    )
    with Curriculum(config) as cur:
        with pytest.raises(PoolMismatchError) as raised:
            Curriculum(other)
        message = str(raised.value)
        assert "left from an earlier run" in message
        assert "buckets.size.high: pool=32, requested=99" in message
        assert f"curriculum pools delete {session} --backend-url" in message
        cur.destroy()


UNREACHABLE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, "tests")
    from conftest import make_config
    from curriculum import Curriculum
    Curriculum(make_config(lp_backend_url=sys.argv[1]))
    """
)


def test_an_unreachable_redis_gives_a_one_screen_error() -> None:
    """Before: a 70-line chained traceback from the Python API."""
    port = redis_support.free_port()
    result = subprocess.run(
        [sys.executable, "-c", UNREACHABLE, f"redis://127.0.0.1:{port}/0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert "During handling" not in result.stderr and "direct cause" not in result.stderr
    assert len(lines) <= 40, result.stderr  # one screen (before: 70 lines, 3 tracebacks)
    assert lines[-1].startswith("curriculum.errors.BackendUnavailableError: Redis")
    assert f"127.0.0.1:{port}" in lines[-1]


def test_the_demo_with_an_unreachable_redis_prints_one_line() -> None:
    """Before: 81 lines and 3 tracebacks from ``curriculum demo --backend-url``."""
    port = redis_support.free_port()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "curriculum.cli", "demo", "--episodes", "10"),
            *("--backend-url", f"redis://127.0.0.1:{port}/0", "--output", "", "--no-compare"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr


def test_a_pool_made_before_incarnation_markers_is_adopted_not_recreated(url: str) -> None:
    """A pool of an earlier library version (no markers, no created_ms) keeps its data."""
    config = make_config(lp_backend_url=url)
    with Curriculum(config) as cur:
        _play(cur, 30)
        cur.flush()
    keys = PoolKeys.of(config.algorithm_config.session_id)
    client = redis.Redis.from_url(url)
    try:
        for key in (keys.rows, keys.labels, keys.label_ids, keys.tokens):
            client.hdel(key, MARKER_FIELD)
        incarnation = client.hget(keys.meta, "incarnation")
        client.zrem(keys.free, MARKER_FIELD + incarnation)
        client.hdel(keys.meta, "created_ms", "touched_ms", "creator")
        with Curriculum(config) as cur:
            assert not cur.backend.created
            assert cur.stats()["curriculum/num_completed"] == 30
            _play(cur, 5)
            cur.flush()
            assert cur.stats()["curriculum/num_completed"] == 35
            cur.destroy()
    finally:
        client.close()


def test_docker_compose_binds_to_localhost_and_requires_a_password() -> None:
    """Before: Redis published on every interface, with no password."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text()
    ports = [line.strip() for line in text.splitlines() if line.strip().startswith('- "')]
    assert ports == ['- "127.0.0.1:6379:6379"'], ports
    assert "${REDIS_PASSWORD:?" in text  # compose refuses to start without a password
    assert '--requirepass "$$REDIS_PASSWORD"' in text
    assert "--maxmemory-policy noeviction" in text
