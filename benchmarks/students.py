"""The simulated students of the curriculum-quality benchmark, with their budgets and pools.

Every student is a :class:`curriculum.simulation.SimulatedStudent` (nine graded difficulty levels,
learning at the edge of competence, transfer between neighbouring levels) on the task space
:func:`curriculum.simulation.task_space` with its own share of impossible and trivial tasks:

- ``graded``: the original student (``learning_rate=0.001``, 10% impossible, 10% trivial, a pool
  of 64, 40,000 episodes), on which the first defaults were tuned.
- ``forgetting``: competence decays towards the start by 0.02% per episode (a level left alone
  for 5,000 episodes loses about 63% of what it gained), so mastered levels need practice again.
- ``prerequisites``: level ``k`` learns only as far as level ``k - 1`` is mastered (full rate from
  50% success on it), with partial transfer (0.25 per step instead of 0.5); 25% impossible
  tasks.
- ``noisy``: continuous scores ``clip(p + 0.2 N(0, 1), 0, 1)`` over a pool of 1,000 tasks of which
  40% are impossible (their scores are noise around 0) and 10% trivial (noise around 1).
- ``noisy-prerequisites``: the prerequisites student's levels (``prerequisite`` 0.5, ``transfer``
  0.25) with the noisy student's continuous scores, pool and budget (25% impossible): levels out
  of reach stay so for tens of thousands of episodes, their labels are judged flat meanwhile, and
  they come within reach only through practice on them; a curriculum that starves flat labels
  leaves them unlearned here.
- ``noisy-binarised``: the same student and tasks reporting 0/1 (a Bernoulli draw of ``p``),
  the comparison for continuous scores: a score with noise 0.2 carries more information than a
  Bernoulli draw (variance 0.04 against ``p (1 - p)``, up to 0.25), so a curriculum should do at
  least as well with it.

``fast`` (``learning_rate=0.005``, 8,000 episodes) is the graded student learning 5x faster: each
task is mastered within a few tens of its own episodes.

``continuous`` is the graded student on a continuous difficulty axis: its tasks set
``difficulty`` from ``Span(0.05, 0.95)`` (no impossible or trivial tasks), and the student plays
each at the nearest of its nine levels (:class:`ContinuousStudent`). Range expansion (ADR) needs
such a Span axis; the graded student's difficulty is a list of nine values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curriculum.generators import (
    BucketedTaskGenerator,
    SingleTaskGenerator,
    Span,
    TaskGeneratorConfig,
)
from curriculum.simulation import DIFFICULTIES, SimulatedStudent, task_space

CONTINUOUS_SPAN = Span(0.05, 0.95)


class ContinuousStudent(SimulatedStudent):
    """The graded student on a continuous difficulty: a task of difficulty ``d`` plays as the
    level whose 0.1-wide bin holds ``d`` (level 0.1 for [0.05, 0.15), ..., 0.9 up to 0.95)."""

    @staticmethod
    def level_task(env_cfg: dict[str, Any]) -> dict[str, Any]:
        """The graded task of the level that ``env_cfg``'s difficulty falls in."""
        index = math.floor((env_cfg["difficulty"] - CONTINUOUS_SPAN.low) / 0.1 + 1e-9)
        level = DIFFICULTIES[min(max(index, 0), len(DIFFICULTIES) - 1)]
        return {"label": "graded", "difficulty": level}

    def success_probability(self, env_cfg: dict[str, Any]) -> float:
        """Chance of success on the task ``env_cfg``."""
        return super().success_probability(self.level_task(env_cfg))

    def play(self, env_cfg: dict[str, Any], rng: np.random.Generator) -> float:
        """Play one episode at the task's level."""
        return super().play(self.level_task(env_cfg), rng)


def continuous_space() -> BucketedTaskGenerator.Config:
    """Graded tasks whose difficulty is a continuous Span value."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": "graded", "difficulty": 0.0}
        ),
        buckets={"difficulty": CONTINUOUS_SPAN},
    )


CURVE_POINTS = 100


@dataclass(frozen=True)
class Student:
    """A simulated student, its task space, its budget of episodes and the pool size."""

    name: str
    learning_rate: float
    budget: int
    pool: int = 64
    impossible_share: float = 0.1
    trivial_share: float = 0.1
    options: dict[str, Any] = field(default_factory=dict)  # SimulatedStudent keyword arguments
    continuous: bool = False  # difficulty from a Span (ContinuousStudent, continuous_space)

    def make(self, shared: bool = False) -> SimulatedStudent:
        """A fresh student that records its mastery every 1% of the budget."""
        kind = ContinuousStudent if self.continuous else SimulatedStudent
        return kind(
            learning_rate=self.learning_rate,
            shared=shared,
            curve_every=self.budget // CURVE_POINTS,
            curve_points=CURVE_POINTS,
            **self.options,
        )

    def tasks(self) -> TaskGeneratorConfig:
        """The task space of this student."""
        if self.continuous:
            return continuous_space()
        return task_space(self.impossible_share, self.trivial_share)

    def __hash__(self) -> int:
        return hash((self.name, self.learning_rate, self.budget, self.pool))


GRADED = Student("graded", learning_rate=0.001, budget=40_000)
FAST = Student("fast", learning_rate=0.005, budget=8_000)
FORGETTING = Student("forgetting", learning_rate=0.002, budget=40_000, options={"forgetting": 2e-4})
PREREQUISITES = Student(
    "prerequisites",
    learning_rate=0.002,
    budget=40_000,
    impossible_share=0.25,
    options={"prerequisite": 0.5, "transfer": 0.25},
)
NOISY = Student(
    "noisy",
    learning_rate=0.001,
    budget=60_000,
    pool=1000,
    impossible_share=0.4,
    options={"noise": 0.2},
)
NOISY_PREREQUISITES = Student(
    "noisy-prerequisites",
    learning_rate=0.002,
    budget=60_000,
    pool=1000,
    impossible_share=0.25,
    options={"prerequisite": 0.5, "transfer": 0.25, "noise": 0.2},
)
NOISY_BINARISED = Student(
    "noisy-binarised",
    learning_rate=0.001,
    budget=60_000,
    pool=1000,
    impossible_share=0.4,
)

CONTINUOUS = Student(
    "continuous",
    learning_rate=0.001,
    budget=40_000,
    impossible_share=0.0,
    trivial_share=0.0,
    continuous=True,
)

STUDENTS = {
    s.name: s
    for s in (
        GRADED,
        FORGETTING,
        PREREQUISITES,
        NOISY,
        NOISY_BINARISED,
        NOISY_PREREQUISITES,
        FAST,
        CONTINUOUS,
    )
}
