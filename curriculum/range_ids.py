"""Range expansion's task ids: the axes' grid points (and the boundary, if any) in the id itself.

A task's env config stays a pure function of its id: every process and host decodes the
expanding axes' values from the id, and draws the other buckets from it as usual.

Id format (53 bits, most significant first), for ``A`` axes with ``grid[a]`` points each::

    | boundary code: bit_length(2 A) bits | index of axis 0 | ... | index of axis A-1 | seed |

- boundary code: 0 for a task inside the range, ``1 + 2 a + side`` for a task placed at axis
  ``a``'s low (side 0) or high (side 1) bound;
- index of axis ``a``: its grid point, ``bit_length(grid[a] - 1)`` bits;
- seed: the remaining bits (at least 20, checked at config time), a bijection of the pool's
  sequence number, ``(splitmix64(pool_seed) + seq * 0x9E3779B97F4A7C15) mod 2**bits``: ids of a
  pool differ for ``2**bits`` consecutive tasks. The generator draws the other buckets from the
  whole id.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.range_state import RangeRule, RangeState
from curriculum.generators import BucketedTaskGenerator, BucketedTaskGeneratorConfig, Span, _Draft
from curriculum.paths import split_path
from curriculum.range_rule import axis_spans, grid_value, id_bits, range_rule
from curriculum.task_ids import splitmix64

if TYPE_CHECKING:
    from curriculum.config import CurriculumConfig, RangeExpansionConfig
    from curriculum.generators import TaskGenerator

_GOLDEN = 0x9E3779B97F4A7C15
_SALT_DRAW = 0x510E527FADE682D1


class RangeIds:
    """Encodes and decodes the task ids of one range-expansion config."""

    def __init__(self, rule: RangeRule) -> None:
        """The id layout of ``rule``'s axes and grids."""
        self.rule = rule
        self.axes = len(rule.paths)
        self.boundary_bits, self.index_bits, self.seed_bits = id_bits(list(rule.grid))
        shifts, at = [], self.seed_bits
        for bits in reversed(self.index_bits):
            shifts.append(at)
            at += bits
        self.index_shifts = shifts[::-1]
        self.code_shift = at

    def encode(self, code: int, indices: list[int], seed: int) -> int:
        """The id of a task with this boundary code, these grid indices and seed."""
        task_id = code << self.code_shift
        for index, shift in zip(indices, self.index_shifts, strict=True):
            task_id |= index << shift
        return task_id | (seed & ((1 << self.seed_bits) - 1))

    def decode(self, task_id: int) -> tuple[int, list[int], int]:
        """``(boundary code, grid indices, seed)`` of an id."""
        indices = [
            (task_id >> shift) & ((1 << bits) - 1)
            for shift, bits in zip(self.index_shifts, self.index_bits, strict=True)
        ]
        return task_id >> self.code_shift, indices, task_id & ((1 << self.seed_bits) - 1)

    def decode_many(self, task_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boundary codes (n,) and grid indices (n, axes) of many ids (int64)."""
        ids = task_ids.astype(np.int64)
        indices = np.stack(
            [
                (ids >> shift) & ((1 << bits) - 1)
                for shift, bits in zip(self.index_shifts, self.index_bits, strict=True)
            ],
            axis=1,
        )
        return ids >> self.code_shift, indices

    def seed(self, pool_seed: int, seq: int) -> int:
        """The seed bits of the ``seq``-th task of a pool."""
        return (splitmix64(pool_seed & (2**64 - 1)) + seq * _GOLDEN) & ((1 << self.seed_bits) - 1)

    def new_task_id(self, state: RangeState, pool_seed: int, seq: int, boundary_prob: float) -> int:
        """The id of the ``seq``-th task, drawn in the current ranges (deterministic in
        ``seq``): with ``boundary_prob`` at one bound that can still move, else inside."""
        rng = random.Random(splitmix64((pool_seed ^ _SALT_DRAW) + seq))
        indices = [rng.randint(state.low[a], state.high[a]) for a in range(self.axes)]
        code = 0
        if rng.random() < boundary_prob:
            movable = [b for b in range(2 * self.axes) if self._movable(state, b)]
            if movable:
                boundary = movable[rng.randrange(len(movable))]
                indices[boundary // 2] = state.bound(boundary)
                code = 1 + boundary
        return self.encode(code, indices, self.seed(pool_seed, seq))

    def _movable(self, state: RangeState, boundary: int) -> bool:
        axis, side = divmod(boundary, 2)
        rule = self.rule
        if side:
            high = state.high[axis]
            return rule.initial_high[axis] < high or high < rule.grid[axis] - 1
        low = state.low[axis]
        return low < rule.initial_low[axis] or low > 0

    def boundary_of(self, task_id: int) -> tuple[int, int] | None:
        """``(boundary, grid index)`` of a task placed at a bound, else None."""
        code, indices, _ = self.decode(task_id)
        if code == 0 or code > 2 * self.axes:
            return None
        return code - 1, indices[(code - 1) // 2]

    def outside(self, task_ids: np.ndarray, state: RangeState) -> np.ndarray:
        """Per id: whether the task lies outside the current ranges, or was placed at a bound
        that has moved since (its outcomes would be stale)."""
        codes, indices = self.decode_many(task_ids)
        low = np.asarray(state.low[: self.axes], dtype=np.int64)
        high = np.asarray(state.high[: self.axes], dtype=np.int64)
        out = ((indices < low) | (indices > high)).any(axis=1)
        bounds = np.asarray([state.bound(b) for b in range(2 * self.axes)] + [0], dtype=np.int64)
        boundary = np.where((codes >= 1) & (codes <= 2 * self.axes), codes - 1, 2 * self.axes)
        at = np.take_along_axis(indices, np.minimum(boundary // 2, self.axes - 1)[:, None], axis=1)[
            :, 0
        ]
        moved = (boundary < 2 * self.axes) & (at != bounds[boundary])
        return out | moved


class RangeTaskGenerator(BucketedTaskGenerator):
    """A bucketed generator whose expanding axes take the grid values encoded in the task id."""

    def __init__(self, config: BucketedTaskGeneratorConfig, algorithm: RangeExpansionConfig):
        """The generator of ``config``, with ``algorithm``'s axes decoded from ids."""
        super().__init__(config)
        self.ids = RangeIds(range_rule(algorithm, config))
        spans = axis_spans(algorithm, config)
        self._axes: list[tuple[str, tuple[str, ...], Span, int]] = [
            (path, split_path(path), span, points)
            for (path, span), points in zip(spans.items(), self.ids.rule.grid, strict=True)
        ]

    def axis_value(self, axis: int, index: int) -> int | float:
        """The value of grid point ``index`` of axis ``axis``."""
        _, _, span, points = self._axes[axis]
        return grid_value(span, points, index)

    def _build(self, task_id: int, root_id: int) -> _Draft:
        draft = super()._build(task_id, root_id)
        _, indices, _ = self.ids.decode(task_id)
        for (path, parts, span, points), index in zip(self._axes, indices, strict=True):
            value = grid_value(span, points, min(index, points - 1))
            draft.set(parts, value)
            draft.buckets[path] = value
            draft.bucket_labels[path] = span.label_for(value)
        return draft


def make_generator(config: CurriculumConfig) -> TaskGenerator:
    """The task generator a session uses: the range-expansion wrapper for that algorithm."""
    algorithm: Any = config.algorithm_config
    if algorithm.type == "range_expansion":
        return RangeTaskGenerator(config.task_generator, algorithm)  # type: ignore[arg-type]
    return config.task_generator.create()
