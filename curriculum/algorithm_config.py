"""The fields every algorithm config shares, and the pool parameters derived from them.

Its own module so that algorithm configs defined outside :mod:`curriculum.config` (e.g.
:mod:`curriculum.plr_config`) can build on it without an import circle.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from curriculum.ema import EmaParams
from curriculum.frozen_model import FrozenModel
from curriculum.redaction import redact_url

# The statistics' timescales: part of every pool (its EmaParams), whatever the algorithm.
EMA_FIELDS = (
    "ema_timescale",
    "slow_timescale_factor",
    "task_tracker_ema_alpha",
    "success_threshold",
)
# The timescales of an algorithm without its own (LearningProgressConfig's defaults; a test
# checks that they agree).
DEFAULT_EMA = EmaParams(
    ema_timescale=0.2, slow_timescale_factor=0.35, task_tracker_ema_alpha=0.1, success_threshold=0.5
)

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # use fullmatch


class PoolAlgorithmConfig(FrozenModel):
    """Fields every algorithm shares: where its pool lives and how large it is.

    Attributes:
        session_id: Name of the shared pool. Every process (and host) that uses the same
            ``session_id`` (and backend) shares one pool. ``None`` gives this curriculum a private
            pool with a generated name, still shared with the workers it is pickled into.
        backend_url: ``None`` keeps the pool in /dev/shm on this host (no server needed);
            ``redis://...`` URLs select the Redis backend.
        num_active_tasks: Pool size. ``None`` takes ``CurriculumConfig.num_active_tasks``; when set
            it must agree with it.
    """

    session_id: str | None = None
    backend_url: str | None = None
    num_active_tasks: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_session(self) -> PoolAlgorithmConfig:
        if self.session_id is not None and not SESSION_ID_PATTERN.fullmatch(self.session_id):
            raise ValueError(
                f"session_id {self.session_id!r} must be 1-100 characters of letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        return self

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "backend_url" and value else value)

    def algorithm_params(self) -> dict[str, Any]:
        """The fields that define the algorithm's behaviour, except where its pool lives and the
        statistics' timescales (those are the pool's :meth:`ema_params`, stored once)."""
        return self.model_dump(
            exclude={"session_id", "backend_url", "num_active_tasks", *EMA_FIELDS}
        )

    def ema_params(self) -> EmaParams:
        """The timescales of the pool's statistics (the defaults when the algorithm has none),
        and the rate at which reported priorities are folded (``score_ema_alpha`` of an
        algorithm that has one, else 1.0)."""
        source = self if all(hasattr(self, name) for name in EMA_FIELDS) else DEFAULT_EMA
        return EmaParams(
            **{name: getattr(source, name) for name in EMA_FIELDS},
            priority_ema_alpha=float(getattr(self, "score_ema_alpha", 1.0)),
        )

    def uses_priorities(self) -> bool:
        """Whether the algorithm reads the priorities reported with outcomes."""
        return False
