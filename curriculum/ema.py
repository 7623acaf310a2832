"""The per-task statistics update: the one definition every backend must reproduce.

Spec, for one outcome ``s`` in [0, 1] on a task with ``n`` earlier outcomes, with
``a = ema_timescale``, ``k = slow_timescale_factor``, ``b = task_tracker_ema_alpha``:

- random baseline ``B``: on the first outcome ``B = min(s, 0.75)``, then fixed;
- normalised score ``x = max(s - B, 0) / (1 - B)``;
- first outcome: ``fast = slow = x``, ``perf = s``, ``reward = s``, ``reward_sq = s * s``;
- later outcomes: ``fast += a (x - fast)``, ``slow += a k (x - slow)``, ``perf += a (s - perf)``,
  ``reward += b (s - reward)``, ``reward_sq += b (s * s - reward_sq)``;
- always: ``n += 1``, ``score_sum += s``, ``n_success += (s >= success_threshold)``.

A priority ``q`` reported with an outcome (Prioritized Level Replay's per-episode score), with
``c = priority_ema_alpha``, applied right after that outcome's update: on the task's first
priority, or when ``c == 1``, ``priority = q``; later ``priority += c (q - priority)``; always
``n_priorities += 1``. Outcomes without a priority leave both alone; an outcome whose task was
evicted meanwhile (late) credits its label, and its priority is dropped with the task.

:func:`apply_outcomes` is the reference implementation (vectorised over distinct rows);
:func:`apply_in_order` applies the same operations one outcome at a time in Python floats (bit for
bit the same rows), for the repeats of a batch that plays a few tasks many times. The Redis
backend's Lua script implements the same spec and a parity test compares both, field by field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BASELINE_CAP = 0.75


@dataclass(frozen=True)
class EmaParams:
    """The hyper-parameters of the statistics update (stored in, and checked against, the pool)."""

    ema_timescale: float
    slow_timescale_factor: float
    task_tracker_ema_alpha: float
    success_threshold: float
    priority_ema_alpha: float = 1.0  # pools and checkpoints before layout 5 had none: 1.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return asdict(self)


def apply_outcomes(rows: np.ndarray, scores: np.ndarray, params: EmaParams) -> None:
    """Apply one outcome to each of ``rows`` in place.

    Args:
        rows: Structured array (a copy of the pool's rows, each row at most once) with the fields
            ``n_outcomes, n_success, score_sum, baseline, fast, slow, perf, reward, reward_sq``.
        scores: One score in [0, 1] per row.
        params: Timescales and success threshold.
    """
    s = np.asarray(scores, dtype=np.float64)
    first = rows["n_outcomes"] == 0
    baseline = np.where(first, np.minimum(s, BASELINE_CAP), rows["baseline"])
    x = np.maximum(s - baseline, 0.0) / (1.0 - baseline)
    a = params.ema_timescale
    slow_rate = a * params.slow_timescale_factor
    b = params.task_tracker_ema_alpha
    s_sq = s * s
    rows["baseline"] = baseline
    rows["fast"] = np.where(first, x, rows["fast"] + a * (x - rows["fast"]))
    rows["slow"] = np.where(first, x, rows["slow"] + slow_rate * (x - rows["slow"]))
    rows["perf"] = np.where(first, s, rows["perf"] + a * (s - rows["perf"]))
    rows["reward"] = np.where(first, s, rows["reward"] + b * (s - rows["reward"]))
    rows["reward_sq"] = np.where(first, s_sq, rows["reward_sq"] + b * (s_sq - rows["reward_sq"]))
    rows["n_outcomes"] += 1
    rows["score_sum"] += s
    rows["n_success"] += s >= params.success_threshold


def apply_priorities(rows: np.ndarray, priorities: np.ndarray, params: EmaParams) -> None:
    """Fold one priority into each of ``rows`` in place (NaN: the outcome carried none).

    Args:
        rows: Structured array (each row at most once) with ``priority`` and ``n_priorities``.
        priorities: One finite priority or NaN per row.
        params: Its ``priority_ema_alpha`` is the EMA rate (1.0 replaces).
    """
    q = np.asarray(priorities, dtype=np.float64)
    given = ~np.isnan(q)
    if not given.any():
        return
    c = params.priority_ema_alpha
    old = rows["priority"]
    replace = given & ((rows["n_priorities"] == 0) | (c == 1.0))
    with np.errstate(invalid="ignore"):
        folded = np.where(replace, q, np.where(given, old + c * (q - old), old))
    rows["priority"] = folded
    rows["n_priorities"] += given


def rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Split a batch's positions into rounds in which every slot appears at most once.

    Outcomes on one slot must be applied in arrival order (EMAs are order-dependent); outcomes on
    distinct slots are independent. Round ``r`` holds the ``r``-th outcome of every slot, so the
    positions of each round can be applied together with :func:`apply_outcomes`. Each round's
    positions are in increasing order. O(n log n) in the batch size, whatever the repeats.
    """
    if len(slots) == 0:
        return []
    ordered = np.sort(slots)
    if not (ordered[1:] == ordered[:-1]).any():
        return [np.arange(len(slots))]  # the common case: every slot once
    order = np.argsort(slots, kind="stable")
    sorted_slots = slots[order]
    starts = np.r_[True, sorted_slots[1:] != sorted_slots[:-1]]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(slots)), 0))
    occurrence = np.empty(len(slots), dtype=np.int64)
    occurrence[order] = np.arange(len(slots)) - group_start
    # Positions by (occurrence, position): one stable sort, then cut at each round's size.
    by_round = np.argsort(occurrence, kind="stable")
    ends = np.cumsum(np.bincount(occurrence))
    return np.split(by_round, ends[:-1])


def first_and_repeats(slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each slot's first outcome in the batch, and of all the others (each in
    increasing order): the first apply together with :func:`apply_outcomes`, the others after
    them with :func:`apply_in_order`."""
    ordered = np.sort(slots)
    if not (ordered[1:] == ordered[:-1]).any():  # the common case: every slot once
        return np.arange(len(slots)), np.empty(0, dtype=np.int64)
    _, first = np.unique(slots, return_index=True)
    repeated = np.ones(len(slots), dtype=bool)
    repeated[first] = False
    return np.sort(first), np.flatnonzero(repeated)


def apply_in_order(
    rows: np.ndarray,
    slots: np.ndarray,
    scores: np.ndarray,
    priorities: np.ndarray | None,
    params: EmaParams,
) -> None:
    """Apply ``scores[i]`` (and ``priorities[i]``; NaN: none) to ``rows[slots[i]]`` in place, one
    outcome at a time in the given order.

    The operations of :func:`apply_outcomes` and :func:`apply_priorities` in the same order, on
    Python floats (IEEE doubles, as numpy's), so the rows come out bit for bit the same; a slot
    repeated many times costs a few microseconds per outcome instead of a vectorised round each.
    """
    field = {name: i for i, name in enumerate(rows.dtype.names or ())}
    n_out, n_succ, total = field["n_outcomes"], field["n_success"], field["score_sum"]
    base, fast, slow, perf = field["baseline"], field["fast"], field["slow"], field["perf"]
    reward, reward_sq = field["reward"], field["reward_sq"]
    prio, n_prio = field["priority"], field["n_priorities"]
    a, b, c = params.ema_timescale, params.task_tracker_ema_alpha, params.priority_ema_alpha
    slow_rate = a * params.slow_timescale_factor
    threshold = params.success_threshold
    by_slot: dict[int, list[int]] = {}
    for position, slot in enumerate(slots.tolist()):
        by_slot.setdefault(slot, []).append(position)
    score_list = scores.tolist()
    priority_list = priorities.tolist() if priorities is not None else None
    for slot, positions in by_slot.items():
        row = list(rows[slot].item())
        for position in positions:
            s = score_list[position]
            s_sq = s * s
            if row[n_out] == 0:
                baseline = min(s, BASELINE_CAP)
                x = max(s - baseline, 0.0) / (1.0 - baseline)
                row[base], row[fast], row[slow] = baseline, x, x
                row[perf], row[reward], row[reward_sq] = s, s, s_sq
            else:
                baseline = row[base]
                x = max(s - baseline, 0.0) / (1.0 - baseline)
                row[fast] = row[fast] + a * (x - row[fast])
                row[slow] = row[slow] + slow_rate * (x - row[slow])
                row[perf] = row[perf] + a * (s - row[perf])
                row[reward] = row[reward] + b * (s - row[reward])
                row[reward_sq] = row[reward_sq] + b * (s_sq - row[reward_sq])
            row[n_out] += 1
            row[total] += s
            row[n_succ] += s >= threshold
            q = priority_list[position] if priority_list is not None else math.nan
            if not math.isnan(q):
                replace = row[n_prio] == 0 or c == 1.0
                row[prio] = q if replace else row[prio] + c * (q - row[prio])
                row[n_prio] += 1
        rows[slot] = tuple(row)
