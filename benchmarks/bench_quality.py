"""Curriculum quality: how much faster a simulated student learns with each curriculum.

The student (:class:`curriculum.simulation.SimulatedStudent`, ``learning_rate=0.001``, every
other parameter at its default) has one competence per difficulty level 0.1, 0.2, ..., 0.9, all
starting at 0.05. Its success probability on a task of difficulty ``d`` is
``sigmoid(12 (competence[d] - d))``: at the start it solves the easiest level about a third of
the time and the hardest practically never. An episode's score is a Bernoulli draw of that
probability (0 or 1: noisy outcomes). Each graded episode raises the competence of the level
played by ``0.001 * 4 p (1 - p)`` (most at the edge of competence, nothing on tasks always failed
or always solved) and of every other level by that gain times ``0.5 ** distance`` (transfer
between neighbouring difficulties: a level out of reach becomes learnable through practice
next to it). Competence is capped at 1.2; nothing is forgotten. The task space
(:func:`curriculum.simulation.task_space`) draws 80% graded tasks (uniform over the nine levels),
10% impossible tasks (always 0) and 10% trivial tasks (always 1); tasks are distinct ids, so a
pool of 64 holds several tasks per level. The model is the same for every curriculum: nothing in
it knows or rewards how a curriculum chooses.

Every curriculum gets the same budget of episodes (40,000) and the same student, over several
seeds (the seed sets the pool's task ids, the sampling and the outcome draws):

- ``random``: ``DiscreteRandomConfig`` (uniform over the pool, never evicts), the baseline;
- ``LP bidirectional``: ``LearningProgressConfig()``, the tuned defaults;
- ``LP basic``: the defaults with ``use_bidirectional=False`` (score = outcome variance);
- the named presets (``LearningProgressConfig.preset(name)``), including ``reference`` (the
  defaults before this benchmark tuned them);
- ``LP 2 / 4 processes``: the defaults, with 2 or 4 spawned worker processes sharing one pool
  and one student (its state in shared memory), each playing its share of the budget;
- ``Syllabus LP`` / ``Syllabus online LP``: Syllabus's ``LearningProgress`` and
  ``OnlineLearningProgress`` (``pip install syllabus-rl``), driven through their own API
  (``sample``, ``update_task_progress``, ``update_on_episode``) on the same student, over a fixed
  task space of 64 tasks drawn from the same generator. ``LearningProgress`` needs an evaluator:
  here it plays one evaluation episode per task (no learning) every 64 training episodes; these
  evaluation episodes are reported, not charged to the budget.

Measured per run: the student's mastery (mean success probability over the nine levels) every
1% of the budget, and the episodes played per category. Reported, mean and standard deviation
over seeds: mastery at 25%, 50% and 100% of the budget; the mean mastery over the run (AUC);
episodes to reach the target (the uniform baseline's final mastery, averaged over seeds; linear
interpolation between records); the share of episodes spent on impossible and on trivial tasks.
The ``speed-up`` column is the budget share at which the seed-averaged mastery curve reaches the
target. A second, smaller section repeats the comparison on a fast-learning student
(``learning_rate=0.005``, 8,000 episodes), where the presets differ.

Goals (PASS/MISS, never raised): LP reaches the uniform baseline's final mastery in at most half
the episodes; at most 5% of LP's episodes go to impossible tasks; 2 and 4 processes sharing one
pool reach at least 95% of the single-process mastery (AUC and final).

Run ``python benchmarks/bench_quality.py`` (about 2 minutes on 2 cores) or ``--quick`` (2 seeds,
no presets and no fast-student section, 20-40 s). ``--no-syllabus`` skips the Syllabus rows;
``--seeds N`` sets the seeds; ``--learning-rate``, ``--budget`` and ``--pool-size`` change the
main student, its budget and the pool (the fast-student section then is skipped). ``--ablation``
runs only the ablation of the tuned defaults on both students: each change added in turn to the
old defaults (the ``reference`` preset), then each removed from the tuned defaults.

Single-process runs of a table run two at a time (one per core), each in a worker of a process
pool; multi-process runs run one after another. A run is seeded, but not bit-reproducible: when
a process re-scores its snapshot of the pool depends partly on the clock
(``snapshot_max_age_s``), as in training.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import multiprocessing as mp
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bench_core import report_goals

from curriculum import Curriculum, CurriculumConfig, DiscreteRandomConfig, LearningProgressConfig
from curriculum.config import LEARNING_PROGRESS_PRESETS
from curriculum.simulation import IMPOSSIBLE, TRIVIAL, SimulatedStudent, task_space
from curriculum.task_ids import derive_task_id

CURVE_POINTS = 100
PRESET_ROWS = [name for name in LEARNING_PROGRESS_PRESETS if name != "default"]  # default: LP row


@dataclass(frozen=True)
class Student:
    """The simulated student of a section, its budget and the pool size."""

    learning_rate: float
    budget: int
    pool: int = 64

    def make(self, shared: bool = False) -> SimulatedStudent:
        return SimulatedStudent(
            learning_rate=self.learning_rate,
            shared=shared,
            curve_every=self.budget // CURVE_POINTS,
            curve_points=CURVE_POINTS,
        )


MAIN = Student(learning_rate=0.001, budget=40_000)
FAST = Student(learning_rate=0.005, budget=8_000)


@dataclass(frozen=True)
class Row:
    """One curriculum of the table: its name, algorithm and how many processes play."""

    name: str
    kind: str  # "random", "lp", "syllabus", "syllabus-online"
    lp: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    processes: int = 1


@dataclass
class Run:
    """What one (row, seed) run measured."""

    mastery: np.ndarray  # at every 1% of the budget
    shares: np.ndarray  # episodes per category / episodes
    seconds: float
    eval_episodes: int = 0


# -- one run ---------------------------------------------------------------------------------------


def algorithm_config(row: Row, session: str) -> DiscreteRandomConfig | LearningProgressConfig:
    if row.kind == "random":
        return DiscreteRandomConfig(session_id=session)
    if row.preset is not None:
        return LearningProgressConfig.preset(row.preset, session_id=session, **row.lp)
    return LearningProgressConfig(session_id=session, **row.lp)


def curriculum_config(row: Row, seed: int, plan: Student) -> CurriculumConfig:
    name = "".join(c if c.isalnum() else "-" for c in row.name)
    session = f"quality-{os.getpid()}-{seed}-{name}"
    return CurriculumConfig(
        task_generator=task_space(),
        num_active_tasks=plan.pool,
        algorithm_config=algorithm_config(row, session),
        seed=seed,
    )


def play(curriculum: Curriculum, student: SimulatedStudent, episodes: int, seed: Any) -> None:
    """The training loop: ask for a task, play it, report the score."""
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, student.play(task.get_env_cfg(), rng))


def worker(curriculum: Curriculum, student: SimulatedStudent, episodes: int, seed: Any) -> None:
    """A spawned worker process: attaches to the pool (unpickling) and plays its share."""
    play(curriculum, student, episodes, seed)
    curriculum.close()


def finished(student: SimulatedStudent, started: float, eval_episodes: int = 0) -> Run:
    _, mastery = student.curve()
    counts = student.category_counts()
    return Run(mastery, counts / counts.sum(), time.perf_counter() - started, eval_episodes)


def run_pool(row: Row, seed: int, plan: Student) -> Run:
    """One run of a pool curriculum, in this process or in ``row.processes`` spawned workers."""
    started = time.perf_counter()
    config = curriculum_config(row, seed, plan)
    if row.processes == 1:
        student = plan.make()
        with Curriculum(config) as curriculum:
            play(curriculum, student, plan.budget, [seed, 0])
        return finished(student, started)
    context = mp.get_context("spawn")
    student = plan.make(shared=True)
    share = plan.budget // row.processes
    with Curriculum(config) as curriculum:
        processes = [
            context.Process(target=worker, args=(curriculum, student, share, [seed, i]))
            for i in range(row.processes)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{row.name}: workers failed with exit codes {failed}")
    return finished(student, started)


# -- Syllabus --------------------------------------------------------------------------------------


def syllabus_available() -> bool:
    """Whether Syllabus (and torch, which it imports) are installed.

    Only looked up here: Syllabus is imported in the worker processes that run it (its import
    creates a shared-memory list, see :func:`import_syllabus`).
    """
    return all(importlib.util.find_spec(name) is not None for name in ("syllabus", "torch"))


def import_syllabus() -> tuple[Any, Any, Any]:
    """Syllabus's two learning-progress curricula and its discrete task space.

    Two workarounds, neither of which changes what Syllabus computes:

    - ``Curriculum.sample`` in Syllabus 0.7 tests ``task_dist != []``, which numpy 2 rejects for
      an array; the subclasses return the same distribution as a list.
    - Importing ``syllabus.core.evaluator`` creates a ``ShareableList`` (a class attribute of its
      Gymnasium evaluation wrapper, which this benchmark does not use) that nothing removes; it is
      removed here, so the run leaves nothing in /dev/shm.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from syllabus.core import evaluator
        from syllabus.curricula import LearningProgress, OnlineLearningProgress
        from syllabus.task_space import DiscreteTaskSpace
    with contextlib.suppress(Exception):
        shared = evaluator.GymnasiumEvaluationWrapper.env_count.shm
        shared.close()
        shared.unlink()

    class ListLearningProgress(LearningProgress):
        def _sample_distribution(self) -> list[float]:
            return list(super()._sample_distribution())

    class ListOnlineLearningProgress(OnlineLearningProgress):
        def _sample_distribution(self) -> list[float]:
            return list(super()._sample_distribution())

    return ListLearningProgress, ListOnlineLearningProgress, DiscreteTaskSpace


class StudentEvaluator:
    """What Syllabus's ``LearningProgress`` asks of an evaluator: every task's success rate.

    Plays ``eval_eps`` evaluation episodes per task (Bernoulli draws of the student's current
    success probability; the student does not learn from them) and counts them.
    """

    def __init__(self, student: SimulatedStudent, tasks: list[dict], rng: np.random.Generator):
        self.student, self.tasks, self.rng = student, tasks, rng
        self.episodes = 0

    def evaluate_agent(self, eval_eps: float = 1, verbose: bool = False) -> tuple:
        import torch

        episodes = max(1, int(eval_eps))
        p = np.array([self.student.success_probability(task) for task in self.tasks])
        rates = (self.rng.random((episodes, len(p))) < p).mean(axis=0)
        self.episodes += episodes * len(p)
        tensor = torch.tensor(rates, dtype=torch.float32)
        return None, tensor, tensor, None


def syllabus_tasks(seed: int, count: int) -> list[dict]:
    """The fixed task space given to Syllabus: the first ``count`` tasks of a pool with this
    seed (the tasks a pool of the same seed and size starts with)."""
    generator = task_space().create()
    return [generator.generate(derive_task_id(seed, n)).env_cfg for n in range(count)]


def run_syllabus(row: Row, seed: int, plan: Student) -> Run:
    """One run of Syllabus's learning-progress curriculum on the student, through its API."""
    learning_progress, online_learning_progress, discrete_task_space = import_syllabus()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Syllabus warns about trivial tasks' high baselines
        started = time.perf_counter()
        np.random.seed(seed)  # Syllabus samples with numpy's global generator
        rng = np.random.default_rng([seed, 0])
        student = plan.make()
        tasks = syllabus_tasks(seed, plan.pool)
        space = discrete_task_space(len(tasks))
        evaluator = None
        if row.kind == "syllabus":
            evaluator = StudentEvaluator(student, tasks, np.random.default_rng([seed, 1]))
            curriculum = learning_progress(evaluator, space, eval_interval=plan.pool)
        else:
            curriculum = online_learning_progress(space, update_interval=plan.pool)
        for _ in range(plan.budget):
            task = int(curriculum.sample(k=1)[0])
            score = student.play(tasks[task], rng)
            curriculum.update_task_progress(task, score)
            curriculum.update_on_episode(score, 1, task, score)
    return finished(student, started, evaluator.episodes if evaluator else 0)


# -- running the table -----------------------------------------------------------------------------


def run_one(job: tuple[Row, int, Student]) -> Run:
    row, seed, plan = job
    if row.kind.startswith("syllabus"):
        return run_syllabus(row, seed, plan)
    return run_pool(row, seed, plan)


def run_rows(rows: list[Row], seeds: int, plan: Student, parallel: int) -> dict[str, list[Run]]:
    """Every (row, seed), by row name: single-process runs ``parallel`` at a time (each in a
    worker of a process pool), multi-process runs one after another."""
    results: dict[str, list[Run]] = {row.name: [] for row in rows}
    single = [(row, seed, plan) for row in rows if row.processes == 1 for seed in range(seeds)]
    with mp.get_context("spawn").Pool(parallel) as pool:
        for (row, _, _), run in zip(single, pool.map(run_one, single, chunksize=1), strict=True):
            results[row.name].append(run)
    for row in rows:
        if row.processes > 1:
            results[row.name] = [run_pool(row, seed, plan) for seed in range(seeds)]
    return results


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
            f"{pm(s.trivial, True):>16}"
        )
    extra = [f"{n}: {s.eval_episodes:,.0f}" for n, s in summaries.items() if s.eval_episodes]
    if extra:
        print(f"  evaluation episodes per run, not charged to the budget: {'; '.join(extra)}")
    print(f"  budget {budget:,} episodes; speed-up = budget share at which the mean curve hits")


def table(
    title: str, rows: list[Row], seeds: int, plan: Student, parallel: int
) -> tuple[dict[str, Summary], float]:
    runs = run_rows(rows, seeds, plan, parallel)
    baseline = next(r for r in rows if r.kind == "random")
    target = float(np.mean([r.mastery[-1] for r in runs[baseline.name]]))
    summaries = {row.name: summarise(runs[row.name], target, plan.budget) for row in rows}
    print_table(title, summaries, target, plan.budget)
    return summaries, target


def main_rows(quick: bool, syllabus: bool) -> list[Row]:
    rows = [
        Row("random (uniform)", "random"),
        Row("LP bidirectional", "lp"),
        Row("LP basic", "lp", lp={"use_bidirectional": False}),
    ]
    if not quick:
        rows += [Row(f"preset {name}", "lp", preset=name) for name in PRESET_ROWS]
    if syllabus:
        rows += [Row("Syllabus LP", "syllabus"), Row("Syllabus online LP", "syllabus-online")]
    rows += [Row("LP 2 processes", "lp", processes=2), Row("LP 4 processes", "lp", processes=4)]
    return rows


def fast_rows() -> list[Row]:
    rows = [Row("random (uniform)", "random"), Row("LP bidirectional", "lp")]
    return rows + [Row(f"preset {name}", "lp", preset=name) for name in PRESET_ROWS]


REFERENCE = LEARNING_PROGRESS_PRESETS["reference"]
TUNED = {key: LearningProgressConfig.model_fields[key].default for key in REFERENCE}


def ablation_rows() -> list[Row]:
    """The defaults' changes one by one: added in turn to the reference preset (the old
    defaults), then each removed from the tuned defaults."""
    steps = [
        ("softmax, T 0.5", ("lp_score_temperature",)),
        ("EMA 0.2 / 0.35", ("ema_timescale", "slow_timescale_factor")),
        ("smoothing 0.3", ("progress_smoothing",)),
        ("noise floor 2", ("noise_floor",)),
    ]
    rows = [Row("random (uniform)", "random"), Row("reference (old defaults)", "lp", REFERENCE)]
    current = dict(REFERENCE)
    for label, keys in steps:
        current = {**current, **{key: TUNED[key] for key in keys}}
        rows.append(Row(f"+ {label}", "lp", dict(current)))
    for label, keys in steps:
        rows.append(Row(f"defaults - {label}", "lp", {key: REFERENCE[key] for key in keys}))
    return rows


def goals(summaries: dict[str, Summary]) -> list[tuple[str, bool]]:
    lp = summaries["LP bidirectional"]
    found: list[tuple[str, bool]] = [
        (
            f"LP reaches uniform's final mastery in <= 0.5 of the episodes: {lp.speedup:.2f}",
            lp.speedup <= 0.5,
        ),
    ]
    impossible = max(s.impossible[0] for n, s in summaries.items() if n.startswith("LP "))
    text = f"<= 5% of LP's episodes on impossible tasks: at most {impossible:.1%}"
    found.append((text, impossible <= 0.05))
    for procs in (2, 4):
        multi = summaries[f"LP {procs} processes"]
        auc, final = multi.auc[0] / lp.auc[0], multi.at[100][0] / lp.at[100][0]
        found.append(
            (
                f"{procs} processes >= 95% of 1 process: AUC {auc:.3f}x, final {final:.3f}x",
                auc >= 0.95 and final >= 0.95,
            )
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, fewer rows")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per row (default 5)")
    parser.add_argument("--no-syllabus", action="store_true", help="skip the Syllabus rows")
    parser.add_argument(
        "--ablation", action="store_true", help="only the ablation of the tuned defaults"
    )
    parser.add_argument("--learning-rate", type=float, default=MAIN.learning_rate)
    parser.add_argument("--budget", type=int, default=MAIN.budget, help="episodes per run")
    parser.add_argument("--pool-size", type=int, default=MAIN.pool, help="active tasks")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    seeds = args.seeds or (2 if args.quick else 5)
    main_student = Student(args.learning_rate, args.budget, args.pool_size)
    if args.ablation:
        for plan in (main_student, FAST):
            table(
                f"ablation: student learning rate {plan.learning_rate}, {plan.budget:,} episodes",
                ablation_rows(),
                seeds,
                plan,
                parallel=2,
            )
        print(f"\ntotal time {time.perf_counter() - started:.0f} s")
        return 0
    use_syllabus = not args.no_syllabus and syllabus_available()
    if not args.no_syllabus and not use_syllabus:
        print("Syllabus not installed (pip install syllabus-rl): its rows are skipped")
    rows = main_rows(args.quick, use_syllabus)
    print(
        f"curriculum quality: simulated student (learning rate {main_student.learning_rate}), "
        f"pool of {main_student.pool}, {main_student.budget:,} episodes, {seeds} seeds"
    )
    summaries, _ = table("1. main student", rows, seeds, main_student, parallel=2)
    if not args.quick and main_student == MAIN:
        table(
            f"2. fast-learning student (learning rate {FAST.learning_rate}, {FAST.budget:,} "
            "episodes)",
            fast_rows(),
            seeds,
            FAST,
            parallel=2,
        )
    return report_goals(goals(summaries), started, lossless=True)


if __name__ == "__main__":
    sys.exit(main())
