"""Curriculum quality: how much faster simulated students learn with each curriculum.

Students (``benchmarks/students.py``; the model in :mod:`curriculum.simulation`): ``graded`` (nine
difficulty levels, learning at the edge of competence with transfer between neighbours, 10%
impossible and 10% trivial tasks), ``forgetting`` (competence decays when not practised),
``prerequisites`` (a level learns only as far as the one below is mastered; partial transfer;
25% impossible), ``noisy`` (continuous scores ``clip(p + 0.2 N(0, 1), 0, 1)`` over a pool of
1,000 tasks, 40% impossible), ``noisy-binarised`` (the same reporting 0/1) and
``noisy-prerequisites`` (the prerequisites student with noisy continuous scores: levels out of
reach are judged flat for long stretches; with a row without the flat-label cap), plus ``fast`` (the
graded student learning 5x faster) and ``continuous`` (the graded student on a continuous
difficulty ``Span``, for range expansion). Nothing in a student knows how a curriculum chooses.

Every curriculum gets the same budget of episodes and the same student, over several seeds (the
seed sets the pool's task ids, the sampling and the outcome draws). Rows:

- ``random (uniform)``: ``DiscreteRandomConfig`` (uniform over the pool, never evicts), the
  baseline; its final mastery (mean over seeds) is the target;
- ``LP defaults``: ``LearningProgressConfig()``; ``LP basic``: ``use_bidirectional=False``;
- ``preset <name>``: every other ``LearningProgressConfig.preset(name)``;
- ``PLR learnability``: ``PrioritizedLevelReplayConfig()`` (rank prioritisation of ``p (1 - p)``
  of each task's performance EMA); ``PLR priority (gain)``: ``score_function="priority"`` with
  each episode's priority the gain in the student's success probability on the task (a
  stand-in for the value loss a real learner would report); ``PLR learnability 4 processes``:
  the same with 4 worker processes sharing the pool;
- ``LP 2 / 4 processes``: the defaults, with 2 or 4 spawned worker processes sharing one pool
  and one student (its state in shared memory), each playing its share of the budget, at the
  default ``write_batch_size``;
- ``ADR (range expansion)`` (the ``continuous`` student only): ``RangeExpansionConfig`` over
  the difficulty axis from its easiest point, grid 19 (steps of 0.05), defaults otherwise;
  ``ADR 2 processes``: the same with 2 spawned worker processes sharing the pool and its ranges;
- ``Syllabus LP`` / ``Syllabus online LP`` when Syllabus is installed (``pip install
  syllabus-rl``): Syllabus's ``LearningProgress`` (with an evaluator that plays one free
  evaluation episode per task every pool-size training episodes) and ``OnlineLearningProgress``,
  through their own API, over the first pool-size tasks of the same generator.

Measured per row, mean ± std over seeds: mastery (mean success probability over the nine
levels) at 25%, 50% and 100% of the budget; AUC (mean mastery over the run); episodes to the
target (interpolated); ``speed-up``, the budget share at which the seed-mean curve reaches the
target; the share of episodes on impossible and on trivial tasks; evictions per pool slot. The
multi-process rows are also reported as ratios to one process (AUC and final mastery).

Goals (PASS/MISS, never raised): on the graded student LP reaches the target in at most half the
episodes and spends at most 3% of them on impossible tasks (at most 5% for any LP row); at most
10% on the noisy student; the noisy student's AUC with continuous scores at least that with
binarised ones, with under 0.5 evictions per slot; 2 and 4 processes within 5% of one process on
every student (and, tracked, within 2% of its AUC).

``python benchmarks/bench_quality.py`` runs every student with 3 seeds, and 8 for the rows whose
ratio is a goal (``LP defaults``, ``LP 2 / 4 processes``, ``ADR`` and ``ADR 2 processes``;
``--parity-seeds N``; a run takes 3-7 s of CPU; on a loaded 2-core machine the noisy and
noisy-binarised students took 528 s, the graded student alone about 30 minutes);
``--quick`` the graded and noisy students with 2 seeds, without presets. ``--students a,b``
picks students, ``--seeds N`` the seeds, ``--no-syllabus`` skips Syllabus; ``--learning-rate``,
``--budget`` and ``--pool-size`` run the graded student alone with those settings. ``--ablation``
runs the ablation of the defaults instead (``--ablation tuning``: the first tuning, on the graded
and fast students; ``--ablation noise``: the noise-aware eviction, and the opt-in label priors
and noise discount, on the chosen students).

Single-process runs of a table run two at a time, each in a worker of a process pool;
multi-process runs run one after another. Runs are seeded, but not bit-reproducible: when a
process re-scores its snapshot of the pool depends partly on the clock (``snapshot_max_age_s``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
from bench_core import report_goals
from harness import Goal
from quality_runs import Row, Run, run_rows, syllabus_available
from students import (
    CONTINUOUS,
    CURVE_POINTS,
    FAST,
    GRADED,
    NOISY,
    NOISY_BINARISED,
    NOISY_PREREQUISITES,
    STUDENTS,
    Student,
)

from curriculum import LearningProgressConfig
from curriculum.config import LEARNING_PROGRESS_PRESETS
from curriculum.simulation import IMPOSSIBLE, TRIVIAL

PRESET_ROWS = [name for name in LEARNING_PROGRESS_PRESETS if name != "default"]  # default: LP row
LP = "LP defaults"
ADR = "ADR (range expansion)"
PLR_ROWS = [  # Prioritized Level Replay, default settings
    Row("PLR learnability", "plr"),
    Row("PLR priority (gain)", "plr", {"score_function": "priority"}),
]
MULTI = (2, 4)
# Seeds of the rows whose AUC ratio is a goal: runs of one configuration spread by about 0.012
# AUC on the noisy student (the clock decides when a process re-scores), so 3 seeds give the
# ratio a standard error of about 0.013, as wide as the 2% the tracked goal allows; 8 give 0.008.
PARITY_SEEDS = 8


@dataclass
class Summary:
    """A row's numbers over seeds."""

    curve: np.ndarray  # seed-mean mastery curve
    at: dict[int, tuple[float, float]]  # percent of budget -> mastery mean, std
    auc: tuple[float, float]
    to_target: tuple[float, float, int]  # episodes mean, std over seeds that reached; misses
    speedup: float  # budget share where the seed-mean curve reaches the target (inf: never)
    impossible: tuple[float, float]
    trivial: tuple[float, float]
    eval_episodes: float
    seconds: float
    evictions: tuple[float, float]  # per slot
    seeds: int = 1


def episodes_to(mastery: np.ndarray, target: float, budget: int) -> float:
    """Episodes at which the recorded curve first reaches ``target`` (interpolated), or inf."""
    every = budget / len(mastery)
    hit = np.flatnonzero(mastery >= target)
    if not len(hit):
        return float("inf")
    i = int(hit[0])
    if i == 0:
        return every
    lo, hi = mastery[i - 1], mastery[i]
    return every * (i + (target - lo) / (hi - lo))


def summarise(runs: list[Run], target: float, budget: int) -> Summary:
    curves = np.stack([r.mastery for r in runs])
    shares = np.stack([r.shares for r in runs])
    reach = np.array([episodes_to(c, target, budget) for c in curves])
    reached = reach[np.isfinite(reach)]

    def stat(values: np.ndarray) -> tuple[float, float]:
        return float(values.mean()), float(values.std())

    return Summary(
        curve=curves.mean(axis=0),
        at={pct: stat(curves[:, pct * CURVE_POINTS // 100 - 1]) for pct in (25, 50, 100)},
        auc=stat(curves.mean(axis=1)),
        to_target=(
            float(reached.mean()) if len(reached) else float("inf"),
            float(reached.std()) if len(reached) else 0.0,
            int((~np.isfinite(reach)).sum()),
        ),
        speedup=episodes_to(curves.mean(axis=0), target, budget) / budget,
        impossible=stat(shares[:, IMPOSSIBLE]),
        trivial=stat(shares[:, TRIVIAL]),
        eval_episodes=float(np.mean([r.eval_episodes for r in runs])),
        seconds=float(np.sum([r.seconds for r in runs])),
        evictions=stat(np.array([r.evictions_per_slot for r in runs])),
        seeds=len(runs),
    )


def pm(stat: tuple[float, float], percent: bool = False) -> str:
    if percent:
        return f"{stat[0]:.1%} ± {stat[1]:.1%}"
    return f"{stat[0]:.3f} ± {stat[1]:.3f}"


def print_table(title: str, summaries: dict[str, Summary], target: float, budget: int) -> None:
    print(f"\n{title}")
    print(f"  target = uniform baseline's final mastery = {target:.3f}; mean ± std over seeds")
    head = (
        f"  {'curriculum':<28}{'@25%':>15}{'@50%':>15}{'@100%':>15}{'AUC':>15}"
        f"{'episodes to target':>24}{'speed-up':>10}{'impossible':>16}{'trivial':>16}"
        f"{'evictions/slot':>16}"
    )
    print(head)
    for name, s in summaries.items():
        mean, std, misses = s.to_target
        reach = "never" if not np.isfinite(mean) else f"{mean:,.0f} ± {std:,.0f}"
        if misses and np.isfinite(mean):
            reach += f" ({misses} miss)"
        speed = f"{s.speedup:.2f}" if np.isfinite(s.speedup) else "never"
        print(
            f"  {name:<28}{pm(s.at[25]):>15}{pm(s.at[50]):>15}{pm(s.at[100]):>15}"
            f"{pm(s.auc):>15}{reach:>24}{speed:>10}{pm(s.impossible, True):>16}"
            f"{pm(s.trivial, True):>16}{s.evictions[0]:>16.2f}"
        )
    extra = [f"{n}: {s.eval_episodes:,.0f}" for n, s in summaries.items() if s.eval_episodes]
    if extra:
        print(f"  evaluation episodes per run, not charged to the budget: {'; '.join(extra)}")
    print(f"  budget {budget:,} episodes; speed-up = budget share at which the mean curve hits")


def table(
    title: str, rows: list[Row], seeds: int, plan: Student, parallel: int = 2
) -> tuple[dict[str, Summary], float]:
    """Run ``rows`` on ``plan`` and print their table; the summaries by row name, the target."""
    runs = run_rows(rows, seeds, plan, parallel)
    baseline = next(r for r in rows if r.kind == "random")
    target = float(np.mean([r.mastery[-1] for r in runs[baseline.name]]))
    summaries = {row.name: summarise(runs[row.name], target, plan.budget) for row in rows}
    print_table(title, summaries, target, plan.budget)
    return summaries, target


def student_rows(plan: Student, quick: bool, syllabus: bool, parity_seeds: int = 0) -> list[Row]:
    """The rows of a student's table; the rows of the multi-process ratios run at least
    ``parity_seeds`` seeds."""
    parity = parity_seeds
    rows = [Row("random (uniform)", "random"), Row(LP, "lp", min_seeds=parity)]
    if plan == CONTINUOUS:  # range expansion needs the Span axis of this student
        adr = {"grid": 19}
        return [
            *rows,
            Row(ADR, "adr", adr, min_seeds=parity),
            Row("ADR 2 processes", "adr", adr, processes=2, min_seeds=parity),
        ]
    rows += PLR_ROWS
    if plan in (NOISY_BINARISED, FAST):  # a comparison for another student: no extra rows
        return rows + ([] if quick else [Row(f"preset {n}", "lp", preset=n) for n in PRESET_ROWS])
    if plan == NOISY_PREREQUISITES:  # does the flat-label cap starve levels out of reach?
        return [*rows, Row("LP without the flat-label cap", "lp", lp={"flat_label_cap": 0.0})]
    rows.append(Row("LP basic", "lp", lp={"use_bidirectional": False}))
    if not quick:
        rows += [Row(f"preset {name}", "lp", preset=name) for name in PRESET_ROWS]
    if syllabus:
        rows += [Row("Syllabus LP", "syllabus"), Row("Syllabus online LP", "syllabus-online")]
    rows += [Row(f"LP {n} processes", "lp", processes=n, min_seeds=parity) for n in MULTI]
    return [*rows, Row("PLR learnability 4 processes", "plr", processes=4)]


def auc_ratio(multi: Summary, one: Summary) -> tuple[float, float]:
    """``multi``'s mean AUC over ``one``'s, and the standard error of that ratio from the two
    rows' seed spreads (how far apart two runs of the same curriculum land by chance)."""
    ratio = multi.auc[0] / one.auc[0]
    relative = [
        s.auc[1] / s.auc[0] / np.sqrt(max(s.seeds - 1, 1)) for s in (multi, one) if s.auc[0] > 0
    ]
    return ratio, ratio * float(np.sqrt(np.sum(np.square(relative))))


def print_parity(summaries: dict[str, Summary]) -> None:
    """Multi-process rows as ratios to one process."""
    for kind, single in (("LP", LP), ("ADR", ADR)):
        one = summaries.get(single)
        for procs in MULTI:
            multi = summaries.get(f"{kind} {procs} processes")
            if one is not None and multi is not None:
                (auc, error), final = auc_ratio(multi, one), multi.at[100][0] / one.at[100][0]
                print(
                    f"  {kind} {procs} processes / 1 process: AUC {auc:.3f}x (± {error:.3f} "
                    f"from the seed spreads), final mastery {final:.3f}x"
                )


def lp_rows(summaries: dict[str, Summary]) -> dict[str, Summary]:
    return {n: s for n, s in summaries.items() if n.startswith(("LP ", "preset "))}


def goals(results: dict[str, dict[str, Summary]]) -> list[tuple[str, bool]]:
    """PASS/MISS per goal, over the students that ran."""
    found: list[tuple[str, bool]] = []
    graded = results.get(GRADED.name)
    if graded is not None:
        lp = graded[LP]
        found.append(
            (
                f"graded: LP reaches uniform's final mastery in <= 0.5 of the episodes: "
                f"{lp.speedup:.2f}",
                lp.speedup <= 0.5,
            )
        )
        found.append(
            (
                f"graded: <= 3% of LP's episodes on impossible tasks: {lp.impossible[0]:.1%}",
                lp.impossible[0] <= 0.03,
            )
        )
        worst = max(s.impossible[0] for s in lp_rows(graded).values())
        found.append(
            (f"graded: <= 5% on impossible tasks, any LP row: at most {worst:.1%}", worst <= 0.05)
        )
    noisy = results.get(NOISY.name)
    if noisy is not None:
        lp = noisy[LP]
        found.append(
            (
                f"noisy: <= 10% of LP's episodes on impossible tasks: {lp.impossible[0]:.1%}",
                lp.impossible[0] <= 0.10,
            )
        )
        found.append(
            (f"noisy: < 0.5 evictions per slot: {lp.evictions[0]:.2f}", lp.evictions[0] < 0.5)
        )
        binarised = results.get(NOISY_BINARISED.name)
        if binarised is not None:
            other = binarised[LP].auc[0]
            found.append(
                (
                    f"noisy: AUC with continuous scores >= with binarised ones: {lp.auc[0]:.3f} "
                    f"vs {other:.3f}",
                    lp.auc[0] >= other,
                )
            )
    for name, summaries in results.items():
        one = summaries[LP]
        for procs in MULTI:
            multi = summaries.get(f"LP {procs} processes")
            if multi is None:
                continue
            (auc, error), final = auc_ratio(multi, one), multi.at[100][0] / one.at[100][0]
            found.append(
                (
                    f"{name}: {procs} processes >= 95% of 1 process: AUC {auc:.3f}x, "
                    f"final {final:.3f}x",
                    auc >= 0.95 and final >= 0.95,
                )
            )
            found.append(
                (
                    f"{name}: {procs} processes >= 98% of 1 process's AUC (tracked): {auc:.3f}x "
                    f"(± {error:.3f})",
                    auc >= 0.98,
                )
            )
    return found


REFERENCE = LEARNING_PROGRESS_PRESETS["reference"]
TUNED = {key: LearningProgressConfig.model_fields[key].default for key in REFERENCE}
# The noise-aware eviction and flat labels, off (as before they existed).
NOISE_OFF = {"eviction_confidence": 0.0, "flat_label_min_tasks": 0}
FLAT_OFF = {"flat_label_min_tasks": 0}


def tuning_ablation_rows() -> list[Row]:
    """The first tuning's changes one by one: added in turn to the reference preset (the old
    defaults), then each removed from the tuned defaults (with the later changes off)."""
    steps = [
        ("softmax, T 0.5", ("lp_score_temperature",)),
        ("EMA 0.2 / 0.35", ("ema_timescale", "slow_timescale_factor")),
        ("smoothing 0.3", ("progress_smoothing",)),
        ("noise floor 2", ("noise_floor",)),
    ]
    rows = [Row("random (uniform)", "random"), Row("reference (old defaults)", "lp", REFERENCE)]
    current = {**REFERENCE, **NOISE_OFF}
    for label, keys in steps:
        current = {**current, **{key: TUNED[key] for key in keys}}
        rows.append(Row(f"+ {label}", "lp", dict(current)))
    for label, keys in steps:
        off = {**NOISE_OFF, **{key: REFERENCE[key] for key in keys}}
        rows.append(Row(f"tuned - {label}", "lp", off))
    return rows


def noise_ablation_rows() -> list[Row]:
    """The noise-aware eviction and flat labels (both off: the defaults before them; each off in
    turn), and the opt-in label priors and noise discount on top of the defaults."""
    return [
        Row("random (uniform)", "random"),
        Row("before (eviction confidence 0, no flat labels)", "lp", dict(NOISE_OFF)),
        Row("defaults - eviction confidence", "lp", {"eviction_confidence": 0.0}),
        Row("defaults - flat labels", "lp", dict(FLAT_OFF)),
        Row("defaults - flat-label cap", "lp", {"flat_label_cap": 0.0}),
        Row(LP, "lp"),
        Row("defaults + label priors 0.05", "lp", {"dead_label_rate": 0.05}),
        Row("defaults + noise discount 1", "lp", {"noise_discount": 1.0}),
    ]


def run_ablation(kind: str, names: list[str], seeds: int) -> None:
    if kind == "tuning":
        for plan in (GRADED, FAST):
            table(f"ablation (first tuning): {describe(plan)}", tuning_ablation_rows(), seeds, plan)
        return
    for name in names:
        plan = STUDENTS[name]
        table(f"ablation (noise, labels): {describe(plan)}", noise_ablation_rows(), seeds, plan)


def describe(plan: Student) -> str:
    return (
        f"{plan.name} student (learning rate {plan.learning_rate}, pool of {plan.pool}, "
        f"{plan.impossible_share:.0%} impossible, {plan.budget:,} episodes)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 students, no presets")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per row (default 3)")
    parser.add_argument(
        "--parity-seeds",
        type=int,
        default=None,
        help="at least this many seeds for one process and its multi-process rows "
        "(default 8; --quick: --seeds)",
    )
    parser.add_argument("--students", default=None, help=f"comma-separated, of {list(STUDENTS)}")
    parser.add_argument("--no-syllabus", action="store_true", help="skip the Syllabus rows")
    parser.add_argument("--ablation", choices=("tuning", "noise"), default=None)
    parser.add_argument("--learning-rate", type=float, default=None, help="graded student only")
    parser.add_argument("--budget", type=int, default=None, help="graded student only")
    parser.add_argument("--pool-size", type=int, default=None, help="graded student only")
    args = parser.parse_args(argv)
    changes = {
        key: value
        for key, value in (
            ("learning_rate", args.learning_rate),
            ("budget", args.budget),
            ("pool", args.pool_size),
        )
        if value is not None
    }
    if changes:  # another setting of the graded student, alone
        STUDENTS[GRADED.name] = replace(GRADED, **changes)
        args.students = args.students or GRADED.name
    started = time.perf_counter()
    seeds = args.seeds or (2 if args.quick else 3)
    default = [GRADED.name, NOISY.name, NOISY_BINARISED.name] if args.quick else list(STUDENTS)
    names = args.students.split(",") if args.students else default
    unknown = [n for n in names if n not in STUDENTS]
    if unknown:
        parser.error(f"unknown students {unknown}; choose from {list(STUDENTS)}")
    if args.ablation:
        run_ablation(args.ablation, names, seeds)
        print(f"\ntotal time {time.perf_counter() - started:.0f} s")
        return 0
    use_syllabus = not args.no_syllabus and syllabus_available()
    if not args.no_syllabus and not use_syllabus:
        print("Syllabus not installed (pip install syllabus-rl): its rows are skipped")
    parity_seeds = (
        args.parity_seeds
        if args.parity_seeds is not None
        else (seeds if args.quick else PARITY_SEEDS)
    )
    print(
        f"curriculum quality: {len(names)} students, {seeds} seeds ({max(seeds, parity_seeds)} "
        "for one process and its multi-process rows)"
    )
    results: dict[str, dict[str, Summary]] = {}
    for index, name in enumerate(names, 1):
        plan = STUDENTS[name]
        rows = student_rows(plan, args.quick, use_syllabus, parity_seeds)
        results[name], _ = table(f"{index}. {describe(plan)}", rows, seeds, plan)
        print_parity(results[name])
    met = [Goal(text, ok) for text, ok in goals(results)]
    return report_goals(met, started, lossless=True)


if __name__ == "__main__":
    sys.exit(main())
