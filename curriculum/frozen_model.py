"""The base of every config model: frozen, strict about unknown fields, with typed errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from curriculum.config_errors import describe_validation_error
from curriculum.errors import ConfigError

__all__ = ["FrozenModel", "describe_validation_error"]


class FrozenModel(BaseModel):
    """Immutable (configs cross process boundaries) and raising ConfigError, not ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(
                describe_validation_error(
                    f"invalid {type(self).__name__}", exc, type(self), FrozenModel
                )
            ) from None
