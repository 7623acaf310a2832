"""Configuration of a staged progressive curriculum: curricula that run one after another.

Each stage is a full :class:`~curriculum.config.CurriculumConfig` (any generator, any algorithm)
with a name and a weight. Stages run in order; the current stage and its performance live in the
shared pool of the first stage, so every process on every host switches together, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from backends.stage_state import MAX_STAGES, StageRule
from curriculum.config import SESSION_ID_PATTERN, CurriculumConfig
from curriculum.frozen_model import FrozenModel
from curriculum.generators import config_fingerprint
from curriculum.location import PoolLocation
from curriculum.paths import env_to_plain, get_path, split_path
from curriculum.redaction import redact_url
from curriculum.task_ids import splitmix64

if TYPE_CHECKING:
    from curriculum.staged import StagedCurriculum

STAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_SESSION_LENGTH = 90  # stage pools are named "<session>.stage<i>"
_SEED_MASK = 2**63 - 1


class CurriculumStage(FrozenModel):
    """One stage: a name, a weight and the curriculum it runs.

    Attributes:
        name: Unique among the stages; names the stage in stats keys and logs.
        weight: Scales the stage's length under the "time" and "combined" criteria: the stage
            lasts ``round(weight * time_threshold_steps)`` steps (at least 1).
        curriculum: The curriculum of this stage. Its pool's place (``session_id``,
            ``backend_url``) is set by the staged config and must be left unset here.
    """

    name: str = Field(pattern=STAGE_NAME_PATTERN)
    weight: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    curriculum: CurriculumConfig


class StagedCurriculumConfig(FrozenModel):
    """Stages that run in order, switching when the current one is learned or has run long enough.

    Attributes:
        stages: 1 to 16 stages, run in this order.
        transition_criteria: ``"performance"``: a stage ends when its performance (an EMA of its
            episodes' scores, starting at 0) reaches ``performance_threshold``. ``"time"``: when it
            has run ``round(weight * time_threshold_steps)`` steps. ``"combined"``: when both hold.
            The last stage never ends.
        performance_threshold: The stage performance that ends a stage, in [0, 1].
        time_threshold_steps: Length of a stage of weight 1, in steps: the environment steps
            reported with each outcome (``update_task_performance(..., steps=n)``;
            :class:`~curriculum.CurriculumEnv` reports episode lengths), 1 per episode otherwise.
        transition_smoothing: Rate of the stage performance EMA, in (0, 1]: each outcome moves
            it by this share towards the outcome's score.
        env_overrides: Dotted paths set on every task's env config in every stage (after the
            stage's own generator and overrides).
        invariant_fields: Dotted env-config paths that must have one value in every task of every
            stage (e.g. ``"game.num_agents"``): checked across stages when the config is built,
            and on every generated task.
        session_id: Name of the shared state (see ``LearningProgressConfig.session_id``); at most
            90 characters. ``None`` makes it private to this curriculum and its workers.
        backend_url: ``None`` for /dev/shm, or a ``redis://`` URL; every stage uses it.
    """

    stages: list[CurriculumStage] = Field(min_length=1, max_length=MAX_STAGES)
    transition_criteria: Literal["performance", "time", "combined"] = "performance"
    performance_threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    time_threshold_steps: int = Field(default=100_000, ge=1)
    transition_smoothing: float = Field(default=0.1, gt=0.0, le=1.0)
    env_overrides: dict[str, Any] = Field(default_factory=dict)
    invariant_fields: list[str] = Field(default_factory=list)
    session_id: str | None = None
    backend_url: str | None = None

    @model_validator(mode="after")
    def _check(self) -> StagedCurriculumConfig:
        self._check_session()
        names = [stage.name for stage in self.stages]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"stage names must be unique; repeated: {repeated}")
        for stage in self.stages:
            algorithm = stage.curriculum.algorithm_config
            for field in ("session_id", "backend_url"):
                if getattr(algorithm, field) is not None:
                    raise ValueError(
                        f"stage {stage.name!r} sets algorithm_config.{field}; set {field} on "
                        "StagedCurriculumConfig instead (every stage shares it)"
                    )
        for path in [*self.env_overrides, *self.invariant_fields]:
            split_path(path)
        self._check_invariants()
        return self

    def _check_session(self) -> None:
        session = self.session_id
        if session is not None and (
            len(session) > MAX_SESSION_LENGTH or not SESSION_ID_PATTERN.fullmatch(session)
        ):
            raise ValueError(
                f"session_id {session!r} must be 1-{MAX_SESSION_LENGTH} characters of letters, "
                "digits, '.', '_' or '-', starting with a letter or digit"
            )

    def _check_invariants(self) -> None:
        """Every invariant field has the same value in each stage's reference task (id 0)."""
        if not self.invariant_fields:
            return
        reference: dict[str, tuple[str, Any]] = {}
        for index, stage in enumerate(self.stages):
            generator = self.stage_generator_config(index).create()
            for path in self.invariant_fields:
                try:
                    value = get_path(env_to_plain(generator.generate(0).env_cfg), path)
                except ValueError as exc:
                    raise ValueError(
                        f"stage {stage.name!r}: invariant field {path!r} is missing: {exc}"
                    ) from None
                first = reference.setdefault(path, (stage.name, value))
                if value != first[1]:
                    raise ValueError(
                        f"invariant field {path!r} differs across stages: stage {stage.name!r} "
                        f"has {value!r}, stage {first[0]!r} has {first[1]!r}"
                    )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "backend_url" and value else value)

    # -- what each stage runs ---------------------------------------------------------------------

    def stage_generator_config(self, index: int) -> Any:
        """Stage ``index``'s task generator config with the env overrides and invariant fields."""
        generator = self.stages[index].curriculum.task_generator
        update: dict[str, Any] = {}
        if self.env_overrides:
            update["overrides"] = {**generator.overrides, **self.env_overrides}
        if self.invariant_fields:
            known = list(generator.invariant_fields)
            update["invariant_fields"] = known + [
                path for path in self.invariant_fields if path not in known
            ]
        if not update:
            return generator
        return type(generator).model_validate({**generator.model_dump(), **update})

    def stage_config(self, index: int) -> CurriculumConfig:
        """The curriculum config stage ``index`` runs (its pool's place is set separately).

        Stages after the first get a seed mixed with their index, so their task ids differ from
        the other stages' even when every stage keeps the default seed.
        """
        config = self.stages[index].curriculum
        seed = config.seed if index == 0 else splitmix64((config.seed ^ index) & _SEED_MASK)
        algorithm = config.algorithm_config.model_copy(update={"backend_url": self.backend_url})
        return CurriculumConfig.model_validate(
            {
                **dict(config),
                "task_generator": self.stage_generator_config(index),
                "algorithm_config": algorithm,
                "seed": seed & _SEED_MASK,
            }
        )

    def stage_rule(self) -> StageRule:
        """When each stage ends (stored in, and checked against, the shared state)."""
        return StageRule(
            criteria=self.transition_criteria,
            threshold=self.performance_threshold,
            budgets=tuple(
                max(1, round(stage.weight * self.time_threshold_steps)) for stage in self.stages
            ),
            smoothing=self.transition_smoothing,
            names=tuple(stage.name for stage in self.stages),
        )

    def staging_params(self) -> dict[str, Any]:
        """The stage rule plus a fingerprint of every stage's config, as the root pool stores it."""
        stages = [self.stage_config(i).model_dump(mode="json") for i in range(len(self.stages))]
        fingerprint = config_fingerprint(_Fingerprinted(stages=stages))
        return {**self.stage_rule().to_dict(), "stages_fingerprint": fingerprint}

    def make(self) -> StagedCurriculum:
        """Build the staged curriculum (same as ``StagedCurriculum(config)``)."""
        from curriculum.staged import StagedCurriculum

        return StagedCurriculum(self)


def stage_session(session_id: str, index: int) -> str:
    """The pool name of stage ``index`` of the staged curriculum ``session_id``."""
    return PoolLocation(session_id).stage(index).session_id


class _Fingerprinted(FrozenModel):
    stages: list[dict[str, Any]]
