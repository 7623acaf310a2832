"""The staged progressive curriculum: config checks, the stage-record spec, and the facade."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import unique_session

from backends import open_backend
from backends.stage_state import (
    MAX_STAGES,
    StageRule,
    StageState,
    StageUpdate,
    apply_stage_update,
    fold_scores,
)
from curriculum import (
    BucketedTaskGenerator,
    CurriculumConfig,
    CurriculumStage,
    DiscreteRandomConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
    StagedCurriculum,
    StagedCurriculumConfig,
)
from curriculum.config import RangeAxis, RangeExpansionConfig
from curriculum.curriculum import pool_params
from curriculum.errors import (
    CheckpointError,
    ConfigError,
    InvariantViolationError,
    PoolMismatchError,
    PoolNotFoundError,
    ScoreError,
    UnknownTaskError,
)


def stage(name: str, *, agents: int = 2, weight: float = 1.0, **curriculum: Any) -> CurriculumStage:
    """A stage whose tasks are labelled by the stage name and vary in ``level``."""
    generator = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": name, "game": {"num_agents": agents, "level": 0}}
        ),
        buckets={"game.level": [1, 2, 3]},
    )
    curriculum.setdefault("num_active_tasks", 8)
    curriculum.setdefault("write_batch_size", 1)  # stage updates as they happen, unless a test
    return CurriculumStage(
        name=name,
        weight=weight,
        curriculum=CurriculumConfig(task_generator=generator, **curriculum),
    )


def staged_config(**fields: Any) -> StagedCurriculumConfig:
    fields.setdefault("stages", [stage("easy"), stage("hard")])
    fields.setdefault("session_id", unique_session("staged"))
    return StagedCurriculumConfig(**fields)


@pytest.fixture
def staged(backend_url: str | None) -> Iterator[Callable[..., StagedCurriculum]]:
    """Build staged curricula on the test's backend; all are destroyed after the test."""
    opened: list[StagedCurriculum] = []

    def build(config: StagedCurriculumConfig | None = None, **fields: Any) -> StagedCurriculum:
        fields.setdefault("backend_url", backend_url)
        curriculum = StagedCurriculum(config or staged_config(**fields))
        opened.append(curriculum)
        return curriculum

    yield build
    for curriculum in opened:
        if not curriculum._closed:
            curriculum.destroy()


def play(curriculum: StagedCurriculum, episodes: int, score: float = 1.0, steps: int = 1) -> list:
    """Play ``episodes`` episodes with one score; the tasks played."""
    tasks = []
    for _ in range(episodes):
        task = curriculum.get_task()
        curriculum.update_task_performance(task.task_id, score, steps=steps)
        tasks.append(task)
    return tasks


# -- config ---------------------------------------------------------------------------------------


def test_stage_names_must_be_unique() -> None:
    with pytest.raises(ConfigError, match=r"repeated.*'easy'"):
        staged_config(stages=[stage("easy"), stage("easy")])


def test_a_stage_may_not_name_its_own_pool() -> None:
    own = stage("own", algorithm_config=LearningProgressConfig(session_id="elsewhere"))
    with pytest.raises(ConfigError, match=r"stage 'own' sets algorithm_config\.session_id"):
        staged_config(stages=[stage("easy"), own])


def test_invariant_fields_must_agree_across_stages_naming_stage_and_field() -> None:
    with pytest.raises(ConfigError, match=r"'game.num_agents' differs.*'hard' has 4.*'easy' has 2"):
        staged_config(
            stages=[stage("easy", agents=2), stage("hard", agents=4)],
            invariant_fields=["game.num_agents"],
        )
    with pytest.raises(ConfigError, match=r"stage 'easy': invariant field 'game\.missing'"):
        staged_config(invariant_fields=["game.missing"])
    config = staged_config(invariant_fields=["game.num_agents"])
    assert config.stage_config(1).task_generator.invariant_fields == ["game.num_agents"]


def test_an_invariant_field_that_varies_inside_a_stage_fails_on_the_task() -> None:
    config = staged_config(invariant_fields=["game.level"])  # every stage's task 0 agrees...
    generator = config.stage_config(0).task_generator.create()
    levels = set()
    with pytest.raises(InvariantViolationError, match=r"'game\.level'"):
        for task_id in range(50):  # ...but the bucket varies it across tasks
            levels.add(generator.generate(task_id).env_cfg["game"]["level"])


def test_env_overrides_apply_to_every_stage_after_its_own_values() -> None:
    config = staged_config(env_overrides={"game.level": 7, "game.max_steps": 50})
    for index in range(2):
        env = config.stage_config(index).task_generator.create().generate(123).env_cfg
        assert env["game"]["level"] == 7 and env["game"]["max_steps"] == 50


def test_stages_get_distinct_task_id_streams_and_share_the_backend() -> None:
    config = staged_config(backend_url="redis://example:6379/0")
    first, second = config.stage_config(0), config.stage_config(1)
    assert first.seed == config.stages[0].curriculum.seed
    assert first.seed != second.seed
    assert second.algorithm_config.backend_url == "redis://example:6379/0"
    assert "example" in repr(config)


def test_config_limits_are_refused_with_the_value() -> None:
    with pytest.raises(ConfigError, match="session_id"):
        staged_config(session_id="x" * 91)
    with pytest.raises(ConfigError, match="stages"):
        staged_config(stages=[stage(f"s{i}") for i in range(MAX_STAGES + 1)])
    with pytest.raises(ConfigError, match="transition_criteria"):
        staged_config(transition_criteria="sometimes")
    with pytest.raises(ConfigError, match="weight"):
        stage("bad", weight=0.0)


def test_the_config_round_trips_through_json() -> None:
    config = staged_config(transition_criteria="combined", env_overrides={"game.level": 1})
    again = StagedCurriculumConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert again.staging_params() == config.staging_params()


# -- the stage-record spec ------------------------------------------------------------------------


def rule(criteria: str = "performance", budgets: tuple[int, ...] = (10, 10, 10)) -> StageRule:
    names = tuple(f"s{i}" for i in range(len(budgets)))
    return StageRule(criteria=criteria, threshold=0.8, budgets=budgets, smoothing=0.5, names=names)


def update(stage: int, scores: list[float], steps: int, smoothing: float = 0.5) -> StageUpdate:
    decay, add = fold_scores(scores, smoothing)
    return StageUpdate(stage, len(scores), decay, add, steps)


def test_the_fold_equals_applying_scores_one_by_one() -> None:
    scores = [0.3, 1.0, 0.0, 0.25, 0.9]
    for start in (0.0, 0.4, 1.0):
        ema = start
        for score in scores:
            ema += 0.1 * (score - ema)
        decay, add = fold_scores(scores, 0.1)
        assert start * decay + add == pytest.approx(ema, abs=1e-15)


def test_performance_criterion_ends_a_stage_when_its_ema_reaches_the_threshold() -> None:
    state = StageState()
    assert apply_stage_update(state, update(0, [1.0], 1), rule()) is None  # 0.5 < 0.8
    assert apply_stage_update(state, update(0, [1.0], 1), rule()) is None  # 0.75
    assert apply_stage_update(state, update(0, [1.0], 1), rule()) == 0  # 0.875
    assert (state.stage, state.transitions, state.stage_steps, state.total_steps) == (1, 1, 0, 3)
    assert state.outcomes[:2] == [3, 0]


def test_time_criterion_counts_only_the_current_stages_steps() -> None:
    state = StageState()
    assert apply_stage_update(state, update(0, [0.0], 9), rule("time")) is None
    assert apply_stage_update(state, update(0, [0.0], 1), rule("time")) == 0
    # late steps of stage 0 count in the total, not in stage 1's clock
    assert apply_stage_update(state, update(0, [0.0], 50), rule("time")) is None
    assert (state.stage, state.stage_steps, state.total_steps) == (1, 0, 60)
    assert state.outcomes[0] == 3


def test_combined_criterion_needs_both() -> None:
    state = StageState()
    assert apply_stage_update(state, update(0, [1.0] * 5, 2), rule("combined")) is None
    assert state.performance[0] >= 0.8  # performance alone is not enough...
    assert apply_stage_update(state, update(0, [0.0], 8), rule("combined")) is None
    assert state.performance[0] < 0.8  # ...and the time came when performance had dropped
    assert apply_stage_update(state, update(0, [1.0, 1.0], 1), rule("combined")) == 0


def test_the_last_stage_never_ends_and_each_update_ends_at_most_one_stage() -> None:
    state = StageState()
    for _ in range(20):
        apply_stage_update(state, update(state.stage, [1.0] * 10, 100), rule("time"))
    assert state.stage == 2 and state.transitions == 2


# -- the facade -----------------------------------------------------------------------------------


def test_a_stage_ends_once_its_performance_is_reached(staged, caplog) -> None:
    curriculum = staged(transition_smoothing=0.2)
    caplog.set_level(logging.INFO, logger="curriculum.staged")
    tasks = play(curriculum, 8, score=0.5)
    curriculum.flush()
    assert curriculum.stage == 0 and {t.get_label().split("|")[0] for t in tasks} == {"easy"}
    play(curriculum, 40, score=1.0)
    state = curriculum.stage_state()
    assert state.stage == 1 and state.transitions == 1 and curriculum.stage_name == "hard"
    assert state.performance[0] >= 0.8
    task = curriculum.get_task()
    assert task.stage == 1 and task.get_label().startswith("hard|")
    lines = [r.getMessage() for r in caplog.records if r.name == "curriculum.staged"]
    assert len(lines) == 1 and "'easy' -> 'hard'" in lines[0] and "at step" in lines[0]


def test_late_outcomes_of_an_ended_stage_go_to_its_pool_and_its_performance(staged) -> None:
    curriculum = staged(transition_criteria="time", time_threshold_steps=20)
    held = curriculum.get_task()  # an episode of stage 0 that is still running
    play(curriculum, 4, score=0.0, steps=5)
    curriculum.flush()
    assert curriculum.stage_state().stage == 1
    before = curriculum.stats()
    curriculum.update_task_performance(held.task_id, 1.0, steps=3)
    after = curriculum.stats()
    assert after["curriculum/stage_outcomes/easy"] == before["curriculum/stage_outcomes/easy"] + 1
    assert after["curriculum/stage_performance/easy"] > before["curriculum/stage_performance/easy"]
    assert after["curriculum/stage_steps"] == before["curriculum/stage_steps"]  # not stage 1's
    assert after["curriculum/total_steps"] == before["curriculum/total_steps"] + 3
    easy_pool = curriculum._stage(0).stats()
    assert easy_pool["curriculum/num_completed"] == 5 and easy_pool["curriculum/num_steps"] == 23


def test_stage_weights_scale_the_time_budget(staged) -> None:
    curriculum = staged(
        stages=[stage("a", weight=0.5), stage("b", weight=2.0), stage("c")],
        transition_criteria="time",
        time_threshold_steps=10,
    )
    play(curriculum, 5, steps=1)
    assert curriculum.stage_state().stage == 1  # 0.5 * 10 steps
    play(curriculum, 19, steps=1)
    assert curriculum.stage_state().stage == 1
    play(curriculum, 1, steps=1)
    assert curriculum.stage_state().stage == 2  # after 2.0 * 10 more


def test_stage_updates_are_batched_like_outcomes(staged) -> None:
    curriculum = staged(
        stages=[stage("easy", write_batch_size=4), stage("hard")],
        transition_criteria="time",
        time_threshold_steps=2,
    )
    root = curriculum._stage(0).backend
    play(curriculum, 3)
    assert root.stage_state().outcomes[0] == 0  # still buffered in this process
    play(curriculum, 1)
    assert root.stage_state().outcomes[0] == 4  # one update, so one transition past 2 steps
    assert root.stage_state().stage == 1 and curriculum.stage == 1


def test_stats_carry_the_stage_keys_and_the_current_stages_pool(staged) -> None:
    curriculum = staged(transition_criteria="time", time_threshold_steps=6)
    play(curriculum, 3, score=0.5, steps=2)
    play(curriculum, 2, score=0.25, steps=1)
    stats = curriculum.stats()
    assert stats["curriculum/current_stage"] == 1.0
    assert stats["curriculum/stage_transitions"] == 1.0
    assert stats["curriculum/stage_steps"] == 2.0
    assert stats["curriculum/total_steps"] == 8.0
    assert stats["curriculum/stage_outcomes/easy"] == 3.0
    assert stats["curriculum/stage_outcomes/hard"] == 2.0
    assert 0 < stats["curriculum/stage_performance/hard"] < 0.25
    assert stats["curriculum/num_completed"] == 2.0  # the pool keys are the current stage's
    assert any(key.startswith("label/hard|") for key in stats)
    assert not any(key.startswith("label/easy|") for key in stats)
    json.dumps(stats)


def test_batches_are_routed_by_stage_and_validated_first(staged) -> None:
    curriculum = staged(transition_criteria="time", time_threshold_steps=4)
    old = curriculum.get_task()
    play(curriculum, 4, steps=1)
    new = curriculum.get_task()
    assert (old.stage, new.stage) == (0, 1)
    with pytest.raises(ScoreError, match="nan"):
        curriculum.update_task_performance_batch([old.task_id, new.task_id], [0.5, float("nan")])
    with pytest.raises(ScoreError, match="steps"):
        curriculum.update_task_performance_batch([old.task_id], [0.5], steps=[-1])
    before = curriculum.stage_state()
    curriculum.update_task_performance_batch([old.task_id, new.task_id], [0.5, 1.0], steps=[3, 4])
    after = curriculum.stage_state()
    assert after.outcomes[:2] == [before.outcomes[0] + 1, before.outcomes[1] + 1]
    assert after.total_steps == before.total_steps + 7 and after.stage_steps == 4
    with pytest.raises(UnknownTaskError, match="12345"):
        curriculum.update_task_performance(12345, 0.5)


def test_a_checkpoint_resumes_mid_stage(staged) -> None:
    source = staged(
        stages=[stage("a"), stage("b"), stage("c")],
        transition_criteria="time",
        time_threshold_steps=10,
    )
    play(source, 13, score=0.6)
    saved = json.loads(json.dumps(source.get_state()))
    expected = source.stage_state()
    assert expected.stage == 1 and expected.stage_steps == 3
    target = staged(config=source.config.model_copy(update={"session_id": unique_session("r")}))
    assert target.stage == 0
    target.load_state(saved)
    resumed = target.stage_state()
    assert resumed == expected
    assert target.get_task().stage == 1
    play(target, 7)
    assert target.stage_state().stage == 2  # the clock went on from 3 steps


def test_checkpoints_of_other_stages_or_rules_are_refused(staged) -> None:
    curriculum = staged()
    play(curriculum, 3)
    state = curriculum.get_state()
    other = staged(stages=[stage("easy"), stage("harder")])
    with pytest.raises(CheckpointError, match="'harder'"):
        other.load_state(state)
    stricter = staged(performance_threshold=0.95)
    with pytest.raises(CheckpointError, match="threshold"):
        stricter.load_state(state)
    with pytest.raises(CheckpointError, match="format"):
        stricter.load_state({"format": "nonsense"})
    assert stricter.stage_state() == StageState()  # untouched


def test_attaching_with_another_rule_is_refused(staged) -> None:
    curriculum = staged()
    changed = curriculum.config.model_copy(update={"performance_threshold": 0.5})
    with pytest.raises(PoolMismatchError, match="threshold"):
        StagedCurriculum(changed)


def test_stages_may_use_different_algorithms(staged) -> None:
    curriculum = staged(
        stages=[stage("easy", algorithm_config=DiscreteRandomConfig()), stage("hard")],
        transition_criteria="time",
        time_threshold_steps=3,
    )
    play(curriculum, 3)
    assert curriculum.get_task().stage == 1
    assert curriculum._stage(0).config.algorithm_config.type == "discrete_random"


def test_epochs_end_in_every_stage(staged) -> None:
    curriculum = staged(transition_criteria="time", time_threshold_steps=3)
    play(curriculum, 5)
    counters = curriculum.on_epoch_end()
    assert counters["epoch/num_completed"] == 5 and counters["epoch/num_steps"] == 5
    assert curriculum.on_epoch_end()["epoch/num_completed"] == 0


def test_a_private_staged_curriculum_removes_all_its_pools(backend_url) -> None:
    curriculum = StagedCurriculum(staged_config(session_id=None, backend_url=backend_url))
    play(curriculum, 3)
    handles = [h for h in curriculum._stages if h is not None]
    assert len(handles) == 2
    curriculum.close()
    for handle in handles:
        with pytest.raises(PoolNotFoundError):
            open_backend(
                backend_url,
                handle.session_id,
                pool_params(handle.config),
                create=False,
                lock_timeout_s=1.0,
            )


def test_evaluation_tasks_come_from_the_stage_asked_for(staged) -> None:
    curriculum = staged()
    task = curriculum.task_for_id(1234, stage=1)
    assert task.stage == 1 and task.get_label().startswith("hard|")
    assert curriculum.task_for_id(1234).get_label().startswith("easy|")  # the current stage
    for bad in (2, -1, True, "1"):
        with pytest.raises(ConfigError, match="stage"):
            curriculum.task_for_id(1234, stage=bad)


def test_a_task_id_is_rebuilt_in_the_stage_it_belongs_to(staged, caplog) -> None:
    """Without ``stage``, a task this process handed out, or one active in a stage's pool, is
    rebuilt in its own stage after the switch (not in the current one); an id known nowhere is
    rebuilt in the current stage, with one warning saying so."""
    curriculum = staged(transition_criteria="time", time_threshold_steps=5)
    early = play(curriculum, 5)[0]
    assert curriculum.stage == 1
    replay = curriculum.task_for_id(early.task_id)
    assert (replay.stage, replay.get_env_cfg()) == (0, early.get_env_cfg())
    other = staged(config=curriculum.config)  # another handle: it handed out nothing
    active = curriculum._stage(0).backend.snapshot().rows["task_id"]
    known = int(active[active >= 0][0])
    assert other.task_for_id(known).stage == 0
    with caplog.at_level(logging.WARNING, logger="curriculum.staged"):
        assert other.task_for_id(987654321).stage == 1
        assert other.task_for_id(987654322).stage == 1
    warned = [
        r.getMessage() for r in caplog.records if "rebuilt in the current stage" in r.getMessage()
    ]
    assert len(warned) == 1 and "987654321" in warned[0] and "'stage'" in warned[0]


def range_stage(name: str) -> CurriculumStage:
    """A stage whose ``difficulty`` (a Span) grows by range expansion from its lower end."""
    generator = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": name, "game": {"num_agents": 2, "level": 0}, "difficulty": 0.0}
        ),
        buckets={"difficulty": Span(0.0, 1.0)},
    )
    algorithm = RangeExpansionConfig(axes={"difficulty": RangeAxis()}, grid=11, buffer_size=4)
    return CurriculumStage(
        name=name,
        curriculum=CurriculumConfig(
            task_generator=generator,
            num_active_tasks=8,
            write_batch_size=1,
            algorithm_config=algorithm,
        ),
    )


@pytest.mark.parametrize("position", [0, 1], ids=["first-stage", "second-stage"])
def test_a_range_expansion_stage_keeps_its_own_range_through_stages_and_checkpoints(
    staged, position: int
) -> None:
    """Range expansion as one stage of a staged curriculum (first: its pool also holds the
    stage record; second: it starts after a switch): its range widens while it runs, shows in
    the stats, survives the switch to the next stage and a checkpoint, and its tasks stay in
    its range."""
    stages = [stage("warmup"), stage("after")]
    stages.insert(position, range_stage("grow"))
    length = 60
    curriculum = staged(stages=stages, transition_criteria="time", time_threshold_steps=length)
    play(curriculum, length * position)  # through the warm-up stage, if it comes first
    assert curriculum.stage == position
    played = play(curriculum, 24, score=1.0)  # at most 6 widenings of 4 outcomes each
    assert {task.stage for task in played} == {position}
    stats = curriculum.stats()
    assert stats["range/difficulty/low"] == 0.0
    assert 0.0 < stats["range/difficulty/high"] <= 0.6
    pool = curriculum._stage(position)
    grown = pool.backend.range_state()
    assert grown.widened == stats["range/widened"] > 0
    for task in played:
        assert task.get_env_cfg()["difficulty"] <= stats["range/difficulty/high"] + 1e-9

    saved = json.loads(json.dumps(curriculum.get_state()))
    play(curriculum, length - 24, score=1.0)  # the rest of the range stage: it moves on
    assert curriculum.stage == position + 1
    assert pool.backend.range_state().version > grown.version
    assert "range/difficulty/high" not in curriculum.stats()  # the current stage's pool

    resumed = staged(
        config=curriculum.config.model_copy(update={"session_id": unique_session("r")})
    )
    resumed.load_state(saved)
    assert resumed.stage == position
    assert resumed._stage(position).backend.range_state() == grown
    assert resumed.stats()["range/difficulty/high"] == stats["range/difficulty/high"]


def _pool_figures(curriculum: StagedCurriculum) -> list[dict[str, float]]:
    """Every stage pool's figures, without this process's health figures and without the label
    names a load leaves in a table (labels are never removed; theirs count nothing: 0, or NaN
    for an average)."""
    figures = []
    for index in range(len(curriculum.config.stages)):
        stats = curriculum._stage(index).stats()
        figures.append(
            {
                k: v
                for k, v in stats.items()
                if not k.startswith(("health/", "label/", "curriculum/num_labels"))
                or (k.startswith("label/") and v and not math.isnan(v))
            }
        )
    return figures


def test_a_checkpoint_whose_root_part_is_refused_changes_no_stage(staged) -> None:
    """Every stage's part is checked before any pool changes: a damaged root part (loaded last)
    leaves the other stages' pools as they were too."""
    source = staged(transition_criteria="time", time_threshold_steps=10)
    play(source, 30)
    state = json.loads(json.dumps(source.get_state()))
    state["pools"][0]["counters"]["num_completed"] = -5
    target = staged(config=source.config.model_copy(update={"session_id": unique_session("r")}))
    play(target, 3, score=0.0)
    before = _pool_figures(target)
    with pytest.raises(CheckpointError, match="num_completed"):
        target.load_state(state)
    assert _pool_figures(target) == before
    assert target.stage == 0


def test_a_pool_refusing_its_part_while_loading_puts_the_others_back(staged, monkeypatch) -> None:
    """A refusal only the pool itself can find (its labels would not fit) comes after the later
    stages' pools were loaded: they are put back as they were."""
    source = staged(transition_criteria="time", time_threshold_steps=10)
    play(source, 30)
    state = source.get_state()
    target = staged(config=source.config.model_copy(update={"session_id": unique_session("r")}))
    play(target, 3, score=0.0)
    before = _pool_figures(target)

    def refuse(pool_state: object) -> None:
        raise CheckpointError("labels do not fit")

    monkeypatch.setattr(target._stage(0).backend, "import_state", refuse)
    with pytest.raises(CheckpointError, match="labels do not fit"):
        target.load_state(state)
    monkeypatch.undo()
    assert _pool_figures(target) == before
    assert target.stage == 0
