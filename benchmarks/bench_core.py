"""Core benchmarks of the curriculum pool on the /dev/shm backend, in one run.

Measures, against a no-lock numpy baseline of the same per-outcome EMA update:

1. baselines: ``curriculum.ema.apply_outcomes`` on a private ``ROW_DTYPE`` array (batches of 64,
   split into ``rounds`` and gathered, updated and scattered exactly as the backend does, with no
   lock and no shared memory), and a per-row Python scalar loop of the same spec;
2. ``get_task`` latency (p50/p90/p99 per call) with a learning-progress pool of 64, 1,000 and
   10,000 tasks, full and warm, one outcome recorded after every call, evictions as they happen;
3. outcome recording in one process: the batch API (64/256/1024 per call), the buffered
   per-outcome API (write_batch_size=64) and immediate writes (write_batch_size=1);
4. one and two spawned processes (the Curriculum pickles into them) recording into one pool with
   the batch API, next to the same no-lock baseline run in one and two independent processes (what
   the machine itself gives a second process); then every outcome sent must have been counted.

Run ``python benchmarks/bench_core.py`` (about 2 minutes on 2 cores) or add ``--quick`` (~20 s).
``--journal`` measures only what the undo record of /dev/shm writes costs (see
``backends.shm_journal``): the CPU time of one write of 1, 64 and 1,024 outcomes with the undo
record and with it switched off, interleaved in one run.
Exits 1 when an outcome was lost; goals that are missed are printed as MISS, never raised.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from harness import (
    Goal,
    Percentiles,
    best_rate,
    best_round_rate,
    completed,
    fill_pool,
    machine_text,
    open_pool,
    prewarm,
    print_table,
    rate_text,
    report_goals,
    report_to,
    spawn_workers,
    timed_rounds,
    write_json,
)
from harness import make_config as harness_config
from recording import (
    MultiResult,
    RecordPlan,
    id_batches,
    outcome_pairs,
    play,
    record_batches,
    record_in_processes,
    slot_batches,
)

from backends.layout import empty_rows
from curriculum import CurriculumConfig
from curriculum.curriculum import pool_params
from curriculum.ema import BASELINE_CAP, EmaParams, apply_outcomes, rounds

RECORD_TASKS = 1000  # pool size of the recording benchmarks
BASELINE_BATCH = 64


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    repeats: int
    baseline_outcomes: int
    scalar_outcomes: int
    latency_calls: int
    warm_min: int  # get_task calls (each followed by an outcome) before the timed calls
    warm_factor: int  # ... at least this many per task
    batch_outcomes: int
    buffered_outcomes: int
    immediate_outcomes: int
    mp_outcomes: int  # per process and round
    latency_sizes: tuple[int, ...] = (64, 1000, 10_000)  # 1,000 and a larger one at least


FULL = Plan(7, 640_000, 200_000, 20_000, 20_000, 3, 400_000, 200_000, 20_000, 300_000)
QUICK = Plan(3, 128_000, 50_000, 5_000, 5_000, 1, 100_000, 50_000, 5_000, 100_000)
# for tests: every section runs end to end, on smaller pools; its figures mean nothing
SMOKE = Plan(1, 6_400, 2_000, 300, 300, 0, 4_096, 2_000, 300, 4_096, (64, 1000, 2000))


def make_config(num_tasks: int, name: str, **overrides: object) -> CurriculumConfig:
    """The benchmark's learning-progress config, with a session id unique to this run."""
    return harness_config(num_tasks, f"bench-{os.getpid()}-{name}", **overrides)


# -- 1. baselines ---------------------------------------------------------------------------------


def numpy_update(plan: Plan, ema: EmaParams) -> tuple[Callable[[], float], int]:
    """A timed run of gather-copy-update-scatter on a private array (no lock), and its size."""
    count = plan.baseline_outcomes // BASELINE_BATCH
    slots = slot_batches(RECORD_TASKS, BASELINE_BATCH, count, seed=1)
    scores = np.random.default_rng(2).random((count, BASELINE_BATCH))
    rows = empty_rows(RECORD_TASKS)

    def run() -> float:
        start = time.perf_counter()
        for batch_slots, batch_scores in zip(slots, scores, strict=True):
            for positions in rounds(batch_slots):
                index = batch_slots[positions]
                updated = rows[index]
                apply_outcomes(updated, batch_scores[positions], ema)
                rows[index] = updated
        return time.perf_counter() - start

    return run, count * BASELINE_BATCH


def bench_scalar_baseline(plan: Plan, ema: EmaParams) -> float:
    """Outcomes/s of the same spec applied row by row with Python floats."""
    rng = np.random.default_rng(3)
    slots = rng.integers(0, RECORD_TASKS, plan.scalar_outcomes).tolist()
    scores = rng.random(plan.scalar_outcomes).tolist()
    a, b, threshold = ema.ema_timescale, ema.task_tracker_ema_alpha, ema.success_threshold
    k = a * ema.slow_timescale_factor

    def run() -> float:
        rows = [[0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] for _ in range(RECORD_TASKS)]
        start = time.perf_counter()
        for slot, s in zip(slots, scores, strict=True):
            r = rows[slot]
            if r[0] == 0:
                base = r[3] = min(s, BASELINE_CAP)
                x = max(s - base, 0.0) / (1.0 - base)
                r[4], r[5], r[6], r[7], r[8] = x, x, s, s, s * s
            else:
                x = max(s - r[3], 0.0) / (1.0 - r[3])
                r[4] += a * (x - r[4])
                r[5] += k * (x - r[5])
                r[6] += a * (s - r[6])
                r[7] += b * (s - r[7])
                r[8] += b * (s * s - r[8])
            r[0] += 1
            r[1] += s >= threshold
            r[2] += s
        return time.perf_counter() - start

    return best_rate(run, plan.scalar_outcomes, plan.repeats)


# -- 2. get_task latency --------------------------------------------------------------------------


@dataclass
class Latency:
    """get_task latency of one pool size (us) and evictions per call."""

    num_tasks: int
    us: Percentiles
    evictions_per_call: float


def bench_get_task(plan: Plan, num_tasks: int) -> Latency:
    """Latency of get_task on a full, warm pool in steady state (default write buffering)."""
    warm_calls = max(plan.warm_min, plan.warm_factor * num_tasks)
    u = np.random.default_rng(4).random(max(warm_calls, plan.latency_calls))
    timings = np.zeros(plan.latency_calls, dtype=np.int64)
    with open_pool(make_config(num_tasks, f"latency-{num_tasks}")) as curriculum:
        prewarm(curriculum, seed=7)
        play(curriculum, warm_calls, u, None)
        evicted = curriculum.stats()["curriculum/num_evicted"]
        play(curriculum, plan.latency_calls, u, timings)
        evicted = curriculum.stats()["curriculum/num_evicted"] - evicted
    return Latency(num_tasks, Percentiles.of_ns(timings), evicted / plan.latency_calls)


# -- 3. recording in one process ------------------------------------------------------------------


def bench_batch_api(plan: Plan, batch: int) -> tuple[float, bool]:
    """Outcomes/s of update_task_performance_batch with ``batch`` outcomes per call."""
    calls = max(1, plan.batch_outcomes // batch)
    with open_pool(make_config(RECORD_TASKS, f"batch-{batch}")) as curriculum:
        batches = id_batches(fill_pool(curriculum), batch, min(calls, 64), seed=5)
        record_batches(curriculum, batches, len(batches))  # warm-up
        rate = best_rate(
            lambda: record_batches(curriculum, batches, calls), calls * batch, plan.repeats
        )
        complete = completed(curriculum) == (len(batches) + calls * plan.repeats) * batch
    return rate, complete


def bench_per_outcome(plan: Plan, write_batch_size: int, outcomes: int) -> tuple[float, bool]:
    """Outcomes/s of update_task_performance called once per outcome."""
    config = make_config(
        RECORD_TASKS, f"single-{write_batch_size}", write_batch_size=write_batch_size
    )
    with open_pool(config) as curriculum:
        pairs = outcome_pairs(fill_pool(curriculum), outcomes, seed=6)

        def run() -> float:
            start = time.perf_counter()
            for task_id, score in pairs:
                curriculum.update_task_performance(task_id, score)
            curriculum.flush()
            return time.perf_counter() - start

        rate = best_rate(run, outcomes, plan.repeats)
        complete = completed(curriculum) == outcomes * plan.repeats
    return rate, complete


# -- 4. several processes -------------------------------------------------------------------------


def _numpy_rounds(plan: Plan, ema: EmaParams, barrier: Any) -> tuple[int, int, Any]:
    run, outcomes = numpy_update(plan, ema)
    run()  # warm-up
    return 0, outcomes, timed_rounds(run, plan.repeats, barrier)


def numpy_worker(plan: Plan, ema: EmaParams, barrier: Any, queue: Any) -> None:
    """The no-lock baseline in rounds: what the machine gives to independent processes."""
    report_to(queue, lambda: _numpy_rounds(plan, ema, barrier))


def bench_processes(plan: Plan, procs: int, batch: int) -> MultiResult:
    """``procs`` spawned processes (the Curriculum pickles into them) recording into one pool."""
    config = make_config(RECORD_TASKS, f"procs-{procs}-{batch}")
    record = RecordPlan(plan.repeats, plan.mp_outcomes, batch)
    return record_in_processes(config, procs, record, pickle_curriculum=True)


def bench_machine(plan: Plan, procs: int, ema: EmaParams) -> float:
    """Aggregate no-lock baseline rate of ``procs`` independent processes."""
    results, errors = spawn_workers(numpy_worker, [(plan, ema)] * procs)
    if errors:
        return 0.0
    return best_round_rate([r[1] for r in results], [r[2] for r in results])


# -- report ---------------------------------------------------------------------------------------


def run_baselines(plan: Plan, ema: EmaParams) -> float:
    """Section 1; returns the numpy baseline rate."""
    base = best_rate(*numpy_update(plan, ema), plan.repeats)
    scalar = bench_scalar_baseline(plan, ema)
    print_table(
        f"1. baselines (no lock, private memory, {RECORD_TASKS:,} rows)",
        [
            (f"numpy apply_outcomes, batches of {BASELINE_BATCH}", rate_text(base), "1.00x"),
            ("Python scalar loop, per row", rate_text(scalar), f"{scalar / base:.2f}x"),
        ],
    )
    return base


def run_latency(plan: Plan) -> dict[int, Latency]:
    """Section 2; latencies by pool size."""
    latencies = {n: bench_get_task(plan, n) for n in plan.latency_sizes}
    rows = [
        (
            f"{n:>6,} tasks: p50 / p90 / p99 (mean)",
            f"{lat.us.p50:.1f} / {lat.us.p90:.0f} / {lat.us.p99:.0f}",
            f"({lat.us.mean:.0f}) ev {lat.evictions_per_call:.3f}",
        )
        for n, lat in latencies.items()
    ]
    title = f"2. get_task latency (us, {plan.latency_calls:,} calls, one outcome after each)"
    print_table(title, rows)
    big = max(latencies)
    scale = latencies[big].us.p50 / latencies[1000].us.p50
    print(f"  p50({big:,}) / p50(1,000) = {scale:.2f}; ev = evictions per get_task call")
    return latencies


def run_recording(plan: Plan, base: float) -> tuple[dict[int, float], bool]:
    """Section 3; returns the batch-API rates by batch size and whether nothing was lost."""
    batched = {b: bench_batch_api(plan, b) for b in (64, 256, 1024)}
    results = {f"update_task_performance_batch, {b} per call": r for b, r in batched.items()}
    for size, outcomes in ((64, plan.buffered_outcomes), (1, plan.immediate_outcomes)):
        name = f"update_task_performance, write_batch_size={size}"
        results[name] = bench_per_outcome(plan, size, outcomes)
    rows = [(name, rate_text(r), f"{r / base:.3f}x base") for name, (r, _) in results.items()]
    print_table(f"3. recording, one process, {RECORD_TASKS:,} tasks", rows)
    complete = all(ok for _, ok in results.values())
    print(f"  every outcome counted (num_completed == sent): {'PASS' if complete else 'FAIL'}")
    return {b: r for b, (r, _) in batched.items()}, complete


def run_processes(
    plan: Plan, goal_batch: int, ema: EmaParams, in_process: dict[int, float]
) -> tuple[float, list[MultiResult], list[float]]:
    """Section 4; the 2-process/1-process ratio at ``goal_batch``, every result, the machine."""
    machine = [bench_machine(plan, procs, ema) for procs in (1, 2)]
    rows = [
        ("no-lock numpy update, 1 process (machine)", rate_text(machine[0]), "1.00x"),
        (
            "no-lock numpy update, 2 processes (machine)",
            rate_text(machine[1]),
            f"{machine[1] / max(machine[0], 1e-9):.2f}x",
        ),
    ]
    results, ratio = [], 0.0
    for batch in sorted({64, goal_batch}):
        one, two = bench_processes(plan, 1, batch), bench_processes(plan, 2, batch)
        results += [one, two]
        ratio = two.rate / max(one.rate, 1e-9) if batch == goal_batch else ratio
        same_run = in_process.get(batch)
        rows += [
            (
                f"batch API {batch}/call, 1 process",
                rate_text(one.rate),
                f"{one.rate / same_run:.2f}x sect.3" if same_run else "",
            ),
            (
                f"batch API {batch}/call, 2 processes together",
                rate_text(two.rate),
                f"{two.rate / max(one.rate, 1e-9):.2f}x 1 proc",
            ),
        ]
    print_table(
        f"4. spawned processes into one pool, {plan.mp_outcomes:,} outcomes per process and "
        f"round, best of {plan.repeats} rounds",
        rows,
    )
    for r in results:
        print(r.check_line())
    return ratio, results, machine


def journal_record_cost(batch: int, writes: int, rounds_: int) -> tuple[float, float]:
    """CPU microseconds per ``SharedMemoryBackend.record`` of ``batch`` outcomes, with the undo
    record and with it switched off, interleaved; best of ``rounds_`` each. CPU time of this
    process, so other load on the machine barely moves it."""
    from backends import shm_journal
    from backends.base import WriteBatch
    from backends.shared_memory import SharedMemoryBackend

    config = make_config(RECORD_TASKS, f"journal-{batch}")
    backend = SharedMemoryBackend(config.algorithm_config.session_id, pool_params(config))
    real_save = shm_journal.Journal.save

    def no_undo(self: object, rows: object = None, labels: object = None, **_: object) -> None:
        return None

    try:
        for _ in range(RECORD_TASKS):
            seq = backend.reserve_sequence()
            backend.create_task(1 + seq, backend.intern_label("bench"), seq)
        rows = backend.snapshot().rows
        rng = np.random.default_rng(7)
        batches = []
        for _ in range(64):
            slots = rng.integers(0, RECORD_TASKS, batch)
            one = WriteBatch()
            one.extend_outcomes(
                slots.tolist(),
                rows["task_id"][slots].tolist(),
                rows["label_id"][slots].tolist(),
                rng.random(batch).tolist(),
                batch,
            )
            batches.append(one)
        best = {True: float("inf"), False: float("inf")}
        for _ in range(rounds_):
            for journaled in (True, False):
                shm_journal.Journal.save = real_save if journaled else no_undo  # type: ignore[method-assign]
                start = time.process_time()
                for i in range(writes):
                    backend.record(batches[i % len(batches)])
                best[journaled] = min(best[journaled], (time.process_time() - start) / writes)
    finally:
        shm_journal.Journal.save = real_save  # type: ignore[method-assign]
        backend.destroy()
    return best[True] * 1e6, best[False] * 1e6


def run_journal_cost(plan: Plan) -> None:
    """What the undo record costs a write of 1, 64 and 1,024 outcomes."""
    rows = []
    for batch, writes in ((1, 4000), (64, 1000), (1024, 100)):
        with_, without = journal_record_cost(batch, writes, max(plan.repeats, 5))
        rows.append((f"{batch:,} per write, without undo record", f"{without:.1f} us", "1.00"))
        rows.append(
            (f"{batch:,} per write, with undo record", f"{with_:.1f} us", f"{with_ / without:.2f}")
        )
    print_table(
        f"undo record cost: CPU time per write, {RECORD_TASKS:,} tasks, best of interleaved rounds",
        rows,
    )


def main() -> int:
    """Run every section, print the goals; 1 when an outcome was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (~20 s)")
    parser.add_argument("--smoke", action="store_true", help="tiny run that only checks it works")
    parser.add_argument("--mp-batch", type=int, default=256, help="batch size of section 4")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON (- stdout)")
    parser.add_argument(
        "--journal", action="store_true", help="only the cost of the /dev/shm undo record"
    )
    args = parser.parse_args()
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    kind = "smoke" if args.smoke else "quick" if args.quick else "full"
    if args.journal:
        run_journal_cost(plan)
        return 0
    started = time.perf_counter()
    config = make_config(1000, "shown")
    print(machine_text())
    print(
        f"config: LearningProgressConfig() defaults, write_batch_size={config.write_batch_size}, "
        f"write_max_delay_s={config.write_max_delay_s}, "
        f"snapshot_max_age_s={config.snapshot_max_age_s}, max_labels={config.max_labels}, "
        "bucketed generator (difficulty Span(0.0, 1.0), size Span(8, 64)), seed=0; "
        f"{kind} run, rates are the best of {plan.repeats}"
    )
    ema = pool_params(config).ema
    base = run_baselines(plan, ema)
    latency = run_latency(plan)
    batched, in_process_ok = run_recording(plan, base)
    ratio, multi, machine = run_processes(plan, args.mp_batch, ema, batched)
    lossless = in_process_ok and all(r.lossless for r in multi)
    p50, b64 = latency[1000].us.p50, batched[64]
    big = max(latency)
    scale = latency[big].us.p50 / p50
    goals = [
        Goal(f"get_task p50 at 1,000 tasks <= 20 us ({p50:.1f} us)", p50 <= 20),
        Goal(f"get_task p50 at {big:,} <= 2x p50 at 1,000 ({scale:.2f}x)", scale <= 2),
        Goal(f"batch API (64/call) >= 300k out/s ({b64 / 1000:,.0f}k)", b64 >= 300_000),
        Goal(f"batch API (64/call) >= 1/3 of baseline ({b64 / base:.2f})", b64 >= base / 3),
        Goal(f"2 processes >= 80% of 1 process ({args.mp_batch}/call: {ratio:.0%})", ratio >= 0.8),
        Goal("zero outcomes lost", lossless),
    ]
    figures = {
        "baseline_out_s": base,
        "latency_us": latency,
        "batch_api_out_s": batched,
        "processes": multi,
        "machine_out_s": machine,
    }
    write_json(args.json, "bench_core", figures, goals)
    return report_goals(goals, started, lossless)


if __name__ == "__main__":
    sys.exit(main())
