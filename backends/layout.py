"""The pool's data layout, shared by every backend.

A pool is a fixed number of slots (one row each), a label table (append-only: a label's id never
changes once assigned, so processes may cache name -> id) and pool-wide counters. Rows and labels
are numpy structured arrays; the Redis backend encodes the same fields positionally.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from curriculum.errors import ConfigError

STRUCT_VERSION = 5
EMPTY_TASK = -1
LABEL_NAME_BYTES = 128
OVERFLOW_LABEL = "(other)"

ROW_DTYPE = np.dtype(
    [
        ("task_id", np.int64),  # EMPTY_TASK when the slot is free
        ("seq", np.int64),  # creation sequence number of the task in this slot
        ("label_id", np.int64),
        ("n_outcomes", np.int64),
        ("n_samples", np.int64),
        ("n_success", np.int64),
        ("score_sum", np.float64),
        ("baseline", np.float64),
        ("fast", np.float64),
        ("slow", np.float64),
        ("perf", np.float64),
        ("reward", np.float64),
        ("reward_sq", np.float64),
        ("n_failures", np.int64),  # times the task's env config failed to build or apply
        # (layout 5) the pool's num_scheduled right after the write that carried this task's
        # latest sample count (at its creation: num_scheduled then); staleness is the
        # difference to num_scheduled now
        ("last_sampled", np.int64),
        ("priority", np.float64),  # EMA of the user-reported priorities (0 before the first)
        ("n_priorities", np.int64),  # priorities reported for this task
    ]
)

LABEL_DTYPE = np.dtype(
    [
        ("name", f"S{LABEL_NAME_BYTES}"),
        ("created", np.int64),
        ("evicted", np.int64),
        ("completions", np.int64),
        ("samples", np.int64),
        ("successes", np.int64),
        ("late", np.int64),
        ("score_sum", np.float64),
        ("failures", np.int64),
    ]
)

# A label's counters that its live tasks also hold in their rows. The label table keeps only what
# is no longer in a row (tasks evicted since, outcomes that arrived late); label totals are the
# table plus the live rows (see ``label_totals``), so a write touches only the rows it changes.
LIVE_LABEL_FIELDS = (
    ("completions", "n_outcomes"),
    ("samples", "n_samples"),
    ("successes", "n_success"),
    ("score_sum", "score_sum"),
    ("failures", "n_failures"),
)


def label_totals(stored: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Every label's counters: the stored ones plus those of its live tasks' rows."""
    totals = stored.copy()
    ids = rows["label_id"]
    live = (rows["task_id"] != EMPTY_TASK) & (ids >= 0) & (ids < len(stored))
    for label_field, row_field in LIVE_LABEL_FIELDS:
        sums = np.bincount(ids[live], weights=rows[row_field][live], minlength=len(stored))
        totals[label_field] += sums.astype(LABEL_DTYPE[label_field])
    return totals


def fold_row_into_label(label: np.void, row: np.void) -> None:
    """Add an evicted task's counters to its label's stored record."""
    for label_field, row_field in LIVE_LABEL_FIELDS:
        label[label_field] += row[row_field]


# Pool-wide counters. ``epoch_*`` counters reset only when an epoch ends.
COUNTER_NAMES = (
    "next_seq",
    "num_created",
    "num_evicted",
    "num_completed",
    "num_scheduled",
    "num_late_outcomes",
    "num_failures",
    "num_active",
    "num_labels",
    "epoch",
    "epoch_created",
    "epoch_evicted",
    "epoch_completed",
    "epoch_scheduled",
    "epoch_failures",
    "num_steps",  # environment steps of the recorded episodes
    "epoch_steps",
)
EPOCH_COUNTERS = (
    "epoch_created",
    "epoch_evicted",
    "epoch_completed",
    "epoch_scheduled",
    "epoch_failures",
    "epoch_steps",
)


# Fields added by layout 5, and their values in rows of a checkpoint written by layout 4.
LAYOUT_5_FIELDS = ("last_sampled", "priority", "n_priorities")


def empty_rows(capacity: int) -> np.ndarray:
    """Rows of a pool with every slot free."""
    rows = np.zeros(capacity, dtype=ROW_DTYPE)
    rows["task_id"] = EMPTY_TASK
    rows["label_id"] = -1
    return rows


def encode_label(name: str) -> bytes:
    """UTF-8 bytes of a label, shortened (with a hash suffix keeping it unique) to fit a row.

    Raises:
        ConfigError: the label is not valid Unicode text (e.g. holds a lone surrogate).
    """
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"task label {name!r} is not valid Unicode text: {exc.reason}") from None
    if len(raw) <= LABEL_NAME_BYTES and not raw.endswith(b"\x00"):
        return raw
    digest = hashlib.sha256(raw).hexdigest()[:12]
    head = raw[: LABEL_NAME_BYTES - 14].decode("utf-8", errors="ignore").encode("utf-8")
    return head + b"~" + digest.encode("ascii")


def decode_label(raw: bytes) -> str:
    """The label string stored as ``raw``."""
    return raw.decode("utf-8", errors="replace")


def stored_label(name: str) -> str:
    """The name a pool keeps for the label ``name`` (and its stats keys use): ``name`` itself, or
    for a label over ``LABEL_NAME_BYTES`` UTF-8 bytes its shortened form (see
    :func:`encode_label`)."""
    return decode_label(encode_label(name))


_SHORTENED = re.compile(r"~[0-9a-f]{12}\Z")


def is_shortened(stored: str) -> bool:
    """Whether a stored label name is the shortened form of a longer label."""
    return (
        _SHORTENED.search(stored) is not None
        and len(stored.encode("utf-8")) >= LABEL_NAME_BYTES - 14 - 3 + 13
    )
