"""The baseline of the loop benchmarks: learning progress in one process, nothing shared.

:class:`InProcessLearningProgress` does the job of a pool in one process, as cheaply as plain
Python and numpy allow: per-task statistics in Python lists (the update of
``curriculum/ema.py`` on Python floats), re-scored over a numpy array of the pool's row layout
with the library's own pure scoring functions (``curriculum.algorithms.learning_progress``), so
any ``LearningProgressConfig`` (the defaults included) gives exactly the scores a pool would.
Sampling is a binary search in a cumulative sum cached per scoring; evictions replace the
lowest-scoring evictable tasks with new ones, one per ``sample()``, as ``get_task`` does.
"""

from __future__ import annotations

import random
import time

import numpy as np
from harness import MAX_AGE_S, WRITE_BATCH, age_batches, bernoulli

from backends.layout import empty_rows
from curriculum import LearningProgressConfig
from curriculum.algorithms.learning_progress import (
    eviction_order,
    noise_scale,
    raw_learning_progress,
    sampling_probabilities,
)
from curriculum.ema import BASELINE_CAP

U_MASK = 0xFFFF  # the loops cycle through 65,536 pre-drawn uniforms
# a task's statistics, in this order (the columns of ROW_DTYPE they fill at re-scoring)
FIELDS = (
    "n_outcomes",
    "n_success",
    "score_sum",
    "baseline",
    "fast",
    "slow",
    "perf",
    "reward",
    "reward_sq",
    "n_samples",
)
N_OUT, N_SUCCESS, SCORE_SUM, BASELINE, FAST, SLOW, PERF, REWARD, REWARD_SQ, N_SAMPLES = range(10)


def refresh_period(num_tasks: int) -> int:
    """Outcomes after which a busy process's pool re-scores its view (the pool's rule)."""
    return max(WRITE_BATCH, num_tasks // 8)


def uniforms(seed: int) -> list[float]:
    """Pre-drawn uniforms: every loop draws its Bernoulli score from these."""
    return np.random.default_rng(seed).random(U_MASK + 1).tolist()


class InProcessLearningProgress:
    """A pool of ``num_tasks`` learning-progress tasks in one process.

    Re-scoring comes every :func:`refresh_period` outcomes, or when the scores are older than
    ``max_age_s``: the rule by which a busy process's pool re-scores its view.
    """

    def __init__(
        self,
        num_tasks: int,
        config: LearningProgressConfig,
        *,
        seed: int,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        """``num_tasks`` new tasks (ids drawn from ``seed``), scored with ``config``."""
        self.config = config
        self.rng = random.Random(seed)
        self.ema = config.ema_timescale
        self.slow_rate = config.ema_timescale * config.slow_timescale_factor
        self.tracker = config.task_tracker_ema_alpha
        self.threshold = config.success_threshold
        self.refresh_every = refresh_period(num_tasks)
        self.max_age_s = max_age_s
        self.ids = [self._new_id() for _ in range(num_tasks)]
        self.tasks: dict[int, list[float]] = {t: self._fresh() for t in self.ids}
        self.rows = empty_rows(num_tasks)
        self.slots = np.arange(num_tasks)
        self.evictions = 0
        self._rescore()

    def _new_id(self) -> int:
        return self.rng.getrandbits(53)

    @staticmethod
    def _fresh() -> list[float]:
        return [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0]

    def _rescore(self) -> None:
        config, rows = self.config, self.rows
        stats = np.array([self.tasks[t] for t in self.ids], dtype=np.float64)
        for column, name in enumerate(FIELDS):
            rows[name] = stats[:, column]
        raw = raw_learning_progress(rows, config)
        warm = rows["n_outcomes"] >= config.min_samples_for_lp
        floor = noise_scale(rows[warm], config)
        self.probabilities = sampling_probabilities(raw, warm, config, floor)
        self.cdf: np.ndarray | None = np.cumsum(self.probabilities)
        self.evictable = eviction_order(raw, rows["n_outcomes"], warm, self.slots, config)
        self.evictable.reverse()  # popped from the end, lowest score first
        self.since = 0
        self.scored_at = time.monotonic()

    def sample(self) -> int:
        """The task to play next."""
        if self.since >= self.refresh_every or time.monotonic() - self.scored_at >= self.max_age_s:
            self._rescore()
        if self.evictable:
            position = self.evictable.pop()
            del self.tasks[self.ids[position]]
            task_id = self.ids[position] = self._new_id()
            self.tasks[task_id] = self._fresh()
            self.probabilities[position] = 1.0 / len(self.ids)
            self.cdf = None
            self.evictions += 1
        else:
            if self.cdf is None:
                self.cdf = np.cumsum(self.probabilities)
            cdf = self.cdf
            position = int(cdf.searchsorted(self.rng.random() * cdf[-1], "right"))
            task_id = self.ids[min(position, len(self.ids) - 1)]
        self.tasks[task_id][N_SAMPLES] += 1
        return task_id

    def update(self, task_id: int, s: float) -> None:
        """Record one outcome (``curriculum/ema.py``'s spec)."""
        self.since += 1
        r = self.tasks.get(task_id)
        if r is None:  # evicted since it was handed out: nothing to update
            return
        if r[N_OUT] == 0:
            base = r[BASELINE] = min(s, BASELINE_CAP)
            x = max(s - base, 0.0) / (1.0 - base)
            r[FAST] = r[SLOW] = x
            r[PERF] = r[REWARD] = s
            r[REWARD_SQ] = s * s
        else:
            base = r[BASELINE]
            x = max(s - base, 0.0) / (1.0 - base)
            r[FAST] += self.ema * (x - r[FAST])
            r[SLOW] += self.slow_rate * (x - r[SLOW])
            r[PERF] += self.ema * (s - r[PERF])
            r[REWARD] += self.tracker * (s - r[REWARD])
            r[REWARD_SQ] += self.tracker * (s * s - r[REWARD_SQ])
        r[N_OUT] += 1
        r[N_SUCCESS] += s >= self.threshold
        r[SCORE_SUM] += s


def warm_baseline(
    num_tasks: int, config: LearningProgressConfig, seed: int
) -> InProcessLearningProgress:
    """A baseline pool whose every task is warm but not yet evictable, like the warm pools."""
    impl = InProcessLearningProgress(num_tasks, config, seed=seed)
    low, high = config.min_samples_for_lp, config.min_presentations_for_eviction
    for chosen, scores in age_batches(impl.ids, low, high, bernoulli, seed):
        for task_id, s in zip(chosen, scores, strict=True):
            impl.update(task_id, s)
    return impl


class BaselineDriver:
    """The loop through :class:`InProcessLearningProgress`: sample, then report a score."""

    def __init__(self, impl: InProcessLearningProgress, seed: int) -> None:
        """Drive ``impl`` with scores drawn from ``seed``."""
        self.impl = impl
        self.u = uniforms(seed)
        self.position = 0

    def play(self, count: int) -> None:
        """``count`` episodes."""
        sample, update, u = self.impl.sample, self.impl.update, self.u
        for k in range(self.position, self.position + count):
            task_id = sample()
            update(task_id, 1.0 if u[k & U_MASK] * 997 < task_id % 997 else 0.0)
        self.position += count
