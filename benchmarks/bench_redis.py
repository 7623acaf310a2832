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
import contextlib
import hashlib
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import redis
from bench_core import (
    MultiResult,
    best_round_rate,
    check_completed,
    fill_pool,
    id_batches,
    play,
    prewarm,
    print_table,
    rate_text,
    record_batches,
    report_goals,
    score_of,
    spawn_workers,
    timed_rounds,
)
from bench_core import make_config as make_shm_config

import backends.redis_backend as redis_backend
from backends.layout import ROW_DTYPE
from backends.redis_backend import REGISTRY_KEY, connect, session_keys
from curriculum import Curriculum, CurriculumConfig, LearningProgressConfig
from curriculum.redaction import redact_url

DEFAULT_URL = "redis://127.0.0.1:6379/0"
RECORD_TASKS = 1000  # pool size of the recording benchmarks (as in bench_core)
SNAPSHOT_TASKS = 10_000
PIPELINE_DEPTH = 64
RMW_ROWS = 1000  # rows in the scratch hash of the Lua read-modify-write baseline
RMW_PER_CALL = 10_000

# The server's ceiling for the per-row work of record.lua: read, decode, change, encode, write.
RMW_SCRIPT = """
local rows, count = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 0, count - 1 do
  local slot = i % rows
  local row = cmsgpack.unpack(redis.call('HGET', KEYS[1], slot))
  row[4] = row[4] + 1
  row[9] = row[9] + 0.1 * (0.5 - row[9])
  redis.call('HSET', KEYS[1], slot, cmsgpack.pack(row))
end
return count
"""
# A row as record.lua leaves it after a few outcomes (fields in ROW_DTYPE order; others 0).
SAMPLE_FIELDS = {
    "task_id": 3578597158538520,
    "seq": 8798,
    "label_id": 298,
    "n_outcomes": 5,
    "n_samples": 6,
    "n_success": 3,
    "score_sum": 2.5,
    "baseline": 0.5,
    "fast": 0.1234,
    "slow": 0.2345,
    "perf": 0.5123,
    "reward": 0.41,
    "reward_sq": 0.31,
}
SAMPLE_ROW = [SAMPLE_FIELDS.get(name, 0) for name in ROW_DTYPE.names]
# The arguments of a one-outcome record call (record.lua): client id, write number, 1 outcome
# (slot, task id, label id, score), 0 samples, 0 env-config failures.
RECORD_ARGS = ["1234-0123456789ab:r", 1, 1, 17, 3578597158538520, 298, "0.5", 0, 0]


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


# -- the run, its pools, and measuring ------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What every section needs: the server, this run's id (session prefix), sizes, a client."""

    url: str
    run_id: str
    plan: Plan
    client: redis.Redis  # the benchmark's own commands (baselines, INFO, the split snapshot)

    def config(self, num_tasks: int, name: str, **overrides: Any) -> CurriculumConfig:
        """bench_core's config (same generator and defaults) with a pool unique to this run."""
        shm = make_shm_config(num_tasks, name, **overrides)
        algorithm = LearningProgressConfig(session_id=f"{self.run_id}-{name}", backend_url=self.url)
        return shm.model_copy(update={"algorithm_config": algorithm})


@contextlib.contextmanager
def redis_curriculum(config: CurriculumConfig) -> Iterator[Curriculum]:
    """A curriculum whose pool is destroyed on the way out (Redis pools outlive their clients)."""
    curriculum = Curriculum(config)
    try:
        yield curriculum
    finally:
        try:
            curriculum.flush()
        finally:
            curriculum.backend.destroy()
            curriculum.close()


def remove_leftovers(client: redis.Redis, run_id: str) -> int:
    """Delete the pools of this run still registered (after a crash); how many there were."""
    prefix = run_id.encode()
    left = [s for s in client.smembers(REGISTRY_KEY) if s.startswith(prefix)]
    for session in left:
        client.delete(*session_keys(session.decode()))
        client.srem(REGISTRY_KEY, session)
    return len(left)


def command_usec(client: redis.Redis, command: str) -> tuple[int, int]:
    """Calls and microseconds of one command since the server's stats were last reset."""
    stat = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stat.get("calls", 0)), int(stat.get("usec", 0))


@dataclass
class Meter:
    """Wall time, this process's CPU time and the server's EVALSHA calls, summed over blocks."""

    client: redis.Redis
    wall: float = 0.0
    cpu: float = 0.0
    evalsha_calls: int = 0
    evalsha_usec: int = 0

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        """Add the block's times (the INFO round trips are outside the timed span)."""
        calls, usec = command_usec(self.client, "evalsha")
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        after = command_usec(self.client, "evalsha")
        self.evalsha_calls += after[0] - calls
        self.evalsha_usec += after[1] - usec


@dataclass
class Split:
    """Mean time per outcome: wall, client CPU, server time in scripts (None if unknown)."""

    wall_us: float
    client_us: float
    server_us: float | None
    server_per_call_us: float | None

    def text(self) -> str:
        """One line of the per-outcome breakdown."""
        server = "n/a (other clients)" if self.server_us is None else f"{self.server_us:.2f}"
        line = f"wall {self.wall_us:7.2f} = client CPU {self.client_us:6.2f} + Redis {server}"
        if self.server_us is not None:
            rest = self.wall_us - self.client_us - self.server_us
            line += f" + rest {rest:.2f}; {self.server_per_call_us:,.1f} us per EVALSHA"
        return line


def split_of(meter: Meter, outcomes: int, script_calls: int) -> Split:
    """The per-outcome split; the server part only if exactly our script calls ran meanwhile."""
    clean = meter.evalsha_calls == script_calls
    return Split(
        wall_us=meter.wall / outcomes * 1e6,
        client_us=meter.cpu / outcomes * 1e6,
        server_us=meter.evalsha_usec / outcomes if clean else None,
        server_per_call_us=meter.evalsha_usec / script_calls if clean else None,
    )


Timed = tuple[Callable[[], float], int]  # a run returning its seconds, and the work it does


def interleaved(runs: dict[str, Timed], repeats: int) -> dict[str, float]:
    """Best rate of each run over ``repeats`` rounds that run each of them once, in turn.

    The best of several runs, as timeit does (the shared VM's noise only slows); interleaving keeps
    a ratio between two of them from being a ratio between two different minutes of the machine.
    """
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, (run, work) in runs.items():
            best[name] = max(best[name], work / run())
    return best


class CallTimer:
    """Counts and times one method of one object (shadowed on the instance; < 1 us per call)."""

    def __init__(self, owner: object, name: str) -> None:
        """Wrap ``owner.name``."""
        self.calls = 0
        self.seconds = 0.0
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - start

        setattr(owner, name, timed)


# -- 1. baselines ---------------------------------------------------------------------------------


class Probes:
    """The baseline runs, reusable by every section (each returns its seconds)."""

    def __init__(self, run: Run) -> None:
        """Register the scripts and fill the read-modify-write scratch hash."""
        self.client = run.client
        self.calls = run.plan.ping_calls
        self.pipe = run.client.pipeline(transaction=False)
        self.ping_cpu = 0.0
        self.pings = 0
        self.noop = run.client.register_script("return 1")
        self.noop_keys = session_keys(f"{run.run_id}-absent")  # never created, never read
        self.rmw_key = f"{run.run_id}-rmw-scratch"
        self.client.hset(
            self.rmw_key, mapping=dict.fromkeys(range(RMW_ROWS), msgpack.packb(SAMPLE_ROW))
        )
        self.rmw_script = run.client.register_script(RMW_SCRIPT)
        self.ping()  # warm-ups (and SCRIPT LOADs)
        self.script_call()
        self.rmw_script(keys=[self.rmw_key], args=[RMW_ROWS, RMW_ROWS])

    def close(self) -> None:
        """Remove the scratch hash."""
        self.client.delete(self.rmw_key)

    def ping(self) -> float:
        """Sequential PINGs."""
        client, cpu = self.client, time.process_time()
        start = time.perf_counter()
        for _ in range(self.calls):
            client.ping()
        seconds = time.perf_counter() - start
        self.ping_cpu += time.process_time() - cpu
        self.pings += self.calls
        return seconds

    def pipelined(self) -> float:
        """PINGs, PIPELINE_DEPTH per round trip."""
        pipe = self.pipe
        start = time.perf_counter()
        for _ in range(self.calls // PIPELINE_DEPTH):
            for _ in range(PIPELINE_DEPTH):
                pipe.ping()
            pipe.execute()
        return time.perf_counter() - start

    def script_call(self) -> float:
        """Sequential calls of a script that returns at once, with a record's keys and args."""
        noop, keys = self.noop, self.noop_keys
        start = time.perf_counter()
        for _ in range(self.calls):
            noop(keys=keys, args=RECORD_ARGS)
        return time.perf_counter() - start

    def rmw(self) -> float:
        """One script call of RMW_PER_CALL read-modify-writes."""
        start = time.perf_counter()
        self.rmw_script(keys=[self.rmw_key], args=[RMW_ROWS, RMW_PER_CALL])
        return time.perf_counter() - start

    def runs(self, *names: str) -> dict[str, Timed]:
        """Named baseline runs for :func:`interleaved`."""
        work = {"pipelined": self.calls // PIPELINE_DEPTH * PIPELINE_DEPTH, "rmw": RMW_PER_CALL}
        return {name: (getattr(self, name), work.get(name, self.calls)) for name in names}

    def ping_p50_us(self) -> float:
        """Median PING round trip, each timed on its own."""
        clock, timings = time.perf_counter_ns, np.zeros(self.calls, dtype=np.int64)
        for i in range(self.calls):
            start = clock()
            self.client.ping()
            timings[i] = clock() - start
        return float(np.median(timings)) / 1000


@dataclass
class Baselines:
    """Section 1."""

    ping_rate: float
    ping_p50_us: float
    ping_cpu_us: float  # this process's CPU time per PING (user + system: the loopback too)
    pipelined_rate: float
    script_rate: float  # a script that does nothing, called like a one-outcome record
    rmw_rate: float


def run_baselines(run: Run, probes: Probes) -> Baselines:
    """Section 1."""
    best = interleaved(probes.runs("ping", "pipelined", "script_call", "rmw"), run.plan.repeats)
    ping = best["ping"]
    base = Baselines(
        ping_rate=ping,
        ping_p50_us=probes.ping_p50_us(),
        ping_cpu_us=probes.ping_cpu / probes.pings * 1e6,
        pipelined_rate=best["pipelined"],
        script_rate=best["script_call"],
        rmw_rate=best["rmw"],
    )
    print_table(
        f"1. baselines (client from backends.redis_backend.connect; best of {run.plan.repeats})",
        [
            ("PING, sequential", f"{ping / 1000:,.1f}k/s", "1.00x"),
            ("PING round trip, p50", f"{base.ping_p50_us:.1f} us", ""),
            ("client CPU per sequential PING (user + sys)", f"{base.ping_cpu_us:.1f} us", ""),
            (
                f"PING, pipelined x{PIPELINE_DEPTH}",
                f"{base.pipelined_rate / 1000:,.0f}k/s",
                f"{base.pipelined_rate / ping:.2f}x",
            ),
            (
                "EVALSHA 'return 1', with a record's keys+args",
                f"{base.script_rate / 1000:,.1f}k/s",
                f"{base.script_rate / ping:.2f}x",
            ),
            (
                f"Lua row read-modify-write ({RMW_PER_CALL:,}/call)",
                f"{base.rmw_rate / 1000:,.0f}k/s",
                f"{1e6 / base.rmw_rate:.2f} us each",
            ),
        ],
    )
    return base


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
    with redis_curriculum(config) as curriculum:
        size = curriculum.config.write_batch_size
        ids = fill_pool(curriculum)
        rng = np.random.default_rng(6)
        picked = [ids[s] for s in rng.integers(0, len(ids), outcomes).tolist()]
        pairs = [(t, score_of(t, x)) for t, x in zip(picked, rng.random(outcomes), strict=True)]

        def timed() -> float:
            with meter.block():
                start = time.perf_counter()
                for task_id, score in pairs:
                    curriculum.update_task_performance(task_id, score)
                curriculum.flush()
                seconds = time.perf_counter() - start
            return seconds

        best = interleaved({"x": (timed, outcomes), **probes.runs(*baselines)}, plan.repeats)
        complete = check_completed(curriculum, outcomes * plan.repeats)
    calls = plan.repeats * -(-outcomes // size)
    split = split_of(meter, outcomes * plan.repeats, calls)
    name = f"update_task_performance, write_batch_size={size}"
    return Recording(name, best.pop("x"), split, complete, best)


def bench_batch_api(run: Run, probes: Probes, batch: int) -> Recording:
    """Outcomes/s of update_task_performance_batch with ``batch`` outcomes per call."""
    plan = run.plan
    calls = max(1, plan.batch_outcomes // batch)
    meter = Meter(run.client)
    with redis_curriculum(run.config(RECORD_TASKS, f"batch-{batch}")) as curriculum:
        batches = id_batches(fill_pool(curriculum), batch, min(calls, 64), seed=5)
        record_batches(curriculum, batches, len(batches))  # warm-up

        def timed() -> float:
            with meter.block():
                seconds = record_batches(curriculum, batches, calls)
            return seconds

        best = interleaved({"x": (timed, calls * batch), **probes.runs("rmw")}, plan.repeats)
        complete = check_completed(curriculum, (len(batches) + calls * plan.repeats) * batch)
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
    calls: int
    p50: float
    p90: float
    p99: float
    mean: float
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
    with redis_curriculum(run.config(num_tasks, f"latency-{num_tasks}")) as cur:
        prewarm(cur, seed=7)
        play(cur, warm, u, None)
        evicted = cur.stats()["curriculum/num_evicted"]
        snapshots = CallTimer(cur.backend, "snapshot")
        versions = CallTimer(cur.backend, "version")
        play(cur, calls, u, timings)
        n_snap, snap_seconds, n_version = snapshots.calls, snapshots.seconds, versions.calls
        evicted = cur.stats()["curriculum/num_evicted"] - evicted
    micros = timings / 1000.0
    p50, p90, p99 = np.percentile(micros, [50, 90, 99])
    return Latency(
        num_tasks=num_tasks,
        calls=calls,
        p50=p50,
        p90=p90,
        p99=p99,
        mean=float(micros.mean()),
        evictions_per_call=evicted / calls,
        snapshots_per_call=n_snap / calls,
        snapshot_ms=snap_seconds / max(1, n_snap) * 1000,
        snapshot_share=snap_seconds * 1e6 / max(1.0, float(micros.sum())),
        version_calls_per_call=n_version / calls,
    )


def run_latency(run: Run, base: Baselines) -> dict[int, Latency]:
    """Section 4."""
    latencies = {n: bench_get_task(run, n) for n in run.plan.latency_calls}
    rows = [("PING round trip p50 (section 1)", f"{base.ping_p50_us:.1f}", "1.00x")]
    for n, lat in latencies.items():
        rows.append(
            (
                f"{n:>6,} tasks ({lat.calls:,} calls): p50 / p90 / p99 (mean)",
                f"{lat.p50:.1f} / {lat.p90:,.0f} / {lat.p99:,.0f} ({lat.mean:,.0f})",
                f"p50 {lat.p50 / base.ping_p50_us:.2f}x PING",
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


# -- 5. snapshot ----------------------------------------------------------------------------------


@dataclass
class SnapshotTimes:
    """Medians (ms) of one full snapshot and of its parts (None: not measurable here)."""

    total: float
    redis: float
    decode_rows: float | None
    decode_labels: float | None
    rows: int
    labels: int
    payload_kib: float
    hgetall_usec: float | None  # server time of the three HGETALLs together


def bench_snapshot(run: Run) -> SnapshotTimes:
    """backend.snapshot() of a full pool whose every row holds outcomes; and its parts apart.

    The Redis part is the same MULTI/EXEC of three HGETALLs (meta, rows, labels) sent through a
    client with the library's settings, alternating with whole ``snapshot()`` calls; the decode
    part is the difference. When the backend module exposes ``decode_rows`` and
    ``decode_labels``, they are also timed apart on the last reply (warm caches: a lower bound).
    """
    plan = run.plan
    config = run.config(SNAPSHOT_TASKS, "snapshot")
    with redis_curriculum(config) as curriculum:
        ids = fill_pool(curriculum)
        for start in range(0, len(ids), 1000):  # every task gets two outcomes
            chunk = ids[start : start + 1000] * 2
            curriculum.update_task_performance_batch(chunk, [score_of(t, 0.3) for t in chunk])
        backend = curriculum.backend
        populated = int((backend.snapshot().rows["n_outcomes"] > 0).sum())
        if populated != SNAPSHOT_TASKS:
            raise RuntimeError(f"only {populated} of {SNAPSHOT_TASKS} rows hold outcomes")
        meta_key, rows_key, _, labels_key, *_ = session_keys(config.algorithm_config.session_id)
        totals, redis_s, rows_s, labels_s = [], [], [], []
        hgetall_before = command_usec(run.client, "hgetall")
        for _ in range(plan.snapshot_calls):
            pipe = run.client.pipeline(transaction=True)
            pipe.hgetall(meta_key)
            pipe.hgetall(rows_key)
            pipe.hgetall(labels_key)
            start = time.perf_counter()
            meta, rows_raw, labels_raw = pipe.execute()
            redis_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            backend.snapshot()
            totals.append(time.perf_counter() - start)
        hgetall_after = command_usec(run.client, "hgetall")
    decode_rows = getattr(redis_backend, "decode_rows", None)
    decode_labels = getattr(redis_backend, "decode_labels", None)
    if decode_rows is not None and decode_labels is not None:
        for _ in range(plan.snapshot_calls):
            start = time.perf_counter()
            decode_rows(rows_raw, SNAPSHOT_TASKS)
            middle = time.perf_counter()
            decode_labels(labels_raw, int(meta[b"num_labels"]))
            rows_s.append(middle - start)
            labels_s.append(time.perf_counter() - middle)
    payload = sum(len(k) + len(v) for part in (rows_raw, labels_raw) for k, v in part.items())
    calls = hgetall_after[0] - hgetall_before[0]
    clean = calls == 6 * plan.snapshot_calls  # ours and snapshot()'s, nobody else's
    return SnapshotTimes(
        total=median_ms(totals),
        redis=median_ms(redis_s),
        decode_rows=median_ms(rows_s) if rows_s else None,
        decode_labels=median_ms(labels_s) if labels_s else None,
        rows=len(rows_raw),
        labels=len(labels_raw),
        payload_kib=payload / 1024,
        hgetall_usec=(hgetall_after[1] - hgetall_before[1]) / calls * 3 if clean else None,
    )


def median_ms(seconds: list[float]) -> float:
    """The median, in milliseconds."""
    return float(np.median(seconds)) * 1000


def run_snapshot(run: Run, base: Baselines) -> SnapshotTimes:
    """Section 5."""
    s = bench_snapshot(run)
    ping_ms = base.ping_p50_us / 1000
    parts = [
        ("MULTI/EXEC of 3 HGETALLs (pipe.execute)", s.redis),
        ("decode (snapshot() minus the above)", s.total - s.redis),
    ]
    if s.decode_rows is not None and s.decode_labels is not None:
        parts += [("  decode_rows alone (warm cache)", s.decode_rows)]
        parts += [("  decode_labels alone (warm cache)", s.decode_labels)]
    print_table(
        f"5. backend.snapshot(), {SNAPSHOT_TASKS:,} tasks, every row populated "
        f"(median of {run.plan.snapshot_calls})",
        [
            ("PING round trip p50 (section 1)", f"{ping_ms:.3f} ms", "1.00x"),
            ("backend.snapshot()", f"{s.total:.1f} ms", f"{s.total / ping_ms:,.0f}x PING"),
            *((f"  {name}", f"{ms:.1f} ms", f"{ms / s.total:.0%}") for name, ms in parts),
        ],
    )
    server = "n/a (other clients)" if s.hgetall_usec is None else f"{s.hgetall_usec / 1000:.1f} ms"
    print(
        f"  {s.rows:,} rows and {s.labels:,} labels, {s.payload_kib:,.0f} KiB of hash fields; "
        f"server time of the 3 HGETALLs: {server}"
    )
    return s


# -- 6. several processes -------------------------------------------------------------------------


def record_worker(
    config: CurriculumConfig, ids: list[int], plan: Plan, batch: int, seed: int, barrier, queue
) -> None:
    """Attach its own Curriculum; warm up, then record ``plan.mp_outcomes`` per round."""
    try:
        curriculum = Curriculum(config)  # the pool exists: this attaches with a new client
        try:
            batches = id_batches(ids, batch, 64, seed)
            record_batches(curriculum, batches, len(batches))  # warm-up: counted, not timed
            calls = plan.mp_outcomes // batch
            spans = timed_rounds(lambda: record_batches(curriculum, batches, calls), plan, barrier)
        finally:
            curriculum.close()
        queue.put(((len(batches) + calls * plan.repeats) * batch, calls * batch, spans, None))
    except Exception as exc:  # reported to the parent, which fails the check
        queue.put((0, 0, [], repr(exc)))


def bench_processes(run: Run, procs: int, batch: int) -> MultiResult:
    """``procs`` spawned processes recording into one pool at once; the best round's rate."""
    config = run.config(RECORD_TASKS, f"procs-{procs}-{batch}")
    with redis_curriculum(config) as curriculum:
        ids = fill_pool(curriculum)
        args = [(config, ids, run.plan, batch, 10 + i) for i in range(procs)]
        results, errors = spawn_workers(record_worker, args)
        counted = int(curriculum.stats()["curriculum/num_completed"])
        rows_counted = int(curriculum.backend.snapshot().rows["n_outcomes"].sum())
    rate = 0.0 if errors else best_round_rate(results)
    sent = sum(r[0] for r in results)
    return MultiResult(procs, rate, sent, counted, rows_counted, "; ".join(errors) or None)


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
        print(
            f"  {r.procs} proc: sent {r.sent:,}, num_completed {r.counted:,}, "
            f"sum of row n_outcomes {r.rows_counted:,}: {'PASS' if r.lossless else 'FAIL'}"
            + (f" ({r.error})" if r.error else "")
        )
    return [one, two]


# -- main -----------------------------------------------------------------------------------------


def code_digest() -> str:
    """A short digest of the Redis backend's code (Python and Lua) that this run measured."""
    digest = hashlib.sha256()
    module = Path(redis_backend.__file__)
    for path in [module, *sorted((module.parent / "lua").glob("*.lua"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def describe(run: Run, quick: bool) -> None:
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
    config = make_shm_config(1000, "shown")
    print(
        f"config: bench_core's (LearningProgressConfig() defaults, bucketed generator), "
        f"write_batch_size={config.write_batch_size}, "
        f"snapshot_max_age_s={config.snapshot_max_age_s}; {'quick' if quick else 'full'} run"
    )


def main() -> int:
    """Run every section, print the goals; 1 when an outcome was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"Redis URL (default {DEFAULT_URL})")
    parser.add_argument("--quick", action="store_true", help="short run (~30 s)")
    parser.add_argument("--mp-batch", type=int, default=256, help="batch size of section 6")
    args = parser.parse_args()
    started = time.perf_counter()
    run = Run(
        url=args.url,
        run_id=f"bench-redis-{os.getpid()}-{secrets.token_hex(3)}",
        plan=QUICK if args.quick else FULL,
        client=connect(args.url),
    )
    probes = None
    try:
        describe(run, args.quick)
        probes = Probes(run)
        base = run_baselines(run, probes)
        immediate = run_immediate(run, probes)
        recording = run_recording(run, probes)
        latency = run_latency(run, base)
        snapshot = run_snapshot(run, base)
        multi = run_processes(run, args.mp_batch)
    finally:
        if probes is not None:
            probes.close()
        left = remove_leftovers(run.client, run.run_id)
        run.client.close()
    if left:
        print(f"\nremoved {left} pools this run left behind")
    lossless = immediate.complete and all(r.complete for r in recording)
    lossless = lossless and all(r.lossless for r in multi)
    ratio = immediate.rate / immediate.baselines["ping"]
    p50 = latency[1000].p50
    goals = [
        (f"immediate update_task_performance >= 80% of PING rate ({ratio:.0%})", ratio >= 0.8),
        *(
            (f"{r.name} >= 150k out/s ({r.rate / 1000:,.0f}k)", r.rate >= 150_000)
            for r in recording
        ),
        (f"get_task p50 at 1,000 tasks <= 50 us ({p50:.1f} us)", p50 <= 50),
        (
            f"snapshot of 10,000 tasks <= 25 ms (median {snapshot.total:.1f} ms)",
            snapshot.total <= 25,
        ),
        ("zero outcomes lost", lossless),
    ]
    return report_goals(goals, started, lossless)


if __name__ == "__main__":
    sys.exit(main())
