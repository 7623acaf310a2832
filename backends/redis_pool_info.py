"""What an operator is told about a Redis pool: at attach, on a mismatch, about eviction."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from backends.base import flatten
from curriculum.redaction import redact_url

logger = logging.getLogger("curriculum.redis")

# maxmemory policies that never remove a key without a time to live.
SAFE_POLICIES = ("noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")


def describe_age(seconds: float) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``12 min``, ``40 s``."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def origin(created_ms: str, creator: str, now_ms: str) -> str:
    """``created 2 h 5 min ago by host pid 123`` (what is known of it)."""
    parts = []
    try:
        parts.append(f"created {describe_age((int(now_ms) - int(created_ms)) / 1000)} ago")
    except ValueError:
        parts.append("created by an older library version")
    if creator:
        parts.append(f"by {creator}")
    return " ".join(parts)


def attach_message(session: str, url: str, reply: list[Any]) -> str:
    """The INFO line of a process that attached to an existing pool."""
    _, _, _, _, created_ms, creator, completed, _, now_ms = (_text(v) for v in reply[:9])
    return (
        f"attached to the existing pool {session!r} at {redact_url(url)}: "
        f"{origin(created_ms, creator, now_ms)}, {int(completed or 0):,} outcomes recorded"
    )


def delete_hint(session: str, url: str) -> str:
    """How to remove a pool by hand."""
    return f"curriculum pools delete {session} --backend-url {redact_url(url)}"


def mismatch_message(
    session: str,
    url: str,
    problems: list[str],
    reply: list[Any],
    generator_json: str,
) -> str:
    """Why a process cannot attach: the differing parameters, field by field, and the fix."""
    _, _, _, _, created_ms, creator, _, stored_generator, now_ms = (_text(v) for v in reply[:9])
    details = list(problems)
    fields = generator_differences(stored_generator, generator_json)
    if fields:
        details = [p for p in details if not p.startswith("task_generator")]
        details.append("task_generator fields " + "; ".join(fields))
    return (
        f"pool {session!r} at {redact_url(url)} is left from an earlier run "
        f"({origin(created_ms, creator, now_ms)}) with other parameters: "
        + "; ".join(details)
        + f". Remove it with `{delete_hint(session, url)}`, or pick another session_id"
    )


def generator_differences(stored: str, requested: str, limit: int = 8) -> list[str]:
    """``path: pool=X, requested=Y`` for each differing field of two generator configs."""
    try:
        mine, theirs = flatten(json.loads(stored)), flatten(json.loads(requested))
    except (ValueError, TypeError):
        return []
    out = []
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            out.append(f"{key}: pool={mine.get(key)!r}, requested={theirs.get(key)!r}")
    if len(out) > limit:
        out = [*out[:limit], f"... {len(out) - limit} more"]
    return out


def eviction_warning(client: redis.Redis, url: str, session: str, expires: bool) -> str | None:
    """A warning when the server's ``maxmemory-policy`` may remove this pool's keys.

    ``allkeys-*`` policies remove any key under memory pressure; ``volatile-*`` ones only keys
    with a time to live, which a private pool (``expires``) has. ``CONFIG GET`` refused (ACLs,
    managed services) says nothing.
    """
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.RedisError as exc:
        logger.debug("cannot read maxmemory-policy at %s: %s", redact_url(url), exc)
        return None
    policy = _text(next(iter(reply.values()), b"")) if isinstance(reply, dict) else ""
    if not policy or policy == "noeviction":
        return None
    if policy in SAFE_POLICIES and not expires:
        return None
    return (
        f"Redis at {redact_url(url)} has maxmemory-policy {policy}: it may evict keys of pool "
        f"{session!r} under memory pressure (the pool is then lost and re-created empty); use "
        "maxmemory-policy noeviction"
        + (" (or volatile-* for pools without a time to live)" if not expires else "")
        + ", or a Redis of its own for pools"
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
