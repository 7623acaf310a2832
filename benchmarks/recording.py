"""Outcome-recording workloads of the core and Redis benchmarks: batches of outcomes, the timed
get_task loop, and one or two spawned processes recording into one pool with a loss check."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from harness import (
    Spans,
    best_round_rate,
    completed,
    fill_pool,
    open_pool,
    report_to,
    score_of,
    spawn_workers,
    timed_rounds,
)

from curriculum import Curriculum, CurriculumConfig

Batches = list[tuple[list[int], list[float]]]


def slot_batches(num_tasks: int, batch: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` batches of slots: consecutive chunks of random permutations of the pool."""
    rng = np.random.default_rng(seed)
    needed = batch * count
    slots = np.concatenate([rng.permutation(num_tasks) for _ in range(needed // num_tasks + 1)])
    return list(slots[:needed].reshape(count, batch))


def id_batches(ids: list[int], batch: int, count: int, seed: int) -> Batches:
    """``count`` (task ids, scores) batches as plain lists, as a trainer would pass them."""
    u = np.random.default_rng(seed).random((count, batch))
    out = []
    for slots, row in zip(slot_batches(len(ids), batch, count, seed), u, strict=True):
        chosen = [ids[s] for s in slots.tolist()]
        out.append((chosen, [score_of(t, x) for t, x in zip(chosen, row, strict=True)]))
    return out


def record_batches(curriculum: Curriculum, batches: Batches, calls: int) -> float:
    """Seconds taken by ``calls`` batch-API calls cycling through ``batches``."""
    start = time.perf_counter()
    for i in range(calls):
        ids, scores = batches[i % len(batches)]
        curriculum.update_task_performance_batch(ids, scores)
    return time.perf_counter() - start


def outcome_pairs(ids: list[int], count: int, seed: int) -> list[tuple[int, float]]:
    """``count`` (task id, score) pairs of random tasks, for per-outcome recording."""
    rng = np.random.default_rng(seed)
    picked = [ids[s] for s in rng.integers(0, len(ids), count).tolist()]
    return [(t, score_of(t, x)) for t, x in zip(picked, rng.random(count).tolist(), strict=True)]


def play(curriculum: Curriculum, calls: int, u: np.ndarray, timings: np.ndarray | None) -> None:
    """``calls`` episodes: get_task (timed into ``timings`` if given), then record an outcome."""
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        task = curriculum.get_task()
        if timings is not None:
            timings[i] = clock() - start
        curriculum.update_task_performance(task.task_id, score_of(task.task_id, u[i]))


@dataclass(frozen=True)
class RecordPlan:
    """Sizes of one multi-process recording run."""

    repeats: int  # rounds, all processes starting each at a barrier
    outcomes: int  # per process and round
    batch: int  # outcomes per batch-API call


def _record(
    pool: Curriculum | CurriculumConfig, ids: list[int], plan: RecordPlan, seed: int, barrier: Any
) -> tuple[int, int, Spans]:
    """Warm up, then record ``plan.outcomes`` per round; (sent, per round, spans)."""
    curriculum = pool if isinstance(pool, Curriculum) else Curriculum(pool)  # attaches
    try:
        batches = id_batches(ids, plan.batch, 64, seed)
        record_batches(curriculum, batches, len(batches))  # warm-up: counted, not timed
        calls = plan.outcomes // plan.batch
        spans = timed_rounds(
            lambda: record_batches(curriculum, batches, calls), plan.repeats, barrier
        )
    finally:
        curriculum.close()
    return (len(batches) + calls * plan.repeats) * plan.batch, calls * plan.batch, spans


def record_worker(
    pool: Curriculum | CurriculumConfig,
    ids: list[int],
    plan: RecordPlan,
    seed: int,
    barrier: object,
    queue: object,
) -> None:
    """A spawned worker attached to the pool: unpickled (a Curriculum) or built from the config."""
    report_to(queue, lambda: _record(pool, ids, plan, seed, barrier))


@dataclass
class MultiResult:
    """Aggregate rate of ``procs`` processes and whether every outcome was counted."""

    procs: int
    rate: float
    sent: int
    counted: int
    rows_counted: int
    error: str | None

    @property
    def lossless(self) -> bool:
        """Every outcome sent is in the counter and in the rows (no task was evicted)."""
        return self.error is None and self.sent == self.counted == self.rows_counted

    def check_line(self) -> str:
        """``2 proc: sent ..., num_completed ..., ...: PASS``."""
        verdict = "PASS" if self.lossless else "FAIL"
        return (
            f"  {self.procs} proc: sent {self.sent:,}, num_completed {self.counted:,}, "
            f"sum of row n_outcomes {self.rows_counted:,}: {verdict}"
            + (f" ({self.error})" if self.error else "")
        )


def record_in_processes(
    config: CurriculumConfig, procs: int, plan: RecordPlan, *, pickle_curriculum: bool
) -> MultiResult:
    """``procs`` spawned processes recording into one new pool at once; the best round's rate.

    Each worker gets the pool as a pickled Curriculum (``pickle_curriculum``) or builds its own
    from the config (a new client of its own).
    """
    with open_pool(config) as curriculum:
        ids = fill_pool(curriculum)
        pool = curriculum if pickle_curriculum else config
        args = [(pool, ids, plan, 10 + i) for i in range(procs)]
        results, errors = spawn_workers(record_worker, args)
        counted = completed(curriculum)
        rows_counted = int(curriculum.backend.snapshot().rows["n_outcomes"].sum())
    rate = 0.0 if errors else best_round_rate([r[1] for r in results], [r[2] for r in results])
    sent = sum(r[0] for r in results)
    return MultiResult(procs, rate, sent, counted, rows_counted, "; ".join(errors) or None)
