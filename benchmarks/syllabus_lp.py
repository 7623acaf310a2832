"""Syllabus's learning-progress curriculum, driven through the sample-and-report loop (the
side-by-side benchmark's third implementation; needs ``pip install Syllabus-RL``)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from lp_baseline import U_MASK, uniforms


def syllabus_version() -> str | None:
    """The installed Syllabus-RL version, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("Syllabus-RL")
    except PackageNotFoundError:
        return None


def make_syllabus(num_tasks: int, update_interval: int) -> Any:
    """Syllabus's ``OnlineLearningProgress`` over ``DiscreteTaskSpace(num_tasks)``.

    ``syllabus.curricula.LearningProgress`` takes no per-episode outcomes. Its
    ``update_task_progress`` only counts calls, and its success rates come from an ``Evaluator``
    that plays evaluation episodes with the agent. Syllabus's curriculum for per-episode success
    is ``OnlineLearningProgress``, from the same family: it takes the success through
    ``update_task_progress`` (``floor(progress)``, so 1.0 is a success) and the episode end
    through ``update_on_episode``. Every ``update_interval`` episodes it folds the interval's
    success rates into the fast and slow EMAs. When asked for a task after that, it recomputes the
    distribution: reweighted bidirectional learning progress, z-score, sigmoid, mixed with uniform.
    ``update_interval`` is our pool's re-scoring period, and every other parameter is Syllabus's
    default.

    One change is needed. Syllabus 0.7's ``Curriculum.sample`` tests ``task_dist != []``, which
    raises ``ValueError`` under numpy 2 when the distribution is an array of more than one task.
    The subclass's ``sample`` is the library's own with that test written as ``len(task_dist)``.
    """
    warnings.filterwarnings("ignore", category=UserWarning, module=r"syllabus\.")
    from syllabus.curricula import OnlineLearningProgress
    from syllabus.task_space import DiscreteTaskSpace

    class Numpy2OnlineLearningProgress(OnlineLearningProgress):
        def sample(self, k: int = 1) -> Any:
            if self._should_use_startup_sampling():
                return self._startup_sample()
            task_dist = self._sample_distribution()
            if len(task_dist) > 0:
                return np.random.choice(list(range(self.num_tasks)), size=k, p=task_dist)
            return [self.task_space.encode(self.task_space.sample()) for _ in range(k)]

    np.random.seed(0)  # Syllabus samples with numpy's global generator
    return Numpy2OnlineLearningProgress(
        DiscreteTaskSpace(num_tasks), update_interval=update_interval
    )


class SyllabusDriver:
    """The loop through Syllabus: ``sample()``, ``update_task_progress``, ``update_on_episode``."""

    def __init__(self, curriculum: Any, seed: int) -> None:
        """Drive ``curriculum`` with scores drawn from ``seed``."""
        self.curriculum = curriculum
        self.u = uniforms(seed)
        self.position = 0

    def play(self, count: int) -> None:
        """``count`` episodes (of length 1, with the score as return and progress)."""
        c, u = self.curriculum, self.u
        sample, progress, episode = c.sample, c.update_task_progress, c.update_on_episode
        for k in range(self.position, self.position + count):
            task = sample()[0]
            s = 1.0 if u[k & U_MASK] * 997 < int(task) % 997 else 0.0
            progress(task, s)
            episode(s, 1, task, s)
        self.position += count
