"""The Redis-only options a curriculum passes when it opens its pool's backend."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from curriculum.config import CurriculumConfig


def redis_options(config: CurriculumConfig, *, private: bool | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`backends.open_backend` for ``config``.

    ``backend_timeout_s`` bounds every wait on the server; a private pool (``session_id=None``:
    a generated name no other run can find) expires ``private_pool_ttl_s`` after its last write,
    so one never closed does not stay forever (``private``: default, whether the config names no
    session); the generator's config is stored with a new pool
    so that a mismatch names the differing fields; outside deterministic mode each task a
    process creates also reserves the sequence number of its next one (an eviction in one round
    trip; deterministic mode keeps the numbers in the order a single process uses them, so a
    restored checkpoint continues the same sequence).
    """
    if private is None:
        private = config.algorithm_config.session_id is None
    try:
        generator = json.dumps(
            config.task_generator.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        )
    except (TypeError, ValueError):
        generator = ""
    return {
        "backend_timeout_s": config.backend_timeout_s,
        "ttl_s": config.private_pool_ttl_s if private else None,
        "generator_json": generator,
        "prefetch_sequence": not config.deterministic,
    }
