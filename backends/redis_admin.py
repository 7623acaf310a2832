"""Operating Redis pools without their config: list them, delete one, prune old ones.

Used by ``curriculum pools``. A pool is found through the registry set and by SCAN for meta
keys (a pool whose registry entry was lost is still found); its age and last write come from
its meta hash (``created_ms``, ``touched_ms``: the server's clock).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis

from backends.redis_keys import (
    KEY_PREFIX,
    MARKER_FIELD,
    REGISTRY_KEY,
    PoolKeys,
    free_marker,
    session_of_key,
)

_FIELDS = ("incarnation", "created_ms", "touched_ms", "creator", "num_completed", "capacity")
_FIELDS += ("num_active", "ttl_ms")


@dataclass
class RedisPoolInfo:
    """What :func:`list_pools` found about one session."""

    session: str
    state: str
    """``ok``; ``missing`` (registered, no keys); ``damaged`` (lost or foreign keys)."""
    registered: bool
    created_s_ago: float | None = None
    idle_s: float | None = None
    """Seconds since the pool's last write (since its creation if never written)."""
    creator: str = ""
    outcomes: int = 0
    capacity: int = 0
    active: int = 0
    expires: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def _sessions(client: redis.Redis) -> tuple[set[str], set[str]]:
    registered = {_text(s) for s in client.smembers(REGISTRY_KEY)}
    found = set()
    for key in client.scan_iter(match=f"{KEY_PREFIX}{{*}}:meta", count=1000):
        session = session_of_key(key)
        if session is not None:
            found.add(session)
    return registered, found


def list_pools(client: redis.Redis, session: str | None = None) -> list[RedisPoolInfo]:
    """Every pool on the server (or only ``session``'s), sorted by session id."""
    registered, found = _sessions(client)
    names = sorted(registered | found)
    if session is not None:
        names = [n for n in names if n == session] or [session]
    now_s, micros = client.time()
    now_ms = now_s * 1000 + micros // 1000
    pipe = client.pipeline(transaction=False)
    for name in names:
        keys = PoolKeys.of(name)
        pipe.hmget(keys.meta, list(_FIELDS))
        for key in (keys.rows, keys.labels, keys.label_ids, keys.tokens, keys.ranges):
            pipe.hget(key, MARKER_FIELD)
        pipe.exists(*keys.as_list())
    replies = pipe.execute() if names else []
    infos = []
    for index, name in enumerate(names):
        meta, *markers, existing = replies[7 * index : 7 * index + 7]
        values = dict(
            zip(_FIELDS, (_text(v) if v is not None else None for v in meta), strict=True)
        )
        incarnation = values["incarnation"]
        info = RedisPoolInfo(name, "ok", name in registered)
        if incarnation is None:
            info.state = "damaged" if existing else "missing"
        else:
            free_ok = client.zscore(PoolKeys.of(name).free, free_marker(incarnation)) is not None
            if (
                not free_ok
                or any(_text(m) != incarnation for m in markers if m is not None)
                or (None in markers)
            ):
                info.state = "damaged"
        created, touched = _int(values["created_ms"]), _int(values["touched_ms"])
        if created is not None:
            info.created_s_ago = (now_ms - created) / 1000
        last = touched if touched is not None else created
        if last is not None:
            info.idle_s = (now_ms - last) / 1000
        info.creator = values["creator"] or ""
        info.outcomes = _int(values["num_completed"]) or 0
        info.capacity = _int(values["capacity"]) or 0
        info.active = _int(values["num_active"]) or 0
        info.expires = bool(_int(values["ttl_ms"]))
        infos.append(info)
    return infos


def delete_pool(client: redis.Redis, session: str) -> int:
    """Remove every key of ``session``'s pool and its registry entry; the keys removed."""
    removed = int(client.delete(*PoolKeys.of(session).as_list()))
    client.srem(REGISTRY_KEY, session)
    return removed


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
