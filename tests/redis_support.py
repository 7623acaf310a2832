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

from backends.redis_backend import REGISTRY_KEY, connect, register_client_factory, session_keys

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
    client = connect(url)
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
    client = connect(url)
    try:
        return set(client.smembers(REGISTRY_KEY))
    finally:
        client.close()


def _cluster_state(node: redis.Redis) -> str:
    info = node.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    state = info.get("cluster_state", "") if isinstance(info, dict) else ""
    return state.decode() if isinstance(state, bytes) else str(state)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


@contextlib.contextmanager
def spawned_cluster(masters: int = 3) -> Iterator[str]:
    """A Redis Cluster of ``masters`` nodes on free ports (no replicas), removed at exit.

    Yields a ``redis+cluster://`` URL naming the first node.
    """
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise RuntimeError("redis-server and redis-cli must be on PATH")
    workdir = tempfile.mkdtemp(prefix="curriculum-cluster-")
    processes: list[subprocess.Popen] = []
    ports = []
    try:
        for _ in range(masters):
            port = _cluster_port()
            node_dir = Path(workdir) / str(port)
            node_dir.mkdir()
            processes.append(
                subprocess.Popen(
                    [
                        *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                        *("--appendonly", "no", "--dir", str(node_dir)),
                        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                        *("--cluster-node-timeout", "2000"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            ports.append(port)
        deadline = time.monotonic() + 10
        for port in ports:
            while not answers(f"redis://127.0.0.1:{port}/0"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not start")
                time.sleep(0.05)
        subprocess.run(
            [
                *(cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        for port in ports:
            node = redis.Redis(port=port)
            try:
                while _cluster_state(node) != "ok":
                    if time.monotonic() > deadline + 20:
                        raise RuntimeError("the cluster did not become ready")
                    time.sleep(0.1)
            finally:
                node.close()
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


class RestartableRedis:
    """A redis-server of a test's own on a fixed port and directory, that the test can kill
    (SIGKILL: no shutdown save) and start again on the same port and directory.

    With ``aof`` the server persists every write to an append-only file (``appendfsync always``:
    a write is on disk before its reply is sent), so a restart keeps every acknowledged write;
    without it a restart starts empty. ``extra`` arguments go to every start.
    """

    def __init__(self, workdir: str, *extra: str, aof: bool = True) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.workdir = workdir
        self.port = free_port()
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
        )
        self.argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *persistence,
            "--dir",
            workdir,
            *extra,
        ]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server (it must not run) and wait until it answers."""
        assert not self.running(), "the server is already running"
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (if it runs) and wait for it to exit."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def restartable_redis(*extra: str, aof: bool = True) -> Iterator[RestartableRedis]:
    """A started :class:`RestartableRedis` in a temporary directory; killed (and its files
    removed) at exit, however the test ends."""
    workdir = tempfile.mkdtemp(prefix="curriculum-redis-restart-")
    server = RestartableRedis(workdir, *extra, aof=aof)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def own_redis_server() -> Iterator[str]:
    """The body of a module-scoped ``url`` fixture: a redis-server of the test module's own.

    Fails on CI when none can be spawned (the tests must run there), skips elsewhere.
    """
    import pytest

    try:
        with spawned_redis() as (spawned, _):
            yield spawned
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"this test must run on CI, but no redis-server can be spawned: {exc}")
        pytest.skip(f"no redis-server to spawn: {exc}")
