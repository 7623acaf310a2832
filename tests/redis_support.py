"""Redis for the tests: a real server (the one on 127.0.0.1:6379, or one spawned on a free port)
and fakeredis with a Lua msgpack module, behind the URL scheme ``fakeredis://``.

The fakeredis tier runs the real ``.lua`` scripts; its Lua lacks ``cmsgpack``, so
``tests/lua/cmsgpack.lua`` provides one (found through LUA_PATH, set before the first script).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from backends.redis_backend import REGISTRY_KEY, register_client_factory, session_keys

LUA_PATH = str(Path(__file__).parent / "lua" / "?.lua")
os.environ["LUA_PATH"] = f"{LUA_PATH};;"

DEFAULT_URL = "redis://127.0.0.1:6379/0"
# Part of every session id this test run makes, so clean-up never touches a concurrent run's pools.
RUN_TOKEN = f"r{os.getpid()}"


class FakeRedisServers:
    """One fresh FakeServer per test (fakeredis shares Lua state per server)."""

    def __init__(self) -> None:
        self.server = None

    def reset(self) -> None:
        import fakeredis

        self.server = fakeredis.FakeServer()

    def client(self, url: str) -> redis.Redis:
        import fakeredis

        if self.server is None:
            self.reset()
        return fakeredis.FakeRedis(server=self.server, lua_modules={"cmsgpack"})


FAKE = FakeRedisServers()
register_client_factory("fakeredis", FAKE.client)


def answers(url: str) -> bool:
    """Whether a Redis answers at ``url`` (an authentication error is an answer too)."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.AuthenticationError, redis.ResponseError):
        return True
    except redis.RedisError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def spawned_redis(*extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of our own on a free port, stopped (and its files removed) at exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    workdir = tempfile.mkdtemp(prefix="curriculum-redis-")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.05)
        yield url, process
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def remove_sessions_created_since(url: str, before: set[bytes]) -> None:
    """Delete the pools of this test run registered on ``url`` that were not in ``before``."""
    client = redis.Redis.from_url(url)
    try:
        for session in set(client.smembers(REGISTRY_KEY)) - before:
            if f"-{RUN_TOKEN}-".encode() not in session:
                continue
            client.delete(*session_keys(session.decode()))
            client.srem(REGISTRY_KEY, session)
    finally:
        client.close()


def registered_sessions(url: str) -> set[bytes]:
    """The sessions registered on ``url`` now."""
    client = redis.Redis.from_url(url)
    try:
        return set(client.smembers(REGISTRY_KEY))
    finally:
        client.close()
