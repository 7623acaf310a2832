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
(under one minute); ``--json PATH`` also writes the figures. Syllabus is measured when
``Syllabus-RL`` is installed (else the run says so and leaves it out). Every pool gets a session
id unique to the run and is removed with ``Curriculum.destroy()``. Exits 1 when an outcome was
lost or a worker process failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from compare_outcomes import OUTCOME_MODES, RECORD_TASKS, measure_outcomes
from compare_report import Results, SizeResult, print_backend, print_comparison
from harness import (
    BLOCK,
    CHUNK_CAP,
    MAX_AGE_S,
    WRITE_BATCH,
    CallTimer,
    Goal,
    chunk_rate,
    fill_and_warm,
    interleave,
    machine_text,
    make_config,
    open_pool,
    play_for,
    report_goals,
    write_json,
)
from loops import CurriculumDriver, ProcessPlan, measure_processes
from lp_baseline import BaselineDriver, DictLearningProgress, refresh_period, warm_baseline
from servers import DEFAULT_REDIS_URL, probe_redis, remove_leftovers
from syllabus_lp import SyllabusDriver, make_syllabus, syllabus_version

from curriculum import CurriculumConfig, LearningProgressConfig
from curriculum.redaction import redact_url

# The scoring the dict implementation does (and Syllabus's family does): sigmoid weights, no
# noise floor. The defaults' softmax and noise floor cost the same O(n) per re-scoring.
SAME_MATH: dict[str, float] = {"lp_score_temperature": 0.0, "noise_floor": 0.0}
DICT_CONFIG = LearningProgressConfig(**SAME_MATH)


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
    sizes: tuple[int, ...] = (64, 1_000, 10_000)


FULL = Plan(15, 0.2, 21_000, 0.5, 10_000, 2, 3.0, 12.0, 9, 0.3)
QUICK = Plan(3, 0.12, 6_000, 0.3, 2_000, 1, 1.0, 3.0, 3, 0.2)
# for tests: every section runs end to end, on smaller pools; its figures mean nothing
SMOKE = Plan(2, 0.02, 200, 0.2, 200, 0, 0.3, 0.3, 1, 0.05, (64, 1_000))


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
    with_syllabus: bool

    def config(
        self, backend: Backend, num_tasks: int, name: str, **overrides: Any
    ) -> CurriculumConfig:
        """The benchmark pool's config with SAME_MATH, in a pool unique to this run and backend."""
        session = f"{self.run_id}-{backend.key}-{name}"
        return make_config(num_tasks, session, backend_url=backend.url, lp=SAME_MATH, **overrides)


def syllabus_entry(
    num_tasks: int, plan: Plan, spent: dict[str, float]
) -> Callable[[], float | None]:
    """Syllabus's loop as a chunk, measured at most ``plan.syllabus_cap_s`` (``spent``)."""
    period = refresh_period(num_tasks)
    syllabus = SyllabusDriver(make_syllabus(num_tasks, period), seed=4)
    # its first distribution, then one update interval if there is time
    play_for(syllabus.play, period + BLOCK, plan.warm_cap_s)

    def entry() -> float | None:
        if spent["seconds"] >= plan.syllabus_cap_s:
            return None
        before = syllabus.position
        rate = chunk_rate(syllabus.play, plan.chunk_s, period)
        spent["loops"] += syllabus.position - before
        spent["seconds"] += (syllabus.position - before) / rate
        return rate

    return entry


def measure_size(run: Run, num_tasks: int) -> SizeResult:
    """Latency per backend and the interleaved loop comparison, at one pool size."""
    plan, period = run.plan, refresh_period(num_tasks)
    warm = max(plan.warm_min, plan.warm_factor * num_tasks)
    per_round = plan.latency_calls // plan.rounds
    entries: dict[str, Callable[[], float | None]] = {}
    timings: dict[str, list[int]] = {}
    drivers: dict[str, CurriculumDriver] = {}
    meters: dict[str, CallTimer] = {}
    busy: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        for backend in run.backends:
            config = run.config(backend, num_tasks, f"loop-{num_tasks}")
            curriculum = stack.enter_context(open_pool(config))
            fill_and_warm(curriculum, seed=7)
            driver = drivers[backend.name] = CurriculumDriver(curriculum, seed=4)
            play_for(driver.play, warm, plan.warm_cap_s)
            timings[backend.name] = []
            meters[backend.name] = CallTimer(curriculum.backend, "snapshot")
            busy[backend.name] = 0.0

            def ours(
                driver: CurriculumDriver = driver,
                timed: list[int] = timings[backend.name],
                name: str = backend.name,
            ) -> float:
                def play_timed(count: int) -> None:
                    driver.play_timed(count, timed)

                start = time.perf_counter()
                play_for(play_timed, per_round, plan.latency_cap_s)
                rate = chunk_rate(driver.play, plan.chunk_s, period)
                busy[name] += time.perf_counter() - start
                return rate

            entries[f"ours {backend.name}"] = ours
        evicted = {name: d.evicted() for name, d in drivers.items()}
        played = {name: d.position for name, d in drivers.items()}
        for meter in meters.values():
            meter.reset()

        impl = warm_baseline(num_tasks, DICT_CONFIG, 7, DictLearningProgress)
        dict_driver = BaselineDriver(impl, seed=4)
        play_for(dict_driver.play, warm, plan.warm_cap_s)
        dict_evicted, dict_played = impl.evictions, dict_driver.position
        entries["dict"] = lambda: chunk_rate(dict_driver.play, plan.chunk_s, period)

        spent = {"seconds": 0.0, "loops": 0}
        if run.with_syllabus:
            entries["Syllabus"] = syllabus_entry(num_tasks, plan, spent)
        loops = interleave(entries, plan.rounds)
        snapshots = {
            name: (
                meters[name].calls * 1000 / (d.position - played[name]),
                meters[name].seconds / busy[name],
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


def describe(run: Run, kind: str, redis_text: str) -> None:
    """Versions, machine, method."""
    plan = run.plan
    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "redis-py's Python parser"
    syllabus = syllabus_version() or "not installed (pip install Syllabus-RL): left out"
    print(
        f"{machine_text()}; Syllabus-RL {syllabus}, redis-py {redis.__version__} ({parser}); "
        f"{redis_text}"
    )
    print(
        "ours: LearningProgressConfig() defaults with the sigmoid weighting and no noise floor "
        "(the math the dict implementation does), bucketed generator (bench_core's), default "
        f"buffering (write_batch_size={WRITE_BATCH}, snapshot_max_age_s={MAX_AGE_S}); "
        "pools full, every task starting with 3-9 outcomes"
    )
    print(
        f"{kind} run: {plan.rounds} interleaved rounds; in each, every "
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
    parser.add_argument("--smoke", action="store_true", help="tiny run that only checks it works")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON (- stdout)")
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
        plan=SMOKE if args.smoke else QUICK if args.quick else FULL,
        run_id=f"bench-compare-{os.getpid()}-{secrets.token_hex(3)}",
        backends=tuple(backends),
        with_syllabus=syllabus_version() is not None,
    )
    describe(run, "smoke" if args.smoke else "quick" if args.quick else "full", redis_text)
    try:
        sizes = []
        for num_tasks in run.plan.sizes:
            elapsed = time.perf_counter() - started
            print(f"  [{elapsed:.0f} s] {num_tasks:,} tasks ...", file=sys.stderr, flush=True)
            sizes.append(measure_size(run, num_tasks))
        elapsed = time.perf_counter() - started
        print(f"  [{elapsed:.0f} s] outcome throughput ...", file=sys.stderr, flush=True)
        configs = {
            f"{b.name} {mode}": run.config(b, RECORD_TASKS, f"outcomes-{mode}", **overrides)
            for b in run.backends
            for mode, (overrides, _) in OUTCOME_MODES.items()
        }
        outcomes, lossless = measure_outcomes(
            configs, DICT_CONFIG, run.plan.chunk_s, run.plan.rounds
        )
        elapsed = time.perf_counter() - started
        print(f"  [{elapsed:.0f} s] 1 and 2 processes ...", file=sys.stderr, flush=True)
        configs = {b.name: run.config(b, RECORD_TASKS, "procs") for b in run.backends}
        plan = ProcessPlan(
            RECORD_TASKS, run.plan.mp_rounds, run.plan.mp_chunk_s, 2000, DictLearningProgress
        )
        processes, error = measure_processes(configs, DICT_CONFIG, plan)
    finally:
        if server is not None:
            left = remove_leftovers(args.redis_url, run.run_id)  # after a failure
            if left:
                print(f"removed {left} pools this run left behind")
    results = Results(sizes, outcomes, lossless, processes, error, run.with_syllabus)
    for backend in run.backends:
        print_backend(backend.name, results)
    print_comparison([b.name for b in run.backends], results)
    goals = [
        Goal("every outcome counted (num_completed == outcomes sent)", lossless),
        Goal("both spawned worker processes ran" + (f" ({error})" if error else ""), not error),
    ]
    write_json(args.json, "bench_compare", results, goals)
    return report_goals(goals, started, lossless and error is None)


if __name__ == "__main__":
    sys.exit(main())
