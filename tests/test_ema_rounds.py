"""``rounds()``: the linear split gives exactly the rounds of the reference (quadratic) one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from curriculum.ema import rounds


def reference_rounds(slots: np.ndarray) -> list[np.ndarray]:
    """The original definition: round ``r`` is every position holding its slot's r-th outcome."""
    if len(slots) == 0:
        return []
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.r_[True, sorted_slots[1:] != sorted_slots[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(slots)), 0))
    occurrence = np.empty(len(slots), dtype=np.int64)
    occurrence[order] = np.arange(len(slots)) - group_start
    return [np.flatnonzero(occurrence == r) for r in range(int(occurrence.max()) + 1)]


def same_rounds(got: list[np.ndarray], expected: list[np.ndarray]) -> bool:
    return len(got) == len(expected) and all(
        np.array_equal(a, b) and a.dtype.kind == "i" for a, b in zip(got, expected, strict=True)
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 40), max_size=300),
    st.integers(1, 41),
)
def test_rounds_equal_the_reference_on_random_batches(values: list[int], modulus: int) -> None:
    slots = np.asarray([v % modulus for v in values], dtype=np.int64)
    assert same_rounds(rounds(slots), reference_rounds(slots))


def test_rounds_of_many_repeats_on_few_slots() -> None:
    rng = np.random.default_rng(3)
    slots = rng.integers(0, 8, size=20_000).astype(np.int64)
    got = rounds(slots)
    assert same_rounds(got, reference_rounds(slots))
    assert sorted(np.concatenate(got).tolist()) == list(range(len(slots)))


def test_rounds_of_distinct_slots_and_of_an_empty_batch() -> None:
    assert rounds(np.array([], dtype=np.int64)) == []
    (only,) = rounds(np.array([5, 2, 9], dtype=np.int64))
    assert only.tolist() == [0, 1, 2]
