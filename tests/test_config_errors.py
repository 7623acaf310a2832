"""Config errors name the bad field in one short message and say how to fix it."""

from __future__ import annotations

from typing import Any

import pytest

from curriculum import (
    BucketedTaskGenerator,
    CurriculumConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    TaskGeneratorSet,
)
from curriculum.errors import ConfigError
from curriculum.staged_config import CurriculumStage, StagedCurriculumConfig

CHILD = SingleTaskGenerator.Config(env={"label": "nav", "difficulty": 0.0, "size": 8})


def message(build: Any) -> str:
    with pytest.raises(ConfigError) as info:
        build()
    text = str(info.value)
    assert "\n" not in text and len(text) < 600, text  # one line, one screen
    assert "SingleTaskGeneratorConfig(" not in text  # no repr of nested configs
    return text


def test_misspelt_field_of_a_generator_set_suggests_the_closest() -> None:
    text = message(lambda: TaskGeneratorSet.Config(generators=[CHILD, CHILD], weights=[1, 1]))
    assert "unknown field 'generators': did you mean 'generator_configs'?" in text


def test_misspelt_field_nested_in_a_dict_config_suggests_the_closest() -> None:
    text = message(
        lambda: CurriculumConfig(
            task_generator={"type": "set", "generator_config": [CHILD.model_dump()]}
        )
    )
    assert "did you mean 'generator_configs'?" in text
    text = message(
        lambda: CurriculumConfig(
            task_generator=CHILD,
            algorithm_config={"type": "learning_progress", "ema_timescal": 0.1},
        )
    )
    assert "unknown field 'ema_timescal' (given 0.1): did you mean 'ema_timescale'?" in text


def test_a_prefix_of_a_field_suggests_it() -> None:
    text = message(lambda: BucketedTaskGenerator.Config(child=CHILD, buckets={"size": [8]}))
    assert "did you mean 'child_generator_config'?" in text


def test_a_field_of_another_config_says_where_it_goes() -> None:
    text = message(lambda: LearningProgressConfig(max_labels=8))
    assert "'max_labels' is a field of CurriculumConfig, not of LearningProgressConfig" in text
    # an exact field of another config wins over a close name of this one ('backend_url')
    for name, value in (("on_backend_unavailable", "buffer"), ("backend_timeout_s", 0.3)):
        text = message(lambda: LearningProgressConfig(**{name: value}))  # noqa: B023
        assert f"'{name}' is a field of CurriculumConfig" in text and "did you mean" not in text
    text = message(lambda: CurriculumConfig(task_generator=CHILD, ema_timescale=0.1))
    assert "'ema_timescale' is a field of LearningProgressConfig" in text
    assert "set it inside algorithm_config=" in text


def test_an_unknown_field_with_no_close_match_lists_the_fields() -> None:
    text = message(lambda: LearningProgressConfig(zzz=1))
    assert "unknown field 'zzz'" in text and "ema_timescale" in text


def test_staged_config_fields_are_suggested_too() -> None:
    stage = CurriculumStage(name="easy", curriculum=CurriculumConfig(task_generator=CHILD))
    text = message(lambda: StagedCurriculumConfig(stage=[stage]))
    assert "did you mean 'stages'?" in text


def test_a_bad_value_keeps_its_short_input_and_message() -> None:
    text = message(lambda: CurriculumConfig(task_generator=CHILD, num_active_tasks=0))
    assert "num_active_tasks=0: Input should be greater than 0" in text
