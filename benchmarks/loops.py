"""The sample-and-report loop ("which task next?", then "how did it go?"), driven through our
curriculum, and measured in one and in two spawned processes on one pool.

Every loop draws its Bernoulli score (success rate ``(task_id % 997) / 997``) from pre-drawn
uniforms, so the loops of two implementations do the same work.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from harness import chunk_rate, evicted, fill_and_warm, open_pool, report_to, spawn_workers
from lp_baseline import (
    U_MASK,
    BaselineDriver,
    InProcessPool,
    NumpyLearningProgress,
    uniforms,
    warm_baseline,
)

from curriculum import Curriculum, CurriculumConfig, LearningProgressConfig


class CurriculumDriver:
    """The loop through our Curriculum: ``get_task``, then ``update_task_performance``."""

    def __init__(self, curriculum: Curriculum, seed: int) -> None:
        """Drive ``curriculum`` with scores drawn from ``seed``."""
        self.curriculum = curriculum
        self.u = uniforms(seed)
        self.position = 0

    def play(self, count: int) -> None:
        """``count`` episodes."""
        get_task = self.curriculum.get_task
        report, u = self.curriculum.update_task_performance, self.u
        for k in range(self.position, self.position + count):
            task_id = get_task().task_id
            report(task_id, 1.0 if u[k & U_MASK] * 997 < task_id % 997 else 0.0)
        self.position += count

    def play_timed(self, count: int, timings: list[int], cpu: list[int] | None = None) -> None:
        """``count`` episodes; the nanoseconds of each ``get_task`` call go to ``timings``, and
        the CPU time this thread spent in it to ``cpu`` if given (read outside the timed span)."""
        curriculum, u, clock = self.curriculum, self.u, time.perf_counter_ns
        cpu_clock = time.thread_time_ns
        for k in range(self.position, self.position + count):
            if cpu is not None:
                cpu_start = cpu_clock()
            start = clock()
            task = curriculum.get_task()
            timings.append(clock() - start)
            if cpu is not None:
                cpu.append(cpu_clock() - cpu_start)
            task_id = task.task_id
            curriculum.update_task_performance(
                task_id, 1.0 if u[k & U_MASK] * 997 < task_id % 997 else 0.0
            )
        self.position += count

    def evicted(self) -> int:
        """The pool's eviction counter."""
        return evicted(self.curriculum)


BASELINE = "baseline"  # the name of the in-process loop in the process measurements
PING = "redis ping"  # the name of the Redis round-trip loop in the process measurements


class RedisPinger:
    """One PING and its reply per loop: what a second process adds to a client's round trips to
    one Redis server on this machine (the server shares the cores with the clients)."""

    def __init__(self, url: str) -> None:
        """A client of the Redis at ``url``."""
        import redis

        self.client = redis.Redis.from_url(url)
        self.client.ping()

    def play(self, count: int) -> None:
        """``count`` round trips."""
        ping = self.client.ping
        for _ in range(count):
            ping()


@dataclass(frozen=True)
class ProcessPlan:
    """Sizes of the one-and-two-process measurement."""

    num_tasks: int
    rounds: int  # each round: every loop, 1 process then 2 (or 2 then 1, alternating)
    chunk_s: float  # the length of one phase
    warm_loops: int = 2000  # untimed loops per worker and loop before the rounds
    baseline_kind: type[InProcessPool] = NumpyLearningProgress


def _process_rounds(
    index: int,
    configs: dict[str, CurriculumConfig],
    baseline: LearningProgressConfig | None,
    plan: ProcessPlan,
    ping_url: str | None,
    barrier: object,
) -> list[tuple[int, str, int, float, float, int]]:
    """One worker's phases: (round, loop, processes, start, end, loops played)."""
    curricula = [Curriculum(config) for config in configs.values()]  # the pools exist
    players = {
        name: CurriculumDriver(c, seed=100 + index).play
        for name, c in zip(configs, curricula, strict=True)
    }
    if baseline is not None:
        impl = warm_baseline(plan.num_tasks, baseline, 200 + index, plan.baseline_kind)
        players[BASELINE] = BaselineDriver(impl, 300 + index).play
    if ping_url is not None:
        players[PING] = RedisPinger(ping_url).play
    for play in players.values():
        play(plan.warm_loops)
    spans = []
    names = list(players)
    for r in range(plan.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            for procs in (1, 2) if r % 2 == 0 else (2, 1):
                barrier.wait(timeout=120)  # type: ignore[attr-defined]
                if index < procs:
                    start = time.monotonic()
                    rate = chunk_rate(players[name], plan.chunk_s)
                    end = time.monotonic()
                    spans.append((r, name, procs, start, end, round(rate * (end - start))))
    for curriculum in curricula:
        curriculum.close()
    return spans


def process_worker(
    index: int,
    configs: dict[str, CurriculumConfig],
    baseline: LearningProgressConfig | None,
    plan: ProcessPlan,
    ping_url: str | None,
    barrier: object,
    queue: object,
) -> None:
    """A spawned worker: attaches to each pool by session id and plays its phases."""
    report_to(queue, lambda: _process_rounds(index, configs, baseline, plan, ping_url, barrier))


ProcessRates = dict[tuple[str, int], list[float | None]]  # (loop, processes) -> loops/s per round


def measure_processes(
    configs: dict[str, CurriculumConfig],
    baseline: LearningProgressConfig | None,
    plan: ProcessPlan,
    ping_url: str | None = None,
) -> tuple[ProcessRates, str | None]:
    """Loops/s of 1 process and of 2 processes together on each pool (created, warmed and
    destroyed here), and of the in-process baseline in 1 and 2 independent processes (what the
    machine gives a second process) when ``baseline`` is given, and of PING round trips to the
    Redis at ``ping_url`` (what the machine gives a second Redis client) when given. Every phase
    starts at a barrier; a 2-process phase runs from the first start to the last end."""
    with contextlib.ExitStack() as stack:
        for config in configs.values():
            fill_and_warm(stack.enter_context(open_pool(config)), seed=7)
        args = [(i, configs, baseline, plan, ping_url) for i in range(2)]
        results, errors = spawn_workers(process_worker, args, timeout_s=600)
    if errors:
        return {}, "; ".join(errors)
    phases: dict[tuple[int, str, int], list[tuple[float, float, int]]] = {}
    for spans in results:
        for r, name, procs, start, end, loops in spans:
            phases.setdefault((r, name, procs), []).append((start, end, loops))
    rates: ProcessRates = {}
    for (r, name, procs), spans in sorted(phases.items()):
        total = sum(loops for _, _, loops in spans)
        wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
        rates.setdefault((name, procs), [None] * plan.rounds)[r] = total / wall
    return rates, None
