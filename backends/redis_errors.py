"""The library's errors for what a Redis client or a pool script raised: one line each."""

from __future__ import annotations

import redis

from backends.redis_connection import summarise, unavailable
from backends.redis_pool_info import delete_hint
from curriculum.errors import BackendError, PoolCorruptedError, PoolLostError
from curriculum.redaction import redact_url


def lost_error(session_id: str, url: str, what: str) -> PoolLostError:
    """``pool 'x' <what> at <url>``."""
    return PoolLostError(f"pool {session_id!r} {what} at {redact_url(url)}")


def translate_error(exc: redis.RedisError, session_id: str, url: str) -> BackendError:
    """The library's error for a client error (raise it ``from None``; the original is on
    ``.cause``).

    Script errors: NOPOOL (the pool is gone), NEWPOOL (re-created since this process attached),
    BROKENPOOL (it lost keys or holds keys of another pool) are :class:`PoolLostError`;
    CORRUPT (a row this library did not write) is :class:`PoolCorruptedError`.
    """
    text = str(exc)
    error: BackendError
    script_error = isinstance(exc, redis.ResponseError)
    if script_error and "NOPOOL" in text:
        error = lost_error(session_id, url, "no longer exists")
    elif script_error and "NEWPOOL" in text:
        error = lost_error(session_id, url, "was re-created since this process attached")
    elif script_error and "BROKENPOOL" in text:
        keys = text.split("keys:", 1)[-1].strip()
        error = lost_error(session_id, url, f"lost keys or holds keys of another pool ({keys})")
    elif script_error and "CORRUPT" in text:
        detail = text.split("CORRUPT", 1)[-1].split(" script:", 1)[0].strip()
        error = PoolCorruptedError(
            f"pool {session_id!r} at {redact_url(url)} is corrupted: Redis key {detail}; "
            f"remove it with `{delete_hint(session_id, url)}`"
        )
    elif isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        error = unavailable(exc, url, f"Redis (pool {session_id!r})")
    else:
        error = BackendError(
            f"Redis at {redact_url(url)} failed for pool {session_id!r}: {summarise(exc, url)}"
        )
    error.cause = exc  # type: ignore[attr-defined]
    return error
