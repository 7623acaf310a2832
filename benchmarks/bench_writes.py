"""The cost of a /dev/shm write: in a learning-progress run, and per batch size.

1. One process of the noisy student (``benchmarks/students.py``) with the default curriculum,
   every ``record()`` of its /dev/shm pool timed in thread CPU time, with how many of the batch's
   outcomes repeat a slot already in the batch (learning progress concentrates its draws, and
   outcomes on one slot are applied in order). Also the run's wall time and AUC.
2. ``record()`` of batches of 1, 4, 16 and 64 outcomes on random slots of a warm pool of 1,000
   tasks: the minimum and median over 10 repeats of 300 batches (microseconds per batch).

Run it in two checkouts to compare them: it measures the code of the checkout it lives in.
Example: ``python benchmarks/bench_writes.py`` (about 30 s).
"""

from __future__ import annotations

import time

import checkout  # noqa: F401  (this checkout's package)
import numpy as np
from harness import make_config
from quality_runs import Row, run_pool
from students import STUDENTS

from backends.base import WriteBatch
from backends.shared_memory import SharedMemoryBackend
from curriculum import Curriculum

SIZES = (1, 4, 16, 64)
REPEATS, BATCHES = 10, 300


def timed_run() -> None:
    """Section 1: every write of a one-process noisy-student run."""
    costs: list[float] = []
    repeats: list[int] = []
    record = SharedMemoryBackend.record

    def timed(self: SharedMemoryBackend, batch: WriteBatch):  # type: ignore[no-untyped-def]
        started = time.thread_time()
        result = record(self, batch)
        costs.append(time.thread_time() - started)
        repeats.append(len(batch.outcome_slots) - len(set(batch.outcome_slots)))
        return result

    SharedMemoryBackend.record = timed  # type: ignore[method-assign]
    try:
        run = run_pool(Row("LP defaults", "lp"), 0, STUDENTS["noisy"])
    finally:
        SharedMemoryBackend.record = record  # type: ignore[method-assign]
    us = np.array(costs) * 1e6
    print(
        f"1. noisy student, one process, seed 0: {len(us)} writes, CPU per write mean "
        f"{us.mean():.0f} us, median {np.median(us):.0f}, p90 {np.percentile(us, 90):.0f}; "
        f"repeated slots per write mean {np.mean(repeats):.1f}, max {max(repeats)}; "
        f"run {run.seconds:.2f} s, AUC {np.mean(run.mastery):.4f}"
    )


def batch_sizes() -> None:
    """Section 2: record() of random batches, by size."""
    config = make_config(1_000, f"bench-writes-{time.time_ns()}")
    curriculum = Curriculum(config)
    try:
        for _ in range(3_000):  # every slot filled, most tasks warm
            task = curriculum.get_task()
            curriculum.update_task_performance(task.task_id, 0.5)
        curriculum.flush()
        backend = curriculum.backend
        rows = backend.snapshot().rows
        rng = np.random.default_rng(0)
        print("2. record() of random batches, 1,000 tasks (us per batch):")
        for size in SIZES:
            batches = []
            for _ in range(REPEATS * BATCHES):
                slots = rng.integers(0, len(rows), size=size)
                batch = WriteBatch()
                batch.extend_outcomes(
                    slots.tolist(),
                    rows["task_id"][slots].tolist(),
                    rows["label_id"][slots].tolist(),
                    rng.random(size).tolist(),
                    steps=size,
                )
                batches.append(batch)
            per_batch = []
            for r in range(REPEATS):
                started = time.perf_counter()
                for batch in batches[r * BATCHES : (r + 1) * BATCHES]:
                    backend.record(batch)
                per_batch.append((time.perf_counter() - started) / BATCHES * 1e6)
            low, middle = min(per_batch), float(np.median(per_batch))
            print(f"   {size:3d} outcomes: min {low:.0f}, median {middle:.0f}")
    finally:
        curriculum.destroy()


if __name__ == "__main__":
    timed_run()
    batch_sizes()
