"""Curriculum algorithms: pure scoring of pool snapshots."""

from __future__ import annotations

from curriculum.algorithms.base import CurriculumAlgorithm, PoolView
from curriculum.algorithms.discrete_random import DiscreteRandomAlgorithm
from curriculum.algorithms.learning_progress import LearningProgressAlgorithm
from curriculum.config import DiscreteRandomConfig, LearningProgressConfig


def make_algorithm(config: DiscreteRandomConfig | LearningProgressConfig) -> CurriculumAlgorithm:
    """The algorithm a config describes."""
    if isinstance(config, LearningProgressConfig):
        return LearningProgressAlgorithm(config)
    return DiscreteRandomAlgorithm()


__all__ = [
    "CurriculumAlgorithm",
    "DiscreteRandomAlgorithm",
    "LearningProgressAlgorithm",
    "PoolView",
    "make_algorithm",
]
