"""Checkpoints: a pool's state as plain data (msgpack- and JSON-serialisable), and back.

Format (``version`` 2)::

    {"format": "curriculum-state", "version": 1,
     "params": PoolParams.to_dict(),
     "rows":   {field: [value per slot]},
     "labels": {"name": [str], field: [value per label]},
     "counters": {name: int},
     "stage": StageState.to_dict() (the staged curriculum's record; zeros otherwise),
     "ranges": RangeState.to_dict() (range expansion's record; absent in checkpoints of
               layout version 4, which load with the pool's initial ranges),
     "rng": numpy bit-generator state with big integers as strings}

A checkpoint written by layout 4 (``params.struct_version`` 4: rows without ``last_sampled``,
``priority`` and ``n_priorities``) loads with those fields defaulted: ``last_sampled`` = the
checkpoint's ``num_scheduled`` (no task stale), no priority.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from backends.base import PoolParams, PoolState
from backends.layout import (
    COUNTER_NAMES,
    LABEL_DTYPE,
    LAYOUT_5_FIELDS,
    ROW_DTYPE,
    STRUCT_VERSION,
    decode_label,
    encode_label,
)
from backends.range_state import RangeState
from backends.stage_state import MAX_STAGES, StageState
from curriculum.ema import BASELINE_CAP
from curriculum.errors import CheckpointError

T = TypeVar("T")

STATE_FORMAT = "curriculum-state"
STATE_VERSION = 2
INT64_MAX = 2**63 - 1
# Layout versions whose checkpoints load into this one (their plain data is a subset of it).
READABLE_STRUCT_VERSIONS = (4, STRUCT_VERSION)


def encode_state(pool: PoolState, rng: np.random.Generator) -> dict[str, Any]:
    """Plain-data checkpoint of ``pool`` and this process's sampling RNG."""
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "params": pool.params.to_dict(),
        "rows": {name: pool.rows[name].tolist() for name in ROW_DTYPE.names},
        "labels": {
            "name": [decode_label(raw) for raw in pool.labels["name"]],
            **{name: pool.labels[name].tolist() for name in LABEL_DTYPE.names if name != "name"},
        },
        "counters": {name: int(pool.counters[name]) for name in COUNTER_NAMES},
        "stage": pool.stage.to_dict(),
        "ranges": None if pool.ranges is None else pool.ranges.to_dict(),
        "rng": _stringify_ints(rng.bit_generator.state),
    }


def decode_state(data: Any) -> tuple[PoolState, dict[str, Any]]:
    """Validate a checkpoint; the pool state and the RNG state it holds.

    Raises:
        CheckpointError: the data is not a checkpoint of this library, or is damaged.
    """
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"not a curriculum checkpoint (format {found!r})")
    if data.get("version") != STATE_VERSION:
        version = data.get("version")
        raise CheckpointError(
            f"checkpoint version {version!r} is not supported (expected {STATE_VERSION})"
        )
    params = _section(data, "params", PoolParams.from_dict)
    counters = _section(data, "counters", _decode_counters)
    if params.struct_version not in READABLE_STRUCT_VERSIONS:
        raise CheckpointError(
            f"checkpoint rows use layout version {params.struct_version}; this library reads "
            f"4 and {STRUCT_VERSION}"
        )
    old_layout = params.struct_version == 4
    params = dataclasses.replace(params, struct_version=STRUCT_VERSION)
    rows = _section(
        data,
        "rows",
        lambda v: _columns_to_array(
            _upgraded_rows(v, counters) if old_layout else v, ROW_DTYPE, params.capacity, "rows"
        ),
    )
    labels = _section(data, "labels", _decode_labels)
    stage = _section(data, "stage", StageState.from_dict)
    ranges = _section(data, "ranges", _decode_ranges) if data.get("ranges") is not None else None
    rng = _section(data, "rng", _unstringify_ints)
    _check_rows(rows, labels)
    _check_sequence(rows, counters)
    _check_labels(labels)
    _check_stage(stage)
    state = PoolState(params, rows, labels, counters, stage, ranges)
    return state, rng


def _section(data: dict[str, Any], name: str, decode: Callable[[Any], T]) -> T:
    """Decode one top-level section, naming it when it is missing or damaged."""
    if name not in data:
        raise CheckpointError(f"checkpoint lacks its {name!r} section")
    try:
        return decode(data[name])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint section {name!r} is damaged: {type(exc).__name__}: {exc}"
        ) from None


def _upgraded_rows(section: Any, counters: dict[str, int]) -> dict[str, Any]:
    """Layout-4 row columns with the layout-5 fields added (see the module docstring)."""
    columns = dict(section)
    length = len(columns["task_id"])
    defaults = {
        "last_sampled": counters["num_scheduled"],
        "priority": 0.0,
        "n_priorities": 0,
    }
    for name in LAYOUT_5_FIELDS:
        columns.setdefault(name, [defaults[name]] * length)
    return columns


def _decode_labels(section: Any) -> np.ndarray:
    columns = dict(section)
    names = columns.pop("name")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError("checkpoint label names must be a list of strings")
    encoded = [encode_label(n) for n in names]
    if len(set(encoded)) != len(encoded):
        repeated = sorted({n for n, e in zip(names, encoded, strict=True) if encoded.count(e) > 1})
        raise CheckpointError(f"checkpoint labels repeat the names {repeated}")
    columns["name"] = encoded
    return _columns_to_array(columns, LABEL_DTYPE, len(names), "labels")


def _decode_counters(section: Any) -> dict[str, int]:
    counters = {}
    for name in COUNTER_NAMES:
        value = section[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise CheckpointError(f"checkpoint counter {name!r} is {value!r}: need an int >= 0")
        counters[name] = value
    return counters


def _columns_to_array(
    columns: dict[str, Any], dtype: np.dtype, length: int, what: str
) -> np.ndarray:
    missing = set(dtype.names) - set(columns)
    if missing:
        raise CheckpointError(f"checkpoint {what} lack the fields {sorted(missing)}")
    array = np.zeros(length, dtype)
    for name in dtype.names:
        values = columns[name]
        if len(values) != length:
            raise CheckpointError(
                f"checkpoint {what} field {name!r} has {len(values)} values, expected {length}"
            )
        kind = dtype[name].kind
        if kind != "S":
            raw = np.asarray(values)
            accepted = "iu" if kind == "i" else "iuf"
            if length and raw.dtype.kind not in accepted:
                raise CheckpointError(
                    f"checkpoint {what} field {name!r} holds {raw.dtype} values, "
                    f"expected {'integers' if kind == 'i' else 'numbers'}"
                )
            if length and kind == "i" and raw.dtype.kind == "u" and raw.max() > INT64_MAX:
                raise CheckpointError(
                    f"checkpoint {what} field {name!r} holds {int(raw.max())}, above the "
                    f"largest storable integer {INT64_MAX}"
                )
            values = raw
        array[name] = np.asarray(values, dtype=dtype[name])
    return array


def _check_rows(rows: np.ndarray, labels: np.ndarray) -> None:
    for field in (
        "baseline",
        "fast",
        "slow",
        "perf",
        "reward",
        "reward_sq",
        "score_sum",
        "priority",
    ):
        if not np.isfinite(rows[field]).all():
            raise CheckpointError(f"checkpoint rows field {field!r} holds non-finite values")
    if (rows["task_id"] >= 2**53).any() or (rows["task_id"] < -1).any():
        raise CheckpointError("checkpoint holds task ids outside [0, 2**53)")
    live = rows[rows["task_id"] >= 0]
    ids, counts = np.unique(live["task_id"], return_counts=True)
    if (counts > 1).any():
        raise CheckpointError(f"checkpoint holds task {int(ids[counts > 1][0])} in two slots")
    bad = (live["label_id"] < 0) | (live["label_id"] >= len(labels))
    if bad.any():
        raise CheckpointError(
            f"checkpoint task {int(live['task_id'][bad][0])} names label "
            f"{int(live['label_id'][bad][0])}, but the checkpoint has {len(labels)} labels"
        )
    for field in (
        "seq",
        "n_outcomes",
        "n_samples",
        "n_success",
        "n_failures",
        "last_sampled",
        "n_priorities",
    ):
        if (live[field] < 0).any():
            raise CheckpointError(f"checkpoint rows field {field!r} holds negative counts")
    ranges = {
        "baseline": BASELINE_CAP,
        "fast": 1.0,
        "slow": 1.0,
        "perf": 1.0,
        "reward": 1.0,
        "reward_sq": 1.0,
    }
    for field, high in ranges.items():
        outside = (live[field] < 0.0) | (live[field] > high)
        if outside.any():
            raise CheckpointError(
                f"checkpoint rows field {field!r} holds {float(live[field][outside][0])!r}, "
                f"outside [0, {high}]"
            )
    if ((live["n_success"] > live["n_outcomes"]) | (live["score_sum"] < 0)).any() or (
        live["score_sum"] > live["n_outcomes"]
    ).any():
        raise CheckpointError("checkpoint rows hold success counts or score sums beyond outcomes")


def _check_sequence(rows: np.ndarray, counters: dict[str, int]) -> None:
    """New task ids derive from ``next_seq``: it must lie above every live task's sequence
    number, or a new task would get the id of a task already in the pool."""
    live = rows["task_id"] >= 0
    if live.any():
        highest = int(rows["seq"][live].max())
        if counters["next_seq"] <= highest:
            raise CheckpointError(
                f"checkpoint counter 'next_seq' is {counters['next_seq']}, not above the largest "
                f"task sequence number in its rows ({highest}): new tasks would reuse the ids "
                "of tasks in the pool"
            )


def _check_labels(labels: np.ndarray) -> None:
    for field in LABEL_DTYPE.names:
        if field == "name":
            continue
        values = labels[field]
        if not np.isfinite(values).all() or (values < 0).any():
            raise CheckpointError(
                f"checkpoint labels field {field!r} holds negative or non-finite values"
            )


def _decode_ranges(section: Any) -> RangeState:
    ranges = RangeState.from_dict(section)
    counts = (ranges.version, ranges.widened, ranges.narrowed, ranges.stale, *ranges.counts)
    if not all(0 <= c <= INT64_MAX for c in (*counts, *ranges.low, *ranges.high)):
        raise CheckpointError("checkpoint range record holds negative or oversized counts")
    if not all(math.isfinite(s) and s >= 0.0 for s in ranges.sums):
        raise CheckpointError(f"checkpoint range sums {ranges.sums} must be finite and >= 0")
    return ranges


def _check_stage(stage: StageState) -> None:
    if not 0 <= stage.stage < MAX_STAGES:
        raise CheckpointError(f"checkpoint stage {stage.stage} is outside [0, {MAX_STAGES})")
    if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in stage.performance):
        raise CheckpointError(
            f"checkpoint stage performance {stage.performance} holds values outside [0, 1]"
        )
    counts = (stage.transitions, stage.stage_steps, stage.total_steps, *stage.outcomes)
    if min(counts) < 0:
        raise CheckpointError("checkpoint stage record holds negative counts")
    names = ("transitions", "stage_steps", "total_steps", *("outcomes",) * len(stage.outcomes))
    for name, count in zip(names, counts, strict=True):
        if count > INT64_MAX:
            raise CheckpointError(
                f"checkpoint stage field {name!r} is {count}, above the largest storable "
                f"integer {INT64_MAX}"
            )


def _stringify_ints(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify_ints(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return {"int": str(value)}
    return value


def _unstringify_ints(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {k: _unstringify_ints(v) for k, v in value.items()}
    return value
