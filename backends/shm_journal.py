"""The undo record that makes every /dev/shm write all or nothing, even when its writer dies.

A write, holding the segment's lock, first copies everything it is about to change (the rows and
labels it touches, all counters, the stage or range record when it changes it) into the journal
area of the segment, then sets the journal's ``state`` word to 1, and only then changes the pool.
Setting ``state`` back to 0 is the write's commit point. The kernel releases the lock of a
writer that dies; the next lock holder finds ``state == 1`` and copies the saved values back
(roll back) before doing anything else. Rolling back is idempotent, so a process killed while
rolling back leaves the work to the next one.

Readers never see a half write either: a write makes the seqlock odd after its undo record is
saved and even again after its commit; a roll-back does the same. A reader that keeps finding the
seqlock odd (its writer died) takes the lock, which rolls the write back first.

The only costs are the copies of what a write touches (a few hundred bytes for a typical batch)
and two stores; ``benchmarks/bench_core.py --journal`` measures them.

For tests only, the environment variable ``CURRICULUM_SHM_CRASH_AT`` names a point (see
:data:`CRASH_POINTS`) at which a writer calls ``os._exit(CRASH_EXIT_CODE)``, as a process killed
there would stop.
"""

from __future__ import annotations

import os

import numpy as np

from backends.layout import COUNTER_NAMES, LABEL_DTYPE, ROW_DTYPE
from backends.range_state import RECORD_FIELDS as _RANGE_FIELDS
from backends.stage_state import MAX_STAGES

JOURNAL_HEADER = ("state", "n_rows", "n_labels", "has_stage", "has_ranges")
COUNTER_SLOTS = 32  # room for COUNTER_NAMES to grow without moving the rest
_STAGE_BYTES = 8 * (4 + 2 * MAX_STAGES)
_RANGE_BYTES = 8 * _RANGE_FIELDS

CRASH_POINTS = (
    "saving",  # the undo record is half written (state still 0)
    "saved",  # the undo record is complete, nothing changed yet
    "applying",  # half of the change is applied
    "applied",  # all of the change is applied, not committed
    "committed",  # committed, the seqlock still odd
    "rolling-back",  # a roll-back restored the rows but not the rest
)
CRASH_EXIT_CODE = 86
_CRASH_AT = os.environ.get("CURRICULUM_SHM_CRASH_AT", "")


def crash_point(name: str) -> None:
    """Exit at once (no clean-up, like SIGKILL) when the test environment asks for ``name``."""
    if name == _CRASH_AT:
        os._exit(CRASH_EXIT_CODE)


def _align(offset: int) -> int:
    return (offset + 63) // 64 * 64


def _parts(capacity: int, label_capacity: int) -> dict[str, int]:
    """Offsets of the journal's parts from its start, and its total size (``end``)."""
    offsets = {"header": 0, "counters": 64, "stage": 64 + 8 * COUNTER_SLOTS}
    offsets["ranges"] = _align(offsets["stage"] + _STAGE_BYTES)
    offsets["row_index"] = _align(offsets["ranges"] + _RANGE_BYTES)
    offsets["rows"] = _align(offsets["row_index"] + 8 * capacity)
    offsets["label_index"] = _align(offsets["rows"] + ROW_DTYPE.itemsize * capacity)
    offsets["labels"] = _align(offsets["label_index"] + 8 * label_capacity)
    offsets["end"] = _align(offsets["labels"] + LABEL_DTYPE.itemsize * label_capacity)
    return offsets


def journal_size(capacity: int, label_capacity: int) -> int:
    """Bytes of the journal of a pool with these many slots and labels."""
    return _parts(capacity, label_capacity)["end"]


class Journal:
    """The undo record of one mapped segment, over the pool's live arrays."""

    def __init__(
        self,
        buffer: object,
        offset: int,
        rows: np.ndarray,
        labels: np.ndarray,
        counters: np.ndarray,
        stage: np.ndarray,
        ranges: np.ndarray,
    ) -> None:
        """Views of the journal at ``offset`` of ``buffer`` (the mapping), for these arrays."""
        capacity, label_capacity = len(rows), len(labels)
        parts = {k: offset + v for k, v in _parts(capacity, label_capacity).items()}
        self._rows, self._labels, self._counters, self._stage = rows, labels, counters, stage
        self._ranges = ranges
        self._header = np.ndarray((len(JOURNAL_HEADER),), np.int64, buffer, parts["header"])
        self._saved_counters = np.ndarray((COUNTER_SLOTS,), np.int64, buffer, parts["counters"])
        self._saved_stage = np.ndarray((), stage.dtype, buffer, parts["stage"])
        self._saved_ranges = np.ndarray((), ranges.dtype, buffer, parts["ranges"])
        self._row_index = np.ndarray((capacity,), np.int64, buffer, parts["row_index"])
        self._saved_rows = np.ndarray((capacity,), ROW_DTYPE, buffer, parts["rows"])
        self._label_index = np.ndarray((label_capacity,), np.int64, buffer, parts["label_index"])
        self._saved_labels = np.ndarray((label_capacity,), LABEL_DTYPE, buffer, parts["labels"])

    @property
    def pending(self) -> bool:
        """Whether an undo record is set: a write in progress, or one whose writer died."""
        return bool(self._header[0])

    def save(
        self,
        rows: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        *,
        stage: bool = False,
        ranges: bool = False,
    ) -> None:
        """Record the current values of the given distinct row and label indices (all counters
        always; the stage record when ``stage``, the range record when ``ranges``), then mark
        the record valid."""
        header = self._header
        n_rows = 0 if rows is None else len(rows)
        n_labels = 0 if labels is None else len(labels)
        if n_rows:
            self._row_index[:n_rows] = rows
            self._saved_rows[:n_rows] = self._rows[rows]
        if n_labels:
            self._label_index[:n_labels] = labels
            self._saved_labels[:n_labels] = self._labels[labels]
        self._saved_counters[: len(COUNTER_NAMES)] = self._counters
        if stage:
            self._saved_stage[()] = self._stage
        if ranges:
            self._saved_ranges[()] = self._ranges
        header[1:5] = (n_rows, n_labels, int(stage), int(ranges))
        if _CRASH_AT:
            crash_point("saving")
        header[0] = 1  # the record is valid from here on
        if _CRASH_AT:
            crash_point("saved")

    def commit(self) -> None:
        """The write is complete: drop the undo record."""
        self._header[0] = 0

    def roll_back(self) -> None:
        """Restore what the record saved and drop it (idempotent until it is dropped)."""
        header = self._header
        n_rows, n_labels, has_stage, has_ranges = (int(v) for v in header[1:5])
        if n_rows:
            self._rows[self._row_index[:n_rows]] = self._saved_rows[:n_rows]
        if _CRASH_AT:
            crash_point("rolling-back")
        if n_labels:
            self._labels[self._label_index[:n_labels]] = self._saved_labels[:n_labels]
        self._counters[:] = self._saved_counters[: len(COUNTER_NAMES)]
        if has_stage:
            self._stage[()] = self._saved_stage
        if has_ranges:
            self._ranges[()] = self._saved_ranges
        header[0] = 0
