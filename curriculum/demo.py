"""``curriculum demo``: simulated multi-worker training on one shared pool.

Worker processes share one pool (by default in /dev/shm, no server needed) and one simulated
student (:mod:`curriculum.simulation`): graded difficulties, a few impossible and a few trivial
tasks. Each worker asks the curriculum for a task, plays it, and reports the score. While it runs,
a progress bar; meanwhile the parent samples the pool's per-label counts and the student's success
per difficulty. At the end: a table per label (share of samples, mean score, learning progress,
evictions), the student's mastery against uniform sampling on the same budget, and a PNG with the
sampling share by difficulty over time (windows of 1/20 of the run) beside the success by
difficulty over time, with the student's mastery under learning progress and under uniform
sampling.

The table's learning progress shows two figures per label: its mean over the run (what the
curriculum saw while the student learned) and its value at the end (about 0 once the student has
mastered what it can: a learned task, like an impossible one, makes no progress).

The progress bar (tqdm) and the PNG (matplotlib) come with the ``demo`` extra; without them the
demo prints its progress as text and skips the picture.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curriculum.config import CurriculumConfig, DiscreteRandomConfig, LearningProgressConfig
from curriculum.curriculum import Curriculum
from curriculum.simulation import DIFFICULTIES, SimulatedStudent, task_space

POLL_S = 0.01
CATEGORIES = (*(f"{d:g}" for d in DIFFICULTIES), "impossible", "trivial")


@dataclass
class Timeline:
    """What the parent saw while the workers ran, one entry per poll."""

    episodes: list[int] = field(default_factory=list)
    samples: list[list[float]] = field(default_factory=list)  # cumulative, per CATEGORIES
    success: list[list[float]] = field(default_factory=list)  # per difficulty
    lp: list[list[float]] = field(default_factory=list)  # mean LP of active tasks, per CATEGORIES

    def add(self, episodes: int, stats: dict[str, float], student: SimulatedStudent) -> None:
        if self.episodes and episodes <= self.episodes[-1]:
            return
        self.episodes.append(episodes)
        self.samples.append([_category_figure(stats, name, "samples") for name in CATEGORIES])
        self.lp.append([_category_figure(stats, name, "mean_lp") for name in CATEGORIES])
        self.success.append(
            [
                student.success_probability({"label": "graded", "difficulty": d})
                for d in DIFFICULTIES
            ]
        )

    def run_mean_lp(self) -> dict[str, float]:
        """Each category's mean learning progress over the run: the LP of its active tasks at
        each poll, weighted by the episodes played since the previous poll."""
        if len(self.episodes) < 2:
            return dict.fromkeys(CATEGORIES, 0.0)
        weights = np.diff(np.asarray(self.episodes, dtype=np.float64))
        lp = np.nan_to_num(np.asarray(self.lp, dtype=np.float64)[1:])  # no active task: 0
        means = weights @ lp / weights.sum() if weights.sum() > 0 else lp.mean(axis=0)
        return {name: float(value) for name, value in zip(CATEGORIES, means, strict=True)}

    def mastery(self) -> np.ndarray:
        """The student's mastery (mean success over the difficulties) at each poll."""
        success = np.asarray(self.success, dtype=np.float64)
        return success.mean(axis=1) if len(success) else np.zeros(0)

    def sampling_shares(self, windows: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Episodes at the end of each window, and each category's share of its samples."""
        episodes = np.asarray(self.episodes, dtype=np.float64)
        cumulative = np.asarray(self.samples, dtype=np.float64)
        if len(episodes) < 2:
            return episodes, np.zeros((len(episodes), len(CATEGORIES)))
        edges = np.linspace(episodes[0], episodes[-1], windows + 1)
        at = np.array([cumulative[np.searchsorted(episodes, e, side="right") - 1] for e in edges])
        deltas = np.diff(at, axis=0)
        totals = deltas.sum(axis=1, keepdims=True)
        shares = np.divide(deltas, totals, out=np.zeros_like(deltas), where=totals > 0)
        return edges[1:], shares


def _category_label(category: str) -> str:
    return category if category in ("impossible", "trivial") else f"graded|difficulty:{category}"


def _figure(value: float, width: int, digits: int) -> str:
    """A table cell: ``-`` for a figure with nothing to average (NaN)."""
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}.{digits}f}"


def _category_figure(stats: dict[str, float], category: str, figure: str) -> float:
    return stats.get(f"label/{_category_label(category)}/{figure}", 0.0)


def mastery_text(mastery: float) -> str:
    """The student's mastery as the terminal and the picture show it."""
    return f"{mastery:.3f}"


@dataclass(frozen=True)
class DemoResult:
    """What one demo run measured."""

    algorithm: str
    episodes: int
    seconds: float
    mastery: float
    stats: dict[str, float]
    timeline: Timeline


def _worker(
    curriculum: Curriculum, student: SimulatedStudent, episodes: int, seed: int, done: Any
) -> None:
    rng = np.random.default_rng(seed)
    for played in range(1, episodes + 1):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, student.play(task.get_env_cfg(), rng))
        if played % 64 == 0:
            with done.get_lock():
                done.value += 64
    curriculum.close()
    with done.get_lock():
        done.value += episodes % 64


@contextlib.contextmanager
def _progress(total: int, description: str, show: bool) -> Iterator[Any]:
    """A tqdm bar when tqdm is installed, else a plain line on stderr; yields update(n)."""
    if not show:
        yield lambda n: None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        last = [0.0]

        def update(n: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0 or n >= total:
                last[0] = now
                print(f"\r{description}: {n}/{total} episodes", end="", file=sys.stderr)

        yield update
        print(file=sys.stderr)
        return
    bar = tqdm(total=total, desc=description, unit="ep", file=sys.stderr, leave=True)

    def advance(n: int) -> None:
        bar.update(n - bar.n)

    try:
        yield advance
    finally:
        bar.close()


def run_demo(
    *,
    algorithm: str = "learning_progress",
    workers: int = 2,
    episodes: int = 20_000,
    num_active_tasks: int = 64,
    backend_url: str | None = None,
    seed: int = 0,
    learning_rate: float = 0.001,
    progress: bool = True,
) -> DemoResult:
    """Train one simulated student with ``workers`` processes sharing one curriculum."""
    session = f"demo-{algorithm}-{os.getpid()}-{seed}"
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
    context = mp.get_context("spawn")
    student = SimulatedStudent(learning_rate=learning_rate, shared=True)
    done = context.Value("q", 0)
    timeline = Timeline()
    share = episodes // workers
    started = time.perf_counter()
    with Curriculum(config) as curriculum:
        processes = [
            context.Process(
                target=_worker, args=(curriculum, student, share, seed * 1000 + i, done)
            )
            for i in range(workers)
        ]
        for process in processes:
            process.start()
        with _progress(share * workers, algorithm, progress) as update:
            while any(p.is_alive() for p in processes):
                count = done.value
                timeline.add(count, curriculum.stats(), student)
                update(count)
                time.sleep(POLL_S)
            for process in processes:
                process.join()
            update(done.value)
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"demo workers failed with exit codes {failed}")
        stats = curriculum.stats()
        timeline.add(done.value, stats, student)
        curriculum.destroy()  # a demo pool is not kept (a Redis pool would outlive the run)
    return DemoResult(
        algorithm=algorithm,
        episodes=share * workers,
        seconds=time.perf_counter() - started,
        mastery=student.mastery(),
        stats=stats,
        timeline=timeline,
    )


def label_table(stats: dict[str, float], timeline: Timeline | None = None) -> str:
    """A per-label table: samples and their share, mean score, learning progress, evictions.

    "LP (run)" is the label's learning progress averaged over the run (from ``timeline``);
    "LP (end)" is its value at the end, which falls to about 0 once the student has learned
    what it can (a mastered or an impossible task makes no progress).
    """
    labels = sorted({key.split("/")[1] for key in stats if key.startswith("label/")})
    total = sum(stats[f"label/{name}/samples"] for name in labels) or 1.0
    run_lp = timeline.run_mean_lp() if timeline is not None else {}
    by_label = {_category_label(name): value for name, value in run_lp.items()}
    lines = [
        f"{'label':<26}{'samples':>9}{'share':>8}{'score':>8}{'LP (run)':>10}{'LP (end)':>10}"
        f"{'evicted':>9}"
    ]
    for name in labels:
        key = f"label/{name}"
        run = f"{by_label[name]:>10.4f}" if name in by_label else f"{'-':>10}"
        lines.append(
            f"{name:<26}{stats[key + '/samples']:>9.0f}{stats[key + '/samples'] / total:>8.1%}"
            f"{_figure(stats[key + '/mean_reward'], 8, 2)}{run}"
            f"{_figure(stats[key + '/mean_lp'], 10, 4)}"
            f"{stats[key + '/evictions']:>9.0f}"
        )
    return "\n".join(lines)


WINDOWS = 20
"""The left panel cuts the run into this many windows of equal episode counts."""


def figure_for(result: DemoResult, baseline: DemoResult | None = None) -> Any:
    """The demo's figure: sampling share by difficulty per window (left); the student's success
    by difficulty and its mastery, against the uniform-sampling baseline's mastery (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends, shares = result.timeline.sampling_shares(WINDOWS)
    episodes = result.timeline.episodes
    window = (episodes[-1] - episodes[0]) / WINDOWS if episodes else 0.0
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(DIFFICULTIES)))
    palette = [*colours, (0.8, 0.2, 0.2, 1.0), (0.6, 0.6, 0.6, 1.0)]
    if len(ends):
        left.stackplot(ends, shares.T, labels=CATEGORIES, colors=palette, step="pre")
    left.set(
        title=f"sampling share by difficulty (windows of {window:,.0f} episodes)",
        xlabel="episodes",
        ylabel="share of the window's episodes",
        ylim=(0, 1),
    )
    left.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="difficulty")
    timeline = result.timeline
    success = np.asarray(timeline.success)
    for index, difficulty in enumerate(DIFFICULTIES):
        right.plot(
            timeline.episodes,
            success[:, index],
            color=colours[index],
            lw=1,
            label=f"{difficulty:g}",
        )
    right.plot(
        timeline.episodes,
        timeline.mastery(),
        color="black",
        lw=2.5,
        label=f"mastery, learning progress ({mastery_text(result.mastery)})",
    )
    if baseline is not None:
        right.plot(
            baseline.timeline.episodes,
            baseline.timeline.mastery(),
            color="black",
            lw=2.5,
            ls="--",
            label=f"mastery, uniform sampling ({mastery_text(baseline.mastery)})",
        )
    right.set(
        title="student's success by difficulty, and mastery (mean over difficulties)",
        xlabel="episodes",
        ylabel="success probability",
        ylim=(0, 1.02),
    )
    right.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="difficulty")
    versus = f" vs uniform sampling {mastery_text(baseline.mastery)}" if baseline else ""
    figure.suptitle(
        f"curriculum demo: {result.algorithm}, {result.episodes} episodes, "
        f"mastery {mastery_text(result.mastery)}{versus}"
    )
    return figure


def plot(result: DemoResult, path: Path, baseline: DemoResult | None = None) -> bool:
    """Write the PNG of :func:`figure_for`; False without matplotlib."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure = figure_for(result, baseline)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def main(
    workers: int,
    episodes: int,
    backend_url: str | None,
    seed: int,
    *,
    output: str | None = "curriculum-demo.png",
    compare: bool = True,
) -> int:
    """Run the demo with learning progress (then uniform sampling as the baseline); print the
    table and the comparison, and write the PNG."""
    result = run_demo(workers=workers, episodes=episodes, backend_url=backend_url, seed=seed)
    print(
        f"\n== learning progress: {result.episodes} episodes by {workers} workers in "
        f"{result.seconds:.1f} s; student mastery {mastery_text(result.mastery)}"
    )
    print(label_table(result.stats, result.timeline))
    uniform = None
    if compare:
        uniform = run_demo(
            algorithm="discrete_random",
            workers=workers,
            episodes=episodes,
            backend_url=backend_url,
            seed=seed,
        )
        print(
            f"\nmastery after {result.episodes} episodes: learning progress "
            f"{mastery_text(result.mastery)}, uniform sampling {mastery_text(uniform.mastery)}"
        )
    if output:
        path = Path(output)
        if plot(result, path, uniform):
            print(f"\nwrote {path.resolve()}")
        else:
            print("\nno PNG: matplotlib is not installed (pip install -e '.[demo]')")
    return 0
