"""Curriculum algorithms: pure scoring of pool snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curriculum.algorithms.base import CurriculumAlgorithm, PoolView
from curriculum.algorithms.discrete_random import DiscreteRandomAlgorithm
from curriculum.algorithms.learning_progress import LearningProgressAlgorithm
from curriculum.algorithms.prioritized_replay import PrioritizedReplayAlgorithm
from curriculum.algorithms.range_expansion import RangeExpansionAlgorithm

if TYPE_CHECKING:
    from curriculum.config import AlgorithmConfig


def make_algorithm(config: AlgorithmConfig, ranges: Any = None) -> CurriculumAlgorithm:
    """The algorithm a config describes (by its ``type``); range expansion scores against
    ``ranges`` (the session's :class:`~curriculum.range_session.RangeTracker`)."""
    if config.type == "learning_progress":
        return LearningProgressAlgorithm(config)
    if config.type == "range_expansion":
        return RangeExpansionAlgorithm(config, ranges)
    if config.type == "prioritized_level_replay":
        return PrioritizedReplayAlgorithm(config)
    return DiscreteRandomAlgorithm()


__all__ = [
    "CurriculumAlgorithm",
    "DiscreteRandomAlgorithm",
    "LearningProgressAlgorithm",
    "PoolView",
    "PrioritizedReplayAlgorithm",
    "RangeExpansionAlgorithm",
    "make_algorithm",
]
