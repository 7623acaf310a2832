"""Redis servers for the benchmarks: whether one answers, one of the benchmark's own on a free
port, and removing the pools a run left behind (and nothing else)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import checkout  # noqa: F401  (this checkout's code, not the installed one)
import redis

from backends.redis_backend import REGISTRY_KEY, session_keys

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def probe_redis(url: str) -> tuple[str | None, str]:
    """The server's version, or None and the reason it did not answer."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        try:
            return str(client.info("server")["redis_version"]), ""
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return None, type(exc).__name__


def remove_leftovers(url: str, run_id: str) -> int:
    """Delete the pools of this run (session ids starting with ``run_id``) still registered after
    a failure; how many there were. Nothing else on the server is touched."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    try:
        left = [s for s in client.smembers(REGISTRY_KEY) if s.startswith(run_id.encode())]
        for session in left:
            client.delete(*session_keys(session.decode()))
            client.srem(REGISTRY_KEY, session)
        return len(left)
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def spawned_redis_server() -> Iterator[str]:
    """A redis-server of the benchmark's own on a free port (no persistence); its URL.

    Stopped and its directory removed at exit. Raises RuntimeError when none starts.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    workdir, port = tempfile.mkdtemp(prefix="bench-redis-"), _free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *args, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while probe_redis(url)[0] is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
