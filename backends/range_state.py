"""Range expansion's shared state: the current range of each expanding axis, and per boundary
the outcomes gathered towards the next decision (automatic domain randomisation, ADR).

A pool of the range-expansion algorithm keeps this record beside its stage record, where every
process on every host reads it; each backend changes it only in one atomic step. Ranges are grid
indices (axis ``a`` has ``grid[a]`` points over its Span, see :mod:`curriculum.range_rule`);
boundary ``b = 2 a + side`` is axis ``a``'s low (side 0) or high (side 1) bound.

Spec of one update, applied atomically (the Redis script ``backends/lua/update_ranges.lua``
implements the same, operation for operation, and a parity test compares both). An update is a
list of entries ``(b, index, count, total)``: ``count`` outcomes of tasks placed at boundary
``b`` when its bound was ``index``, their scores summing to ``total``. For each entry, in order:

- when ``b`` names no axis of the rule, or ``index`` is not boundary ``b``'s current bound (the
  bound moved since the task was made): ``stale += count``, nothing else;
- else ``counts[b] += count``; ``sums[b] += total``; and when ``counts[b] >= buffer_size``:
  ``mean = sums[b] / counts[b]``; if ``mean >= widen_at`` the bound moves ``step`` grid points
  out (low: ``max(low - step, 0)``, high: ``min(high + step, grid - 1)``), else if
  ``mean <= narrow_at`` it moves ``step`` points in (low: ``min(low + step, initial_low)``,
  high: ``max(high - step, initial_high)``); a bound that moved adds 1 to ``widened`` or
  ``narrowed``; then ``counts[b] = 0``, ``sums[b] = 0.0``, ``version += 1`` (every decision).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_AXES = 8
MAX_BOUNDARIES = 2 * MAX_AXES
HEADER = ("version", "widened", "narrowed", "stale")
RECORD_FIELDS = len(HEADER) + 2 * MAX_AXES + 2 * MAX_BOUNDARIES


def _zeros(n: int) -> list[int]:
    return [0] * n


@dataclass
class RangeState:
    """The shared range record: bounds per axis (grid indices), buffers per boundary."""

    version: int = 0
    widened: int = 0
    narrowed: int = 0
    stale: int = 0
    low: list[int] = field(default_factory=lambda: _zeros(MAX_AXES))
    high: list[int] = field(default_factory=lambda: _zeros(MAX_AXES))
    counts: list[int] = field(default_factory=lambda: _zeros(MAX_BOUNDARIES))
    sums: list[float] = field(default_factory=lambda: [0.0] * MAX_BOUNDARIES)

    def bound(self, boundary: int) -> int:
        """The current bound (grid index) of ``boundary``."""
        axis, side = divmod(boundary, 2)
        return self.high[axis] if side else self.low[axis]

    def to_list(self) -> list[Any]:
        """Flat form: the header counters, low, high, counts, sums (backends store this)."""
        head = [self.version, self.widened, self.narrowed, self.stale]
        return [*head, *self.low, *self.high, *self.counts, *self.sums]

    @classmethod
    def from_list(cls, values: Iterable[Any]) -> RangeState:
        """Inverse of :meth:`to_list`; raises ValueError on a record of the wrong size."""
        flat = list(values)
        if len(flat) != RECORD_FIELDS:
            raise ValueError(f"a range record has {RECORD_FIELDS} fields, got {len(flat)}")
        at = len(HEADER)
        return cls(
            *(int(v) for v in flat[:at]),
            low=[int(v) for v in flat[at : at + MAX_AXES]],
            high=[int(v) for v in flat[at + MAX_AXES : at + 2 * MAX_AXES]],
            counts=[int(v) for v in flat[at + 2 * MAX_AXES : at + 2 * MAX_AXES + MAX_BOUNDARIES]],
            sums=[float(v) for v in flat[at + 2 * MAX_AXES + MAX_BOUNDARIES :]],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for checkpoints."""
        return {
            "version": self.version,
            "widened": self.widened,
            "narrowed": self.narrowed,
            "stale": self.stale,
            "low": list(self.low),
            "high": list(self.high),
            "counts": list(self.counts),
            "sums": list(self.sums),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeState:
        """Inverse of :meth:`to_dict`; raises KeyError/TypeError/ValueError on malformed data."""
        return cls.from_list(
            [
                *(data[name] for name in HEADER),
                *data["low"],
                *data["high"],
                *data["counts"],
                *data["sums"],
            ]
        )


@dataclass(frozen=True)
class RangeRule:
    """How the ranges move: stored in the pool's parameters (``PoolParams.ranges``).

    ``grid[a]`` points over axis ``a``'s Span; its range starts as
    ``[initial_low[a], initial_high[a]]`` (grid indices) and never narrows inside it.
    """

    paths: tuple[str, ...]
    grid: tuple[int, ...]
    initial_low: tuple[int, ...]
    initial_high: tuple[int, ...]
    step: int
    buffer_size: int
    widen_at: float
    narrow_at: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (part of the pool's parameters)."""
        return {
            "paths": list(self.paths),
            "grid": list(self.grid),
            "initial_low": list(self.initial_low),
            "initial_high": list(self.initial_high),
            "step": self.step,
            "buffer_size": self.buffer_size,
            "widen_at": self.widen_at,
            "narrow_at": self.narrow_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeRule:
        """Inverse of :meth:`to_dict`."""
        return cls(
            paths=tuple(str(p) for p in data["paths"]),
            grid=tuple(int(g) for g in data["grid"]),
            initial_low=tuple(int(i) for i in data["initial_low"]),
            initial_high=tuple(int(i) for i in data["initial_high"]),
            step=int(data["step"]),
            buffer_size=int(data["buffer_size"]),
            widen_at=float(data["widen_at"]),
            narrow_at=float(data["narrow_at"]),
        )

    def initial_state(self) -> RangeState:
        """The record of a new pool: every axis at its initial range, empty buffers."""
        state = RangeState()
        for axis in range(len(self.paths)):
            state.low[axis] = self.initial_low[axis]
            state.high[axis] = self.initial_high[axis]
        return state


@dataclass
class RangeUpdate:
    """Boundary outcomes to fold into the record in one atomic step.

    ``entries`` are ``(boundary, index, count, total)``. ``write_id`` is given by a backend on
    the first attempt (0 until then); an update sent again after a failed write keeps it, so the
    backend can recognise an update it already applied.
    """

    entries: list[tuple[int, int, int, float]]
    write_id: int = 0

    @property
    def outcomes(self) -> int:
        """The outcomes the update carries."""
        return sum(entry[2] for entry in self.entries)


def apply_range_update(state: RangeState, update: RangeUpdate, rule: RangeRule) -> None:
    """Apply ``update`` to ``state`` in place (the spec above)."""
    axes = len(rule.paths)
    for boundary, index, count, total in update.entries:
        if not 0 <= boundary < 2 * axes or index != state.bound(boundary):
            state.stale += count
            continue
        state.counts[boundary] += count
        state.sums[boundary] += total
        if state.counts[boundary] < rule.buffer_size:
            continue
        mean = state.sums[boundary] / state.counts[boundary]
        axis, side = divmod(boundary, 2)
        bounds = state.high if side else state.low
        before = bounds[axis]
        if mean >= rule.widen_at:
            if side:
                bounds[axis] = min(before + rule.step, rule.grid[axis] - 1)
            else:
                bounds[axis] = max(before - rule.step, 0)
            state.widened += int(bounds[axis] != before)
        elif mean <= rule.narrow_at:
            if side:
                bounds[axis] = max(before - rule.step, rule.initial_high[axis])
            else:
                bounds[axis] = min(before + rule.step, rule.initial_low[axis])
            state.narrowed += int(bounds[axis] != before)
        state.counts[boundary] = 0
        state.sums[boundary] = 0.0
        state.version += 1
