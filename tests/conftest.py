"""Shared test fixtures: configs with unique sessions, and pools that are always closed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    DiscreteRandomConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
    TaskGeneratorSet,
)


def unique_session(prefix: str = "test") -> str:
    """A session id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def nav_generator() -> BucketedTaskGenerator.Config:
    """The generator of the README example."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "nav", "difficulty": 0.0}),
        buckets={"difficulty": [0.1, 0.5, 0.9], "size": Span(8, 32)},
    )


def kinds_generator(
    weights: tuple[float, float, float] = (1.0, 1.0, 2.0),
) -> TaskGeneratorSet.Config:
    """Impossible, mastered and learnable tasks, by label."""
    return TaskGeneratorSet.Config(
        generator_configs=[
            SingleTaskGenerator.Config(env={"label": "impossible"}),
            SingleTaskGenerator.Config(env={"label": "mastered"}),
            BucketedTaskGenerator.Config(
                child_generator_config=SingleTaskGenerator.Config(env={"label": "learnable"}),
                buckets={"variant": Span(0, 1_000_000)},
            ),
        ],
        weights=list(weights),
    )


def make_config(*, algorithm: str = "lp", generator: Any = None, **fields: Any) -> CurriculumConfig:
    """A config with a fresh session; ``lp_*`` keyword arguments go to the algorithm config."""
    algo_fields = {k[3:]: v for k, v in fields.items() if k.startswith("lp_")}
    rest = {k: v for k, v in fields.items() if not k.startswith("lp_")}
    algo_fields.setdefault("session_id", unique_session())
    algorithm_config = (
        LearningProgressConfig(**algo_fields)
        if algorithm == "lp"
        else DiscreteRandomConfig(**algo_fields)
    )
    rest.setdefault("num_active_tasks", 32)
    return CurriculumConfig(
        task_generator=generator or nav_generator(), algorithm_config=algorithm_config, **rest
    )


@pytest.fixture
def curricula() -> Iterator[Callable[..., Curriculum]]:
    """Build curricula with :func:`make_config`'s arguments; all are closed after the test."""
    opened: list[Curriculum] = []

    def build(config: CurriculumConfig | None = None, **fields: Any) -> Curriculum:
        curriculum = Curriculum(config or make_config(**fields))
        opened.append(curriculum)
        return curriculum

    yield build
    for curriculum in opened:
        curriculum.close()
