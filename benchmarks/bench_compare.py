"""Side by side, in one run: our curriculum on each backend, a dict implementation of the same
math, and Syllabus's learning-progress curriculum.

Per backend (/dev/shm, and Redis at ``--redis-url`` when it answers):

1. ``get_task`` latency, p50 and p99, each call timed with ``time.perf_counter_ns``, on a full
   learning-progress pool of 64, 1,000 and 10,000 tasks. The pool is warm: every task starts with
   3-9 outcomes. One outcome is reported after every call, and evictions happen as usual.
2. Outcome throughput into a pool of 1,000 tasks:
   - immediate (``update_task_performance`` with ``write_batch_size=1``);
   - buffered (the same call with the default ``write_batch_size=64``);
   - the batch API (``update_task_performance_batch``, 1,024 per call).
   The baseline is the per-outcome update of the dict implementation.
3. Two spawned processes that share one pool by session id, each running the sample-and-report
   loop, compared with one process. The dict loop also runs in one and in two independent
   processes, to show what the machine gives a second process.

The comparison: the loop "sample a task, report a Bernoulli score", at 64, 1,000 and 10,000
tasks, run through four implementations:
- our ``Curriculum`` on each backend;
- :class:`DictLearningProgress`, a plain single-process dict implementation of the same math;
- Syllabus's learning-progress curriculum (see :func:`make_syllabus`).
It reports loops/s and ratios.

The 2-core VM's speed drifts by tens of percent from minute to minute, so every comparison is
interleaved. There are R rounds. In each round, every implementation runs one chunk, in an order
rotated per round. A chunk lasts at least ``chunk_s`` seconds and at least one re-scoring period
(but stops after ``CHUNK_CAP * chunk_s``). A rate is the median over the rounds. A ratio is the
median of the per-round ratios, printed with their interquartile range. The latency calls are
also split over the rounds.

Run ``python benchmarks/bench_compare.py`` (2-3 minutes on a busy 2-core VM) or add ``--quick``
(under one minute). Every pool gets a session id unique to the run and is removed with
``Curriculum.destroy()``. Exits 1 when an outcome was lost or a worker process failed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing as mp
import os
import platform
import random
import secrets
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from queue import Empty
from typing import Any

import numpy as np
import redis
from bench_core import fill_pool
from bench_core import make_config as make_core_config

from backends.redis_backend import REGISTRY_KEY, session_keys
from curriculum import (
    Curriculum,
    CurriculumConfig,
    LearningProgressConfig,
)
from curriculum.redaction import redact_url

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SIZES = (64, 1_000, 10_000)
RECORD_TASKS = 1_000  # pool size of the throughput and 2-process sections
BIG_BATCH = 1024
U_MASK = 0xFFFF  # the loops cycle through 65,536 pre-drawn uniforms
BLOCK = 64  # loops between two looks at the clock
MAX_AGE_S = CurriculumConfig.model_fields["snapshot_max_age_s"].default
# The scoring the dict implementation does (and Syllabus's family does): sigmoid weights, no
# noise floor. The defaults' softmax and noise floor cost the same O(n) per re-scoring.
SAME_MATH: dict[str, float] = {"lp_score_temperature": 0.0, "noise_floor": 0.0}
WRITE_BATCH = CurriculumConfig.model_fields["write_batch_size"].default

Play = Callable[[int], None]  # plays that many episodes


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    rounds: int  # interleaved rounds of the loop and throughput sections
    chunk_s: float  # a chunk runs this long and one re-scoring period, or CHUNK_CAP x this long
    latency_calls: int  # timed get_task calls per pool size and backend, split over the rounds
    latency_cap_s: float  # ... but at most this long per round
    warm_min: int  # untimed loops before the rounds (at least warm_factor per task) ...
    warm_factor: int
    warm_cap_s: float  # ... or this long
    syllabus_cap_s: float  # Syllabus's measured time per pool size, at most
    mp_rounds: int
    mp_chunk_s: float


FULL = Plan(15, 0.2, 21_000, 0.5, 10_000, 2, 3.0, 12.0, 9, 0.3)
QUICK = Plan(3, 0.12, 6_000, 0.3, 2_000, 1, 1.0, 3.0, 3, 0.2)
CHUNK_CAP = 4


def refresh_period(num_tasks: int) -> int:
    """Outcomes after which our pool re-scores its view in a busy process (TaskPool's rule)."""
    return max(WRITE_BATCH, num_tasks // 8)


def uniforms(seed: int) -> list[float]:
    """Pre-drawn uniforms: every loop draws its Bernoulli score from these."""
    return np.random.default_rng(seed).random(U_MASK + 1).tolist()


def bernoulli(task_id: int, u: float) -> float:
    """Success with a rate fixed per task, (task_id mod 997) / 997 (inlined in the loops)."""
    return 1.0 if u * 997 < task_id % 997 else 0.0


# -- our curriculum -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A backend to measure: its name in the tables and its URL (None: /dev/shm)."""

    name: str
    key: str
    url: str | None


@dataclass(frozen=True)
class Run:
    """This run: sizes, session-id prefix and the backends that answer."""

    plan: Plan
    run_id: str
    backends: tuple[Backend, ...]

    def config(
        self, backend: Backend, num_tasks: int, name: str, **overrides: Any
    ) -> CurriculumConfig:
        """bench_core's learning-progress config, in a pool unique to this run and backend."""
        config = make_core_config(num_tasks, name, **overrides)
        algorithm = LearningProgressConfig(
            session_id=f"{self.run_id}-{backend.key}-{name}", backend_url=backend.url, **SAME_MATH
        )
        return config.model_copy(update={"algorithm_config": algorithm})


@contextlib.contextmanager
def open_pool(config: CurriculumConfig) -> Iterator[Curriculum]:
    """A new pool, removed with ``Curriculum.destroy()`` on the way out."""
    curriculum = Curriculum(config)
    try:
        yield curriculum
    finally:
        curriculum.destroy()


def warm_ages(count: int, seed: int) -> list[int]:
    """Outcomes to give each task before measuring: warm (>= min_samples_for_lp), not evictable."""
    lp = LearningProgressConfig()
    rng = np.random.default_rng(seed)
    low, high = lp.min_samples_for_lp, lp.min_presentations_for_eviction
    return rng.integers(low, high, count).tolist()


def warm_outcomes(ids: list[int], seed: int) -> Iterator[tuple[list[int], list[float]]]:
    """Batches of (task ids, scores) that give each task its warm age, oldest outcomes first."""
    ages = warm_ages(len(ids), seed)
    u = np.random.default_rng(seed + 1)
    for age in range(max(ages)):
        chosen = [t for t, a in zip(ids, ages, strict=True) if a > age]
        yield chosen, [bernoulli(t, x) for t, x in zip(chosen, u.random(len(chosen)), strict=True)]


def fill_and_warm(curriculum: Curriculum, seed: int) -> list[int]:
    """A full pool whose every task has 3-9 outcomes (batch API); the ids by slot."""
    ids = fill_pool(curriculum)
    for chosen, scores in warm_outcomes(ids, seed):
        curriculum.update_task_performance_batch(chosen, scores)
    return ids


class CurriculumDriver:
    """The loop through our Curriculum: ``get_task``, then ``update_task_performance``."""

    def __init__(self, curriculum: Curriculum, seed: int) -> None:
        """Drive ``curriculum`` with scores drawn from ``seed``."""
        self.curriculum = curriculum
        self.u = uniforms(seed)
        self.position = 0

    def play(self, count: int) -> None:
        """``count`` episodes."""
        get_task, report, u = (
            self.curriculum.get_task,
            self.curriculum.update_task_performance,
            self.u,
        )
        for k in range(self.position, self.position + count):
            task_id = get_task().task_id
            report(task_id, 1.0 if u[k & U_MASK] * 997 < task_id % 997 else 0.0)
        self.position += count

    def play_timed(self, count: int, timings: list[int]) -> None:
        """``count`` episodes; the nanoseconds of each ``get_task`` call go to ``timings``."""
        curriculum, u, clock = self.curriculum, self.u, time.perf_counter_ns
        for k in range(self.position, self.position + count):
            start = clock()
            task = curriculum.get_task()
            timings.append(clock() - start)
            task_id = task.task_id
            curriculum.update_task_performance(
                task_id, 1.0 if u[k & U_MASK] * 997 < task_id % 997 else 0.0
            )
        self.position += count

    def evicted(self) -> int:
        """The pool's eviction counter."""
        return int(self.curriculum.stats()["curriculum/num_evicted"])


class SnapshotMeter:
    """Counts and times ``backend.snapshot()`` of one curriculum (wrapped on the instance)."""

    def __init__(self, curriculum: Curriculum) -> None:
        """Wrap the backend's ``snapshot``."""
        self.calls = 0
        self.seconds = 0.0
        self.busy = 0.0  # wall time of the measured loops, added by the caller
        inner = curriculum.backend.snapshot

        def snapshot(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - start

        curriculum.backend.snapshot = snapshot


# -- the same math in a dict ----------------------------------------------------------------------

N_OUT, N_SUCCESS, SCORE_SUM, BASELINE, FAST, SLOW, PERF, REWARD, REWARD_SQ, N_SAMPLES = range(10)


class DictLearningProgress:
    """Learning progress in one process: a dict task id -> statistics, numpy when re-scoring.

    This is the same math as the pool, with nothing shared:
    - each outcome gets the update of ``curriculum/ema.py``, on Python floats;
    - re-scoring comes every :func:`refresh_period` outcomes, or when the scores are older than
      ``snapshot_max_age_s``, which is the rule by which a busy process's pool re-scores its view;
    - scoring is what ``learning_progress.py`` does:
      - bidirectional learning progress;
      - a z-score over the warm tasks, with cold tasks given ``exploration_bonus``;
      - ``sigmoid(z_score_amplification * z)``, mixed with uniform at ``rand_task_rate``;
      - eviction candidates (at least ``min_presentations_for_eviction`` outcomes and a score at
        or below the percentile of the warm scores), lowest first.
    - While candidates remain, each ``sample()`` replaces one with a new task and hands that task
      out, with an average probability until the next re-scoring (as ``get_task`` does).
    """

    def __init__(
        self, num_tasks: int, config: LearningProgressConfig, *, seed: int, max_age_s: float
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
        self.tasks: dict[int, list[float]] = {
            self._new_id(): self._fresh() for _ in range(num_tasks)
        }
        self.evictions = 0
        self._rescore()

    def _new_id(self) -> int:
        return self.rng.getrandbits(53)

    @staticmethod
    def _fresh() -> list[float]:
        return [0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0]

    def _rescore(self) -> None:
        config = self.config
        self.ids = list(self.tasks)
        values = itertools.chain.from_iterable(self.tasks.values())
        stats = np.fromiter(values, np.float64, 10 * len(self.tasks)).reshape(-1, 10)
        n_out, fast, slow = stats[:, N_OUT], stats[:, FAST], stats[:, SLOW]
        if config.progress_smoothing:
            theta = 0.5 - config.progress_smoothing
            fast = fast * (1 - theta) / (fast + theta * (1 - 2 * fast))
            slow = slow * (1 - theta) / (slow + theta * (1 - 2 * slow))
        raw = np.abs(fast - slow) + config.performance_bonus_weight * stats[:, PERF]
        warm = n_out >= config.min_samples_for_lp
        z = np.full(len(raw), float(config.exploration_bonus))
        if warm.any():
            spread = raw[warm].std()
            z[warm] = (raw[warm] - raw[warm].mean()) / spread if spread > 0 else 0.0
        weights = 1.0 / (1.0 + np.exp(-config.z_score_amplification * z))
        rate = config.rand_task_rate
        self.probabilities = (1.0 - rate) * weights / weights.sum() + rate / len(raw)
        self.cdf = np.cumsum(self.probabilities)
        self.evictable: list[int] = []
        eligible = n_out >= config.min_presentations_for_eviction
        if eligible.any():
            reference = raw[warm] if warm.any() else raw[eligible]
            cut = np.quantile(reference, config.eviction_threshold_percentile)
            candidates = np.flatnonzero(eligible & (raw <= cut))
            self.evictable = candidates[np.argsort(raw[candidates], kind="stable")].tolist()
        self.since = 0
        self.scored_at = time.monotonic()

    def sample(self) -> int:
        """The task to play next."""
        if self.since >= self.refresh_every or time.monotonic() - self.scored_at >= self.max_age_s:
            self._rescore()
        if self.evictable:
            position = self.evictable.pop(0)
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
            base = r[BASELINE] = min(s, 0.75)
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


def warm_dict(num_tasks: int, seed: int) -> DictLearningProgress:
    """A dict implementation whose every task has 3-9 outcomes, like the warm pools."""
    impl = DictLearningProgress(
        num_tasks, LearningProgressConfig(**SAME_MATH), seed=seed, max_age_s=MAX_AGE_S
    )
    for chosen, scores in warm_outcomes(impl.ids, seed):
        for task_id, s in zip(chosen, scores, strict=True):
            impl.update(task_id, s)
    return impl


class DictDriver:
    """The loop through :class:`DictLearningProgress`."""

    def __init__(self, impl: DictLearningProgress, seed: int) -> None:
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


# -- Syllabus -------------------------------------------------------------------------------------


def make_syllabus(num_tasks: int, update_interval: int) -> Any:
    """Syllabus's ``OnlineLearningProgress`` over ``DiscreteTaskSpace(num_tasks)``.

    ``syllabus.curricula.LearningProgress`` takes no per-episode outcomes. Its
    ``update_task_progress`` only counts calls, and its success rates come from an ``Evaluator``
    that plays evaluation episodes with the agent. Syllabus's curriculum for per-episode success
    is ``OnlineLearningProgress``, from the same family: it takes the success through
    ``update_task_progress`` (``floor(progress)``, so 1.0 is a success) and the episode end
    through ``update_on_episode``. Every ``update_interval`` episodes it folds the interval's
    success rates into the fast and slow EMAs. When asked for a task after that, it recomputes the
    distribution: reweighted bidirectional learning progress, z-score, sigmoid, mixed with uniform.
    ``update_interval`` is our pool's re-scoring period, and every other parameter is Syllabus's
    default.

    One change is needed. Syllabus 0.7's ``Curriculum.sample`` tests ``task_dist != []``, which
    raises ``ValueError`` under numpy 2 when the distribution is an array of more than one task.
    The subclass's ``sample`` is the library's own with that test written as ``len(task_dist)``.
    """
    warnings.filterwarnings("ignore", category=UserWarning, module=r"syllabus\.")
    from syllabus.curricula import OnlineLearningProgress
    from syllabus.task_space import DiscreteTaskSpace

    class Numpy2OnlineLearningProgress(OnlineLearningProgress):
        def sample(self, k: int = 1) -> Any:
            if self._should_use_startup_sampling():
                return self._startup_sample()
            task_dist = self._sample_distribution()
            if len(task_dist) > 0:
                return np.random.choice(list(range(self.num_tasks)), size=k, p=task_dist)
            return [self.task_space.encode(self.task_space.sample()) for _ in range(k)]

    np.random.seed(0)  # Syllabus samples with numpy's global generator
    return Numpy2OnlineLearningProgress(
        DiscreteTaskSpace(num_tasks), update_interval=update_interval
    )


class SyllabusDriver:
    """The loop through Syllabus: ``sample()``, ``update_task_progress``, ``update_on_episode``."""

    def __init__(self, curriculum: Any, seed: int) -> None:
        """Drive ``curriculum`` with scores drawn from ``seed``."""
        self.curriculum = curriculum
        self.u = uniforms(seed)
        self.position = 0

    def play(self, count: int) -> None:
        """``count`` episodes (of length 1, with the score as return and progress)."""
        c, u = self.curriculum, self.u
        sample, progress, episode = c.sample, c.update_task_progress, c.update_on_episode
        for k in range(self.position, self.position + count):
            task = sample()[0]
            s = 1.0 if u[k & U_MASK] * 997 < int(task) % 997 else 0.0
            progress(task, s)
            episode(s, 1, task, s)
        self.position += count


# -- measuring ------------------------------------------------------------------------------------


def chunk_rate(play: Play, min_s: float, min_loops: int = 0) -> float:
    """Loops/s of one chunk: blocks of BLOCK loops until it ran ``min_s`` and ``min_loops``, or
    ``CHUNK_CAP * min_s``."""
    clock = time.perf_counter
    done, start = 0, clock()
    while True:
        play(BLOCK)
        done += BLOCK
        elapsed = clock() - start
        if elapsed >= min_s and (done >= min_loops or elapsed >= CHUNK_CAP * min_s):
            return done / elapsed


def play_for(play: Play, loops: int, max_s: float) -> int:
    """Play ``loops`` loops in blocks, stopping early after ``max_s``; how many were played."""
    done, start = 0, time.perf_counter()
    while done < loops and time.perf_counter() - start < max_s:
        step = min(BLOCK, loops - done)
        play(step)
        done += step
    return done


Rates = list[float | None]  # per round; None: not measured in that round


def interleave(entries: dict[str, Callable[[], float | None]], rounds: int) -> dict[str, Rates]:
    """Per-round rates of each entry: every round runs each entry once, order rotated per round."""
    names = list(entries)
    rates: dict[str, Rates] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(entries[name]())
    return rates


def median(rates: Rates) -> float | None:
    """Median of the measured rounds."""
    measured = [r for r in rates if r is not None]
    return statistics.median(measured) if measured else None


@dataclass(frozen=True)
class Ratio:
    """Median and interquartile range of per-round ratios."""

    mid: float
    low: float
    high: float

    def text(self) -> str:
        """``0.42 [0.40-0.45]``."""
        return f"{self.mid:.3g} [{self.low:.3g}-{self.high:.3g}]"


def ratio(top: Rates, bottom: Rates) -> Ratio | None:
    """Per-round ratios of two interleaved series (rounds where both were measured)."""
    pairs = [a / b for a, b in zip(top, bottom, strict=True) if a is not None and b is not None]
    if not pairs:
        return None
    low, mid, high = np.percentile(pairs, [25, 50, 75]).tolist()
    return Ratio(mid, low, high)


@dataclass
class SizeResult:
    """The loop comparison and the latency at one pool size."""

    num_tasks: int
    loops: dict[str, Rates]  # implementation -> loops/s per round
    latency_us: dict[str, tuple[float, float, float, int]]  # backend -> p50, p99, mean, calls
    evictions: dict[str, float]  # implementation -> evictions per loop
    snapshots: dict[str, tuple[float, float]]  # backend -> per 1,000 loops, share of loop time
    syllabus_loops: int = 0
    syllabus_seconds: float = 0.0


def measure_size(run: Run, num_tasks: int) -> SizeResult:
    """Latency per backend and the interleaved loop comparison, at one pool size."""
    plan, period = run.plan, refresh_period(num_tasks)
    warm = max(plan.warm_min, plan.warm_factor * num_tasks)
    per_round = plan.latency_calls // plan.rounds
    entries: dict[str, Callable[[], float | None]] = {}
    timings: dict[str, list[int]] = {}
    drivers: dict[str, CurriculumDriver] = {}
    meters: dict[str, SnapshotMeter] = {}
    with contextlib.ExitStack() as stack:
        for backend in run.backends:
            config = run.config(backend, num_tasks, f"loop-{num_tasks}")
            curriculum = stack.enter_context(open_pool(config))
            fill_and_warm(curriculum, seed=7)
            driver = drivers[backend.name] = CurriculumDriver(curriculum, seed=4)
            play_for(driver.play, warm, plan.warm_cap_s)
            timings[backend.name] = []
            meter = meters[backend.name] = SnapshotMeter(curriculum)

            def ours(
                driver: CurriculumDriver = driver,
                timed: list[int] = timings[backend.name],
                meter: SnapshotMeter = meter,
            ) -> float:
                def play_timed(count: int) -> None:
                    driver.play_timed(count, timed)

                start = time.perf_counter()
                play_for(play_timed, per_round, plan.latency_cap_s)
                rate = chunk_rate(driver.play, plan.chunk_s, period)
                meter.busy += time.perf_counter() - start
                return rate

            entries[f"ours {backend.name}"] = ours
        evicted = {name: d.evicted() for name, d in drivers.items()}
        played = {name: d.position for name, d in drivers.items()}
        for meter in meters.values():
            meter.calls, meter.seconds = 0, 0.0

        impl = warm_dict(num_tasks, seed=7)
        dict_driver = DictDriver(impl, seed=4)
        play_for(dict_driver.play, warm, plan.warm_cap_s)
        dict_evicted, dict_played = impl.evictions, dict_driver.position
        entries["dict"] = lambda: chunk_rate(dict_driver.play, plan.chunk_s, period)

        syllabus = SyllabusDriver(make_syllabus(num_tasks, period), seed=4)
        # its first distribution, then one update interval if there is time
        play_for(syllabus.play, period + BLOCK, plan.warm_cap_s)
        spent = {"seconds": 0.0, "loops": 0}

        def syllabus_entry() -> float | None:
            if spent["seconds"] >= plan.syllabus_cap_s:
                return None
            before = syllabus.position
            rate = chunk_rate(syllabus.play, plan.chunk_s, period)
            spent["loops"] += syllabus.position - before
            spent["seconds"] += (syllabus.position - before) / rate
            return rate

        entries["Syllabus"] = syllabus_entry
        loops = interleave(entries, plan.rounds)
        snapshots = {
            name: (
                meters[name].calls * 1000 / (d.position - played[name]),
                meters[name].seconds / meters[name].busy,
            )
            for name, d in drivers.items()
        }
        evictions = {
            f"ours {name}": (d.evicted() - evicted[name]) / (d.position - played[name])
            for name, d in drivers.items()
        }
    evictions["dict"] = (impl.evictions - dict_evicted) / (dict_driver.position - dict_played)
    latency = {}
    for name, values in timings.items():
        micros = np.asarray(values) / 1000.0
        p50, p99 = np.percentile(micros, [50, 99])
        latency[name] = (float(p50), float(p99), float(micros.mean()), len(values))
    return SizeResult(
        num_tasks, loops, latency, evictions, snapshots, spent["loops"], round(spent["seconds"], 1)
    )


# -- outcome throughput ---------------------------------------------------------------------------


class Recorder:
    """Outcomes into one pool: per call (buffered or immediate, flushed at the chunk's end) or
    ``BIG_BATCH`` per batch-API call."""

    def __init__(self, curriculum: Curriculum, ids: list[int], batch_api: bool, seed: int) -> None:
        """Record Bernoulli outcomes of ``ids`` (random order, drawn from ``seed``)."""
        self.curriculum = curriculum
        rng = np.random.default_rng(seed)
        picked = [ids[i] for i in rng.integers(0, len(ids), U_MASK + 1).tolist()]
        scores = [bernoulli(t, x) for t, x in zip(picked, rng.random(len(picked)), strict=True)]
        self.pairs = list(zip(picked, scores, strict=True))
        self.batches = [
            (picked[i : i + BIG_BATCH], scores[i : i + BIG_BATCH])
            for i in range(0, len(picked), BIG_BATCH)
        ]
        self.batch_api = batch_api
        self.sent = 0

    def chunk(self, min_s: float) -> float:
        """Outcomes/s of one chunk of at least ``min_s`` (including the final flush)."""
        clock, curriculum = time.perf_counter, self.curriculum
        done, start = 0, clock()
        while clock() - start < min_s:
            if self.batch_api:
                ids, scores = self.batches[(self.sent // BIG_BATCH) % len(self.batches)]
                curriculum.update_task_performance_batch(ids, scores)
                count = BIG_BATCH
            else:
                report, pairs, first = curriculum.update_task_performance, self.pairs, self.sent
                for k in range(first, first + BLOCK):
                    report(*pairs[k & U_MASK])
                count = BLOCK
            done += count
            self.sent += count
        curriculum.flush()
        return done / (clock() - start)

    def lossless(self) -> bool:
        """Whether the pool counted every outcome sent."""
        return int(self.curriculum.stats()["curriculum/num_completed"]) == self.sent


def dict_update_entry(plan: Plan, seed: int) -> Callable[[], float]:
    """The per-outcome update of the dict implementation alone, as a chunk."""
    impl = DictLearningProgress(
        RECORD_TASKS, LearningProgressConfig(**SAME_MATH), seed=seed, max_age_s=1.0
    )
    rng = np.random.default_rng(seed)
    picked = [impl.ids[i] for i in rng.integers(0, RECORD_TASKS, U_MASK + 1).tolist()]
    pairs = [(t, bernoulli(t, x)) for t, x in zip(picked, rng.random(len(picked)), strict=True)]
    position = [0]

    def play(count: int) -> None:
        update, first = impl.update, position[0]
        for k in range(first, first + count):
            update(*pairs[k & U_MASK])
        position[0] = first + count

    return lambda: chunk_rate(play, plan.chunk_s)


OUTCOME_MODES = {  # name -> (config overrides, batch API)
    "immediate": ({"write_batch_size": 1}, False),
    "buffered": ({}, False),
    "batch": ({}, True),
}


def measure_outcomes(run: Run) -> tuple[dict[str, Rates], bool]:
    """Interleaved outcome throughput of every backend and mode, and the dict update."""
    entries: dict[str, Callable[[], float | None]] = {"dict update": dict_update_entry(run.plan, 5)}
    recorders = []
    with contextlib.ExitStack() as stack:
        for backend in run.backends:
            for mode, (overrides, batch_api) in OUTCOME_MODES.items():
                config = run.config(backend, RECORD_TASKS, f"outcomes-{mode}", **overrides)
                curriculum = stack.enter_context(open_pool(config))
                recorder = Recorder(curriculum, fill_pool(curriculum), batch_api, seed=6)
                recorder.chunk(0.02)  # warm-up (counted in sent)
                recorders.append(recorder)
                entries[f"{backend.name} {mode}"] = lambda r=recorder: r.chunk(run.plan.chunk_s)
        rates = interleave(entries, run.plan.rounds)
        lossless = all(r.lossless() for r in recorders)
    return rates, lossless


# -- two processes --------------------------------------------------------------------------------


def mp_worker(index: int, configs: dict[str, CurriculumConfig], plan: Plan, barrier, queue) -> None:
    """Attach to each pool by session id; in every round and phase, run the loop if chosen."""
    try:
        curricula = [Curriculum(config) for config in configs.values()]  # the pools exist
        players: dict[str, Play] = {
            name: CurriculumDriver(c, seed=100 + index).play
            for name, c in zip(configs, curricula, strict=True)
        }
        players["dict"] = DictDriver(warm_dict(RECORD_TASKS, 200 + index), 300 + index).play
        for play in players.values():
            play(2000)  # warm-up
        spans = []
        names = list(players)
        for r in range(plan.mp_rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                for procs in (1, 2) if r % 2 == 0 else (2, 1):
                    barrier.wait(timeout=120)
                    if index < procs:
                        start = time.monotonic()
                        rate = chunk_rate(players[name], plan.mp_chunk_s)
                        end = time.monotonic()
                        spans.append((r, name, procs, start, end, round(rate * (end - start))))
        for curriculum in curricula:
            curriculum.close()
        queue.put((spans, None))
    except Exception as exc:  # reported to the parent
        queue.put(([], repr(exc)))


def measure_processes(run: Run) -> tuple[dict[tuple[str, int], Rates], str | None]:
    """Loops/s of 1 process and of 2 processes together, per pool and for the dict loop."""
    configs = {b.name: run.config(b, RECORD_TASKS, "procs") for b in run.backends}
    with contextlib.ExitStack() as stack:
        for config in configs.values():
            fill_and_warm(stack.enter_context(open_pool(config)), seed=7)
        ctx = mp.get_context("spawn")
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        workers = [
            ctx.Process(target=mp_worker, args=(i, configs, run.plan, barrier, queue))
            for i in range(2)
        ]
        for worker in workers:
            worker.start()
        results = []
        for _ in workers:
            try:
                results.append(queue.get(timeout=600))
            except Empty:
                results.append(([], "no result from a worker"))
        for worker in workers:
            worker.join(timeout=60)
    errors = [e for _, e in results if e]
    if errors:
        return {}, "; ".join(errors)
    phases: dict[tuple[int, str, int], list[tuple[float, float, int]]] = {}
    for spans, _ in results:
        for r, name, procs, start, end, loops in spans:
            phases.setdefault((r, name, procs), []).append((start, end, loops))
    rates: dict[tuple[str, int], Rates] = {}
    for (r, name, procs), spans in sorted(phases.items()):
        total = sum(loops for _, _, loops in spans)
        wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
        rates.setdefault((name, procs), [None] * run.plan.mp_rounds)[r] = total / wall
    return rates, None


# -- report ---------------------------------------------------------------------------------------


def kilo(rate: float | None, unit: str = "") -> str:
    """``12.3k`` (and a unit), or n/a."""
    if rate is None:
        return "n/a"
    text = f"{rate / 1000:,.1f}k" if rate < 100_000 else f"{rate / 1000:,.0f}k"
    return f"{text}{unit}"


def ratio_text(value: Ratio | None, suffix: str = "") -> str:
    """A ratio with its range, or n/a."""
    return "n/a" if value is None else f"{value.text()}{suffix}"


def print_rows(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A titled table: a wide first column, then right-aligned columns."""
    print(f"\n{title}")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  " + "  ".join(cells).rstrip())


@dataclass
class Results:
    """Everything measured."""

    sizes: list[SizeResult]
    outcomes: dict[str, Rates]
    outcomes_lossless: bool
    processes: dict[tuple[str, int], Rates]
    processes_error: str | None


def print_backend(run: Run, backend: Backend, res: Results) -> None:
    """One backend's table."""
    name, rows = backend.name, []
    for size in res.sizes:
        p50, p99, mean, calls = size.latency_us[name]
        rows.append(
            (
                f"get_task p50 / p99, {size.num_tasks:,} tasks",
                f"{p50:.1f} / {p99:,.0f} us",
                f"mean {mean:,.0f} us, {calls:,} calls",
            )
        )
    base = res.outcomes["dict update"]
    rows.append(
        (
            "dict implementation, per-outcome update (baseline)",
            kilo(median(base), " out/s"),
            "1.00x",
        )
    )
    labels = {
        "immediate": "update_task_performance, write_batch_size=1",
        "buffered": f"update_task_performance, write_batch_size={WRITE_BATCH}",
        "batch": f"update_task_performance_batch, {BIG_BATCH} per call",
    }
    for mode, label in labels.items():
        rates = res.outcomes[f"{name} {mode}"]
        rows.append(
            (label, kilo(median(rates), " out/s"), ratio_text(ratio(rates, base), "x dict"))
        )
    if res.processes:
        one, two = res.processes[(name, 1)], res.processes[(name, 2)]
        rows.append(
            (f"loop, {RECORD_TASKS:,} tasks, 1 process", kilo(median(one), " loops/s"), "1.00x")
        )
        rows.append(
            (
                "loop, 2 spawned processes, one pool (aggregate)",
                kilo(median(two), " loops/s"),
                ratio_text(ratio(two, one), "x 1 proc"),
            )
        )
        d1, d2 = res.processes[("dict", 1)], res.processes[("dict", 2)]
        rows.append(
            (
                "machine: dict loop, 2 independent processes",
                kilo(median(d2), " loops/s"),
                ratio_text(ratio(d2, d1), "x 1 proc"),
            )
        )
    elif res.processes_error:
        rows.append(("2 processes", "FAILED", res.processes_error[:60]))
    print_rows(f"{name} backend", ("measurement", "result", "ratio [interquartile range]"), rows)


def print_comparison(run: Run, res: Results) -> None:
    """The side-by-side table: loops/s per implementation and size, and the ratios."""
    header = ("loops/s (median of rounds)", *(f"{s.num_tasks:,} tasks" for s in res.sizes))
    impls = [f"ours {b.name}" for b in run.backends]
    rows = [(name, *(kilo(median(s.loops[name])) for s in res.sizes)) for name in impls]
    rows.append(("dict, same math, 1 process", *(kilo(median(s.loops["dict"])) for s in res.sizes)))
    rows.append(
        ("Syllabus OnlineLearningProgress", *(kilo(median(s.loops["Syllabus"])) for s in res.sizes))
    )
    for impl in impls:
        for other, label in (("dict", "dict"), ("Syllabus", "Syllabus")):
            rows.append(
                (
                    f"{impl} / {label}",
                    *(ratio_text(ratio(s.loops[impl], s.loops[other]), "x") for s in res.sizes),
                )
            )
    for impl in [*impls, "dict"]:
        rows.append(
            (f"evictions per loop, {impl}", *(f"{s.evictions[impl]:.3f}" for s in res.sizes))
        )
    for b in run.backends:
        rows.append(
            (f"get_task p50 us, {b.name}", *(f"{s.latency_us[b.name][0]:.1f}" for s in res.sizes))
        )
    for b in run.backends:
        rows.append(
            (
                f"pool snapshots per 1,000 loops, {b.name}",
                *(f"{s.snapshots[b.name][0]:.1f}" for s in res.sizes),
            )
        )
        rows.append(
            (
                f"  share of loop time in snapshot(), {b.name}",
                *(f"{s.snapshots[b.name][1]:.0%}" for s in res.sizes),
            )
        )
    rows.append(
        (
            "Syllabus rounds measured (loops, s)",
            *(
                f"{sum(r is not None for r in s.loops['Syllabus'])} "
                f"({s.syllabus_loops:,}, {s.syllabus_seconds}s)"
                for s in res.sizes
            ),
        )
    )
    print_rows("side by side: sample a task, report a score", header, rows)
    if len(run.backends) > 1:
        shm, red = run.backends[0].name, run.backends[1].name
        rows = [
            (
                mode,
                kilo(median(res.outcomes[f"{shm} {mode}"])),
                kilo(median(res.outcomes[f"{red} {mode}"])),
                ratio_text(
                    ratio(res.outcomes[f"{red} {mode}"], res.outcomes[f"{shm} {mode}"]), "x"
                ),
            )
            for mode in OUTCOME_MODES
        ]
        if res.processes:
            for procs in (1, 2):
                one, two = res.processes[(shm, procs)], res.processes[(red, procs)]
                rows.append(
                    (
                        f"loop, {procs} process{'es' if procs > 1 else ''}",
                        kilo(median(one)),
                        kilo(median(two)),
                        ratio_text(ratio(two, one), "x"),
                    )
                )
        print_rows(
            f"backends side by side ({RECORD_TASKS:,} tasks, per second)",
            ("measurement", shm, red, f"{red} / {shm}"),
            rows,
        )


# -- main -----------------------------------------------------------------------------------------


def probe_redis(url: str) -> tuple[str | None, str]:
    """The server's version, or None and the reason it did not answer."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        try:
            return str(client.info("server")["redis_version"]), ""
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return None, type(exc).__name__


def remove_leftovers(url: str, run_id: str) -> int:
    """Delete pools of this run still registered (after a failure); how many there were."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    try:
        left = [s for s in client.smembers(REGISTRY_KEY) if s.startswith(run_id.encode())]
        for session in left:
            client.delete(*session_keys(session.decode()))
            client.srem(REGISTRY_KEY, session)
        return len(left)
    finally:
        client.close()


def describe(run: Run, quick: bool, redis_text: str) -> None:
    """Versions, machine, method."""
    from importlib.metadata import version

    plan = run.plan
    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "redis-py's Python parser"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"Syllabus-RL {version('Syllabus-RL')}, redis-py {redis.__version__} ({parser}); "
        f"{os.cpu_count()} cpus, load average {load}; {redis_text}"
    )
    print(
        "ours: LearningProgressConfig() defaults with the sigmoid weighting and no noise floor "
        "(the math the dict implementation does), bucketed generator (bench_core's), default "
        f"buffering (write_batch_size={WRITE_BATCH}, snapshot_max_age_s={MAX_AGE_S}); "
        "pools full, every task starting with 3-9 outcomes"
    )
    print(
        f"{'quick' if quick else 'full'} run: {plan.rounds} interleaved rounds; in each, every "
        f"implementation runs one chunk of >= {plan.chunk_s} s and >= one re-scoring period "
        f"(or {CHUNK_CAP * plan.chunk_s:.2g} s), in an order rotated per round; rates are "
        "medians over rounds, ratios the median of "
        "per-round ratios [their interquartile range]; get_task latency: "
        f"{plan.latency_calls:,} calls per size and backend, split over the rounds"
    )
    print(
        "re-scoring cadence: our pool re-scores its view every max(64, tasks // 8) outcomes of a "
        "busy process, or when the view is 50 ms old; the dict implementation uses the same rule "
        "and Syllabus's update_interval is the same count"
    )


def main() -> int:
    """Measure everything, print the tables; 1 when an outcome was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (under a minute)")
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"Redis server (default {DEFAULT_REDIS_URL})"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    backends = [Backend("/dev/shm", "shm", None)]
    server, why = probe_redis(args.redis_url)
    if server is None:
        redis_text = (
            f"Redis at {redact_url(args.redis_url)} did not answer ({why}): measuring /dev/shm only"
        )
    else:
        redis_text = f"Redis {server} at {redact_url(args.redis_url)}"
        backends.append(Backend("Redis", "redis", args.redis_url))
    run = Run(
        plan=QUICK if args.quick else FULL,
        run_id=f"bench-compare-{os.getpid()}-{secrets.token_hex(3)}",
        backends=tuple(backends),
    )
    describe(run, args.quick, redis_text)
    try:
        sizes = []
        for num_tasks in SIZES:
            elapsed = time.perf_counter() - started
            print(f"  [{elapsed:.0f} s] {num_tasks:,} tasks ...", file=sys.stderr, flush=True)
            sizes.append(measure_size(run, num_tasks))
        elapsed = time.perf_counter() - started
        print(f"  [{elapsed:.0f} s] outcome throughput ...", file=sys.stderr, flush=True)
        outcomes, lossless = measure_outcomes(run)
        elapsed = time.perf_counter() - started
        print(f"  [{elapsed:.0f} s] 1 and 2 processes ...", file=sys.stderr, flush=True)
        processes, error = measure_processes(run)
    finally:
        if server is not None:
            left = remove_leftovers(args.redis_url, run.run_id)
            if left:
                print(f"removed {left} pools this run left behind")
    results = Results(sizes, outcomes, lossless, processes, error)
    for backend in run.backends:
        print_backend(run, backend, results)
    print_comparison(run, results)
    verdict = "PASS" if lossless else "FAIL"
    print(f"\nevery outcome counted (num_completed == outcomes sent): {verdict}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"total time {time.perf_counter() - started:.0f} s; load average at the end {load}")
    return 0 if lossless and error is None else 1


if __name__ == "__main__":
    sys.exit(main())
