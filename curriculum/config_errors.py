"""Readable config errors: one line per problem, naming the field, with a suggestion.

Pydantic's errors carry the whole rejected input, which for a nested config is the repr of every
config under it. This module turns them into short lines:

- an unknown field names the closest field of the model it was given to ("did you mean
  'generator_configs'?"), or the config it belongs to ("max_labels is a field of
  CurriculumConfig, not of LearningProgressConfig");
- a missing field says so, without the rest of the input;
- a value is shown only when it is short; a check of the whole model shows its own message (it
  names the values).
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from curriculum.redaction import redact_url

_MAX_SHOWN = 80


def _shown(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


def _short_repr(value: Any) -> str | None:
    text = repr(_shown(value))
    return text if len(text) <= _MAX_SHOWN else None


def _config_classes(family: type[BaseModel]) -> list[type[BaseModel]]:
    """Every public subclass of ``family`` (the config models)."""
    found: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [family]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in found:
                found.append(sub)
                pending.append(sub)
    return [cls for cls in found if not cls.__name__.startswith("_")]


def _public_name(cls: type[BaseModel]) -> str:
    """``TaskGeneratorSet.Config`` for a generator config, else the class name."""
    name = cls.__name__
    if name.endswith("TaskGeneratorConfig") or name == "TaskGeneratorSetConfig":
        return name[: -len("Config")] + ".Config"
    return name


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation can hold (through unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    models: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        models.extend(_models_in(arg))
    return models


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class validated at ``loc`` (the error's location without its last part)."""
    current: list[type[BaseModel]] = [root]
    for part in loc:
        if isinstance(part, int):
            continue
        chosen = [cls for cls in current if part in cls.model_fields]
        if chosen:
            annotation = chosen[0].model_fields[part].annotation
            current = _models_in(annotation)
            continue
        # a discriminated union names the member by its tag ("set", "learning_progress")
        tagged = [cls for cls in current if _tag(cls) == part]
        if not tagged:
            return None
        current = tagged
    return current[0] if len(current) == 1 else None


def _tag(cls: type[BaseModel]) -> Any:
    field = cls.model_fields.get("type")
    return None if field is None else field.default


def unknown_field_hint(
    model: type[BaseModel] | None, name: str, family: type[BaseModel] | None = None
) -> str:
    """A suggestion for the unknown field ``name`` given to ``model`` ('' when none): the
    configs of ``family`` that have exactly this field, else the closest field of ``model``."""
    owners = [
        cls
        for cls in (_config_classes(family) if family is not None else [])
        if name in cls.model_fields and (model is None or not issubclass(model, cls))
    ]
    owners = [cls for cls in owners if not any(o is not cls and issubclass(cls, o) for o in owners)]
    if owners and model is not None:
        where = " or ".join(sorted({_public_name(cls) for cls in owners}))
        holders = [
            field
            for field, info in model.model_fields.items()
            if any(issubclass(held, tuple(owners)) for held in _models_in(info.annotation))
        ]
        there = f"set it inside {holders[0]}=" if holders else "pass it there"
        return f"{name!r} is a field of {where}, not of {_public_name(model)}: {there}"
    if model is not None:
        fields = list(model.model_fields)
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.6) or [
            field for field in fields if field.startswith(name) or name.startswith(field)
        ]
        if close:
            return f"did you mean {close[0]!r}?"
        fields = ", ".join(sorted(model.model_fields))
        return f"the fields of {_public_name(model)} are: {fields}"
    return ""


def describe_validation_error(
    what: str,
    exc: ValidationError,
    model: type[BaseModel] | None = None,
    family: type[BaseModel] | None = None,
) -> str:
    """A short message naming ``what`` and each rejected field, with a suggestion where one
    helps. ``model`` is the class validated, ``family`` the base class of the configs an
    unknown field may belong to (both for suggestions about unknown fields)."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc)
        kind = err["type"]
        if kind == "extra_forbidden" and loc:
            at = _model_at(model, loc[:-1]) if model else None
            hint = unknown_field_hint(at, str(loc[-1]), family)
            shown = _short_repr(err.get("input"))
            lines.append(
                f"unknown field {path!r}"
                + (f" (given {shown})" if shown else "")
                + (f": {hint}" if hint else "")
            )
        elif kind == "missing":
            lines.append(f"missing field {path!r}")
        elif kind == "value_error" or not loc:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{path}: {message}" if path else message)
        else:
            shown = _short_repr(err.get("input"))
            lines.append(f"{path}={shown}: {err['msg']}" if shown else f"{path}: {err['msg']}")
    return f"{what}: " + "; ".join(lines)
