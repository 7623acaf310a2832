"""One run of the curriculum-quality benchmark: a curriculum trains a simulated student.

A run plays a student's budget of episodes with one curriculum (a row of the benchmark's
tables) and one seed, in this process or in spawned worker processes that share one pool and one
student (its state in shared memory), or through Syllabus's own API when it is installed. See
``benchmarks/bench_quality.py`` for what is measured and ``benchmarks/students.py`` for the
students.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing as mp
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from students import Student

from curriculum import Curriculum, CurriculumConfig, DiscreteRandomConfig, LearningProgressConfig
from curriculum.config import AlgorithmConfig, RangeAxis, RangeExpansionConfig
from curriculum.plr_config import PrioritizedLevelReplayConfig
from curriculum.simulation import SimulatedStudent
from curriculum.task_ids import derive_task_id


@dataclass(frozen=True)
class Row:
    """One curriculum of the table: its name, algorithm and how many processes play."""

    name: str
    kind: str  # "random", "lp", "plr", "adr", "syllabus", "syllabus-online"
    lp: dict[str, Any] = field(default_factory=dict)  # the algorithm config's fields
    preset: str | None = None
    processes: int = 1
    # at least this many seeds, whatever the table's count: the rows whose AUC ratios are
    # compared (one process and its multi-process rows), whose seed spread would hide a 2% gap
    min_seeds: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # other CurriculumConfig fields

    def seed_count(self, seeds: int) -> int:
        """The seeds this row runs when its table runs ``seeds``."""
        return max(seeds, self.min_seeds)


@dataclass
class Run:
    """What one (row, seed) run measured."""

    mastery: np.ndarray  # at every 1% of the budget
    shares: np.ndarray  # episodes per category / episodes
    seconds: float
    eval_episodes: int = 0
    evictions_per_slot: float = 0.0


# -- one run ---------------------------------------------------------------------------------------


def algorithm_config(row: Row, session: str) -> AlgorithmConfig:
    if row.kind == "random":
        return DiscreteRandomConfig(session_id=session)
    if row.kind == "plr":
        return PrioritizedLevelReplayConfig(session_id=session, **row.lp)
    if row.kind == "adr":  # range expansion over the continuous student's difficulty
        axes = {"difficulty": RangeAxis()}
        return RangeExpansionConfig(session_id=session, axes=axes, **row.lp)
    if row.preset is not None:
        return LearningProgressConfig.preset(row.preset, session_id=session, **row.lp)
    return LearningProgressConfig(session_id=session, **row.lp)


def curriculum_config(row: Row, seed: int, plan: Student) -> CurriculumConfig:
    name = "".join(c if c.isalnum() else "-" for c in row.name)
    session = f"quality-{os.getpid()}-{seed}-{name}"
    return CurriculumConfig(
        task_generator=plan.tasks(),
        num_active_tasks=plan.pool,
        algorithm_config=algorithm_config(row, session),
        seed=seed,
        **row.config,
    )


def ratio_with_error(multi: np.ndarray, one: np.ndarray) -> tuple[float, float]:
    """``multi``'s mean over ``one``'s (per-seed values), and that ratio's standard error from
    the two samples' standard errors (how far apart two runs of one curriculum land by chance)."""
    ratio = float(multi.mean() / one.mean())
    relative = [a.std(ddof=1) / a.mean() / np.sqrt(len(a)) for a in (multi, one) if len(a) > 1]
    return ratio, ratio * float(np.sqrt(np.sum(np.square(relative))))


def play(curriculum: Curriculum, student: SimulatedStudent, episodes: int, seed: Any) -> None:
    """The training loop: ask for a task, play it, report the score (and, for PLR scoring
    by priority, the episode's gain in the student's success probability on the task: the
    simulated students have no value loss)."""
    rng = np.random.default_rng(seed)
    gains = curriculum.config.algorithm_config.uses_priorities()
    for _ in range(episodes):
        task = curriculum.get_task()
        env_cfg = task.get_env_cfg()
        if not gains:
            curriculum.update_task_performance(task.task_id, student.play(env_cfg, rng))
            continue
        before = student.success_probability(env_cfg)
        score = student.play(env_cfg, rng)
        gain = student.success_probability(env_cfg) - before
        curriculum.update_task_performance(task.task_id, score, priority=gain)


def worker(curriculum: Curriculum, student: SimulatedStudent, episodes: int, seed: Any) -> None:
    """A spawned worker process: attaches to the pool (unpickling) and plays its share."""
    play(curriculum, student, episodes, seed)
    curriculum.close()


def finished(
    student: SimulatedStudent, started: float, eval_episodes: int = 0, evictions: float = 0.0
) -> Run:
    _, mastery = student.curve()
    counts = student.category_counts()
    seconds = time.perf_counter() - started
    return Run(mastery, counts / counts.sum(), seconds, eval_episodes, evictions)


def evictions_per_slot(curriculum: Curriculum, plan: Student) -> float:
    """Evictions in the pool so far, per slot."""
    return curriculum.stats()["curriculum/num_evicted"] / plan.pool


def run_pool(row: Row, seed: int, plan: Student) -> Run:
    """One run of a pool curriculum, in this process or in ``row.processes`` spawned workers."""
    started = time.perf_counter()
    config = curriculum_config(row, seed, plan)
    if row.processes == 1:
        student = plan.make()
        with Curriculum(config) as curriculum:
            play(curriculum, student, plan.budget, [seed, 0])
            evictions = evictions_per_slot(curriculum, plan)
        return finished(student, started, evictions=evictions)
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
        evictions = evictions_per_slot(curriculum, plan)
    return finished(student, started, evictions=evictions)


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


def syllabus_tasks(plan: Student, seed: int) -> list[dict]:
    """The fixed task space given to Syllabus: the first ``plan.pool`` tasks of a pool with this
    seed (the tasks a pool of the same seed and size starts with)."""
    generator = plan.tasks().create()
    return [generator.generate(derive_task_id(seed, n)).env_cfg for n in range(plan.pool)]


def run_syllabus(row: Row, seed: int, plan: Student) -> Run:
    """One run of Syllabus's learning-progress curriculum on the student, through its API."""
    learning_progress, online_learning_progress, discrete_task_space = import_syllabus()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Syllabus warns about trivial tasks' high baselines
        started = time.perf_counter()
        np.random.seed(seed)  # Syllabus samples with numpy's global generator
        rng = np.random.default_rng([seed, 0])
        student = plan.make()
        tasks = syllabus_tasks(plan, seed)
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


# -- running rows ----------------------------------------------------------------------------------


def run_one(job: tuple[Row, int, Student]) -> Run:
    row, seed, plan = job
    if row.kind.startswith("syllabus"):
        return run_syllabus(row, seed, plan)
    return run_pool(row, seed, plan)


def run_rows(rows: list[Row], seeds: int, plan: Student, parallel: int) -> dict[str, list[Run]]:
    """Every (row, seed), by row name: ``seeds`` per row (``row.min_seeds`` where more);
    single-process runs ``parallel`` at a time (each in a worker of a process pool),
    multi-process runs one after another."""
    results: dict[str, list[Run]] = {row.name: [] for row in rows}
    single = [
        (row, seed, plan)
        for row in rows
        if row.processes == 1
        for seed in range(row.seed_count(seeds))
    ]
    with mp.get_context("spawn").Pool(parallel) as pool:
        for (row, _, _), run in zip(single, pool.map(run_one, single, chunksize=1), strict=True):
            results[row.name].append(run)
    for row in rows:
        if row.processes > 1:
            results[row.name] = [run_pool(row, seed, plan) for seed in range(row.seed_count(seeds))]
    return results
