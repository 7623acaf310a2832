"""``curriculum demo``: simulated multi-worker training on one shared pool.

Worker processes share one pool (by default in /dev/shm) and one simulated student; each worker
asks the curriculum for a task, plays it, and reports the score. At the end the demo prints, per
label, the share of samples, the mean score, the learning progress and the evictions, and the
student's mastery compared with what uniform sampling reached on the same budget.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass

import numpy as np

from curriculum.config import CurriculumConfig, DiscreteRandomConfig, LearningProgressConfig
from curriculum.curriculum import Curriculum
from curriculum.simulation import SimulatedStudent, task_space


@dataclass(frozen=True)
class DemoResult:
    """What one demo run measured."""

    algorithm: str
    episodes: int
    seconds: float
    mastery: float
    stats: dict[str, float]


def _worker(curriculum: Curriculum, student: SimulatedStudent, episodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, student.play(task.get_env_cfg(), rng))
    curriculum.close()


def run_demo(
    *,
    algorithm: str = "learning_progress",
    workers: int = 2,
    episodes: int = 20_000,
    num_active_tasks: int = 64,
    backend_url: str | None = None,
    seed: int = 0,
    learning_rate: float = 0.001,
) -> DemoResult:
    """Train one simulated student with ``workers`` processes sharing one curriculum."""
    session = f"demo-{algorithm}-{mp.current_process().pid}-{seed}"
    algorithm_config = (
        LearningProgressConfig(session_id=session, backend_url=backend_url)
        if algorithm == "learning_progress"
        else DiscreteRandomConfig(session_id=session, backend_url=backend_url)
    )
    config = CurriculumConfig(
        task_generator=task_space(),
        num_active_tasks=num_active_tasks,
        algorithm_config=algorithm_config,
        seed=seed,
    )
    student = SimulatedStudent(learning_rate=learning_rate, shared=True)
    started = time.perf_counter()
    with Curriculum(config) as curriculum:
        context = mp.get_context("spawn")
        share = episodes // workers
        processes = [
            context.Process(target=_worker, args=(curriculum, student, share, seed * 1000 + i))
            for i in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"demo workers failed with exit codes {failed}")
        stats = curriculum.stats()
        curriculum.destroy()  # a demo pool is not kept (a Redis pool would outlive the run)
    return DemoResult(
        algorithm=algorithm,
        episodes=share * workers,
        seconds=time.perf_counter() - started,
        mastery=student.mastery(),
        stats=stats,
    )


def label_table(stats: dict[str, float]) -> str:
    """A per-label table of samples share, mean score, learning progress and evictions."""
    labels = sorted({key.split("/")[1] for key in stats if key.startswith("label/")})
    total = sum(stats[f"label/{name}/samples"] for name in labels) or 1.0
    lines = [f"{'label':<26}{'samples':>9}{'share':>8}{'score':>8}{'mean LP':>9}{'evicted':>9}"]
    for name in labels:
        key = f"label/{name}"
        lines.append(
            f"{name:<26}{stats[key + '/samples']:>9.0f}{stats[key + '/samples'] / total:>8.1%}"
            f"{stats[key + '/mean_reward']:>8.2f}{stats[key + '/mean_lp']:>9.3f}"
            f"{stats[key + '/evictions']:>9.0f}"
        )
    return "\n".join(lines)


def main(workers: int, episodes: int, backend_url: str | None, seed: int) -> int:
    """Run the demo with learning progress, then uniform sampling as the baseline; print both."""
    results = []
    for algorithm in ("learning_progress", "discrete_random"):
        result = run_demo(
            algorithm=algorithm,
            workers=workers,
            episodes=episodes,
            backend_url=backend_url,
            seed=seed,
        )
        results.append(result)
        print(
            f"\n== {algorithm}: {result.episodes} episodes by {workers} workers "
            f"in {result.seconds:.1f} s; student mastery {result.mastery:.3f}"
        )
        print(label_table(result.stats))
    lp, uniform = results
    print(
        f"\nmastery after {lp.episodes} episodes: learning progress {lp.mastery:.3f}, "
        f"uniform {uniform.mastery:.3f}"
    )
    return 0
