"""Flat ``dict[str, float]`` statistics of a scored pool view, ready for ``wandb.log``.

Keys (stable; ``<label>`` is a task label such as ``nav|difficulty:0.5``):

- ``curriculum/capacity``, ``curriculum/num_active_tasks``, ``curriculum/num_labels``
- ``curriculum/num_created``, ``num_evicted``, ``num_completed``, ``num_scheduled``,
  ``num_late_outcomes`` (outcomes that arrived after their task was evicted: credited to the
  label, not to a task), ``num_failures`` (env configs that failed to build or apply),
  ``num_steps`` (environment steps of the recorded episodes, as reported; 1 per episode when
  not reported): totals since the pool was created
- ``curriculum/epoch``, ``epoch/num_created``, ``epoch/num_evicted``, ``epoch/num_completed``,
  ``epoch/num_scheduled``, ``epoch/num_failures``, ``epoch/num_steps``: since the last
  ``on_epoch_end()``
- ``lp/mean``, ``lp/std``, ``lp/min``, ``lp/max``, ``lp/median`` of the raw score of active tasks;
  ``lp/num_warm`` (tasks with at least ``min_samples_for_lp`` outcomes) and ``lp/num_zero`` (warm
  tasks whose learning progress is zero: mastered, impossible or stuck); ``lp/num_flat``
  (learning progress only: continuous-score tasks of flat labels, sampled as progress-free)
- ``reward/mean``: mean score over all recorded outcomes; ``reward/active_mean``: mean of the
  reward EMA over active tasks that have outcomes
- ``gini/sampling_probability``, ``gini/raw_lp``, ``gini/pool_occupancy`` (active tasks per label)
- ``label/<label>/completions``, ``samples``, ``evictions``, ``failures``, ``created``,
  ``active_tasks``, ``mean_lp`` (over the label's active tasks), ``mean_reward`` (over all its
  outcomes), ``success_rate``
- ``plr/...``: Prioritized Level Replay's figures (that algorithm only; see docs/stats.md)
- ``slice/<axis>/<value>/...``: slice analysis by bucket axis (see :mod:`curriculum.slices`)
- ``health/...``: this process's writes (added by ``Curriculum.stats``; see
  :meth:`curriculum.session.PoolSession.health`)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from curriculum.algorithms import PoolView
from curriculum.algorithms.learning_progress import ZERO_LP

NO_DATA = math.nan
"""An average over nothing (a label without outcomes or without active tasks, an empty pool):
NaN, so that no dashboard reads it as a measured 0."""


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal; towards 1: concentrated)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    total = x.sum()
    if n == 0 or total <= 0:
        return 0.0
    index = np.arange(1, n + 1)
    return float((2.0 * (index * x).sum()) / (n * total) - (n + 1.0) / n)


def _summary(prefix: str, values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {f"{prefix}/{k}": NO_DATA for k in ("mean", "std", "min", "max", "median")}
    return {
        f"{prefix}/mean": float(values.mean()),
        f"{prefix}/std": float(values.std()),
        f"{prefix}/min": float(values.min()),
        f"{prefix}/max": float(values.max()),
        f"{prefix}/median": float(np.median(values)),
    }


def compute_stats(view: PoolView, min_samples_for_lp: int) -> dict[str, float]:
    """Every stats key for ``view``."""
    snapshot = view.snapshot
    counters = snapshot.counters
    rows = snapshot.rows[view.active]
    raw = view.raw_scores
    stats: dict[str, float] = {
        "curriculum/capacity": float(len(snapshot.rows)),
        "curriculum/num_active_tasks": float(len(view.active)),
        "curriculum/num_labels": float(len(snapshot.labels)),
        "curriculum/epoch": float(counters["epoch"]),
    }
    for name in (
        "created",
        "evicted",
        "completed",
        "scheduled",
        "late_outcomes",
        "failures",
        "steps",
    ):
        stats[f"curriculum/num_{name}"] = float(counters[f"num_{name}"])
    for name in ("created", "evicted", "completed", "scheduled", "failures", "steps"):
        stats[f"epoch/num_{name}"] = float(counters[f"epoch_{name}"])
    stats.update(_summary("lp", raw))
    stats.update(view.extra_stats())
    warm = rows["n_outcomes"] >= min_samples_for_lp
    stats["lp/num_zero"] = float(np.count_nonzero(warm & (raw <= ZERO_LP)))
    stats["lp/num_warm"] = float(np.count_nonzero(warm))
    completed = counters["num_completed"]
    stats["reward/mean"] = (
        float(snapshot.labels["score_sum"].sum() / completed) if completed else NO_DATA
    )
    played = rows["n_outcomes"] > 0
    stats["reward/active_mean"] = float(rows["reward"][played].mean()) if played.any() else NO_DATA

    n_labels = len(snapshot.labels)
    label_ids = rows["label_id"]
    known = label_ids >= 0
    active_per_label = np.bincount(label_ids[known], minlength=n_labels)
    lp_sum_per_label = np.bincount(label_ids[known], weights=raw[known], minlength=n_labels)
    stats["gini/sampling_probability"] = gini(view.probabilities)
    stats["gini/raw_lp"] = gini(raw)
    stats["gini/pool_occupancy"] = gini(active_per_label[active_per_label > 0])

    labels = snapshot.labels
    for label_id, name in enumerate(snapshot.label_names):
        record = labels[label_id]
        completions = int(record["completions"])
        active = int(active_per_label[label_id])
        prefix = f"label/{name}"
        stats[f"{prefix}/completions"] = float(completions)
        stats[f"{prefix}/samples"] = float(record["samples"])
        stats[f"{prefix}/evictions"] = float(record["evicted"])
        stats[f"{prefix}/failures"] = float(record["failures"])
        stats[f"{prefix}/created"] = float(record["created"])
        stats[f"{prefix}/active_tasks"] = float(active)
        mean_lp = float(lp_sum_per_label[label_id] / active) if active else NO_DATA
        stats[f"{prefix}/mean_lp"] = mean_lp
        stats[f"{prefix}/mean_reward"] = (
            float(record["score_sum"] / completions) if completions else NO_DATA
        )
        stats[f"{prefix}/success_rate"] = (
            float(record["successes"] / completions) if completions else NO_DATA
        )
    return stats


def task_figures(view: PoolView, task_id: int) -> dict[str, Any] | None:
    """One active task's statistics, raw score and sampling probability; None if not active."""
    rows = view.snapshot.rows
    slots = np.flatnonzero(rows["task_id"][view.active] == task_id)
    if not len(slots):
        return None
    position = int(slots[0])
    slot = int(view.active[position])
    row = rows[slot]
    outcomes = int(row["n_outcomes"])
    label_id = int(row["label_id"])
    names = view.snapshot.label_names
    return {
        "task_id": task_id,
        "slot": slot,
        "label": names[label_id] if 0 <= label_id < len(names) else "",
        "outcomes": outcomes,
        "samples": int(row["n_samples"]),
        "successes": int(row["n_success"]),
        "failures": int(row["n_failures"]),
        "mean_score": float(row["score_sum"] / outcomes) if outcomes else NO_DATA,
        "fast_ema": float(row["fast"]),
        "slow_ema": float(row["slow"]),
        "performance": float(row["perf"]),
        "baseline": float(row["baseline"]),
        "score": float(view.raw_scores[position]),
        "probability": float(view.probabilities[position]),
    }
