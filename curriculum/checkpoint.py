"""Checkpoints: a pool's state as plain data (msgpack- and JSON-serialisable), and back.

Format (``version`` 2)::

    {"format": "curriculum-state", "version": 1,
     "params": PoolParams.to_dict(),
     "rows":   {field: [value per slot]},
     "labels": {"name": [str], field: [value per label]},
     "counters": {name: int},
     "stage": StageState.to_dict() (the staged curriculum's record; zeros otherwise),
     "rng": numpy bit-generator state with big integers as strings}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.base import PoolParams, PoolState
from backends.layout import COUNTER_NAMES, LABEL_DTYPE, ROW_DTYPE, decode_label, encode_label
from backends.stage_state import MAX_STAGES, StageState
from curriculum.errors import CheckpointError

STATE_FORMAT = "curriculum-state"
STATE_VERSION = 2


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
    try:
        params = PoolParams.from_dict(data["params"])
        rows = _columns_to_array(data["rows"], ROW_DTYPE, params.capacity, "rows")
        label_columns = dict(data["labels"])
        names = label_columns.pop("name")
        if not all(isinstance(n, str) for n in names):
            raise CheckpointError("checkpoint label names must be strings")
        label_columns["name"] = [encode_label(n) for n in names]
        labels = _columns_to_array(label_columns, LABEL_DTYPE, len(names), "labels")
        counters = {name: int(data["counters"][name]) for name in COUNTER_NAMES}
        stage = StageState.from_dict(data["stage"])
        rng = _unstringify_ints(data["rng"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"damaged checkpoint: {type(exc).__name__}: {exc}") from None
    _check_consistency(rows, labels)
    _check_stage(stage)
    state = PoolState(params=params, rows=rows, labels=labels, counters=counters, stage=stage)
    return state, rng


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
        array[name] = np.asarray(values, dtype=dtype[name])
    return array


def _check_consistency(rows: np.ndarray, labels: np.ndarray) -> None:
    for field in ("baseline", "fast", "slow", "perf", "reward", "reward_sq", "score_sum"):
        if not np.isfinite(rows[field]).all():
            raise CheckpointError(f"checkpoint rows field {field!r} holds non-finite values")
    bad = (rows["task_id"] >= 0) & ((rows["label_id"] < 0) | (rows["label_id"] >= len(labels)))
    if bad.any():
        slot = int(np.flatnonzero(bad)[0])
        raise CheckpointError(
            f"checkpoint slot {slot} names label {int(rows['label_id'][slot])}, "
            f"but the checkpoint has {len(labels)} labels"
        )
    if (rows["task_id"] >= 2**53).any() or (rows["task_id"] < -1).any():
        raise CheckpointError("checkpoint holds task ids outside [0, 2**53)")


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
