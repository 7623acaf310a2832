"""Storage backends of the shared task pool."""

from __future__ import annotations

from backends.base import PoolParams, PoolSnapshot, PoolState, TaskMemoryBackend, WriteBatch
from backends.shared_memory import SharedMemoryBackend


def open_backend(
    backend_url: str | None,
    session_id: str,
    params: PoolParams,
    *,
    create: bool,
    lock_timeout_s: float,
) -> TaskMemoryBackend:
    """Attach to (or create) the pool of ``session_id`` on the backend ``backend_url`` names."""
    if backend_url is None:
        return SharedMemoryBackend(session_id, params, create=create, lock_timeout_s=lock_timeout_s)
    from backends.redis_backend import RedisBackend

    return RedisBackend(backend_url, session_id, params, create=create)


__all__ = [
    "PoolParams",
    "PoolSnapshot",
    "PoolState",
    "SharedMemoryBackend",
    "TaskMemoryBackend",
    "WriteBatch",
    "open_backend",
]
