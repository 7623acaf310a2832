"""A bounded soak of one shared pool: worker processes play against it for a while, with
evictions and checkpoints under way; no outcome may be lost and no memory may grow.

``python scripts/soak.py --duration 60 [--backend-url redis://HOST:6379/0] [--workers 4]
[--pool-size 64]`` (default backend: /dev/shm). A longer soak is the same with a longer
``--duration``.

The parent creates one learning-progress curriculum whose pool is small (64 tasks by default)
next to a bucketed generator of 240 labels (float spans, so labels stay bounded by their bins):
evictions happen all the time. It spawns the workers (``spawn`` context; the curriculum pickles
into them), which loop ``get_task`` (building each task's env config) and report random scores,
half the time one by one with ``update_task_performance`` and half the time with
``update_task_performance_batch``, and rarely ``report_task_failure`` instead of a score. Each
worker counts what it reported and samples its own RSS (``/proc/self/statm``) when the warm-up
ends (10% of the duration) and at the end, then closes its handle (which flushes).

Meanwhile the parent takes a checkpoint (``get_state``) every few seconds, checks that each one
is self-consistent (label totals equal the pool counters, ``num_created - num_evicted`` tasks
active), loads each into a scratch session and checks the scratch pool exports the very same
checkpoint (counters, rows, labels) and reports the same counts in ``stats()``; it calls
``stats()`` every two seconds, and on Redis samples ``INFO memory`` (``used_memory``, the Lua
VM) and the ``MEMORY USAGE`` of the pool's own keys.

At the end the pool must have counted exactly what the workers reported (``num_completed`` ==
outcomes, ``num_failures`` == failures), have evicted tasks, and no memory may have grown from
the end of the warm-up to the end by more than ``max(--max-growth-mib, --max-growth-fraction x
its size at warm-up)`` (default max(8 MiB, 10%)). Why that bound: after the warm-up everything a
process keeps is bounded by the pool, not by the run's length (the scored view, a write buffer
of at most ``write_batch_size`` outcomes, label caches bounded by the labels, and the ids of the
tasks it handed out: at most ``8 x pool + 16,384`` of them, halved when full, measured at ~4 MiB
at most and reached after 20-40 s at this pool size); a worker here grows by ~2-3 MiB after the
warm-up, flattening once that table is full. A real leak is linear in the run's length: one
small object per outcome (an int and a float alone are ~56 bytes) makes 8 MiB in ~150,000
outcomes, about what each worker of a 60 s /dev/shm soak reports on this loaded 2-core machine
(on Redis, at ~1,500 outcomes/s per worker, it takes ~100 bytes per outcome; a longer
``--duration`` catches smaller leaks), while allocator noise (arena fragmentation, numpy's
caches) stays within a few MiB. 10% keeps the bound meaningful for a process that is much larger
to begin with. On Redis the server's ``used_memory`` is held to the same bound
(``--no-server-memory-check`` prints it only: for a server other clients use meanwhile) and its
Lua VM is printed. The pool's own keys (``MEMORY USAGE``) are much smaller and held tighter, to
max(64 KiB, 10%) (``--max-pool-growth-kib``): their size is fixed by the pool (slots, labels,
one write token per client); only their integers' encodings widen as counts grow, a few KiB,
while a leak of 3 bytes per write (>20,000 writes a minute) exceeds 64 KiB.

Exits 1 when an outcome or failure was lost (or refused), no task was evicted, a checkpoint
failed its checks, or memory grew beyond the bound; 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import queue as queue_module
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from soak_report import (
    MIB,
    RedisProbe,
    SoakReport,
    checkpoint_problems,
    judge,
    restore_problems,
)
from soak_worker import STARTUP_TIMEOUT_S, WorkerReport, rss_bytes, worker_main

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
)

__all__ = ["MIB", "SoakReport", "WorkerReport", "run_soak"]

FINISH_GRACE_S = 120.0  # after the duration, before workers still running are killed


def soak_generator() -> BucketedTaskGenerator.Config:
    """Many labels, but bounded: 10 x 8 float bins x 3 values = 240 labels."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": "soak", "difficulty": 0.0, "speed": 0.0, "layout": "a"}
        ),
        buckets={
            "difficulty": Span(0.0, 1.0, bins=10),
            "speed": Span(0.5, 2.5, bins=8),
            "layout": ["open", "maze", "rooms"],
        },
    )


def soak_config(
    session_id: str, backend_url: str | None, pool_size: int, seed: int
) -> CurriculumConfig:
    """The soak's learning-progress config (default parameters) for ``session_id``."""
    return CurriculumConfig(
        task_generator=soak_generator(),
        num_active_tasks=pool_size,
        algorithm_config=LearningProgressConfig(session_id=session_id, backend_url=backend_url),
        seed=seed,
    )


def run_soak(
    duration_s: float,
    backend_url: str | None = None,
    workers: int = 4,
    pool_size: int = 64,
    *,
    session_id: str | None = None,
    checkpoint_every_s: float = 5.0,
    stats_every_s: float = 2.0,
    warmup_fraction: float = 0.1,
    max_growth_mib: float = 8.0,
    max_growth_fraction: float = 0.10,
    max_pool_growth_kib: float = 64.0,
    failure_rate: float = 0.001,
    check_server_memory: bool = True,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> SoakReport:
    """Run a soak of ``workers`` spawned processes on one pool for ``duration_s`` seconds.

    ``backend_url`` None is /dev/shm. The pool and every scratch session are removed at the end,
    whatever happens. Returns the report; ``report.problems`` lists every check that failed.
    """
    log = log or (lambda _message: None)
    session_id = session_id or f"soak-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    warmup_s = duration_s * warmup_fraction
    report = SoakReport(
        backend=backend_url or "/dev/shm",
        duration_s=duration_s,
        workers=workers,
        pool_size=pool_size,
        warmup_s=warmup_s,
        max_growth_mib=max_growth_mib,
        max_growth_fraction=max_growth_fraction,
        max_pool_growth_kib=max_pool_growth_kib,
        server_memory_checked=check_server_memory,
    )
    config = soak_config(session_id, backend_url, pool_size, seed)
    started_wall = time.monotonic()
    curriculum = Curriculum(config)
    probe = RedisProbe(backend_url, session_id) if backend_url else None
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=worker_main,
            args=(curriculum, i, seed + 1 + i, duration_s, warmup_s, failure_rate, start, results),
            daemon=True,
            name=f"soak-worker-{i}",
        )
        for i in range(workers)
    ]
    try:
        for proc in procs:
            proc.start()
        ready: set[int] = set()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(ready) < workers:
            kind, index, payload = _next_message(results, procs, deadline)
            if kind == "error":
                raise RuntimeError(f"worker {index} failed before the start:\n{payload}")
            ready.add(index)
        log(f"{report.backend}: {workers} workers ready, soaking for {duration_s:g} s")
        start.set()
        began = time.monotonic()
        warm_at, deadline = began + warmup_s, began + duration_s + FINISH_GRACE_S
        # the first checkpoint and stats() come before the warm-up ends, so that the parent's
        # one-time allocations (scratch pools, checkpoint encoding) are not counted as growth
        next_checkpoint = began + min(checkpoint_every_s, warmup_s) / 2
        next_stats = began + min(stats_every_s, warmup_s) / 4
        done: dict[int, WorkerReport] = {}
        while len(done) < workers:
            now = time.monotonic()
            if not report.parent_rss_warm and now >= warm_at:
                report.parent_rss_warm = rss_bytes()
                if probe:
                    report.redis_warm = probe.sample()
            if probe and report.redis_warm:
                report.redis_peak_used = max(report.redis_peak_used, probe.sample().used_memory)
            if now >= next_stats:
                curriculum.stats()
                report.stats_calls += 1
                next_stats = now + stats_every_s
            if now >= next_checkpoint:
                _checkpoint(curriculum, config, session_id, report, log)
                next_checkpoint = now + checkpoint_every_s
            try:
                kind, index, payload = _next_message(results, procs, deadline, wait_s=0.2)
            except queue_module.Empty:
                continue
            if kind == "error":
                raise RuntimeError(f"worker {index} failed:\n{payload}")
            done[index] = payload
            log(f"{report.backend}: worker {index} done, {payload.outcomes:,} outcomes")
        report.run_s = time.monotonic() - began
        report.worker_reports = [done[i] for i in range(workers)]
        for proc in procs:
            proc.join(timeout=30)
            if proc.exitcode != 0:
                report.problems.append(f"worker pid {proc.pid} exited with {proc.exitcode}")
        _checkpoint(curriculum, config, session_id, report, log)  # the final one
        stats = curriculum.stats()
        report.stats_calls += 1
        report.parent_rss_end = rss_bytes()
        report.parent_rss_warm = report.parent_rss_warm or report.parent_rss_end
        if probe:
            report.redis_end = probe.sample()
            report.redis_warm = report.redis_warm or report.redis_end
            report.redis_peak_used = max(report.redis_peak_used, report.redis_end.used_memory)
        report.num_completed = int(stats["curriculum/num_completed"])
        report.num_failures = int(stats["curriculum/num_failures"])
        report.num_evicted = int(stats["curriculum/num_evicted"])
        report.num_late = int(stats["curriculum/num_late_outcomes"])
        report.num_labels = int(stats["curriculum/num_labels"])
        judge(report)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
        results.close()
        if probe:
            probe.close()
        with contextlib.suppress(Exception):
            curriculum.destroy()
        report.wall_s = time.monotonic() - started_wall
    return report


def _next_message(
    results: Any, procs: list[Any], deadline: float, wait_s: float = 0.5
) -> tuple[str, int, Any]:
    """The next worker message; raises when a worker died silently or time ran out, and
    queue.Empty after ``wait_s`` otherwise (only when ``wait_s`` is short: the caller loops)."""
    while True:
        try:
            return results.get(timeout=wait_s)
        except queue_module.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a worker died without reporting (exit codes {dead})") from None
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not finish in time") from None
            if wait_s < 0.5:
                raise


def _checkpoint(
    curriculum: Curriculum,
    config: CurriculumConfig,
    session_id: str,
    report: SoakReport,
    log: Callable[[str], None],
) -> None:
    """Take a checkpoint, check it, restore it into a scratch session and compare."""
    state = curriculum.get_state()
    report.checkpoints += 1
    number = report.checkpoints
    problems = checkpoint_problems(state)
    problems += restore_problems(config, state, f"{session_id}-scratch{number}")
    if problems:
        report.problems += [f"checkpoint {number}: {problem}" for problem in problems]
    else:
        report.restores += 1
    log(
        f"{report.backend}: checkpoint {number}: {state['counters']['num_completed']:,} "
        f"outcomes, {state['counters']['num_evicted']:,} evictions"
        + (f", PROBLEMS {problems}" if problems else ", restored and equal")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--backend-url", default=None, help="redis://... (default: the /dev/shm pool)"
    )
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--pool-size", type=int, default=64, help="active tasks (default 64)")
    parser.add_argument("--checkpoint-every", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--stats-every", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.1,
        help="memory is measured from this share of the duration on (default 0.1)",
    )
    parser.add_argument(
        "--max-growth-mib",
        type=float,
        default=8.0,
        help="memory may grow by max(this, --max-growth-fraction of it) after warm-up (default 8)",
    )
    parser.add_argument("--max-growth-fraction", type=float, default=0.10, help="(default 0.10)")
    parser.add_argument(
        "--max-pool-growth-kib",
        type=float,
        default=64.0,
        help="growth floor for the Redis pool's own keys, instead of --max-growth-mib (default 64)",
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.001,
        help="share of episodes reported as failures (default 0.001)",
    )
    parser.add_argument(
        "--no-server-memory-check",
        action="store_true",
        help="print the Redis server's memory but hold only the pool's keys to the bound",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run_soak(
        args.duration,
        args.backend_url,
        args.workers,
        args.pool_size,
        checkpoint_every_s=args.checkpoint_every,
        stats_every_s=args.stats_every,
        warmup_fraction=args.warmup_fraction,
        max_growth_mib=args.max_growth_mib,
        max_growth_fraction=args.max_growth_fraction,
        max_pool_growth_kib=args.max_pool_growth_kib,
        failure_rate=args.failure_rate,
        check_server_memory=not args.no_server_memory_check,
        seed=args.seed,
        log=lambda message: print(message, flush=True),
    )
    print()
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
