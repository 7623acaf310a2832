"""Range expansion's rule and grids, derived (and validated) from its config and the generator's.

Axis ``a`` (a ``Span`` bucket of the top-level bucketed generator) is cut into ``grid[a]``
evenly spaced points, both Span ends included: a float Span ``[lo, hi]`` has the points
``lo + (hi - lo) * i / (grid - 1)``; an integer Span has ``min(grid, hi - lo + 1)`` points,
rounded to integers (distinct, both ends included). Ranges are pairs of grid indices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backends.range_state import MAX_AXES, RangeRule
from curriculum.errors import ConfigError
from curriculum.generators import BucketedTaskGeneratorConfig, Span

if TYPE_CHECKING:
    from curriculum.config import RangeExpansionConfig

ID_BITS = 53
MIN_SEED_BITS = 20  # task-id bits left for the seed of the other buckets, at least


def grid_points(span: Span, grid: int) -> int:
    """How many grid points axis ``span`` has for a ``grid`` resolution."""
    if span.low == span.high:
        return 1
    if isinstance(span.low, int) and isinstance(span.high, int):
        return min(grid, span.high - span.low + 1)
    return grid


def grid_value(span: Span, points: int, index: int) -> int | float:
    """The value of grid point ``index`` of a ``points``-point grid over ``span``."""
    if points <= 1:
        return span.low
    low, high = span.low, span.high
    if isinstance(low, int) and isinstance(high, int):  # round half up, in integers
        return low + ((high - low) * index * 2 + points - 1) // (2 * (points - 1))
    if index == points - 1:
        return float(high)
    return low + (high - low) * index / (points - 1)


def nearest_index(span: Span, points: int, value: float) -> int:
    """The grid point nearest to ``value`` (the lower one on a tie)."""
    distances = [abs(grid_value(span, points, i) - value) for i in range(points)]
    return distances.index(min(distances))


def axis_spans(config: RangeExpansionConfig, generator: Any) -> dict[str, Span]:
    """The Span of each expanding axis, in the config's order.

    Raises:
        ConfigError: the generator is not bucketed, or a path is not one of its Span buckets
            (the message names the path and the Span buckets there are).
    """
    if not isinstance(generator, BucketedTaskGeneratorConfig):
        raise ConfigError(
            "range expansion needs a BucketedTaskGeneratorConfig task generator with Span "
            f"buckets, got {type(generator).__name__}"
        )
    spans = {p: v for p, v in generator.buckets.items() if isinstance(v, Span)}
    for path in config.axes:
        if path not in spans:
            what = "is not a bucket" if path not in generator.buckets else "is not a Span bucket"
            raise ConfigError(
                f"range expansion axis {path!r} {what} of the task generator; "
                f"its Span buckets are {sorted(spans)}"
            )
    return {path: spans[path] for path in config.axes}


def id_bits(points: list[int]) -> tuple[int, list[int], int]:
    """Task-id bits of the boundary code, of each axis's grid index, and left for the seed."""
    boundary_bits = (2 * len(points)).bit_length()
    index_bits = [(p - 1).bit_length() for p in points]
    return boundary_bits, index_bits, ID_BITS - boundary_bits - sum(index_bits)


def range_rule(config: RangeExpansionConfig, generator: Any) -> RangeRule:
    """The rule stored in the pool's parameters.

    Raises:
        ConfigError: an axis is not a Span bucket, an initial value lies outside its Span, or
            the grids do not fit in a task id (the message says how to fix each).
    """
    spans = axis_spans(config, generator)
    if len(spans) > MAX_AXES:
        raise ConfigError(f"range expansion takes at most {MAX_AXES} axes, got {len(spans)}")
    points = [grid_points(span, config.grid) for span in spans.values()]
    _, _, seed_bits = id_bits(points)
    if seed_bits < MIN_SEED_BITS:
        raise ConfigError(
            f"range expansion grid={config.grid} over {len(spans)} axes takes "
            f"{ID_BITS - seed_bits} of a task id's {ID_BITS} bits, leaving {seed_bits} for the "
            f"task seed (at least {MIN_SEED_BITS} needed); lower grid or expand fewer axes"
        )
    lows, highs = [], []
    for (path, span), count in zip(spans.items(), points, strict=True):
        initial = config.axes[path]
        low = span.low if initial.low is None else initial.low
        high = low if initial.high is None else initial.high
        if not span.low <= low <= high <= span.high:
            raise ConfigError(
                f"range expansion axis {path!r}: initial range [{low}, {high}] must be an "
                f"ordered range inside its Span [{span.low}, {span.high}]"
            )
        lows.append(nearest_index(span, count, low))
        highs.append(nearest_index(span, count, high))
    return RangeRule(
        paths=tuple(spans),
        grid=tuple(points),
        initial_low=tuple(lows),
        initial_high=tuple(highs),
        step=config.step,
        buffer_size=config.buffer_size,
        widen_at=config.widen_at,
        narrow_at=config.narrow_at,
    )
