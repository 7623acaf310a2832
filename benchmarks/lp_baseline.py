"""The baselines of the loop benchmarks: learning progress in one process, nothing shared.

Two implementations of the job of a pool in one process, both scored over a numpy array of the
pool's row layout with the library's own pure scoring functions
(``curriculum.algorithms.learning_progress``), so any ``LearningProgressConfig`` (the defaults
included) gives exactly the scores a pool would:

- :class:`NumpyLearningProgress` (the hot-loop baseline): the rows live in the numpy array;
  outcomes are buffered and applied in batches with ``curriculum.ema.apply_outcomes``;
- :class:`DictLearningProgress` (the side-by-side benchmark's "dict"): a dict of Python lists
  updated per outcome on Python floats, copied into the array at each re-scoring.

Both sample by a binary search in a cumulative sum cached per scoring, and evict as
``get_task`` does: while candidates remain, each ``sample()`` replaces the lowest-scoring one with
a new task and hands that out.
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
from curriculum.ema import BASELINE_CAP, EmaParams, apply_outcomes, rounds

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
FRESH_ROW = empty_rows(1)[0]
N_OUT, N_SUCCESS, SCORE_SUM, BASELINE, FAST, SLOW, PERF, REWARD, REWARD_SQ, N_SAMPLES = range(10)


def refresh_period(num_tasks: int) -> int:
    """Outcomes after which a busy process's pool re-scores its view (the pool's rule)."""
    return max(WRITE_BATCH, num_tasks // 8)


def uniforms(seed: int) -> list[float]:
    """Pre-drawn uniforms: every loop draws its Bernoulli score from these."""
    return np.random.default_rng(seed).random(U_MASK + 1).tolist()


class InProcessPool:
    """Sampling, eviction and the re-scoring cadence of a pool of ``num_tasks`` tasks in one
    process; subclasses keep the statistics (:meth:`rows`, :meth:`reset`, :meth:`update`).

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
        self.refresh_every = refresh_period(num_tasks)
        self.max_age_s = max_age_s
        self.ids = [self._new_id() for _ in range(num_tasks)]
        self.slots = np.arange(num_tasks)
        self.evictions = 0
        self.since = 0

    def _new_id(self) -> int:
        return self.rng.getrandbits(53)

    def rows(self) -> np.ndarray:
        """The statistics of every slot, in the pool's row layout."""
        raise NotImplementedError

    def reset(self, position: int, old_id: int, new_id: int) -> None:
        """Slot ``position`` now holds the new task ``new_id`` instead of ``old_id``."""
        raise NotImplementedError

    def update(self, task_id: int, s: float) -> None:
        """Record one outcome (``curriculum/ema.py``'s spec)."""
        raise NotImplementedError

    def _rescore(self) -> None:
        config, rows = self.config, self.rows()
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
        """The task to play next: a new task in the slot of the next eviction candidate while
        there are some (with an average probability until the next re-scoring), else a draw."""
        if self.since >= self.refresh_every or time.monotonic() - self.scored_at >= self.max_age_s:
            self._rescore()
        if self.evictable:
            position = self.evictable.pop()
            task_id = self._new_id()
            self.reset(position, self.ids[position], task_id)
            self.ids[position] = task_id
            self.probabilities[position] = 1.0 / len(self.ids)
            self.cdf = None
            self.evictions += 1
        else:
            if self.cdf is None:
                self.cdf = np.cumsum(self.probabilities)
            cdf = self.cdf
            position = min(
                int(cdf.searchsorted(self.rng.random() * cdf[-1], "right")), len(cdf) - 1
            )
            task_id = self.ids[position]
        self.sampled(position, task_id)
        return task_id

    def sampled(self, position: int, task_id: int) -> None:
        """Count a sample of ``task_id`` in slot ``position``."""
        raise NotImplementedError


class DictLearningProgress(InProcessPool):
    """Statistics in a dict task id -> Python list, updated on Python floats; copied into a
    numpy array at each re-scoring."""

    def __init__(
        self,
        num_tasks: int,
        config: LearningProgressConfig,
        *,
        seed: int,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        """``num_tasks`` new tasks (ids drawn from ``seed``), scored with ``config``."""
        super().__init__(num_tasks, config, seed=seed, max_age_s=max_age_s)
        self.ema = config.ema_timescale
        self.slow_rate = config.ema_timescale * config.slow_timescale_factor
        self.tracker = config.task_tracker_ema_alpha
        self.threshold = config.success_threshold
        self.tasks: dict[int, list[float]] = {t: self._fresh() for t in self.ids}
        self._rows = empty_rows(num_tasks)
        self._rescore()

    @staticmethod
    def _fresh() -> list[float]:
        return [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0]

    def rows(self) -> np.ndarray:
        """The statistics of every slot, in the pool's row layout."""
        stats = np.array([self.tasks[t] for t in self.ids], dtype=np.float64)
        for column, name in enumerate(FIELDS):
            self._rows[name] = stats[:, column]
        return self._rows

    def reset(self, position: int, old_id: int, new_id: int) -> None:
        """Forget ``old_id``; ``new_id`` starts fresh."""
        del self.tasks[old_id]
        self.tasks[new_id] = self._fresh()

    def sampled(self, position: int, task_id: int) -> None:
        """Count the sample in the task's list."""
        self.tasks[task_id][N_SAMPLES] += 1

    def update(self, task_id: int, s: float) -> None:
        """Record one outcome (``curriculum/ema.py``'s spec, on Python floats)."""
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


class NumpyLearningProgress(InProcessPool):
    """Statistics in a numpy array of the pool's row layout; outcomes and samples are buffered
    and applied with ``curriculum.ema.apply_outcomes`` every ``write_batch`` outcomes and before
    each re-scoring (as a pool's process buffers its writes). An outcome of a task evicted since
    it was handed out is dropped."""

    def __init__(
        self,
        num_tasks: int,
        config: LearningProgressConfig,
        *,
        seed: int,
        max_age_s: float = MAX_AGE_S,
        write_batch: int = WRITE_BATCH,
    ) -> None:
        """``num_tasks`` new tasks (ids drawn from ``seed``), scored with ``config``."""
        super().__init__(num_tasks, config, seed=seed, max_age_s=max_age_s)
        self.params = EmaParams(
            ema_timescale=config.ema_timescale,
            slow_timescale_factor=config.slow_timescale_factor,
            task_tracker_ema_alpha=config.task_tracker_ema_alpha,
            success_threshold=config.success_threshold,
        )
        self.write_batch = write_batch
        self._rows = empty_rows(num_tasks)
        self._rows["task_id"] = self.ids
        self.slot_of = {t: i for i, t in enumerate(self.ids)}
        self.pending: list[tuple[int, int, float]] = []  # (slot, task id, score)
        self.samples: list[int] = []
        self._rescore()

    def _count_samples(self) -> None:
        if self.samples:
            np.add.at(self._rows["n_samples"], self.samples, 1)
            self.samples = []

    def flush(self) -> None:
        """Apply the buffered outcomes and samples."""
        self._count_samples()
        rows = self._rows
        if not self.pending:
            return
        slots, ids, scores = (np.array(column) for column in zip(*self.pending, strict=True))
        self.pending = []
        keep = rows["task_id"][slots] == ids
        slots, scores = slots[keep], scores[keep]
        for positions in rounds(slots):
            index = slots[positions]
            updated = rows[index]
            apply_outcomes(updated, scores[positions], self.params)
            rows[index] = updated

    def rows(self) -> np.ndarray:
        """The statistics of every slot (after applying what is buffered)."""
        self.flush()
        return self._rows

    def reset(self, position: int, old_id: int, new_id: int) -> None:
        """A fresh row for ``new_id`` in ``position`` (buffered outcomes of ``old_id`` will be
        dropped; its buffered samples are counted now)."""
        self._count_samples()
        del self.slot_of[old_id]
        self.slot_of[new_id] = position
        self._rows[position] = FRESH_ROW
        self._rows["task_id"][position] = new_id

    def sampled(self, position: int, task_id: int) -> None:
        """Buffer the sample count."""
        self.samples.append(position)

    def update(self, task_id: int, s: float) -> None:
        """Buffer one outcome; apply the buffer when it is full."""
        self.since += 1
        slot = self.slot_of.get(task_id)
        if slot is None:  # evicted since it was handed out: nothing to update
            return
        self.pending.append((slot, task_id, s))
        if len(self.pending) >= self.write_batch:
            self.flush()


def warm_baseline(
    num_tasks: int,
    config: LearningProgressConfig,
    seed: int,
    kind: type[InProcessPool] = NumpyLearningProgress,
) -> InProcessPool:
    """A baseline pool whose every task is warm but not yet evictable, like the warm pools."""
    impl = kind(num_tasks, config, seed=seed)
    low, high = config.min_samples_for_lp, config.min_presentations_for_eviction
    for chosen, scores in age_batches(impl.ids, low, high, bernoulli, seed):
        for task_id, s in zip(chosen, scores, strict=True):
            impl.update(task_id, s)
    return impl


class BaselineDriver:
    """The loop through an in-process pool: sample, then report a score."""

    def __init__(self, impl: InProcessPool, seed: int) -> None:
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
