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
    backend_timeout_s: float | None = None,
    ttl_s: float | None = None,
    generator_json: str = "",
    prefetch_sequence: bool = False,
) -> TaskMemoryBackend:
    """Attach to (or create) the pool of ``session_id`` on the backend ``backend_url`` names.

    Redis only: ``backend_timeout_s`` bounds every wait on the server (default 10 s),
    ``ttl_s`` makes a pool created now expire after that long without a write (private pools),
    ``generator_json`` is stored with a new pool so that a mismatch names differing fields,
    ``prefetch_sequence`` reserves a process's next sequence number with each task it creates
    (see :class:`~backends.redis_backend.RedisBackend`).
    """
    if backend_url is None:
        return SharedMemoryBackend(session_id, params, create=create, lock_timeout_s=lock_timeout_s)
    from backends.redis_backend import RedisBackend
    from backends.redis_connection import DEFAULT_TIMEOUT_S

    return RedisBackend(
        backend_url,
        session_id,
        params,
        create=create,
        timeout_s=DEFAULT_TIMEOUT_S if backend_timeout_s is None else backend_timeout_s,
        ttl_s=ttl_s,
        generator_json=generator_json,
        prefetch_sequence=prefetch_sequence,
    )


__all__ = [
    "PoolParams",
    "PoolSnapshot",
    "PoolState",
    "SharedMemoryBackend",
    "TaskMemoryBackend",
    "WriteBatch",
    "open_backend",
]
