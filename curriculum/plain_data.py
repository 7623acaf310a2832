"""Env-config values must be plain data: every process rebuilds and fingerprints the same config.

A generator's env, overrides and bucket values are deep-copied into every task, dumped to JSON for
the pool's fingerprint (compared by every process that attaches) and pickled into workers. Values
that break one of these are refused when the config is built, with the path of the value:

- ``set`` / ``frozenset``: their order depends on ``PYTHONHASHSEED``, so identical processes would
  compute different fingerprints and refuse each other's pool;
- anything else that is not ``None``, ``bool``, ``int``, ``float``, ``str``, a list, a tuple, a
  dict or a pydantic model (functions, arbitrary objects, ``bytes``, numpy scalars): it has no
  stable JSON form.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_SCALARS = (str, int, float, bool, type(None))
_ALLOWED = "None, bool, int, float, str, list, tuple, dict or pydantic model"


def check_plain(value: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` (the value's path) if ``value`` is not plain data.

    Pydantic models are walked through their ``model_dump()``; dict keys must be scalars.
    """
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (set, frozenset)):
        raise ValueError(
            f"{where} is a {type(value).__name__} ({_short(value)}): its order differs between "
            "processes (PYTHONHASHSEED), so processes would disagree on the pool's fingerprint; "
            "use a sorted list or a tuple"
        )
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _SCALARS):
                raise ValueError(
                    f"{where} has a key of type {_type_name(key)} ({_short(key)}): "
                    "dict keys must be strings or numbers"
                )
            check_plain(item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key!r}]")
        return
    if isinstance(value, BaseModel):
        check_plain(value.model_dump(), where)
        return
    raise ValueError(
        f"{where} is a {_type_name(value)} ({_short(value)}): env config values must be plain "
        f"data ({_ALLOWED}) so that every process rebuilds and fingerprints the same config"
        + (f"; convert it (e.g. {_hint(value)})" if _hint(value) else "")
    )


def _type_name(value: Any) -> str:
    cls = type(value)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hint(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "value.decode() or list(value)"
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return ""
    if isinstance(value, np.integer):
        return "int(value)"
    if isinstance(value, np.floating):
        return "float(value)"
    if isinstance(value, np.ndarray):
        return "value.tolist()"
    return ""
