"""Flat labels: labels whose tasks' learning progress, pooled, is no more than their noise.

With 0/1 outcomes, a task out of reach (or impossible, or mastered) has exactly zero learning
progress and zero noise: the variance of its outcomes is what says it is worth trying. With
continuous scores every task has noise, so an impossible task's ``|fast - slow|`` looks like a
slowly learning task's, and one task's outcomes cannot tell them apart: its two EMAs forget, so
the evidence never accumulates.

Tasks that share a label (one generator and bucket) can pool it. Over a label's warm tasks whose
scores are continuous, ``Q = sum(d**2) / sum(sd**2)`` compares the squared learning progress
``d`` with what outcome noise alone gives (``sd``, :func:`~curriculum.algorithms.progress_noise.
noise_learning_progress`, an upper estimate for scores near the ends of [0, 1]). When even
``Q`` times ``1 + FLAT_CONFIDENCE * sqrt(2 / m)`` is at most 1 (``sqrt(2 / m)`` is the relative
standard error of ``Q`` over ``m`` tasks; the margin is four of them), the label is *flat*: its
tasks' progress is noise, and sampling treats them like binary tasks that never succeeded
(learning progress 0). New tasks of a flat label still get the exploration bonus until they are
warm: a level out of reach today is flat too, and its new tasks are how it is found again once
it comes within reach. Labels with fewer than ``flat_label_min_tasks`` such tasks, and tasks
with 0/1 scores, are left alone. Eviction is not changed. Pure numpy over a snapshot, O(n).

A flat label's tasks are interchangeable: pooled, none of them shows progress, and what the label
still needs is to be watched for the moment it comes within reach, which takes episodes on the
label, not on each of its tasks. So a flat label's warm tasks together weigh at most as much as
``flat_label_cap`` (a :class:`~curriculum.config.LearningProgressConfig` field, default 1) times
the mean label size of tasks, in the learning-progress weights and in the
uniform ``rand_task_rate`` share alike (:func:`flat_label_share`): a label of average size or
smaller is sampled as before, a label holding 40% of the pool (the noisy student's impossible
tasks) no longer draws 40% of the uniform share and of the progress-free weight.
"""

from __future__ import annotations

import numpy as np

# How many relative standard errors of Q a flat label's Q must stay under 1 by. A flat verdict
# starves a label, so it needs strong evidence: measured on the noisy student, a margin of 1 also
# judged levels still out of reach flat (their ~50 tasks give a wide margin of error), and runs
# with 2 and 4 processes left a level unlearned in one seed of three; 4 judges only the large
# impossible label there (AUC 0.767 -> 0.793, impossible tasks 11.6% -> 11.9%); 6 and 8 let
# the impossible label through more often (13.6% and 14.8%).
FLAT_CONFIDENCE = 4.0


def continuous_rows(rows: np.ndarray) -> np.ndarray:
    """Rows whose scores were not all 0 or 1 (their reward EMA exceeds their squared-reward EMA)."""
    return rows["reward"] - rows["reward_sq"] > 1e-9


def flat_label_tasks(
    rows: np.ndarray,
    progress: np.ndarray,
    noise: np.ndarray,
    warm: np.ndarray,
    min_tasks: int,
) -> np.ndarray:
    """Which rows are warm continuous-score tasks of a flat label (see the module docstring).

    Args:
        rows: The active rows (``label_id``, ``reward``, ``reward_sq`` are read).
        progress: Each row's learning progress ``d`` (bidirectional, before any bonus).
        noise: Each row's noise spread ``sd`` of ``d``.
        warm: Rows whose learning progress counts.
        min_tasks: Fewest warm continuous-score tasks a label needs to be judged; 0 judges none.
    """
    tested = warm & continuous_rows(rows) & (rows["label_id"] >= 0)
    if min_tasks <= 0 or not tested.any():
        return np.zeros(len(rows), bool)
    labels = np.where(tested, rows["label_id"], 0)
    size = int(labels.max()) + 1
    count = np.bincount(labels, weights=tested, minlength=size)
    signal = np.bincount(labels, weights=np.where(tested, progress * progress, 0.0), minlength=size)
    expected = np.bincount(labels, weights=np.where(tested, noise * noise, 0.0), minlength=size)
    margin = 1.0 + FLAT_CONFIDENCE * np.sqrt(2.0 / np.maximum(count, 1.0))
    flat = (count >= min_tasks) & (expected > 0) & (signal * margin <= expected)
    return tested & flat[labels]


def flat_label_share(rows: np.ndarray, flat: np.ndarray, cap: float) -> np.ndarray | None:
    """Each row's factor on its sampling weight and on its uniform share; None when none is flat
    or ``cap`` is 0 (no cap).

    A flat label (``flat``: its warm tasks, :func:`flat_label_tasks`) with ``m`` such tasks gets
    ``min(1, cap * mean / m)`` on each of them, ``mean`` being the number of active labelled
    tasks per label: together they weigh at most ``cap * mean`` tasks. Other rows (cold tasks of a
    flat label included, which keep exploring it) get 1.
    """
    if cap <= 0 or not flat.any():
        return None
    label_ids = rows["label_id"]
    labelled = label_ids[label_ids >= 0]
    labels_seen = np.count_nonzero(np.bincount(labelled))
    mean_size = len(labelled) / labels_seen
    labels = np.where(flat, label_ids, 0)
    count = np.bincount(labels, weights=flat, minlength=int(labels.max()) + 1)
    factor = cap * mean_size / np.maximum(count[labels], 1.0)
    return np.where(flat, np.minimum(1.0, factor), 1.0)
