"""Attaching to a Redis pool (the ``attach`` script): create it, or check and adopt it."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from backends.base import PoolParams
from backends.layout import STRUCT_VERSION
from backends.redis_pool_info import attach_message, delete_hint, mismatch_message
from backends.stage_state import StageState
from curriculum.errors import PoolCorruptedError, PoolMismatchError, PoolNotFoundError
from curriculum.redaction import redact_url

logger = logging.getLogger("curriculum.redis")


@dataclass(frozen=True)
class Attached:
    """The pool a process attached to."""

    created: bool
    params: PoolParams
    incarnation: str


def attach_pool(
    call: Callable[..., Any],
    session_id: str,
    url: str,
    params: PoolParams,
    *,
    create: bool,
    ttl_ms: int,
    generator_json: str,
    token_window_ms: int,
) -> Attached:
    """Run the attach script through ``call`` and check what it found.

    A pool that lost keys (or holds keys of another pool) is removed and, with ``create``,
    created anew (logged as a warning). Attaching to an existing pool logs one INFO line with
    its age, outcomes and creator.

    Raises:
        PoolNotFoundError: no (usable) pool and not ``create``.
        PoolMismatchError: the pool was made with other parameters; the message names them
            and how to remove the pool.
        PoolCorruptedError: the pool's stored parameters are unreadable.
    """
    token = secrets.token_hex(8)
    reply = call(
        params.to_json(),
        params.capacity,
        params.label_capacity,
        params.struct_version,
        "1" if create else "0",
        repr(params.ema.ema_timescale),
        repr(params.ema.slow_timescale_factor),
        repr(params.ema.task_tracker_ema_alpha),
        repr(params.ema.success_threshold),
        msgpack.packb(StageState().to_list()),
        token,
        f"{socket.gethostname()} pid {os.getpid()}",
        ttl_ms,
        generator_json,
        token_window_ms,
        msgpack.packb(params.initial_ranges().to_list()),
        repr(params.ema.priority_ema_alpha),
    )
    status = _text(reply[0])
    if status == "missing":
        why = _text(reply[1]) if len(reply) > 1 else ""
        raise PoolNotFoundError(
            f"no pool for session {session_id!r} at {redact_url(url)}"
            + (f" ({why}: it was removed)" if why else "")
        )
    # a retried attach whose first copy created the pool finds it with our own token
    if status == "created" or (status == "exists" and _text(reply[3]) == token):
        if status == "created" and _text(reply[2]):
            logger.warning(
                "pool %r at %s was damaged (%s): removed it and created it anew",
                session_id,
                redact_url(url),
                _text(reply[2]),
            )
        return Attached(True, params, token)
    if int(reply[2]) != STRUCT_VERSION:
        raise PoolMismatchError(
            f"pool {session_id!r} uses layout version {int(reply[2])}, this library writes "
            f"{STRUCT_VERSION}; remove it with `{delete_hint(session_id, url)}`"
        )
    try:
        stored = PoolParams.from_dict(json.loads(reply[1]))
    except (ValueError, KeyError, TypeError) as exc:
        raise PoolCorruptedError(
            f"pool {session_id!r} has unreadable parameters: {exc}; remove it with "
            f"`{delete_hint(session_id, url)}`"
        ) from None
    problems = stored.mismatches(params)
    if problems:
        raise PoolMismatchError(mismatch_message(session_id, url, problems, reply, generator_json))
    logger.info(attach_message(session_id, url, reply))
    return Attached(False, stored, _text(reply[3]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
