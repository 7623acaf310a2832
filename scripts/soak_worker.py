"""A soak worker process: plays against the shared pool for the soak's duration, counts what it
reported and samples its own memory (see ``soak.py``)."""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from curriculum import Curriculum
from curriculum.errors import UnknownTaskError

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
STARTUP_TIMEOUT_S = 180.0  # spawned workers import numpy, pydantic, redis on a loaded machine


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


def worker_main(
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
