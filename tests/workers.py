"""Helpers for tests that run real processes: run workers, record placements, audit the pool.

Worker functions are pickled by name, so they (and :func:`_worker_entry`, which runs them) live
at module level in importable modules: ``spawn`` children import them again. A worker is called
as ``target(index, *args)`` and reports its return value (or its traceback) through a queue;
every wait is bounded.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue as queue_module
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from backends.base import PoolSnapshot
from backends.layout import EMPTY_TASK
from curriculum import Curriculum

WORKER_TIMEOUT_S = 90.0


# -- running workers ----------------------------------------------------------------------------


def _worker_entry(
    target: Callable[..., Any], index: int, results: Any, args: tuple[Any, ...]
) -> None:
    try:
        payload = target(index, *args)
    except BaseException:  # report every failure (assertions included) to the parent
        results.put((index, False, traceback.format_exc()))
    else:
        results.put((index, True, payload))


def run_workers(
    target: Callable[..., Any],
    args_per_worker: Sequence[tuple[Any, ...]],
    *,
    ctx: Any = None,
    while_waiting: Callable[[], None] | None = None,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> list[Any]:
    """Run ``target(index, *args)`` in one process per args tuple; their return values, in order.

    Processes come from ``ctx`` (a ``multiprocessing`` context; ``spawn`` when None).
    ``while_waiting`` is called repeatedly in the parent while the workers run. Raises
    AssertionError with the worker's traceback when one fails, and never waits past ``timeout_s``:
    workers still alive then are killed.
    """
    ctx = ctx or mp.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_entry, args=(target, i, results, args), daemon=True)
        for i, args in enumerate(args_per_worker)
    ]
    payloads: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        for proc in procs:
            proc.start()
        while len(payloads) < len(procs):
            if while_waiting is not None:
                while_waiting()
            try:
                index, ok, payload = results.get(timeout=0.005 if while_waiting else 0.2)
            except queue_module.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not dead, f"a worker died without reporting (exit codes {dead})"
                assert time.monotonic() < deadline, f"workers did not finish in {timeout_s} s"
                continue
            assert ok, f"worker {index} failed:\n{payload}"
            payloads[index] = payload
        for proc in procs:
            proc.join(timeout=max(deadline - time.monotonic(), 1.0))
            assert not proc.is_alive(), f"worker pid {proc.pid} did not exit"
            assert proc.exitcode == 0, f"worker pid {proc.pid} exited with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        results.close()
    return [payloads[i] for i in range(len(procs))]


# -- inside a worker ----------------------------------------------------------------------------


def open_handle(handle: Curriculum | bytes) -> Curriculum:
    """The curriculum a worker was given: inherited/pickled by multiprocessing, or pickled bytes."""
    return pickle.loads(handle) if isinstance(handle, bytes) else handle


def record(cur: Curriculum, n: int, score: float = 0.5) -> None:
    """Play ``n`` episodes, each scoring ``score``."""
    for _ in range(n):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, score)


class PlacementLog:
    """Records, in one process, every task its backend placed: creations and CAS replacements."""

    def __init__(self, backend: Any) -> None:
        self.created: list[tuple[int, int, int]] = []  # (slot, task_id, label_id)
        self.replaced: list[tuple[int, int, int, int]] = []  # (slot, old_id, new_id, label_id)
        self.cas_failures = 0
        create, replace = backend.create_task, backend.replace_task

        def create_task(task_id: int, label_id: int, seq: int) -> int | None:
            slot = create(task_id, label_id, seq)
            if slot is not None:
                self.created.append((slot, task_id, label_id))
            return slot

        def replace_task(slot: int, expected: int, task_id: int, label_id: int, seq: int) -> bool:
            done = replace(slot, expected, task_id, label_id, seq)
            if done:
                self.replaced.append((slot, expected, task_id, label_id))
            else:
                self.cas_failures += 1
            return done

        backend.create_task = create_task  # instance attributes shadow the methods
        backend.replace_task = replace_task

    def report(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "replaced": self.replaced,
            "cas_failures": self.cas_failures,
        }


# -- audits -------------------------------------------------------------------------------------


def audit_placements(
    snapshot: PoolSnapshot, reports: Sequence[dict[str, Any]], capacity: int
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int, int]]]:
    """Check that the workers' placements (:class:`PlacementLog` reports) explain the pool
    (``snapshot``, taken after they finished) exactly: each slot created once, each task evicted
    at most once, and every slot's replacements form one chain ending at its task.

    Returns every worker's creations and replacements, merged.
    """
    created = [c for r in reports for c in r["created"]]
    replaced = [c for r in reports for c in r["replaced"]]
    counters = snapshot.counters
    final_ids = snapshot.rows["task_id"]

    new_ids = [t for _, t, _ in created] + [t for _, _, t, _ in replaced]
    assert len(set(new_ids)) == len(new_ids), "a task id was placed twice"
    assert sorted(slot for slot, _, _ in created) == list(range(capacity)), (
        "every slot must be claimed by exactly one create_task"
    )
    evicted = [old for _, old, _, _ in replaced]
    assert len(set(evicted)) == len(evicted), "a task was evicted twice (double eviction)"

    next_in_slot = {(slot, old): new for slot, old, new, _ in replaced}
    chained = 0
    for slot, first, _ in created:
        task_id = first
        while (slot, task_id) in next_in_slot:
            task_id = next_in_slot[(slot, task_id)]
            chained += 1
        assert task_id == final_ids[slot], f"slot {slot}: chain ends at {task_id}"
    assert chained == len(replaced), "replacements outside any slot's chain of owners"

    assert counters["num_evicted"] == len(replaced)
    assert counters["num_created"] == len(created) + len(replaced)
    assert counters["num_created"] - capacity == counters["num_evicted"]
    assert counters["epoch_evicted"] == counters["num_evicted"]
    assert counters["num_active"] == capacity
    active_ids = final_ids[final_ids != EMPTY_TASK]
    assert len(active_ids) == capacity
    assert len(set(active_ids.tolist())) == capacity, "a task owns two slots"
    return created, replaced
