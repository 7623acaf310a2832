"""Benchmarks of the curriculum pool on the Redis backend, in one run, against a real Redis.

Every rate is compared with a baseline measured in the same run on the same server:

1. baselines: redis-py's sequential PING rate and its pipelined PING rate (64 per round trip), both
   through ``backends.redis_backend.connect`` (the client settings the library uses); a script that
   returns at once, called with the keys and arguments of a one-outcome ``record`` (the floor of
   any script call); and the server's own rate of Lua row read-modify-writes (HGET, cmsgpack
   unpack, change, pack, HSET; 10,000 per script call, so the round trip does not count);
2. ``update_task_performance`` with immediate writes (``write_batch_size=1``): one ``record``
   script call per outcome, compared with the PING rate;
3. recording from one process into a pool of 1,000 tasks: the batch API with 64, 256 and 1024
   outcomes per call, and ``update_task_performance`` with the default buffering, compared with the
   read-modify-write rate;
4. ``get_task`` latency per call (p50/p90/p99) on a full, warm pool of 1,000 and 10,000 tasks, one
   untimed outcome after every call, evictions as they happen (as ``bench_core`` does);
5. ``backend.snapshot()`` of a full pool of 10,000 tasks whose rows all hold outcomes: the whole
   call, and apart its MULTI/EXEC round trip and the decoding of the reply;
6. one and then two spawned processes (each builds its own ``Curriculum`` from the same config and
   session) recording batches into one pool; every outcome sent must have been counted.

The machine is a shared VM whose speed changes from minute to minute, so a throughput is the best
of N runs, and the baselines a section compares with are run again inside it, interleaved with
what it measures (one baseline run before every repeat). Where it is cheap, the time per outcome
is split into this process's CPU time (``time.process_time``: user and system, so the loopback
TCP stack too) and the server's time in EVALSHA (``INFO commandstats`` deltas; shown as n/a when
other clients ran scripts on the server meanwhile).

Pools get session ids unique to the run and are destroyed at the end (pools of this run left behind
by a crash are removed at exit); nothing else on the server is touched (no FLUSHALL, no CONFIG
RESETSTAT).

Run ``python benchmarks/bench_redis.py [--url redis://127.0.0.1:6379/0]`` (72-115 s on a busy
2-core VM) or add ``--quick`` (about 30 s). Exits 1 when an outcome was lost; missed goals print
MISS.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis
from harness import (
    CallTimer,
    Goal,
    Percentiles,
    best_interleaved,
    completed,
    fill_pool,
    make_config,
    open_pool,
    prewarm,
    print_table,
    rate_text,
    report_goals,
    write_json,
)
from recording import (
    MultiResult,
    RecordPlan,
    id_batches,
    outcome_pairs,
    play,
    record_batches,
    record_in_processes,
)
from redis_probes import Baselines, Meter, Probes, Split, run_baselines, split_of
from redis_snapshot import SNAPSHOT_TASKS, run_snapshot
from servers import remove_leftovers

import backends.redis_backend as redis_backend
from backends.redis_backend import connect
from curriculum import CurriculumConfig
from curriculum.redaction import redact_url

DEFAULT_URL = "redis://127.0.0.1:6379/0"
RECORD_TASKS = 1000  # pool size of the recording benchmarks (as in bench_core)


@dataclass(frozen=True)
class Plan:
    """Sizes of one run."""

    repeats: int  # best-of for throughputs (and rounds of section 6)
    ping_calls: int  # per timed run of the PING and script-call baselines
    immediate_outcomes: int
    batch_outcomes: int  # per repeat, for each batch size
    buffered_outcomes: int
    latency_calls: dict[int, int]  # timed get_task calls by pool size
    warm_calls: dict[int, int]  # untimed get_task calls (+ outcome) before them
    snapshot_calls: int
    mp_outcomes: int  # per process and round
    snapshot_tasks: int = SNAPSHOT_TASKS


FULL = Plan(
    repeats=5,
    ping_calls=5_000,
    immediate_outcomes=5_000,
    batch_outcomes=60_000,
    buffered_outcomes=30_000,
    latency_calls={1000: 20_000, 10_000: 20_000},
    warm_calls={1000: 20_000, 10_000: 5_000},
    snapshot_calls=30,
    mp_outcomes=50_000,
)
QUICK = Plan(
    repeats=3,
    ping_calls=2_000,
    immediate_outcomes=2_000,
    batch_outcomes=20_000,
    buffered_outcomes=10_000,
    latency_calls={1000: 5_000, 10_000: 2_000},
    warm_calls={1000: 3_000, 10_000: 1_000},
    snapshot_calls=20,
    mp_outcomes=20_000,
)
SMOKE = Plan(  # for tests: runs every section end to end; its figures mean nothing
    repeats=1,
    ping_calls=200,
    immediate_outcomes=200,
    batch_outcomes=2_048,
    buffered_outcomes=1_000,
    latency_calls={1000: 300, 2000: 300},
    warm_calls={1000: 300, 2000: 300},
    snapshot_calls=2,
    snapshot_tasks=2000,
    mp_outcomes=2_048,
)


# -- the run, its pools, and measuring ------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What every section needs: the server, this run's id (session prefix), sizes, a client."""

    url: str
    run_id: str
    plan: Plan
    client: redis.Redis  # the benchmark's own commands (baselines, INFO, the split snapshot)

    def config(self, num_tasks: int, name: str, **overrides: Any) -> CurriculumConfig:
        """The benchmark pool's config (bench_core's) in a pool unique to this run."""
        return make_config(num_tasks, f"{self.run_id}-{name}", backend_url=self.url, **overrides)


# -- 2./3. recording in one process ---------------------------------------------------------------


@dataclass
class Recording:
    """One recording configuration: best rate, per-outcome split, nothing lost."""

    name: str
    rate: float
    split: Split
    complete: bool
    baselines: dict[str, float] = field(default_factory=dict)  # best rates, interleaved


def bench_per_outcome(
    run: Run, probes: Probes, write_batch_size: int | None, outcomes: int, baselines: list[str]
) -> Recording:
    """Outcomes/s of update_task_performance once per outcome (None: default buffering)."""
    plan = run.plan
    overrides = {} if write_batch_size is None else {"write_batch_size": write_batch_size}
    config = run.config(RECORD_TASKS, f"single-{write_batch_size}", **overrides)
    meter = Meter(run.client)
    with open_pool(config) as curriculum:
        size = curriculum.config.write_batch_size
        pairs = outcome_pairs(fill_pool(curriculum), outcomes, seed=6)

        def timed() -> float:
            with meter.block():
                start = time.perf_counter()
                for task_id, score in pairs:
                    curriculum.update_task_performance(task_id, score)
                curriculum.flush()
                seconds = time.perf_counter() - start
            return seconds

        best = best_interleaved({"x": (timed, outcomes), **probes.runs(*baselines)}, plan.repeats)
        complete = completed(curriculum) == outcomes * plan.repeats
    calls = plan.repeats * -(-outcomes // size)
    split = split_of(meter, outcomes * plan.repeats, calls)
    name = f"update_task_performance, write_batch_size={size}"
    return Recording(name, best.pop("x"), split, complete, best)


def bench_batch_api(run: Run, probes: Probes, batch: int) -> Recording:
    """Outcomes/s of update_task_performance_batch with ``batch`` outcomes per call."""
    plan = run.plan
    calls = max(1, plan.batch_outcomes // batch)
    meter = Meter(run.client)
    with open_pool(run.config(RECORD_TASKS, f"batch-{batch}")) as curriculum:
        batches = id_batches(fill_pool(curriculum), batch, min(calls, 64), seed=5)
        record_batches(curriculum, batches, len(batches))  # warm-up

        def timed() -> float:
            with meter.block():
                seconds = record_batches(curriculum, batches, calls)
            return seconds

        best = best_interleaved({"x": (timed, calls * batch), **probes.runs("rmw")}, plan.repeats)
        complete = completed(curriculum) == (len(batches) + calls * plan.repeats) * batch
    split = split_of(meter, calls * batch * plan.repeats, calls * plan.repeats)
    name = f"update_task_performance_batch, {batch} per call"
    return Recording(name, best.pop("x"), split, complete, best)


def run_immediate(run: Run, probes: Probes) -> Recording:
    """Section 2."""
    result = bench_per_outcome(run, probes, 1, run.plan.immediate_outcomes, ["ping", "script_call"])
    ping, script = result.baselines["ping"], result.baselines["script_call"]
    print_table(
        f"2. immediate writes, one process, {RECORD_TASKS:,} tasks (best of {run.plan.repeats}, "
        "interleaved with the baselines)",
        [
            ("PING, sequential (baseline)", f"{ping / 1000:,.1f}k/s", "1.00x"),
            (
                "EVALSHA 'return 1' (floor of one script call)",
                f"{script / 1000:,.1f}k/s",
                f"{script / ping:.2f}x PING",
            ),
            (result.name, rate_text(result.rate), f"{result.rate / ping:.2f}x PING"),
        ],
    )
    print(f"  per outcome (us, mean of all repeats): {result.split.text()}")
    print(
        f"  for scale: a PING takes {1e6 / ping:.1f} us of wall time (best run) and "
        f"{probes.ping_cpu / probes.pings * 1e6:.1f} us of this process's CPU (mean)"
    )
    print(f"  every outcome counted: {'PASS' if result.complete else 'FAIL'}")
    return result


def run_recording(run: Run, probes: Probes) -> list[Recording]:
    """Section 3."""
    results = [bench_batch_api(run, probes, b) for b in (64, 256, 1024)]
    results.append(bench_per_outcome(run, probes, None, run.plan.buffered_outcomes, ["rmw"]))
    rmw = max(r.baselines["rmw"] for r in results)
    rows = [
        ("Lua row read-modify-write (server ceiling)", rate_text(rmw), "1.00x"),
        *((r.name, rate_text(r.rate), f"{r.rate / rmw:.2f}x RMW") for r in results),
    ]
    print_table(
        f"3. recording, one process, {RECORD_TASKS:,} tasks (best of {run.plan.repeats}, "
        "interleaved with the read-modify-write baseline)",
        rows,
    )
    print("  per outcome (us, mean of all repeats):")
    for r in results:
        print(f"    {r.name:<48} {r.split.text()}")
    complete = all(r.complete for r in results)
    print(f"  every outcome counted (num_completed == sent): {'PASS' if complete else 'FAIL'}")
    return results


# -- 4. get_task latency --------------------------------------------------------------------------


@dataclass
class Latency:
    """get_task latency of one pool size (us) and what its slow calls did."""

    num_tasks: int
    us: Percentiles
    evictions_per_call: float
    snapshots_per_call: float
    snapshot_ms: float  # mean time of one backend.snapshot()
    snapshot_share: float  # share of the timed get_task time spent in backend.snapshot()
    version_calls_per_call: float


def bench_get_task(run: Run, num_tasks: int) -> Latency:
    """Latency of get_task on a full, warm pool in steady state (default write buffering)."""
    calls, warm = run.plan.latency_calls[num_tasks], run.plan.warm_calls[num_tasks]
    u = np.random.default_rng(4).random(max(warm, calls))
    timings = np.zeros(calls, dtype=np.int64)
    with open_pool(run.config(num_tasks, f"latency-{num_tasks}")) as cur:
        prewarm(cur, seed=7)
        play(cur, warm, u, None)
        evicted = cur.stats()["curriculum/num_evicted"]
        snapshots = CallTimer(cur.backend, "snapshot")
        versions = CallTimer(cur.backend, "version")
        play(cur, calls, u, timings)
        n_snap, snap_seconds, n_version = snapshots.calls, snapshots.seconds, versions.calls
        evicted = cur.stats()["curriculum/num_evicted"] - evicted
    us = Percentiles.of_ns(timings)
    return Latency(
        num_tasks=num_tasks,
        us=us,
        evictions_per_call=evicted / calls,
        snapshots_per_call=n_snap / calls,
        snapshot_ms=snap_seconds / max(1, n_snap) * 1000,
        snapshot_share=snap_seconds * 1e6 / max(1.0, us.mean * us.calls),
        version_calls_per_call=n_version / calls,
    )


def run_latency(run: Run, base: Baselines) -> dict[int, Latency]:
    """Section 4."""
    latencies = {n: bench_get_task(run, n) for n in run.plan.latency_calls}
    rows = [("PING round trip p50 (section 1)", f"{base.ping_p50_us:.1f}", "1.00x")]
    for n, lat in latencies.items():
        rows.append(
            (
                f"{n:>6,} tasks ({lat.us.calls:,} calls): p50 / p90 / p99 (mean)",
                f"{lat.us.p50:.1f} / {lat.us.p90:,.0f} / {lat.us.p99:,.0f} ({lat.us.mean:,.0f})",
                f"p50 {lat.us.p50 / base.ping_p50_us:.2f}x PING",
            )
        )
    print_table("4. get_task latency (us, one outcome after each call, default buffering)", rows)
    for n, lat in latencies.items():
        print(
            f"  {n:>6,} tasks: {lat.evictions_per_call:.3f} evictions, "
            f"{lat.snapshots_per_call:.3f} snapshots and {lat.version_calls_per_call:.3f} "
            f"version() round trips per call; a snapshot took {lat.snapshot_ms:.1f} ms; "
            f"snapshots were {lat.snapshot_share:.0%} of all get_task time"
        )
    return latencies


# -- 6. several processes -------------------------------------------------------------------------


def bench_processes(run: Run, procs: int, batch: int) -> MultiResult:
    """``procs`` spawned processes, each with its own Curriculum (a client of its own) built
    from the config, recording into one pool at once; the best round's rate."""
    config = run.config(RECORD_TASKS, f"procs-{procs}-{batch}")
    plan = RecordPlan(run.plan.repeats, run.plan.mp_outcomes, batch)
    return record_in_processes(config, procs, plan, pickle_curriculum=False)


def run_processes(run: Run, batch: int) -> list[MultiResult]:
    """Section 6."""
    one, two = (bench_processes(run, n, batch) for n in (1, 2))
    print_table(
        f"6. spawned processes into one pool, batch API {batch}/call, {run.plan.mp_outcomes:,} "
        f"outcomes per process and round, best of {run.plan.repeats} rounds",
        [
            ("1 process", rate_text(one.rate), "1.00x"),
            ("2 processes together", rate_text(two.rate), f"{two.rate / max(one.rate, 1):.2f}x"),
        ],
    )
    for r in (one, two):
        print(r.check_line())
    return [one, two]


# -- main -----------------------------------------------------------------------------------------


def code_digest() -> str:
    """A short digest of the Redis backend's code (Python and Lua) that this run measured."""
    digest = hashlib.sha256()
    module = Path(redis_backend.__file__)
    for path in [module, *sorted((module.parent / "lua").glob("*.lua"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def describe(run: Run, kind: str) -> None:
    """Machine, versions and configuration."""
    import hiredis  # the parser redis-py uses when it is installed

    client = run.client
    server = client.info("server")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"redis-py {redis.__version__}, hiredis {hiredis.__version__} "
        f"(used: {redis.utils.HIREDIS_AVAILABLE}), {os.cpu_count()} cpus"
    )
    print(
        f"redis server {server['redis_version']} at {redact_url(run.url)} "
        f"(aof_enabled={client.info('persistence').get('aof_enabled')}, "
        f"io_threads_active={server.get('io_threads_active', 'n/a')}, "
        f"connected clients {client.info('clients')['connected_clients']}); "
        f"backend code digest {code_digest()}"
    )
    config = run.config(1000, "shown")
    print(
        f"config: bench_core's (LearningProgressConfig() defaults, bucketed generator), "
        f"write_batch_size={config.write_batch_size}, "
        f"snapshot_max_age_s={config.snapshot_max_age_s}; {kind} run"
    )


def main() -> int:
    """Run every section, print the goals; 1 when an outcome was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Redis URL (default {DEFAULT_URL})")
    parser.add_argument("--quick", action="store_true", help="short run (~30 s)")
    parser.add_argument("--smoke", action="store_true", help="tiny run that only checks it works")
    parser.add_argument("--mp-batch", type=int, default=256, help="batch size of section 6")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON (- stdout)")
    args = parser.parse_args()
    started = time.perf_counter()
    kind = "smoke" if args.smoke else "quick" if args.quick else "full"
    run = Run(
        url=args.url,
        run_id=f"bench-redis-{os.getpid()}-{secrets.token_hex(3)}",
        plan={"smoke": SMOKE, "quick": QUICK, "full": FULL}[kind],
        client=connect(args.url),
    )
    probes = None
    try:
        describe(run, kind)
        probes = Probes(run.client, run.plan.ping_calls, run.run_id)
        base = run_baselines(probes, run.plan.repeats)
        immediate = run_immediate(run, probes)
        recording = run_recording(run, probes)
        latency = run_latency(run, base)
        config = run.config(run.plan.snapshot_tasks, "snapshot")
        snapshot = run_snapshot(config, run.client, run.plan.snapshot_calls, base.ping_p50_us)
        multi = run_processes(run, args.mp_batch)
    finally:
        if probes is not None:
            probes.close()
        left = remove_leftovers(run.url, run.run_id)
        run.client.close()
    if left:
        print(f"\nremoved {left} pools this run left behind")
    lossless = immediate.complete and all(r.complete for r in recording)
    lossless = lossless and all(r.lossless for r in multi)
    ratio = immediate.rate / immediate.baselines["ping"]
    p50 = latency[1000].us.p50
    goals = [
        Goal(f"immediate update_task_performance >= 80% of PING rate ({ratio:.0%})", ratio >= 0.8),
        *(
            Goal(f"{r.name} >= 150k out/s ({r.rate / 1000:,.0f}k)", r.rate >= 150_000)
            for r in recording
        ),
        Goal(f"get_task p50 at 1,000 tasks <= 50 us ({p50:.1f} us)", p50 <= 50),
        Goal(
            f"snapshot of {snapshot.rows:,} tasks <= 25 ms (median {snapshot.total:.1f} ms)",
            snapshot.total <= 25,
        ),
        Goal("zero outcomes lost", lossless),
    ]
    figures = {
        "baselines": base,
        "immediate": immediate,
        "recording": recording,
        "latency": latency,
        "snapshot": snapshot,
        "processes": multi,
    }
    write_json(args.json, "bench_redis", figures, goals)
    return report_goals(goals, started, lossless)


if __name__ == "__main__":
    sys.exit(main())
