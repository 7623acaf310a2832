"""Dotted paths into env configs.

An env config is a plain dict (nested dicts) or a pydantic model (possibly nested models); the two
may be mixed. ``"game.num_agents"`` names ``cfg["game"]["num_agents"]`` or ``cfg.game.num_agents``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from curriculum.errors import ConfigError
from curriculum.frozen_model import describe_validation_error

EnvT = TypeVar("EnvT", bound="dict[str, Any] | BaseModel")
_MISSING = object()


def split_path(path: str) -> tuple[str, ...]:
    """Split a dotted path into its segments.

    Raises:
        ConfigError: ``path`` is not a non-empty string of non-empty dot-separated segments.
    """
    if not isinstance(path, str) or not path:
        raise ConfigError(f"path must be a non-empty string, got {path!r}")
    parts = tuple(path.split("."))
    if not all(parts):
        raise ConfigError(f"path {path!r} has an empty segment")
    return parts


def _child(node: Any, segment: str) -> Any:
    if isinstance(node, Mapping):
        return node.get(segment, _MISSING)
    if isinstance(node, BaseModel) and (
        segment in type(node).model_fields or segment in (node.model_extra or {})
    ):
        return getattr(node, segment)
    return _MISSING


def get_path(cfg: Any, path: str) -> Any:
    """Read the value at a dotted path of a dict or pydantic model (mixed nesting allowed).

    Raises:
        ConfigError: A segment is missing; the message names the path and the segment.
    """
    node = cfg
    parts = split_path(path)
    for i, segment in enumerate(parts):
        node = _child(node, segment)
        if node is _MISSING:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"path {path!r}: no {segment!r} under {where}")
    return node


def set_in_place(
    data: MutableMapping[str, Any], parts: tuple[str, ...], value: Any, *, create: bool = True
) -> None:
    """Set ``value`` at the path ``parts`` of a dict the caller owns (mutates ``data``).

    Pydantic models met on the way are replaced by updated copies.

    Args:
        data: The dict to update.
        parts: The path's segments (see :func:`split_path`).
        value: Stored as is (copy it first if the caller keeps it).
        create: Create missing intermediate dicts and keys; when False, every segment must exist
            (used for dumped pydantic models, where an unknown key would be silently dropped).

    Raises:
        ConfigError: A segment is missing (with ``create=False``) or a value on the way is not a
            dict or model.
    """
    node: Any = data
    for i, segment in enumerate(parts):
        last = i == len(parts) - 1
        child = node.get(segment, _MISSING)
        if child is _MISSING and not create:
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"path {'.'.join(parts)!r}: no {segment!r} under {where}")
        if last:
            node[segment] = value
            return
        if child is _MISSING:
            child = node[segment] = {}
        elif isinstance(child, BaseModel):
            node[segment] = set_paths(child, {".".join(parts[i + 1 :]): value})
            return
        elif not isinstance(child, MutableMapping):
            raise ConfigError(
                f"path {'.'.join(parts)!r}: {'.'.join(parts[: i + 1])!r} is a "
                f"{type(child).__name__}, not a dict or model"
            )
        node = child


def model_from_plain(cls: type[BaseModel], data: dict[str, Any], what: str) -> BaseModel:
    """Validate ``data`` as ``cls``; a ValidationError becomes a ConfigError mentioning ``what``."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(f"{what}: invalid {cls.__name__}", exc, cls)
        ) from None


def set_paths(cfg: EnvT, updates: Mapping[str, Any]) -> EnvT:
    """Return a new config with every dotted path in ``updates`` set; ``cfg`` is not mutated.

    Dicts are deep-copied and missing intermediate dicts are created. Models are dumped, updated
    (every path must name an existing field) and validated again as ``type(cfg)``.

    Raises:
        ConfigError: A path is invalid or missing, or the model rejects a value (the message names
            the paths and values).
    """
    if isinstance(cfg, BaseModel):
        data = cfg.model_dump()
        for path, value in updates.items():
            set_in_place(data, split_path(path), copy.deepcopy(value), create=False)
        what = "setting " + ", ".join(f"{p}={v!r}" for p, v in updates.items())
        return model_from_plain(type(cfg), data, what)  # type: ignore[return-value]
    if isinstance(cfg, MutableMapping):
        new = copy.deepcopy(cfg)
        for path, value in updates.items():
            set_in_place(new, split_path(path), copy.deepcopy(value), create=True)
        return new
    raise ConfigError(f"env config must be a dict or a pydantic model, got {type(cfg).__name__}")


def env_to_plain(cfg: dict[str, Any] | BaseModel) -> dict[str, Any]:
    """A fresh plain-dict copy of an env config (``model_dump()`` for models)."""
    if isinstance(cfg, BaseModel):
        return cfg.model_dump()
    if isinstance(cfg, Mapping):
        return copy.deepcopy(dict(cfg))
    raise ConfigError(f"env config must be a dict or a pydantic model, got {type(cfg).__name__}")
