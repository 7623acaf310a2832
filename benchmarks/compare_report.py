"""The tables of the side-by-side benchmark (``bench_compare.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from compare_outcomes import BIG_BATCH, DICT_UPDATE, OUTCOME_MODES, RECORD_TASKS
from harness import WRITE_BATCH, Rates, kilo, median, print_rows, ratio, ratio_text
from loops import BASELINE


@dataclass
class SizeResult:
    """The loop comparison and the latency at one pool size."""

    num_tasks: int
    loops: dict[str, Rates]  # implementation -> loops/s per round
    latency_us: dict[str, tuple[float, float, float, int]]  # backend -> p50, p99, mean, calls
    evictions: dict[str, float]  # implementation -> evictions per loop
    snapshots: dict[str, tuple[float, float]]  # backend -> per 1,000 loops, share of loop time
    syllabus_loops: int = 0
    syllabus_seconds: float = 0.0


@dataclass
class Results:
    """Everything measured."""

    sizes: list[SizeResult]
    outcomes: dict[str, Rates]
    outcomes_lossless: bool
    processes: dict[tuple[str, int], Rates]
    processes_error: str | None
    with_syllabus: bool


def print_backend(name: str, res: Results) -> None:
    """One backend's table."""
    rows = []
    for size in res.sizes:
        p50, p99, mean, calls = size.latency_us[name]
        rows.append(
            (
                f"get_task p50 / p99, {size.num_tasks:,} tasks",
                f"{p50:.1f} / {p99:,.0f} us",
                f"mean {mean:,.0f} us, {calls:,} calls",
            )
        )
    base = res.outcomes[DICT_UPDATE]
    rows.append(
        (
            "dict implementation, per-outcome update (baseline)",
            kilo(median(base), " out/s"),
            "1.00x",
        )
    )
    labels = {
        "immediate": "update_task_performance, write_batch_size=1",
        "buffered": f"update_task_performance, write_batch_size={WRITE_BATCH}",
        "batch": f"update_task_performance_batch, {BIG_BATCH} per call",
    }
    for mode, label in labels.items():
        rates = res.outcomes[f"{name} {mode}"]
        rows.append(
            (label, kilo(median(rates), " out/s"), ratio_text(ratio(rates, base), "x dict"))
        )
    if res.processes:
        one, two = res.processes[(name, 1)], res.processes[(name, 2)]
        rows.append(
            (f"loop, {RECORD_TASKS:,} tasks, 1 process", kilo(median(one), " loops/s"), "1.00x")
        )
        rows.append(
            (
                "loop, 2 spawned processes, one pool (aggregate)",
                kilo(median(two), " loops/s"),
                ratio_text(ratio(two, one), "x 1 proc"),
            )
        )
        d1, d2 = res.processes[(BASELINE, 1)], res.processes[(BASELINE, 2)]
        rows.append(
            (
                "machine: dict loop, 2 independent processes",
                kilo(median(d2), " loops/s"),
                ratio_text(ratio(d2, d1), "x 1 proc"),
            )
        )
    elif res.processes_error:
        rows.append(("2 processes", "FAILED", res.processes_error[:60]))
    print_rows(f"{name} backend", ("measurement", "result", "ratio [interquartile range]"), rows)


def print_comparison(backends: list[str], res: Results) -> None:
    """The side-by-side table: loops/s per implementation and size, and the ratios."""
    header = ("loops/s (median of rounds)", *(f"{s.num_tasks:,} tasks" for s in res.sizes))
    impls = [f"ours {name}" for name in backends]
    others = [("dict", "dict")] + [("Syllabus", "Syllabus")] * res.with_syllabus
    rows = [(name, *(kilo(median(s.loops[name])) for s in res.sizes)) for name in impls]
    rows.append(("dict, same math, 1 process", *(kilo(median(s.loops["dict"])) for s in res.sizes)))
    if res.with_syllabus:
        rows.append(
            (
                "Syllabus OnlineLearningProgress",
                *(kilo(median(s.loops["Syllabus"])) for s in res.sizes),
            )
        )
    for impl in impls:
        for other, label in others:
            rows.append(
                (
                    f"{impl} / {label}",
                    *(ratio_text(ratio(s.loops[impl], s.loops[other]), "x") for s in res.sizes),
                )
            )
    for impl in [*impls, "dict"]:
        rows.append(
            (f"evictions per loop, {impl}", *(f"{s.evictions[impl]:.3f}" for s in res.sizes))
        )
    for name in backends:
        rows.append(
            (f"get_task p50 us, {name}", *(f"{s.latency_us[name][0]:.1f}" for s in res.sizes))
        )
    for name in backends:
        rows.append(
            (
                f"pool snapshots per 1,000 loops, {name}",
                *(f"{s.snapshots[name][0]:.1f}" for s in res.sizes),
            )
        )
        rows.append(
            (
                f"  share of loop time in snapshot(), {name}",
                *(f"{s.snapshots[name][1]:.0%}" for s in res.sizes),
            )
        )
    if res.with_syllabus:
        rows.append(
            (
                "Syllabus rounds measured (loops, s)",
                *(
                    f"{sum(r is not None for r in s.loops['Syllabus'])} "
                    f"({s.syllabus_loops:,}, {s.syllabus_seconds}s)"
                    for s in res.sizes
                ),
            )
        )
    print_rows("side by side: sample a task, report a score", header, rows)
    if len(backends) > 1:
        shm, red = backends[0], backends[1]
        rows = [
            (
                mode,
                kilo(median(res.outcomes[f"{shm} {mode}"])),
                kilo(median(res.outcomes[f"{red} {mode}"])),
                ratio_text(
                    ratio(res.outcomes[f"{red} {mode}"], res.outcomes[f"{shm} {mode}"]), "x"
                ),
            )
            for mode in OUTCOME_MODES
        ]
        if res.processes:
            for procs in (1, 2):
                one, two = res.processes[(shm, procs)], res.processes[(red, procs)]
                rows.append(
                    (
                        f"loop, {procs} process{'es' if procs > 1 else ''}",
                        kilo(median(one)),
                        kilo(median(two)),
                        ratio_text(ratio(two, one), "x"),
                    )
                )
        print_rows(
            f"backends side by side ({RECORD_TASKS:,} tasks, per second)",
            ("measurement", shm, red, f"{red} / {shm}"),
            rows,
        )
