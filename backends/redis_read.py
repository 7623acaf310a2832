"""The one read path of a Redis pool, shared by the backend and ``curriculum inspect``.

A reading is one MULTI/EXEC of read commands (HGETALL of the meta, rows and labels hashes, the
incarnation markers of the other keys, the count of free slots), checked against the pool's
incarnation and decoded into numpy rows and labels. Data this library did not write (bad bytes,
a row of the wrong length, a task id outside [0, 2**53)) raises
:class:`~curriculum.errors.PoolCorruptedError` naming the key and slot.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import redis

from backends.base import PoolSnapshot
from backends.layout import (
    COUNTER_NAMES,
    LABEL_DTYPE,
    ROW_DTYPE,
    decode_label,
    empty_rows,
)
from backends.range_state import RangeState
from backends.redis_keys import MARKER_FIELD, MARKER_SCORE, PoolKeys, free_marker
from backends.stage_state import StageState
from curriculum.errors import PoolCorruptedError

MAX_TASK_ID = 2**53 - 1
INT64_MAX = 2**63 - 1
_INT_FIELDS = [name for name in ROW_DTYPE.names if ROW_DTYPE[name].kind == "i"]


@dataclass
class RawPool:
    """The pool's keys as read in one transaction (not yet decoded)."""

    keys: PoolKeys
    meta: dict[bytes, bytes]
    rows: dict[bytes, bytes]
    labels: dict[bytes, bytes]
    label_ids_marker: bytes | None
    tokens_marker: bytes | None
    free_marker_score: float | None
    free_slots: int
    ranges: tuple[bytes | None, bytes | None] | list[bytes | None] = (None, None)  # marker, record

    @property
    def incarnation(self) -> str:
        """The incarnation the meta hash records ('' when absent)."""
        return _text(self.meta.get(b"incarnation", b""))

    def damaged_keys(self) -> list[str]:
        """The pool's keys that are missing or belong to another incarnation than the meta
        hash's (e.g. evicted under ``maxmemory``, deleted, or left from an earlier pool)."""
        inc = self.incarnation.encode()
        bad = []
        checks = (
            ("rows", self.rows.get(MARKER_FIELD)),
            ("labels", self.labels.get(MARKER_FIELD)),
            ("label_ids", self.label_ids_marker),
            ("tokens", self.tokens_marker),
            ("ranges", self.ranges[0]),
        )
        for name, marker in checks:
            if marker != inc:
                bad.append(getattr(self.keys, name))
        if self.free_marker_score is None:
            bad.append(self.keys.free)
        return bad


def read_raw(client: redis.Redis, keys: PoolKeys, incarnation: str | None = None) -> RawPool:
    """One MULTI/EXEC of the pool's keys. ``incarnation``: the one to look for in the free set
    (default: the meta hash's, read in a first round trip)."""
    if incarnation is None:
        incarnation = _text(client.hget(keys.meta, "incarnation") or b"")
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(keys.meta)
    pipe.hgetall(keys.rows)
    pipe.hgetall(keys.labels)
    pipe.hget(keys.label_ids, MARKER_FIELD)
    pipe.hget(keys.tokens, MARKER_FIELD)
    pipe.zscore(keys.free, free_marker(incarnation))
    pipe.zcount(keys.free, 0, "+inf")
    pipe.hmget(keys.ranges, [MARKER_FIELD, "record"])
    meta, rows, labels, label_ids_marker, tokens_marker, score, free, ranges = pipe.execute()
    return RawPool(
        keys, meta, rows, labels, label_ids_marker, tokens_marker, score, int(free), ranges
    )


def counters_of(meta: dict[bytes, bytes]) -> dict[str, int]:
    """The pool-wide counters stored in the meta hash."""
    return {name: int(meta.get(name.encode(), 0)) for name in COUNTER_NAMES}


def decode_snapshot(raw: RawPool, capacity: int) -> PoolSnapshot:
    """The stored pool (labels without their live rows' counters) as a snapshot."""
    key = raw.keys.meta
    try:
        counters = counters_of(raw.meta)
        version = int(raw.meta.get(b"version", 0))
    except ValueError as exc:
        raise PoolCorruptedError(f"Redis key {key!r} holds an unreadable counter: {exc}") from None
    rows = decode_rows(raw.rows, capacity, raw.keys.rows)
    stored = len(raw.rows) - (MARKER_FIELD in raw.rows)
    if stored + raw.free_slots != capacity:
        raise PoolCorruptedError(
            f"Redis key {raw.keys.rows!r} holds {stored} rows and {raw.keys.free!r} "
            f"{raw.free_slots} free slots, but every one of the pool's {capacity} slots has "
            "exactly one of the two (a row or a free slot deleted or added by hand?); "
            "restore a checkpoint, or destroy() the pool"
        )
    labels, names = decode_labels(raw.labels, counters["num_labels"], raw.keys.labels)
    return PoolSnapshot(version, rows, labels, names, counters)


def decode_stage(raw: bytes | None, session_id: str) -> StageState:
    """The stage record stored in the meta hash."""
    try:
        return StageState.from_list(msgpack.unpackb(raw))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise PoolCorruptedError(
            f"pool {session_id!r} has an unreadable stage record: {exc}"
        ) from None


def decode_ranges(raw: bytes | None, session_id: str) -> RangeState:
    """The range record stored in the pool's ranges hash."""
    try:
        return RangeState.from_list(msgpack.unpackb(raw))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise PoolCorruptedError(
            f"pool {session_id!r} has an unreadable range record: {exc}"
        ) from None


def decode_rows(raw: dict[bytes, bytes], capacity: int, key: str = "rows") -> np.ndarray:
    """The pool's rows from its rows hash (slot -> msgpack array); absent slots are empty.

    Raises:
        PoolCorruptedError: a field or row that this library did not write, named by key and
            slot.
    """
    marker = raw.pop(MARKER_FIELD, None)  # not a row; put back below (the caller's dict)
    try:
        return _decode_rows(raw, capacity, key)
    finally:
        if marker is not None:
            raw[MARKER_FIELD] = marker


def _decode_rows(entries: dict[bytes, bytes], capacity: int, key: str) -> np.ndarray:
    rows = empty_rows(capacity)
    if not entries:
        return rows
    n, width = len(entries), len(ROW_DTYPE.names)
    try:
        slots = np.fromiter((int(k) for k in entries), dtype=np.int64, count=n)
        # one unpack of all rows: a msgpack array header in front of the concatenated values
        decoded = msgpack.unpackb(b"\xdd" + n.to_bytes(4, "big") + b"".join(entries.values()))
        if any(not isinstance(row, list) or len(row) != width for row in decoded):
            raise ValueError("a row of the wrong shape")
        flat = itertools.chain.from_iterable(decoded)
        values = np.fromiter(flat, dtype=np.float64, count=n * width).reshape(n, width)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
        _find_bad_row(entries, capacity, key)
        raise AssertionError("unreachable") from None
    bad = (slots < 0) | (slots >= capacity)
    if bad.any():
        raise PoolCorruptedError(
            f"Redis key {key!r} holds slot {int(slots[bad][0])}, outside the pool's "
            f"{capacity} slots; remove the pool (curriculum pools delete)"
        )
    ints = values[:, [ROW_DTYPE.names.index(name) for name in _INT_FIELDS]]
    task_ids = values[:, 0]
    bad = (
        (task_ids < 0)
        | (task_ids > MAX_TASK_ID)
        | (values[:, 2] < -1)
        | ~np.isfinite(values).all(axis=1)
        | (ints != np.floor(ints)).any(axis=1)
        | (np.delete(ints, [0, 2], axis=1) < 0).any(axis=1)
        | (np.abs(ints) > INT64_MAX).any(axis=1)
    )
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise PoolCorruptedError(
            f"Redis key {key!r} slot {int(slots[position])} holds an impossible row "
            f"{values[position].tolist()} (task ids are in [0, 2**53), counts >= 0); remove the "
            "pool (curriculum pools delete)"
        )
    for column, name in enumerate(ROW_DTYPE.names):
        rows[name][slots] = values[:, column]
    return rows


def _find_bad_row(entries: dict[bytes, bytes], capacity: int, key: str) -> None:
    """Raise PoolCorruptedError for the first field of ``entries`` that does not decode."""
    width = len(ROW_DTYPE.names)
    for field, blob in entries.items():
        where = f"Redis key {key!r} field {field!r}"
        try:
            slot = int(field)
        except ValueError:
            raise PoolCorruptedError(f"{where} is not a slot number") from None
        try:
            row = msgpack.unpackb(blob)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise PoolCorruptedError(
                f"Redis key {key!r} slot {slot} holds bytes that are not a row "
                f"({type(exc).__name__}); remove the pool (curriculum pools delete)"
            ) from None
        if (
            not isinstance(row, list)
            or len(row) != width
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        ):
            raise PoolCorruptedError(
                f"Redis key {key!r} slot {slot} holds {row!r}, not a row of {width} numbers; "
                "remove the pool (curriculum pools delete)"
            )
    raise PoolCorruptedError(f"Redis key {key!r} holds rows this library cannot read")


def decode_labels(
    raw: dict[bytes, bytes], count: int, key: str = "labels"
) -> tuple[np.ndarray, list[str]]:
    """Label records and names (index = label id) from the labels hash.

    Ids at or past ``count`` (assigned after the counter was read) are left out.
    """
    labels = np.zeros(count, LABEL_DTYPE)
    names = [""] * count
    for field, blob in raw.items():
        if field == MARKER_FIELD:
            continue
        try:
            label_id = int(field)
            if not 0 <= label_id < count:
                continue
            values = msgpack.unpackb(blob, raw=True)
            names[label_id] = decode_label(values[0])
            labels[label_id] = (values[0], *values[1:])
        except (ValueError, TypeError, IndexError, OverflowError, msgpack.UnpackException):
            raise PoolCorruptedError(
                f"Redis key {key!r} field {field!r} holds a label this library cannot read; "
                "remove the pool (curriculum pools delete)"
            ) from None
    return labels, names


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = [
    "MARKER_SCORE",
    "RawPool",
    "counters_of",
    "decode_labels",
    "decode_rows",
    "decode_snapshot",
    "decode_stage",
    "read_raw",
]
