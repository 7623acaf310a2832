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
import random
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
)
from curriculum.errors import UnknownTaskError

MIB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
STARTUP_TIMEOUT_S = 180.0  # spawned workers import numpy, pydantic, redis on a loaded machine
FINISH_GRACE_S = 120.0  # after the duration, before workers still running are killed


# -- measuring ------------------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size now (/proc/self/statm; the peak where there is no /proc)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except OSError:  # not Linux: the peak RSS is the best there is
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class RedisMemory:
    """What the Redis server holds: everything, its Lua VM, and the pool's own keys."""

    used_memory: int
    lua_vm: int
    pool_keys: int


class RedisProbe:
    """Reads the memory of a Redis server and of one pool's keys (read-only)."""

    def __init__(self, url: str, session_id: str) -> None:
        from backends.redis_backend import connect, session_keys

        self.client = connect(url)
        self.keys = session_keys(session_id)

    def sample(self) -> RedisMemory:
        info = self.client.info("memory")
        nodes = (
            [info] if "used_memory" in info else [v for v in info.values() if isinstance(v, dict)]
        )
        used = sum(int(node.get("used_memory", 0)) for node in nodes)
        lua = sum(
            int(node.get("used_memory_vm_eval", node.get("used_memory_lua", 0))) for node in nodes
        )
        pool = sum(int(self.client.memory_usage(key, samples=0) or 0) for key in self.keys)
        return RedisMemory(used, lua, pool)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


# -- the pool -------------------------------------------------------------------------------------


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


# -- a worker -------------------------------------------------------------------------------------


@dataclass
class WorkerReport:
    """What one worker process reported and measured."""

    index: int
    pid: int
    outcomes: int = 0  # outcomes reported (accepted by update_task_performance[_batch])
    failures: int = 0  # report_task_failure calls accepted
    refused: int = 0  # outcomes and failures refused with UnknownTaskError (lost)
    refusals: list[str] = field(default_factory=list)  # the first few messages
    tasks: int = 0  # get_task calls
    single_calls: int = 0
    batch_calls: int = 0
    loop_s: float = 0.0
    rss_start: int = 0
    rss_warm: int = 0
    rss_mid: int = 0  # halfway between the warm-up and the end: a leak grows on after it
    rss_end: int = 0
    rss_peak: int = 0  # highest sample after the warm-up


def _score(rng: random.Random, task_id: int) -> float:
    """A random score: a Bernoulli draw at a success rate fixed per task, or a uniform one."""
    if rng.random() < 0.5:
        return float(rng.random() < (task_id % 97) / 96)
    return rng.random()


def _play(
    curriculum: Curriculum,
    index: int,
    seed: int,
    duration_s: float,
    warmup_s: float,
    failure_rate: float,
    start: Any,
) -> WorkerReport:
    """The worker's loop; returns its counts and RSS samples."""
    rng = random.Random(seed)
    report = WorkerReport(index=index, pid=os.getpid(), rss_start=rss_bytes())
    if not start.wait(timeout=STARTUP_TIMEOUT_S):
        raise RuntimeError("the parent never started the soak")
    began = time.monotonic()
    warm_at, end_at, next_sample = began + warmup_s, began + duration_s, began + warmup_s
    mid_at = (warm_at + end_at) / 2

    def refuse(exc: UnknownTaskError, count: int) -> None:
        report.refused += count
        if len(report.refusals) < 5:
            report.refusals.append(str(exc))

    while (now := time.monotonic()) < end_at:
        if now >= next_sample:
            rss = rss_bytes()
            if not report.rss_warm and now >= warm_at:
                report.rss_warm = rss
            if not report.rss_mid and now >= mid_at:
                report.rss_mid = rss
            report.rss_peak = max(report.rss_peak, rss)
            next_sample = now + 1.0
        tasks = [curriculum.get_task() for _ in range(rng.randint(1, 32))]
        report.tasks += len(tasks)
        for task in tasks:
            task.get_env_cfg()  # what a trainer does with a task: build its env config
        if rng.random() < failure_rate * len(tasks):
            failed = tasks.pop(rng.randrange(len(tasks)))
            try:
                curriculum.report_task_failure(failed.task_id)
                report.failures += 1
            except UnknownTaskError as exc:
                refuse(exc, 1)
        ids = [task.task_id for task in tasks]
        scores = [_score(rng, task_id) for task_id in ids]
        if rng.random() < 0.5:
            report.batch_calls += 1
            try:
                curriculum.update_task_performance_batch(ids, scores)
                report.outcomes += len(ids)
            except UnknownTaskError as exc:  # the whole batch is refused
                refuse(exc, len(ids))
        else:
            for task_id, score in zip(ids, scores, strict=True):
                report.single_calls += 1
                try:
                    curriculum.update_task_performance(task_id, score)
                    report.outcomes += 1
                except UnknownTaskError as exc:
                    refuse(exc, 1)
    report.loop_s = time.monotonic() - began
    report.rss_end = rss_bytes()
    report.rss_warm = report.rss_warm or report.rss_end  # a run shorter than one sample
    report.rss_mid = report.rss_mid or report.rss_end
    report.rss_peak = max(report.rss_peak, report.rss_end)
    return report


def _worker_main(
    curriculum: Curriculum,
    index: int,
    seed: int,
    duration_s: float,
    warmup_s: float,
    failure_rate: float,
    start: Any,
    results: Any,
) -> None:
    """A spawned worker: attached to the pool by unpickling ``curriculum``; reports through
    ``results`` ("ready", then its report or its traceback)."""
    try:
        results.put(("ready", index, None))
        report = _play(curriculum, index, seed, duration_s, warmup_s, failure_rate, start)
        curriculum.close()  # writes what is still buffered
        results.put(("done", index, report))
    except BaseException:  # every failure goes to the parent, which reports it
        results.put(("error", index, traceback.format_exc()))


# -- checkpoints ----------------------------------------------------------------------------------

# label table field -> the pool counter that equals its total over every label (live rows added)
LABEL_COUNTERS = {
    "completions": "num_completed",
    "samples": "num_scheduled",
    "failures": "num_failures",
    "created": "num_created",
    "evicted": "num_evicted",
    "late": "num_late_outcomes",
}
ROW_FIELDS = {"completions": "n_outcomes", "samples": "n_samples", "failures": "n_failures"}


def checkpoint_problems(state: dict[str, Any]) -> list[str]:
    """What is inconsistent inside one checkpoint (it is one atomic copy of the pool)."""
    counters, rows, labels = state["counters"], state["rows"], state["labels"]
    live = np.asarray(rows["task_id"]) >= 0
    problems = []
    for label_field, counter in LABEL_COUNTERS.items():
        total = int(np.sum(labels[label_field]))
        if label_field in ROW_FIELDS:
            total += int(np.asarray(rows[ROW_FIELDS[label_field]])[live].sum())
        if total != counters[counter]:
            problems.append(f"labels' {label_field} total {total} != {counter} {counters[counter]}")
    active = counters["num_created"] - counters["num_evicted"]
    if not active == counters["num_active"] == int(live.sum()):
        problems.append(
            f"num_created - num_evicted = {active}, num_active {counters['num_active']}, "
            f"{int(live.sum())} live rows"
        )
    return problems


def restore_problems(config: CurriculumConfig, state: dict[str, Any], session_id: str) -> list[str]:
    """Load ``state`` into a scratch session; what differs between it and the checkpoint."""
    algorithm = config.algorithm_config.model_copy(update={"session_id": session_id})
    scratch = Curriculum(config.model_copy(update={"algorithm_config": algorithm}))
    try:
        scratch.load_state(state)
        back = scratch.get_state()
        stats = scratch.stats()
    finally:
        scratch.destroy()
    problems = [f"restored {key} differ" for key in state if back.get(key) != state[key]]
    for counter in ("num_completed", "num_failures", "num_evicted", "num_created"):
        if stats[f"curriculum/{counter}"] != state["counters"][counter]:
            problems.append(
                f"restored stats {counter} {stats[f'curriculum/{counter}']:.0f} "
                f"!= checkpoint {state['counters'][counter]}"
            )
    return problems


# -- the soak -------------------------------------------------------------------------------------


@dataclass
class SoakReport:
    """Everything a soak measured, and the problems it found (none: it passed)."""

    backend: str
    duration_s: float
    workers: int
    pool_size: int
    warmup_s: float
    max_growth_mib: float
    max_growth_fraction: float
    max_pool_growth_kib: float
    worker_reports: list[WorkerReport] = field(default_factory=list)
    parent_rss_warm: int = 0
    parent_rss_end: int = 0
    redis_warm: RedisMemory | None = None
    redis_end: RedisMemory | None = None
    redis_peak_used: int = 0
    server_memory_checked: bool = True
    num_completed: int = 0
    num_failures: int = 0
    num_evicted: int = 0
    num_late: int = 0
    num_labels: int = 0
    checkpoints: int = 0
    restores: int = 0
    stats_calls: int = 0
    run_s: float = 0.0  # from the start signal until every worker reported
    wall_s: float = 0.0  # everything, spawning and clean-up included
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def outcomes(self) -> int:
        return sum(w.outcomes for w in self.worker_reports)

    @property
    def failures(self) -> int:
        return sum(w.failures for w in self.worker_reports)

    @property
    def refused(self) -> int:
        return sum(w.refused for w in self.worker_reports)

    @property
    def lost(self) -> int:
        """Outcomes and failures reported but not counted by the pool, or refused."""
        return (
            abs(self.outcomes - self.num_completed)
            + abs(self.failures - self.num_failures)
            + self.refused
        )

    def bound(self, warm: int, floor: float | None = None) -> int:
        """The growth allowed after the warm-up for something of ``warm`` bytes then: the larger
        of ``floor`` (default ``max_growth_mib``) and ``max_growth_fraction`` of ``warm``."""
        floor = self.max_growth_mib * MIB if floor is None else floor
        return int(max(floor, self.max_growth_fraction * warm))

    def memory_rows(self) -> list[tuple[str, int, int, int | None]]:
        """(what, bytes at warm-up, bytes at end, growth allowed or None: not checked) for
        every measured memory."""
        rows: list[tuple[str, int, int, int | None]] = [
            (f"worker {w.index} (pid {w.pid})", w.rss_warm, w.rss_end, self.bound(w.rss_warm))
            for w in self.worker_reports
        ]
        parent = (self.parent_rss_warm, self.parent_rss_end)
        rows.append((f"parent (pid {os.getpid()})", *parent, self.bound(parent[0])))
        if self.redis_warm and self.redis_end:
            warm, end = self.redis_warm, self.redis_end
            check = self.server_memory_checked
            rows += [
                (
                    "redis used_memory (server)",
                    warm.used_memory,
                    end.used_memory,
                    self.bound(warm.used_memory) if check else None,
                ),
                ("redis Lua VM (server)", warm.lua_vm, end.lua_vm, None),
                (
                    "redis pool keys (MEMORY USAGE)",
                    warm.pool_keys,
                    end.pool_keys,
                    self.bound(warm.pool_keys, self.max_pool_growth_kib * 1024),
                ),
            ]
        return rows

    def table(self) -> str:
        """The report as text."""
        rate = self.outcomes / self.run_s if self.run_s else 0.0
        lines = [
            f"soak on {self.backend}: {self.workers} workers, pool of {self.pool_size} tasks, "
            f"{self.duration_s:g} s (memory measured from the end of the warm-up at "
            f"{self.warmup_s:g} s), run {self.run_s:.1f} s, wall {self.wall_s:.1f} s",
            "",
            f"  {'memory':<34} {'warm-up':>10} {'end':>10} {'growth':>10} {'bound':>10}",
        ]
        for name, warm, end, bound in self.memory_rows():
            over = bound is not None and end - warm > bound
            shown = "    (info)" if bound is None else _size(bound)
            lines.append(
                f"  {name:<34} {_size(warm)} {_size(end)} {_size(end - warm, sign=True)} "
                f"{shown}{'  OVER' if over else ''}"
            )
        if self.redis_end:
            lines.append(f"  {'redis used_memory peak':<34} {'':>10} {_size(self.redis_peak_used)}")
        lines += [
            "",
            f"  {'worker':<8} {'outcomes':>11} {'failures':>9} {'refused':>8} "
            f"{'get_task':>11} {'single':>11} {'batch':>8} {'out/s':>9} {'RSS mid':>9} {'peak':>9}",
        ]
        for w in self.worker_reports:
            lines.append(
                f"  {w.index:<8} {w.outcomes:>11,} {w.failures:>9,} {w.refused:>8,} "
                f"{w.tasks:>11,} {w.single_calls:>11,} {w.batch_calls:>8,} "
                f"{w.outcomes / max(w.loop_s, 1e-9):>9,.0f} {w.rss_mid / MIB:>8.2f}M "
                f"{w.rss_peak / MIB:>8.2f}M"
            )
        lines += [
            "",
            f"  outcomes reported {self.outcomes:,}, num_completed {self.num_completed:,}; "
            f"failures reported {self.failures:,}, num_failures {self.num_failures:,}; "
            f"refused {self.refused:,}; lost {self.lost:,}",
            f"  outcomes/s {rate:,.0f}; evictions {self.num_evicted:,} "
            f"({self.num_evicted / max(self.run_s, 1e-9):,.0f}/s); late outcomes "
            f"{self.num_late:,}; labels {self.num_labels}",
            f"  checkpoints taken {self.checkpoints} (each restored into a scratch session: "
            f"{self.restores} matched); stats() calls {self.stats_calls}",
            "  verdict: " + ("PASS" if self.ok else "FAIL"),
        ]
        lines += [f"    - {problem}" for problem in self.problems]
        return "\n".join(lines)


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
            target=_worker_main,
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
        _judge(report)
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


def _size(size: int, *, sign: bool = False) -> str:
    """A byte count for the table, 10 wide: MiB, or KiB under 1 MiB."""
    plus = "+" if sign else ""
    if abs(size) >= MIB:
        return f"{size / MIB:{plus}9.2f}M"
    return f"{size / 1024:{plus}9.1f}K"


def _judge(report: SoakReport) -> None:
    """Add every failed check to ``report.problems``."""
    if report.outcomes != report.num_completed:
        report.problems.append(
            f"num_completed {report.num_completed:,} != {report.outcomes:,} outcomes reported"
        )
    if report.failures != report.num_failures:
        report.problems.append(
            f"num_failures {report.num_failures:,} != {report.failures:,} failures reported"
        )
    for w in report.worker_reports:
        if w.refused:
            report.problems.append(
                f"worker {w.index}: {w.refused} reports refused (UnknownTaskError), e.g. "
                + "; ".join(w.refusals[:2])
            )
    if report.num_evicted <= 0:
        report.problems.append("no task was evicted")
    if report.checkpoints < 2 or report.restores != report.checkpoints:
        report.problems.append(
            f"{report.checkpoints} checkpoints taken, {report.restores} restored and equal"
        )
    for name, warm, end, bound in report.memory_rows():
        if bound is not None and end - warm > bound:
            report.problems.append(
                f"{name}: memory grew {(end - warm) / MIB:.3f} MiB after the warm-up "
                f"(from {warm / MIB:.3f} MiB), over the bound of {bound / MIB:.3f} MiB"
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
