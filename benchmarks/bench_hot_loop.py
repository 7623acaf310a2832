"""The hot loop: ``get_task`` + ``update_task_performance`` on /dev/shm and on Redis, against an
in-process numpy loop of the same job, in one run.

1. **Loop rate** at 1,000 tasks, ``LearningProgressConfig()`` defaults, coin-flip outcomes (a
   Bernoulli score with a success rate fixed per task): our curriculum on each backend against
   :class:`lp_baseline.InProcessLearningProgress` (the same EMA update and the same LP scoring,
   over a numpy array in one process, nothing shared). Interleaved rounds: in each round every
   loop runs one chunk (at least ``chunk_s`` and one re-scoring period), in an order rotated per
   round; a ratio is the median of the per-round ratios [interquartile range].
2. **get_task latency** at 1,000 and 10,000 tasks on each backend: every call timed on its own
   (``perf_counter_ns``) in the loop (one outcome reported after each call), on a full pool whose
   tasks all start warm, after untimed loops that bring it to steady state; p50, p99, p99.9 and
   max, with the pool re-reads (``backend.snapshot()``) that fell in the timed calls.
3. **Two processes** on one pool of 1,000 tasks (each attaches by session id and runs the loop):
   the aggregate loops/s of 2 processes against 1, per backend; the baseline run in 1 and 2
   independent processes shows what the machine gives a second process.

Goals (the issue's): /dev/shm loop >= 0.35x the in-process loop, Redis >= 0.12x; get_task p50 at
10,000 tasks <= 2x p50 at 1,000, p99.9 <= 1 ms and max <= 10 ms at 10,000 on both backends;
2 processes >= 1.5x one on both.

``python benchmarks/bench_hot_loop.py [--quick] [--redis-url URL | --spawn-redis] [--json PATH]
[--process-tasks N]`` (``N``: the pool size of section 3, default 1,000)
(full run about 2 minutes on the 2-core VM, ``--quick`` about one; ``--smoke`` is a tiny run for
tests). Redis defaults to 127.0.0.1:6379; ``--spawn-redis`` starts a private redis-server for
the run. Pools get session ids unique to the
run and are destroyed. Missed goals print MISS; exits 1 only when a worker process failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import time
from dataclasses import dataclass, field

from harness import (
    CallTimer,
    Goal,
    Percentiles,
    Rates,
    chunk_rate,
    evicted,
    fill_and_warm,
    interleave,
    kilo,
    machine_text,
    make_config,
    median,
    open_pool,
    play_for,
    print_rows,
    ratio,
    ratio_text,
    report_goals,
    write_json,
)
from loops import BASELINE, PING, CurriculumDriver, ProcessPlan, measure_processes
from lp_baseline import BaselineDriver, refresh_period, warm_baseline
from servers import DEFAULT_REDIS_URL, probe_redis, remove_leftovers, spawned_redis_server

from curriculum import CurriculumConfig, LearningProgressConfig
from curriculum.redaction import redact_url

LOOP_TASKS = 1_000
SHM, REDIS = "/dev/shm", "Redis"
LOOP_GOALS = {SHM: 0.35, REDIS: 0.12}  # loop rate / in-process loop rate, at least
SCALE_GOAL = 2.0  # get_task p50 at 10,000 tasks / p50 at 1,000, at most
P999_GOAL_US, MAX_GOAL_US = 1_000.0, 10_000.0  # at 10,000 tasks, at most
PROCESS_GOAL = 1.5  # 2 processes / 1 process, at least


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    rounds: int  # interleaved rounds of the loop section
    chunk_s: float  # a chunk runs this long and one re-scoring period (or 4x this long)
    latency_calls: int  # timed get_task calls per pool size and backend
    latency_cap_s: float  # ... but at most this long
    warm_loops: int  # untimed loops before measuring (at least 2 per task) ...
    warm_cap_s: float  # ... or this long
    mp_rounds: int
    mp_chunk_s: float
    latency_sizes: tuple[int, int] = (1_000, 10_000)  # the goals compare the second to the first


FULL = Plan(15, 0.2, 20_000, 20.0, 10_000, 6.0, 9, 0.3)
QUICK = Plan(5, 0.12, 4_000, 5.0, 3_000, 2.0, 3, 0.2)
# for tests: every section runs end to end, on smaller pools; its figures mean nothing
SMOKE = Plan(2, 0.02, 300, 1.0, 200, 0.5, 1, 0.05, (1_000, 2_000))


@dataclass(frozen=True)
class Run:
    """This run: sizes, the session-id prefix, and the backends measured (name -> URL)."""

    plan: Plan
    run_id: str
    backends: dict[str, str | None]
    process_tasks: int = LOOP_TASKS  # the pool size of section 3

    def config(self, backend: str, num_tasks: int, name: str) -> CurriculumConfig:
        """The default learning-progress config, in a pool unique to this run and backend."""
        key = "redis" if self.backends[backend] else "shm"
        session = f"{self.run_id}-{key}-{name}"
        return make_config(num_tasks, session, backend_url=self.backends[backend])


@dataclass
class LoopResult:
    """Section 1: loops/s per round of each loop, evictions per loop, pool re-reads."""

    rates: dict[str, Rates]
    evictions: dict[str, float]
    snapshots_per_1000: dict[str, float] = field(default_factory=dict)


def measure_loop(run: Run) -> LoopResult:
    """Interleaved rounds of each backend's loop and the in-process loop, at 1,000 tasks."""
    plan, period = run.plan, refresh_period(LOOP_TASKS)
    entries, drivers, timers, played = {}, {}, {}, {}
    with contextlib.ExitStack() as stack:
        for backend in run.backends:
            curriculum = stack.enter_context(open_pool(run.config(backend, LOOP_TASKS, "loop")))
            fill_and_warm(curriculum, seed=7)
            driver = drivers[backend] = CurriculumDriver(curriculum, seed=4)
            play_for(driver.play, plan.warm_loops, plan.warm_cap_s)
            timers[backend] = CallTimer(curriculum.backend, "snapshot")
            entries[backend] = lambda d=driver: chunk_rate(d.play, plan.chunk_s, period)
        before = {name: d.evicted() for name, d in drivers.items()}
        played = {name: d.position for name, d in drivers.items()}
        impl = warm_baseline(LOOP_TASKS, LearningProgressConfig(), seed=7)
        baseline = BaselineDriver(impl, seed=4)
        play_for(baseline.play, plan.warm_loops, plan.warm_cap_s)
        base_evicted, base_played = impl.evictions, baseline.position
        entries[BASELINE] = lambda: chunk_rate(baseline.play, plan.chunk_s, period)
        for timer in timers.values():
            timer.reset()
        rates = interleave(entries, plan.rounds)
        loops = {name: d.position - played[name] for name, d in drivers.items()}
        result = LoopResult(
            rates=rates,
            evictions={
                name: (d.evicted() - before[name]) / loops[name] for name, d in drivers.items()
            },
            snapshots_per_1000={name: t.calls * 1000 / loops[name] for name, t in timers.items()},
        )
    result.evictions[BASELINE] = (impl.evictions - base_evicted) / (baseline.position - base_played)
    return result


@dataclass(frozen=True)
class Latency:
    """Section 2 for one backend and size: percentiles and the pool re-reads among the calls."""

    backend: str
    num_tasks: int
    us: Percentiles
    cpu_us: Percentiles  # this thread's CPU time in the same calls: the work, not the waits
    evictions_per_call: float
    snapshots: int
    snapshot_max_ms: float
    calls_over_1ms: int


def measure_latency(run: Run, backend: str, num_tasks: int) -> Latency:
    """Every get_task of the loop timed, on a full warm pool in steady state."""
    plan = run.plan
    config = run.config(backend, num_tasks, f"latency-{num_tasks}")
    with open_pool(config) as curriculum:
        fill_and_warm(curriculum, seed=7)
        driver = CurriculumDriver(curriculum, seed=4)
        play_for(driver.play, max(plan.warm_loops, 2 * num_tasks), plan.warm_cap_s)
        before = evicted(curriculum)
        snapshots = CallTimer(curriculum.backend, "snapshot")
        timings: list[int] = []
        cpu: list[int] = []
        play_for(
            lambda n: driver.play_timed(n, timings, cpu), plan.latency_calls, plan.latency_cap_s
        )
        evictions = evicted(curriculum) - before
    return Latency(
        backend=backend,
        num_tasks=num_tasks,
        us=Percentiles.of_ns(timings),
        cpu_us=Percentiles.of_ns(cpu),
        evictions_per_call=evictions / len(timings),
        snapshots=snapshots.calls,
        snapshot_max_ms=snapshots.longest * 1000,
        calls_over_1ms=sum(t > 1_000_000 for t in timings),
    )


@dataclass
class Results:
    """Everything measured."""

    loop: LoopResult
    latency: list[Latency]
    processes: dict[tuple[str, int], Rates]
    processes_error: str | None

    def latency_of(self, backend: str, num_tasks: int) -> Latency:
        """Section 2's result for one backend and size."""
        return next(x for x in self.latency if (x.backend, x.num_tasks) == (backend, num_tasks))


def print_results(run: Run, res: Results) -> None:
    """The three tables."""
    rates, base = res.loop.rates, res.loop.rates[BASELINE]
    rows = [("in-process numpy loop (baseline)", kilo(median(base)), "1.00x", "", "")]
    for name in run.backends:
        rows.append(
            (
                f"ours, {name}",
                kilo(median(rates[name])),
                ratio_text(ratio(rates[name], base), "x"),
                f"{res.loop.evictions[name]:.3f}",
                f"{res.loop.snapshots_per_1000[name]:.1f}",
            )
        )
    rows[0] = (*rows[0][:3], f"{res.loop.evictions[BASELINE]:.3f}", "")
    print_rows(
        f"1. loop get_task + update_task_performance, {LOOP_TASKS:,} tasks, defaults, coin flips "
        f"({run.plan.rounds} interleaved rounds)",
        ("loop", "loops/s (median)", "/ baseline [IQR]", "evictions/loop", "re-reads/1k"),
        rows,
    )
    rows = []
    for lat in res.latency:
        us = lat.us
        rows.append(
            (
                f"{lat.backend}, {lat.num_tasks:,} tasks ({us.calls:,} calls)",
                f"{us.p50:.1f}",
                f"{us.p99:,.0f}",
                f"{us.p999:,.0f}",
                f"{us.max:,.0f}",
                f"{lat.cpu_us.p999:,.0f} / {lat.cpu_us.max:,.0f}",
                f"{lat.calls_over_1ms}",
                f"{lat.snapshots} ({lat.snapshot_max_ms:.1f} ms)",
            )
        )
    print_rows(
        "2. get_task latency (us), one outcome after each call",
        ("pool", "p50", "p99", "p99.9", "max", "CPU p99.9 / max", ">1 ms", "re-reads (longest)"),
        rows,
    )
    if res.processes_error:
        print(f"\n3. two processes: FAILED ({res.processes_error})")
        return
    rows = []
    machines = [BASELINE] + ([PING] if (PING, 1) in res.processes else [])
    for name in [*run.backends, *machines]:
        one, two = res.processes[(name, 1)], res.processes[(name, 2)]
        label = MACHINE_LABELS.get(name, name)
        # Redis is measured against what the machine gives a second client of the server
        machine = PING if name == REDIS and PING in machines else BASELINE
        of_machine = ratio(scaling(res.processes, name), scaling(res.processes, machine))
        rows.append(
            (
                label,
                kilo(median(one)),
                kilo(median(two)),
                ratio_text(ratio(two, one), "x"),
                ratio_text(of_machine, "x") if name not in machines else "",
            )
        )
    print_rows(
        f"3. one and two spawned processes, {run.process_tasks:,} tasks, "
        f"{run.plan.mp_rounds} rounds",
        ("loop", "1 process", "2 processes", "2 / 1 [IQR]", "of the machine's 2 / 1"),
        rows,
    )


MACHINE_LABELS = {
    BASELINE: "in-process loop, independent processes (machine)",
    PING: "Redis PING round trips, independent clients (machine)",
}


def scaling(processes: dict[tuple[str, int], Rates], name: str) -> Rates:
    """Per round: loops/s of 2 processes / loops/s of 1 process of one loop."""
    pairs = zip(processes[(name, 2)], processes[(name, 1)], strict=True)
    return [None if two is None or one is None else two / one for two, one in pairs]


def goals(run: Run, res: Results) -> list[Goal]:
    """The issue's goals, each with its figure."""
    out, base = [], res.loop.rates[BASELINE]
    for name, target in LOOP_GOALS.items():
        if name not in run.backends:
            out.append(Goal(f"{name} loop >= {target}x in-process loop (not measured)", False))
            continue
        value = ratio(res.loop.rates[name], base)
        mid = value.mid if value else 0.0
        out.append(Goal(f"{name} loop >= {target}x in-process loop ({mid:.3f}x)", mid >= target))
    low, high = run.plan.latency_sizes
    for name in run.backends:
        small, big = res.latency_of(name, low).us, res.latency_of(name, high).us
        scale = big.p50 / small.p50
        out += [
            Goal(
                f"{name} get_task p50 at {high:,} <= {SCALE_GOAL:g}x p50 at {low:,} ({scale:.2f}x)",
                scale <= SCALE_GOAL,
            ),
            Goal(
                f"{name} get_task p99.9 at {high:,} <= 1 ms ({big.p999 / 1000:.2f} ms)",
                big.p999 <= P999_GOAL_US,
            ),
            Goal(
                f"{name} get_task max at {high:,} <= 10 ms ({big.max / 1000:.1f} ms)",
                big.max <= MAX_GOAL_US,
            ),
        ]
    for name in run.backends:
        value = None
        if not res.processes_error:
            value = ratio(res.processes[(name, 2)], res.processes[(name, 1)])
        mid = value.mid if value else 0.0
        out.append(
            Goal(
                f"{name} 2 processes >= {PROCESS_GOAL}x 1 process ({mid:.2f}x)", mid >= PROCESS_GOAL
            )
        )
    return out


def measure(run: Run, started: float) -> Results:
    """All three sections."""

    def progress(what: str) -> None:
        print(f"  [{time.perf_counter() - started:.0f} s] {what} ...", file=sys.stderr, flush=True)

    progress("loop")
    loop = measure_loop(run)
    latency = []
    for backend in run.backends:
        for num_tasks in run.plan.latency_sizes:
            progress(f"latency, {backend}, {num_tasks:,} tasks")
            latency.append(measure_latency(run, backend, num_tasks))
    progress("one and two processes")
    configs = {name: run.config(name, run.process_tasks, "procs") for name in run.backends}
    plan = ProcessPlan(run.process_tasks, run.plan.mp_rounds, run.plan.mp_chunk_s)
    ping_url = run.backends.get(REDIS)
    processes, error = measure_processes(configs, LearningProgressConfig(), plan, ping_url)
    return Results(loop, latency, processes, error)


def main() -> int:
    """Measure, print the tables and the goals; 1 when a worker process failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="tiny run that only checks it works")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis server to measure")
    where.add_argument("--spawn-redis", action="store_true", help="start a private redis-server")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON (- stdout)")
    parser.add_argument(
        "--process-tasks",
        type=int,
        default=LOOP_TASKS,
        help=f"pool size of the one-and-two-process section (default {LOOP_TASKS:,})",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(spawned_redis_server()) if args.spawn_redis else args.redis_url
        server, why = probe_redis(url)
        backends: dict[str, str | None] = {SHM: None}
        if server is None:
            redis_text = f"Redis at {redact_url(url)} did not answer ({why}): /dev/shm only"
        else:
            redis_text = f"Redis {server} at {redact_url(url)}"
            backends[REDIS] = url
        plan = SMOKE if args.smoke else QUICK if args.quick else FULL
        run_id = f"bench-hot-{os.getpid()}-{secrets.token_hex(3)}"
        run = Run(plan, run_id, backends, args.process_tasks)
        kind = "smoke" if args.smoke else "quick" if args.quick else "full"
        print(f"{machine_text()}; {redis_text}")
        print(f"{kind} run; config: LearningProgressConfig() defaults, bench generator, seed 0")
        try:
            results = measure(run, started)
        finally:
            if server is not None:
                remove_leftovers(url, run.run_id)
    print_results(run, results)
    met = goals(run, results)
    write_json(args.json, "bench_hot_loop", results, met)
    return report_goals(met, started, results.processes_error is None)


if __name__ == "__main__":
    sys.exit(main())
