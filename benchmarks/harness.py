"""What every benchmark shares: the benchmark pool and its warm-up, timing loops, percentiles,
spawned worker processes at a barrier, Redis servers and clean-up, goals and tables.

A benchmark compares what it measures with a baseline measured in the same run (this VM's speed
moves by tens of percent from minute to minute), prints every goal with PASS or MISS and never
raises for a missed goal; its exit status is 1 only when an outcome was lost or a worker failed.
Benchmarks run as scripts (``python benchmarks/bench_x.py``): this directory is first on
``sys.path``, so they import this module by name, and so do their spawned workers.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import checkout  # noqa: F401  (this checkout's code, not the installed one)
import numpy as np

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
)

WRITE_BATCH = CurriculumConfig.model_fields["write_batch_size"].default
MAX_AGE_S = CurriculumConfig.model_fields["snapshot_max_age_s"].default

# -- the benchmark pool ---------------------------------------------------------------------------


def bench_generator() -> BucketedTaskGenerator.Config:
    """The benchmarks' task space: labels by difficulty and size buckets."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "bench"}),
        buckets={"difficulty": Span(0.0, 1.0), "size": Span(8, 64)},
    )


def make_config(
    num_tasks: int,
    session_id: str,
    *,
    backend_url: str | None = None,
    lp: dict[str, Any] | None = None,
    **overrides: Any,
) -> CurriculumConfig:
    """A learning-progress pool of ``num_tasks`` (``LearningProgressConfig`` defaults, changed by
    ``lp``) at ``session_id`` on /dev/shm (``backend_url`` None) or Redis; seed 0."""
    algorithm = LearningProgressConfig(session_id=session_id, backend_url=backend_url, **(lp or {}))
    return CurriculumConfig(
        task_generator=bench_generator(),
        num_active_tasks=num_tasks,
        algorithm_config=algorithm,
        seed=0,
        **overrides,
    )


def score_of(task_id: int, u: float) -> float:
    """A Bernoulli outcome with a success rate fixed per task, ``(id >> 8) % 1000 / 1000``."""
    return 1.0 if u < (task_id >> 8) % 1000 / 1000 else 0.0


def bernoulli(task_id: int, u: float) -> float:
    """A Bernoulli outcome with a success rate fixed per task, ``(id % 997) / 997``.

    The sample-and-report loops inline it as ``1.0 if u * 997 < task_id % 997 else 0.0``.
    """
    return 1.0 if u * 997 < task_id % 997 else 0.0


def fill_pool(curriculum: Curriculum) -> list[int]:
    """Create every task of an empty pool (no outcomes, so no evictions); their ids by slot."""
    by_slot = {}
    for _ in range(curriculum.config.num_active_tasks):
        task = curriculum.get_task()
        by_slot[task.slot] = task.task_id
    curriculum.flush()
    return [by_slot[slot] for slot in sorted(by_slot)]


def age_batches(
    ids: list[int], low: int, high: int, score: Callable[[int, float], float], seed: int
) -> Iterator[tuple[list[int], list[float]]]:
    """Batches of (task ids, scores) that give each task an age (outcomes) drawn from
    ``[low, high)``, oldest outcomes first."""
    rng = np.random.default_rng(seed)
    ages = rng.integers(low, high, len(ids)).tolist()
    for age in range(max(ages, default=0)):
        chosen = [t for t, a in zip(ids, ages, strict=True) if a > age]
        yield chosen, [score(t, x) for t, x in zip(chosen, rng.random(len(chosen)), strict=True)]


def prewarm(curriculum: Curriculum, seed: int) -> list[int]:
    """Fill the pool, then give its tasks 0-9 outcomes each (uniform ages) with the batch API."""
    ids = fill_pool(curriculum)
    eviction_age = curriculum.config.algorithm_config.min_presentations_for_eviction
    for chosen, scores in age_batches(ids, 0, eviction_age, score_of, seed):
        curriculum.update_task_performance_batch(chosen, scores)
    return ids


def fill_and_warm(curriculum: Curriculum, seed: int) -> list[int]:
    """A full pool whose every task is warm but not yet evictable (3-9 outcomes by default)."""
    ids = fill_pool(curriculum)
    lp = curriculum.config.algorithm_config
    low, high = lp.min_samples_for_lp, lp.min_presentations_for_eviction
    for chosen, scores in age_batches(ids, low, high, bernoulli, seed):
        curriculum.update_task_performance_batch(chosen, scores)
    return ids


@contextlib.contextmanager
def open_pool(config: CurriculumConfig) -> Iterator[Curriculum]:
    """A new pool, removed with ``Curriculum.destroy()`` on the way out (also on Redis)."""
    curriculum = Curriculum(config)
    try:
        yield curriculum
    finally:
        curriculum.destroy()


def completed(curriculum: Curriculum) -> int:
    """The pool's count of recorded outcomes."""
    return int(curriculum.stats()["curriculum/num_completed"])


def evicted(curriculum: Curriculum) -> int:
    """The pool's count of evictions."""
    return int(curriculum.stats()["curriculum/num_evicted"])


class CallTimer:
    """Counts and times one method of one object (shadowed on the instance; < 1 us per call)."""

    def __init__(self, owner: object, name: str) -> None:
        """Wrap ``owner.name``."""
        self.calls = 0
        self.seconds = 0.0
        self.longest = 0.0
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                self.calls += 1
                self.seconds += took
                self.longest = max(self.longest, took)

        setattr(owner, name, timed)

    def reset(self) -> None:
        """Forget the calls so far."""
        self.calls, self.seconds, self.longest = 0, 0.0, 0.0


# -- timing ---------------------------------------------------------------------------------------

Timed = tuple[Callable[[], float], int]  # a run returning its seconds, and the work it does
Play = Callable[[int], None]  # plays that many episodes
Rates = list[float | None]  # per round; None: not measured in that round
BLOCK = 64  # loops between two looks at the clock
CHUNK_CAP = 4  # a chunk stops after this many times its minimum duration


def best_rate(run: Callable[[], float], work: int, repeats: int) -> float:
    """Best work/s over ``repeats`` timed runs of ``run`` (which returns seconds).

    The best of several runs, as timeit does: the machine is a shared VM whose noise only slows.
    """
    return max(work / run() for _ in range(repeats))


def best_interleaved(runs: dict[str, Timed], repeats: int) -> dict[str, float]:
    """Best rate of each run over ``repeats`` rounds that run each of them once, in turn, so that
    a ratio between two of them is not a ratio between two different minutes of the machine."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, (run, work) in runs.items():
            best[name] = max(best[name], work / run())
    return best


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


@dataclass(frozen=True)
class Percentiles:
    """Latency of a series of calls, in microseconds."""

    calls: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float

    @classmethod
    def of_ns(cls, timings: Sequence[int] | np.ndarray) -> Percentiles:
        """From per-call nanoseconds."""
        micros = np.asarray(timings, dtype=np.float64) / 1000.0
        p50, p90, p99, p999 = np.percentile(micros, [50, 90, 99, 99.9]).tolist()
        return cls(len(micros), p50, p90, p99, p999, float(micros.max()), float(micros.mean()))


# -- spawned processes ----------------------------------------------------------------------------


def report_to(queue: Any, work: Callable[[], Any]) -> None:
    """Run ``work`` in a worker and put ``(result, None)`` or ``(None, error)`` on ``queue``."""
    try:
        queue.put((work(), None))
    except Exception as exc:  # reported to the parent, which fails the check
        queue.put((None, repr(exc)))


def spawn_workers(
    target: Callable[..., None], worker_args: Sequence[tuple], timeout_s: float = 300
) -> tuple[list[Any], list[str]]:
    """Run one spawned process per argument tuple, each called as ``target(*args, barrier,
    queue)`` with a barrier of them all and a queue they answer on (see :func:`report_to`).

    Returns the results of the workers that answered and the errors of those that failed.
    """
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(worker_args)), ctx.Queue()
    workers = [ctx.Process(target=target, args=(*a, barrier, queue)) for a in worker_args]
    for worker in workers:
        worker.start()
    results, errors = [], []
    for _ in workers:
        try:
            result, error = queue.get(timeout=timeout_s)
        except Empty:
            result, error = None, "no result from a worker"
        if error:
            errors.append(error)
        else:
            results.append(result)
    for worker in workers:
        worker.join(timeout=60)
    errors += [f"worker exit code {w.exitcode}" for w in workers if w.exitcode != 0]
    return results, errors


Spans = list[tuple[float, float]]  # (start, end) per round, time.monotonic


def timed_rounds(run: Callable[[], object], repeats: int, barrier: Any) -> Spans:
    """``repeats`` rounds of ``run``, each started with every process at the barrier."""
    spans = []
    for _ in range(repeats):
        barrier.wait(timeout=120)
        start = time.monotonic()
        run()
        spans.append((start, time.monotonic()))
    return spans


def best_round_rate(per_round: Sequence[int], spans: Sequence[Spans]) -> float:
    """Work/s of all processes together in their best round (first start to last end), given
    each process's work per round and its spans."""
    total = sum(per_round)
    rounds = zip(*spans, strict=True)
    return max(total / (max(e for _, e in sp) - min(s for s, _ in sp)) for sp in rounds)


# -- reporting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """One goal: its text (with the measured figure) and whether it was met."""

    text: str
    ok: bool


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """A titled three-column table (measurement, result, ratio)."""
    print(f"\n{title}")
    print(f"  {'measurement':<52} {'result':>18}  {'ratio':>16}")
    for name, value, share in rows:
        print(f"  {name:<52} {value:>18}  {share:>16}")


def print_rows(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A titled table: a wide first column, then right-aligned columns."""
    print(f"\n{title}")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  " + "  ".join(cells).rstrip())


def rate_text(rate: float) -> str:
    """Outcomes per second, in thousands."""
    return f"{rate / 1000:,.0f}k out/s"


def kilo(rate: float | None, unit: str = "") -> str:
    """``12.3k`` (and a unit), or n/a."""
    if rate is None:
        return "n/a"
    text = f"{rate / 1000:,.1f}k" if rate < 100_000 else f"{rate / 1000:,.0f}k"
    return f"{text}{unit}"


def ratio_text(value: Ratio | None, suffix: str = "") -> str:
    """A ratio with its range, or n/a."""
    return "n/a" if value is None else f"{value.text()}{suffix}"


def report_goals(goals: list[Goal], started: float, lossless: bool) -> int:
    """Print PASS/MISS per goal and the run time; exit status 1 only when outcomes were lost."""
    print("\ngoals")
    for goal in goals:
        print(f"  {'PASS' if goal.ok else 'MISS'}  {goal.text}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ntotal time {time.perf_counter() - started:.0f} s; load average at the end {load}")
    return 0 if lossless else 1


def machine_text() -> str:
    """Python, numpy, CPUs and the load average now."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} cpus, load average {load}"
    )


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (dataclasses as dicts, tuple keys joined, numpy as Python)."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {
            " ".join(map(str, k)) if isinstance(k, tuple) else str(k): plain(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path: str | None, benchmark: str, figures: Any, goals: list[Goal]) -> None:
    """Write the figures and goals of a run to ``path`` (``-``: stdout; None: nothing)."""
    if path is None:
        return
    payload = {
        "benchmark": benchmark,
        "machine": machine_text(),
        "argv": sys.argv[1:],
        "figures": plain(figures),
        "goals": [{"goal": g.text, "pass": g.ok} for g in goals],
    }
    text = json.dumps(payload, indent=2, allow_nan=True)
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n")
