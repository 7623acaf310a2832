"""A distributed curriculum coordinator for reinforcement-learning training.

One pool of active tasks, shared by every environment worker (in /dev/shm on one host, or in
Redis across hosts), scored by learning progress.

The public names are imported lazily, so that the storage backends can use the core modules
(errors, statistics math) without importing the whole package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BucketedTaskGenerator": "curriculum.generators",
    "Curriculum": "curriculum.curriculum",
    "CurriculumConfig": "curriculum.config",
    "CurriculumEnv": "curriculum.env",
    "CurriculumStage": "curriculum.staged_config",
    "CurriculumTask": "curriculum.task",
    "DiscreteRandomConfig": "curriculum.config",
    "LearningProgressConfig": "curriculum.config",
    "RangeAxis": "curriculum.config",
    "RangeExpansionConfig": "curriculum.config",
    "PrioritizedLevelReplayConfig": "curriculum.plr_config",
    "SingleTaskGenerator": "curriculum.generators",
    "Span": "curriculum.generators",
    "StagedCurriculum": "curriculum.staged",
    "StagedCurriculumConfig": "curriculum.staged_config",
    "TaskGenerator": "curriculum.generators",
    "TaskGeneratorSet": "curriculum.generators",
}

__all__ = [
    "BucketedTaskGenerator",
    "Curriculum",
    "CurriculumConfig",
    "CurriculumEnv",
    "CurriculumStage",
    "CurriculumTask",
    "DiscreteRandomConfig",
    "LearningProgressConfig",
    "PrioritizedLevelReplayConfig",
    "RangeAxis",
    "RangeExpansionConfig",
    "SingleTaskGenerator",
    "Span",
    "StagedCurriculum",
    "StagedCurriculumConfig",
    "TaskGenerator",
    "TaskGeneratorSet",
]

if TYPE_CHECKING:
    from curriculum.config import (
        CurriculumConfig,
        DiscreteRandomConfig,
        LearningProgressConfig,
        RangeAxis,
        RangeExpansionConfig,
    )
    from curriculum.curriculum import Curriculum
    from curriculum.env import CurriculumEnv
    from curriculum.generators import (
        BucketedTaskGenerator,
        SingleTaskGenerator,
        Span,
        TaskGenerator,
        TaskGeneratorSet,
    )
    from curriculum.plr_config import PrioritizedLevelReplayConfig
    from curriculum.staged import StagedCurriculum
    from curriculum.staged_config import CurriculumStage, StagedCurriculumConfig
    from curriculum.task import CurriculumTask


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'curriculum' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
