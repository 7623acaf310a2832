"""Label priors: what a task's label says about it before (and beside) its own outcomes.

Every label's totals (completions and successes over all its tasks, live and evicted) are in
the pool's label table. A task's success rate is shrunk towards its label's
(:func:`task_success_rates`): a task with no outcomes is its label's rate, and its own outcomes
take over as they accumulate. A task whose shrunk rate is at most ``dead_label_rate`` is *dead*
(its label's tasks have almost never been solved, and neither has it); at least
``1 - dead_label_rate``, *solved*. Dead and solved tasks are *unpromising*: learning progress
gives them next to no sampling weight (the uniform share ``rand_task_rate`` still tries them),
and a dead task is evicted first once it has ``dead_task_outcomes`` outcomes.

When labels carry no information (one label for everything has the pool's overall success
rate), tasks are judged by their own outcomes, which need many outcomes to reach either bound.
Pure numpy over a snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from curriculum.config import LearningProgressConfig


# Weight of an outcome of an evicted task in its label's success rate (a live task's: 1).
HISTORY_WEIGHT = 0.1
# Outcomes the label's success rate counts as in a task's own rate (see task_success_rates).
PRIOR_STRENGTH = 10.0


def label_success_rates(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The smoothed success rate of each row's label (0.5 for a row without a known label).

    Outcomes of the label's live tasks (``rows``) count fully, those of its evicted tasks
    ``HISTORY_WEIGHT`` each, so a label whose tasks became learnable turns from dead soon after
    its live tasks start to succeed.
    """
    label_ids = rows["label_id"]
    known = (label_ids >= 0) & (label_ids < len(labels))
    if not len(labels):
        return np.full(len(rows), 0.5)
    ids = label_ids[known]
    live_successes = np.bincount(ids, weights=rows["n_success"][known], minlength=len(labels))
    live_outcomes = np.bincount(ids, weights=rows["n_outcomes"][known], minlength=len(labels))
    successes = live_successes + HISTORY_WEIGHT * (labels["successes"] - live_successes)
    outcomes = live_outcomes + HISTORY_WEIGHT * (labels["completions"] - live_outcomes)
    rates = (successes + 1.0) / (outcomes + 2.0)
    return np.where(known, rates[np.where(known, label_ids, 0)], 0.5)


def task_success_rates(rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each task's success rate, shrunk towards its label's (:func:`label_success_rates`):
    ``(successes + s * label_rate) / (outcomes + s)`` with ``s = PRIOR_STRENGTH``, so a cold
    task is its label's rate and one lucky outcome does not turn a task of a dead label."""
    prior = label_success_rates(labels, rows)
    return (rows["n_success"] + PRIOR_STRENGTH * prior) / (rows["n_outcomes"] + PRIOR_STRENGTH)


def dead_and_solved_tasks(
    rows: np.ndarray, labels: np.ndarray, config: LearningProgressConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Tasks whose shrunk success rate (:func:`task_success_rates`) is at most
    ``dead_label_rate`` (dead) and at least ``1 - dead_label_rate`` (solved)."""
    if config.dead_label_rate <= 0 or len(rows) == 0:
        none = np.zeros(len(rows), bool)
        return none, none
    rates = task_success_rates(rows, labels)
    return rates <= config.dead_label_rate, rates >= 1.0 - config.dead_label_rate
