"""The base of every config model: frozen, strict about unknown fields, with typed errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from curriculum.errors import ConfigError
from curriculum.redaction import redact_url


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


def describe_validation_error(what: str, exc: ValidationError) -> str:
    """A one-line message naming ``what`` and each rejected field path with its input."""
    details = "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}={_shown(err.get('input'))!r}: {err['msg']}"
        if err["loc"]
        else err["msg"]  # a check of the whole model: its message names the values
        for err in exc.errors()
    )
    return f"{what}: {details}"


class FrozenModel(BaseModel):
    """Immutable (configs cross process boundaries) and raising ConfigError, not ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(
                describe_validation_error(f"invalid {type(self).__name__}", exc)
            ) from None
