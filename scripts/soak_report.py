"""What a soak checks and reports: the memory of the Redis server and of the pool's keys, the
consistency of each checkpoint and of its restored copy, and the verdict (see ``soak.py``)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from soak_worker import WorkerReport

from curriculum import Curriculum, CurriculumConfig

MIB = 1024 * 1024


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


def _size(size: int, *, sign: bool = False) -> str:
    """A byte count for the table, 10 wide: MiB, or KiB under 1 MiB."""
    plus = "+" if sign else ""
    if abs(size) >= MIB:
        return f"{size / MIB:{plus}9.2f}M"
    return f"{size / 1024:{plus}9.1f}K"


def judge(report: SoakReport) -> None:
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
