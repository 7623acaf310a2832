"""Whole-pool operations of the Redis backend: the stage and range records, and checkpoint
export/import.

A mixin of :class:`~backends.redis_backend.RedisBackend` (it uses the backend's script calls,
write ids and read path).
"""

from __future__ import annotations

from typing import Any

import msgpack

from backends.base import PoolParams, PoolSnapshot, PoolState, labels_full_error
from backends.layout import COUNTER_NAMES, EMPTY_TASK, OVERFLOW_LABEL, decode_label
from backends.range_state import RangeState, RangeUpdate
from backends.redis_keys import MARKER_FIELD
from backends.redis_read import decode_ranges, decode_stage
from backends.stage_state import StageState, StageUpdate
from curriculum.errors import BackendError, PoolLostError, PoolMismatchError


class RedisPoolStateOps:
    """Stage record and checkpoint state of a Redis pool."""

    session_id: str
    params: PoolParams
    _keys: list[str]
    _incarnation: str
    _client_id: str
    _pid: int
    _stage_seq: int
    _label_ids: dict[str, int]
    _next_seq: int | None

    def _redis(self, *command: Any) -> Any: ...  # provided by the backend
    def _call(self, name: str, *args: Any) -> Any: ...
    def _write(self, name: str, *args: Any) -> Any: ...
    def _lost(self, what: str) -> PoolLostError: ...
    def _new_client_id(self) -> None: ...
    def _unnumbered(self) -> int: ...
    def _read(
        self, *, with_stage: bool = False
    ) -> tuple[PoolSnapshot, StageState | None, RangeState | None]: ...

    def stage_state(self) -> StageState:
        """The stage record, read with one HGET."""
        raw, incarnation = self._redis("HMGET", self._keys[0], "stage", "incarnation")
        if raw is None:
            raise self._lost("no longer exists")
        if _text(incarnation or b"") != self._incarnation:
            raise self._lost("was re-created since this process attached")
        return decode_stage(raw, self.session_id)

    def update_stage(self, update: StageUpdate) -> tuple[StageState, int | None]:
        """Fold ``update`` into the stage record in one script call.

        Stage updates are numbered apart from other writes (``<client>:s``): an update whose
        write failed must be sent again, with its id, before any newer one.
        """
        rule = self.params.stage_rule()
        if rule is None:
            raise BackendError(
                f"pool {self.session_id!r} is not the root pool of a staged curriculum"
            )
        if not update.write_id:
            update.write_id = self._unnumbered()
        reply = self._call(
            "update_stage",
            f"{self._client_id}:s",
            update.write_id,
            update.stage,
            update.count,
            repr(float(update.decay)),
            repr(float(update.add)),
            update.steps,
            rule.criteria_code,
            repr(float(rule.threshold)),
            msgpack.packb(list(rule.budgets)),
        )
        raw = reply if isinstance(reply, bytes) else str(reply).encode()
        ended, _, packed = raw.partition(b":")
        stage = int(ended)
        return decode_stage(packed, self.session_id), (None if stage < 0 else stage)

    def range_state(self) -> RangeState:
        """The range record, read with one HMGET (its key's incarnation checked)."""
        marker, raw = self._redis("HMGET", self._keys[6], MARKER_FIELD, "record")
        if _text(marker or b"") != self._incarnation:
            raise self._lost("lost its range record or was re-created since this process attached")
        return decode_ranges(raw, self.session_id)

    def update_ranges(self, update: RangeUpdate) -> RangeState:
        """Fold ``update`` into the range record in one script call.

        Range updates are numbered apart from other writes (``<client>:g``): an update whose
        write failed must be sent again, with its id, before any newer one.
        """
        rule = self.params.range_rule()
        if rule is None:
            raise BackendError(f"pool {self.session_id!r} is not a range-expansion pool")
        if not update.write_id:
            update.write_id = self._unnumbered()
        entries = [[b, i, n, float(total)] for b, i, n, total in update.entries]
        reply = self._call(
            "update_ranges",
            f"{self._client_id}:g",
            update.write_id,
            msgpack.packb(entries),  # sums travel as exact float64
            msgpack.packb([rule.step, rule.buffer_size, len(rule.paths)]),
            msgpack.packb([list(rule.grid), list(rule.initial_low), list(rule.initial_high)]),
            repr(float(rule.widen_at)),
            repr(float(rule.narrow_at)),
        )
        raw = reply if isinstance(reply, bytes) else str(reply).encode()
        return decode_ranges(raw, self.session_id)

    def export_state(self) -> PoolState:
        """Everything in the pool, from one consistent snapshot."""
        snap, stage, ranges = self._read(with_stage=True)
        assert stage is not None
        return PoolState(self.params, snap.rows, snap.labels, snap.counters, stage, ranges)

    def import_state(self, state: PoolState) -> None:
        """Replace rows, label counters and counters in one script call."""
        if len(state.rows) != self.params.capacity:
            raise PoolMismatchError(
                f"state has {len(state.rows)} slots, pool {self.session_id!r} has "
                f"{self.params.capacity}"
            )
        rows = [list(row) if row[0] != EMPTY_TASK else [EMPTY_TASK] for row in state.rows.tolist()]
        labels = [[decode_label(label[0]), *label[1:]] for label in state.labels.tolist()]
        counters = {name: int(state.counters.get(name, 0)) for name in COUNTER_NAMES}
        try:
            self._import(rows, labels, counters, state)
        except BackendError as exc:
            text = str(getattr(exc, "cause", ""))
            if "LABELFULL" not in text:
                raise
            folded = int(text.split("LABELFULL", 1)[1].split()[0])
            raise labels_full_error(self.session_id, folded, self.params.label_capacity) from None
        self._label_ids.clear()
        self._next_seq = None  # the state brings its own sequence counter

    def _import(self, rows: list, labels: list, counters: dict, state: PoolState) -> None:
        self._write(
            "import_state",
            msgpack.packb(rows),
            msgpack.packb(labels),
            msgpack.packb(counters),
            OVERFLOW_LABEL,
            self.params.label_capacity,
            msgpack.packb(state.stage.to_list()),
            msgpack.packb((state.ranges or self.params.initial_ranges()).to_list()),
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
