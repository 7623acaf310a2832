"""``apply_in_order`` (a batch's repeated slots, one outcome at a time) gives bit for bit the rows
of the vectorised reference (``rounds`` with ``apply_outcomes`` and ``apply_priorities``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.layout import empty_rows
from curriculum.ema import (
    EmaParams,
    apply_in_order,
    apply_outcomes,
    apply_priorities,
    first_and_repeats,
    rounds,
)

PARAMS = EmaParams(0.1, 0.25, 0.05, 0.5, priority_ema_alpha=0.3)


def by_rounds(rows: np.ndarray, slots, scores, priorities, params: EmaParams) -> np.ndarray:
    rows = rows.copy()
    for positions in rounds(slots):
        updated = rows[slots[positions]]
        apply_outcomes(updated, scores[positions], params)
        apply_priorities(updated, priorities[positions], params)
        rows[slots[positions]] = updated
    return rows


def by_first_and_repeats(rows: np.ndarray, slots, scores, priorities, params) -> np.ndarray:
    rows = rows.copy()
    first, repeats = first_and_repeats(slots)
    updated = rows[slots[first]]
    apply_outcomes(updated, scores[first], params)
    apply_priorities(updated, priorities[first], params)
    rows[slots[first]] = updated
    apply_in_order(rows, slots[repeats], scores[repeats], priorities[repeats], params)
    return rows


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 11), min_size=1, max_size=200),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1.0, 0.3]),
)
def test_repeats_in_order_equal_the_rounds_bit_for_bit(
    values: list[int], seed: int, priority_alpha: float
) -> None:
    rng = np.random.default_rng(seed)
    rows = empty_rows(12)
    warm = rng.random(12) < 0.5  # some rows start with history, some with none
    history = by_rounds(
        rows,
        np.flatnonzero(warm),
        rng.random(int(warm.sum())),
        np.full(int(warm.sum()), np.nan),
        PARAMS,
    )
    slots = np.asarray(values, dtype=np.int64)
    scores = np.where(
        rng.random(len(slots)) < 0.3, rng.integers(0, 2, len(slots)), rng.random(len(slots))
    )
    priorities = np.where(rng.random(len(slots)) < 0.5, rng.normal(size=len(slots)), np.nan)
    params = EmaParams(0.1, 0.25, 0.05, 0.5, priority_ema_alpha=priority_alpha)
    expected = by_rounds(history, slots, scores, priorities, params)
    got = by_first_and_repeats(history, slots, scores, priorities, params)
    assert got.tobytes() == expected.tobytes()


def test_first_and_repeats_split_every_position_once_in_order() -> None:
    slots = np.array([4, 2, 4, 4, 7, 2], dtype=np.int64)
    first, repeats = first_and_repeats(slots)
    assert first.tolist() == [0, 1, 4]
    assert repeats.tolist() == [2, 3, 5]
    first, repeats = first_and_repeats(np.array([3, 1], dtype=np.int64))
    assert first.tolist() == [0, 1] and repeats.tolist() == []
