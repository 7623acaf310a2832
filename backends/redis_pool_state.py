"""Whole-pool operations of the Redis backend: the stage record and checkpoint export/import.

A mixin of :class:`~backends.redis_backend.RedisBackend` (it uses the backend's script calls,
write ids and read path).
"""

from __future__ import annotations

from typing import Any

import msgpack

from backends.base import PoolParams, PoolSnapshot, PoolState
from backends.layout import COUNTER_NAMES, EMPTY_TASK, OVERFLOW_LABEL, decode_label
from backends.redis_read import decode_stage
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

    def _redis(self, *command: Any) -> Any: ...  # provided by the backend
    def _call(self, name: str, *args: Any) -> Any: ...
    def _write(self, name: str, *args: Any) -> Any: ...
    def _lost(self, what: str) -> PoolLostError: ...
    def _new_client_id(self) -> None: ...

    _next_seq: int | None

    def _read(self, *, with_stage: bool = False) -> tuple[PoolSnapshot, StageState | None]: ...

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

    def export_state(self) -> PoolState:
        """Everything in the pool, from one consistent snapshot."""
        snap, stage = self._read(with_stage=True)
        return PoolState(
            params=self.params,
            rows=snap.rows,
            labels=snap.labels,
            counters=snap.counters,
            stage=stage,
        )

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
        self._write(
            "import_state",
            msgpack.packb(rows),
            msgpack.packb(labels),
            msgpack.packb(counters),
            OVERFLOW_LABEL,
            self.params.label_capacity,
            msgpack.packb(state.stage.to_list()),
        )
        self._label_ids.clear()
        self._next_seq = None  # the state brings its own sequence counter


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
