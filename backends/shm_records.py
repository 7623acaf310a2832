"""How each write changes a mapped pool's arrays: the mutations the /dev/shm backend journals.

Each mutation comes with the indices it touches (so the caller can save them in the undo record
first, see :mod:`backends.shm_journal`) and changes only those rows, labels, counters and the
stage record. Callers hold the segment's lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends.base import RecordResult, WriteBatch
from backends.layout import (
    COUNTER_NAMES,
    EMPTY_TASK,
    LABEL_DTYPE,
    OVERFLOW_LABEL,
    empty_rows,
    fold_row_into_label,
)
from backends.shm_journal import _CRASH_AT, crash_point
from curriculum.ema import (
    EmaParams,
    apply_in_order,
    apply_outcomes,
    apply_priorities,
    first_and_repeats,
)

COUNTER_INDEX = {name: i for i, name in enumerate(COUNTER_NAMES)}
# A batch of at most this many outcomes is applied one outcome at a time (apply_in_order): for
# so few, cheaper than a vectorised pass over numpy's record fields (~30 us of fixed cost).
IN_ORDER_BATCH = 8
OVERFLOW = OVERFLOW_LABEL.encode()
_NO_INTS = np.empty(0, dtype=np.int64)
_NO_BOOLS = np.empty(0, dtype=bool)


@dataclass
class PoolArrays:
    """Views of a mapped pool: rows, labels, counters, the stage and the range record."""

    rows: np.ndarray
    labels: np.ndarray
    counters: np.ndarray
    stage: np.ndarray
    ranges: np.ndarray

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to a pool counter."""
        self.counters[COUNTER_INDEX[name]] += amount

    def counter(self, name: str) -> int:
        """A pool counter's value."""
        return int(self.counters[COUNTER_INDEX[name]])


# -- labels -------------------------------------------------------------------------------------


def find_label(pool: PoolArrays, encoded: bytes) -> int | None:
    """The id of an existing label, or None."""
    found = np.flatnonzero(pool.labels["name"][: pool.counter("num_labels")] == encoded)
    return int(found[0]) if len(found) else None


def label_to_add(pool: PoolArrays, encoded: bytes) -> tuple[int, bytes]:
    """The id a new label would take, and the name stored there (the overflow label when the
    table is full)."""
    count = pool.counter("num_labels")
    if count >= len(pool.labels) - 1 and encoded != OVERFLOW:
        existing = find_label(pool, OVERFLOW)
        return (existing, OVERFLOW) if existing is not None else (count, OVERFLOW)
    return count, encoded


def labels_folded(pool: PoolArrays, names: np.ndarray) -> int:
    """How many of ``names`` (distinct, encoded) interning in turn would count under the
    overflow label: the table would fill up before their turn (the same rule as
    :func:`label_to_add`, and as ``import_state.lua`` on Redis)."""
    count = pool.counter("num_labels")
    known = set(pool.labels["name"][:count].tolist())
    folded = 0
    for name in names.tolist():
        if name in known:
            continue
        if count >= len(pool.labels) - 1 and name != OVERFLOW:
            folded += 1
            name = OVERFLOW
            if name in known:
                continue
        known.add(name)
        count += 1
    return folded


def add_label(pool: PoolArrays, label_id: int, encoded: bytes) -> None:
    """Store a new label at ``label_id`` (as :func:`label_to_add` chose) if it is not there yet."""
    if label_id < pool.counter("num_labels"):
        return
    record = np.zeros((), LABEL_DTYPE)
    record["name"] = encoded
    pool.labels[label_id] = record
    pool.count("num_labels")


# -- tasks --------------------------------------------------------------------------------------


def write_new_task(pool: PoolArrays, slot: int, task_id: int, label_id: int, seq: int) -> None:
    """Put a new task into ``slot`` (touches the slot, ``label_id`` and counters)."""
    row = empty_rows(1)
    row["task_id"] = task_id
    row["seq"] = seq
    row["label_id"] = label_id
    row["last_sampled"] = pool.counter("num_scheduled")
    pool.rows[slot] = row[0]
    if label_id >= 0:
        pool.labels["created"][label_id] += 1
    pool.count("num_created")
    pool.count("epoch_created")


def evict(pool: PoolArrays, slot: int) -> None:
    """Fold the task in ``slot`` into its label (touches the slot's label and counters)."""
    old_label = int(pool.rows["label_id"][slot])
    if old_label >= 0:
        label = pool.labels[old_label].copy()  # written back as one record
        fold_row_into_label(label, pool.rows[slot])
        label["evicted"] += 1
        pool.labels[old_label] = label
    pool.count("num_evicted")
    pool.count("epoch_evicted")


def label_ids(*ids: int) -> np.ndarray:
    """Distinct valid label ids among ``ids``."""
    return np.unique(np.asarray([i for i in ids if i >= 0], dtype=np.int64))


# -- a batch ------------------------------------------------------------------------------------


@dataclass
class PreparedBatch:
    """A batch as arrays, its outcomes split into each slot's first and the repeats (before the
    lock) and, under the lock, which of its entries still find their task and what it touches."""

    slots: np.ndarray
    task_ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    priorities: np.ndarray | None  # per outcome, NaN where none came; None: no priorities
    # positions of each slot's first outcome (:func:`first_and_repeats`; none in a small batch)
    first: np.ndarray
    repeats: np.ndarray  # positions of the other outcomes, in arrival order
    sample_slots: np.ndarray
    sample_task_ids: np.ndarray
    sample_labels: np.ndarray
    failure_slots: np.ndarray
    failure_task_ids: np.ndarray
    failure_labels: np.ndarray
    steps: int

    @classmethod
    def of(cls, batch: WriteBatch) -> PreparedBatch:
        """Arrays of ``batch``, its outcomes split into each slot's first and the repeats."""

        def ints(values: list[int]) -> np.ndarray:
            return np.asarray(values, dtype=np.int64) if values else _NO_INTS

        priorities = None
        if batch.priority_positions:
            priorities = np.full(len(batch.outcome_slots), np.nan)
            priorities[ints(batch.priority_positions)] = batch.priority_values
        slots = ints(batch.outcome_slots)
        if len(slots) <= IN_ORDER_BATCH:  # a few outcomes: all one at a time
            first, repeats = _NO_INTS, np.arange(len(slots))
        else:
            first, repeats = first_and_repeats(slots)
        return cls(
            slots=slots,
            task_ids=ints(batch.outcome_task_ids),
            labels=ints(batch.outcome_labels),
            scores=np.asarray(batch.outcome_scores, dtype=np.float64),
            priorities=priorities,
            first=first,
            repeats=repeats,
            sample_slots=ints(batch.sample_slots),
            sample_task_ids=ints(batch.sample_task_ids),
            sample_labels=ints(batch.sample_labels),
            failure_slots=ints(batch.failure_slots),
            failure_task_ids=ints(batch.failure_task_ids),
            failure_labels=ints(batch.failure_labels),
            steps=batch.steps,
        )

    def touched_slots(self, capacity: int) -> np.ndarray:
        """Every slot the batch names: at most ``capacity`` entries (repeats only when they fit,
        which an undo record allows: each copy saves the same original row)."""
        parts = [a for a in (self.slots, self.sample_slots, self.failure_slots) if len(a)]
        if not parts:
            return _NO_INTS
        slots = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return slots if len(slots) <= capacity else np.unique(slots)

    def live_masks(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For outcomes, samples and failures: whether the slot still holds the entry's task."""
        task_ids = rows["task_id"]

        def live(slots: np.ndarray, ids: np.ndarray) -> np.ndarray:
            return task_ids[slots] == ids if len(slots) else _NO_BOOLS

        return (
            live(self.slots, self.task_ids),
            live(self.sample_slots, self.sample_task_ids),
            live(self.failure_slots, self.failure_task_ids),
        )

    def late_labels(self, masks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Distinct labels credited directly (entries whose task was evicted meanwhile)."""
        if all(mask.all() for mask in masks if len(mask)):
            return _NO_INTS
        live, sample_live, failure_live = masks
        gone = np.concatenate(
            [
                self.labels[~live],
                self.sample_labels[~sample_live],
                self.failure_labels[~failure_live],
            ]
        )
        return np.unique(gone[gone >= 0])


def apply_batch(
    pool: PoolArrays,
    batch: PreparedBatch,
    masks: tuple[np.ndarray, np.ndarray, np.ndarray],
    ema: EmaParams,
) -> RecordResult:
    """Apply outcomes (in order per slot), sample counts and failures; late entries go to their
    label's stored counters. Touches ``batch.all_slots()``, ``batch.late_labels(masks)`` and the
    counters."""
    live, sample_live, failure_live = masks
    slots, scores = batch.slots, batch.scores
    all_live = bool(live.all())
    if len(batch.first):  # each slot's first outcome, vectorised
        chosen = batch.first if all_live else batch.first[live[batch.first]]
        row_index = slots[chosen]
        updated = pool.rows[row_index]  # fancy indexing: a copy
        apply_outcomes(updated, scores[chosen], ema)
        if batch.priorities is not None:
            apply_priorities(updated, batch.priorities[chosen], ema)
        pool.rows[row_index] = updated  # whole records, one copy each
        if _CRASH_AT:
            crash_point("applying")
    if len(batch.repeats):  # each slot's later outcomes, in order
        chosen = batch.repeats if all_live else batch.repeats[live[batch.repeats]]
        priorities = None if batch.priorities is None else batch.priorities[chosen]
        apply_in_order(pool.rows, slots[chosen], scores[chosen], priorities, ema)
    applied = len(slots)
    if not all_live:
        late = ~live
        _credit_late(pool, batch.labels[late], scores[late], ema.success_threshold)
        applied -= int(late.sum())
    pool.count("num_completed", len(slots))
    pool.count("epoch_completed", len(slots))
    pool.count("num_late_outcomes", len(slots) - applied)
    for event_slots, mask, labels, row_field, label_field, counter in (
        (batch.sample_slots, sample_live, batch.sample_labels, "n_samples", "samples", "scheduled"),
        (
            batch.failure_slots,
            failure_live,
            batch.failure_labels,
            "n_failures",
            "failures",
            "failures",
        ),
    ):
        if len(event_slots):
            np.add.at(pool.rows[row_field], event_slots[mask], 1)
            gone = labels[~mask]
            np.add.at(pool.labels[label_field], gone[gone >= 0], 1)
            pool.count(f"num_{counter}", len(event_slots))
            pool.count(f"epoch_{counter}", len(event_slots))
            if counter == "scheduled":  # staleness: the count right after this write
                pool.rows["last_sampled"][event_slots[mask]] = pool.counter("num_scheduled")
    pool.count("num_steps", batch.steps)
    pool.count("epoch_steps", batch.steps)
    if _CRASH_AT:
        crash_point("applied")
    return RecordResult(applied=applied, late=len(slots) - applied)


def _credit_late(
    pool: PoolArrays, labels: np.ndarray, scores: np.ndarray, success_threshold: float
) -> None:
    known = labels >= 0
    ids, scores = labels[known], scores[known]
    np.add.at(pool.labels["completions"], ids, 1)
    np.add.at(pool.labels["late"], ids, 1)
    np.add.at(pool.labels["score_sum"], ids, scores)
    np.add.at(pool.labels["successes"], ids, scores >= success_threshold)


def free_slot(pool: PoolArrays) -> int | None:
    """The first free slot, or None."""
    free = np.flatnonzero(pool.rows["task_id"] == EMPTY_TASK)
    return int(free[0]) if len(free) else None
