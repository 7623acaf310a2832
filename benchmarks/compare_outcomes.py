"""Outcome throughput of the side-by-side benchmark: outcomes into pools of 1,000 tasks per
backend and mode (immediate, buffered, batch API), interleaved with the dict implementation's
per-outcome update (the baseline)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
from harness import BLOCK, Rates, bernoulli, chunk_rate, completed, fill_pool, interleave, open_pool
from lp_baseline import U_MASK, DictLearningProgress

from curriculum import Curriculum, CurriculumConfig, LearningProgressConfig

BIG_BATCH = 1024
RECORD_TASKS = 1_000  # pool size of the throughput and 2-process sections
DICT_UPDATE = "dict update"
OUTCOME_MODES = {  # name -> (config overrides, batch API)
    "immediate": ({"write_batch_size": 1}, False),
    "buffered": ({}, False),
    "batch": ({}, True),
}


class Recorder:
    """Outcomes into one pool: per call (buffered or immediate, flushed at the chunk's end) or
    ``BIG_BATCH`` per batch-API call."""

    def __init__(self, curriculum: Curriculum, ids: list[int], batch_api: bool, seed: int) -> None:
        """Record Bernoulli outcomes of ``ids`` (random order, drawn from ``seed``)."""
        self.curriculum = curriculum
        rng = np.random.default_rng(seed)
        picked = [ids[i] for i in rng.integers(0, len(ids), U_MASK + 1).tolist()]
        scores = [bernoulli(t, x) for t, x in zip(picked, rng.random(len(picked)), strict=True)]
        self.pairs = list(zip(picked, scores, strict=True))
        self.batches = [
            (picked[i : i + BIG_BATCH], scores[i : i + BIG_BATCH])
            for i in range(0, len(picked), BIG_BATCH)
        ]
        self.batch_api = batch_api
        self.sent = 0

    def chunk(self, min_s: float) -> float:
        """Outcomes/s of one chunk of at least ``min_s`` (including the final flush)."""
        clock, curriculum = time.perf_counter, self.curriculum
        done, start = 0, clock()
        while clock() - start < min_s:
            if self.batch_api:
                ids, scores = self.batches[(self.sent // BIG_BATCH) % len(self.batches)]
                curriculum.update_task_performance_batch(ids, scores)
                count = BIG_BATCH
            else:
                report, pairs, first = curriculum.update_task_performance, self.pairs, self.sent
                for k in range(first, first + BLOCK):
                    report(*pairs[k & U_MASK])
                count = BLOCK
            done += count
            self.sent += count
        curriculum.flush()
        return done / (clock() - start)

    def lossless(self) -> bool:
        """Whether the pool counted every outcome sent."""
        return completed(self.curriculum) == self.sent


def dict_update_entry(
    num_tasks: int, config: LearningProgressConfig, chunk_s: float, seed: int
) -> Callable[[], float]:
    """The per-outcome update of the dict implementation alone, as a chunk."""
    impl = DictLearningProgress(num_tasks, config, seed=seed, max_age_s=1.0)
    rng = np.random.default_rng(seed)
    picked = [impl.ids[i] for i in rng.integers(0, num_tasks, U_MASK + 1).tolist()]
    pairs = [(t, bernoulli(t, x)) for t, x in zip(picked, rng.random(len(picked)), strict=True)]
    position = [0]

    def play(count: int) -> None:
        update, first = impl.update, position[0]
        for k in range(first, first + count):
            update(*pairs[k & U_MASK])
        position[0] = first + count

    return lambda: chunk_rate(play, chunk_s)


def measure_outcomes(
    configs: dict[str, CurriculumConfig],
    baseline: LearningProgressConfig,
    chunk_s: float,
    rounds: int,
) -> tuple[dict[str, Rates], bool]:
    """Interleaved outcome throughput into each pool of ``configs`` (named ``"<backend> <mode>"``,
    mode one of OUTCOME_MODES) and of the dict update; whether every outcome was counted."""
    num_tasks = next(iter(configs.values())).num_active_tasks
    entries: dict[str, Callable[[], float | None]] = {
        DICT_UPDATE: dict_update_entry(num_tasks, baseline, chunk_s, 5)
    }
    recorders = []
    with contextlib.ExitStack() as stack:
        for name, config in configs.items():
            batch_api = OUTCOME_MODES[name.rsplit(" ", 1)[1]][1]
            curriculum = stack.enter_context(open_pool(config))
            recorder = Recorder(curriculum, fill_pool(curriculum), batch_api, seed=6)
            recorder.chunk(0.02)  # warm-up (counted in sent)
            recorders.append(recorder)
            entries[name] = lambda r=recorder: r.chunk(chunk_s)
        rates = interleave(entries, rounds)
        lossless = all(r.lossless() for r in recorders)
    return rates, lossless
