"""A simulated student and task space, for the demo and for testing curricula without an RL agent.

The task space has graded difficulties in [0, 1], a share of impossible tasks (always fail) and a
share of trivial tasks (always succeed). The student has one competence per difficulty level; its
chance of success on a task of difficulty ``d`` is ``sigmoid(sharpness * (competence[d] - d))``.
Practice teaches most at the edge of competence (success near 50%) and transfers to neighbouring
difficulty levels. Competence lives in a shared array, so worker processes train one student.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from typing import Any

import numpy as np

from curriculum.generators import BucketedTaskGenerator, SingleTaskGenerator, TaskGeneratorSet

DIFFICULTIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def task_space(
    impossible_share: float = 0.1, trivial_share: float = 0.1
) -> TaskGeneratorSet.Config:
    """Graded tasks (labels ``graded|difficulty:<d>``), plus ``impossible`` and ``trivial`` ones.

    Tasks with equal bucket values are still distinct tasks: each has its own id (which a real
    environment would use as its level seed) and its own statistics.
    """
    graded = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "graded"}),
        buckets={"difficulty": list(DIFFICULTIES)},
    )
    return TaskGeneratorSet.Config(
        generator_configs=[
            graded,
            SingleTaskGenerator.Config(env={"label": "impossible"}),
            SingleTaskGenerator.Config(env={"label": "trivial"}),
        ],
        weights=[1.0 - impossible_share - trivial_share, impossible_share, trivial_share],
    )


class SimulatedStudent:
    """One student's competence per difficulty level, optionally shared between processes."""

    def __init__(
        self,
        learning_rate: float = 0.02,
        transfer: float = 0.5,
        sharpness: float = 12.0,
        initial_competence: float = 0.05,
        shared: bool = False,
    ) -> None:
        """A student that starts able to solve only the easiest tasks."""
        self.learning_rate = learning_rate
        self.transfer = transfer
        self.sharpness = sharpness
        values = [initial_competence] * len(DIFFICULTIES)
        self._competence: Any = mp.get_context("spawn").Array("d", values) if shared else values

    def success_probability(self, env_cfg: dict[str, Any]) -> float:
        """Chance of success on the task ``env_cfg``."""
        label = env_cfg.get("label")
        if label == "impossible":
            return 0.0
        if label == "trivial":
            return 1.0
        level = DIFFICULTIES.index(env_cfg["difficulty"])
        gap = self._competence[level] - env_cfg["difficulty"]
        return 1.0 / (1.0 + math.exp(-self.sharpness * gap))

    def play(self, env_cfg: dict[str, Any], rng: np.random.Generator) -> float:
        """Play one episode: returns the score (0 or 1) and learns from the attempt."""
        p = self.success_probability(env_cfg)
        if env_cfg.get("label") == "graded":
            level = DIFFICULTIES.index(env_cfg["difficulty"])
            gain = self.learning_rate * 4.0 * p * (1.0 - p)
            for other in range(len(DIFFICULTIES)):
                weight = self.transfer ** abs(other - level)
                self._competence[other] = min(1.2, self._competence[other] + gain * weight)
        return float(rng.random() < p)

    def mastery(self) -> float:
        """Mean success probability over the graded difficulty levels."""
        return float(
            np.mean(
                [
                    self.success_probability({"label": "graded", "difficulty": d})
                    for d in DIFFICULTIES
                ]
            )
        )
