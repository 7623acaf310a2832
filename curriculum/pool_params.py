"""The parameters that define a pool, derived from a curriculum config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backends.base import PoolParams
from curriculum.generators import config_fingerprint
from curriculum.range_rule import range_rule

if TYPE_CHECKING:
    from curriculum.config import CurriculumConfig


def pool_params(config: CurriculumConfig, staging: dict[str, Any] | None = None) -> PoolParams:
    """The parameters that define the pool ``config`` describes (``staging``: the stage rule of
    a staged curriculum's root pool)."""
    algorithm = config.algorithm_config
    ranges = None
    if algorithm.type == "range_expansion":
        ranges = range_rule(algorithm, config.task_generator).to_dict()  # type: ignore[arg-type]
    return PoolParams(
        capacity=config.num_active_tasks,
        label_capacity=config.max_labels,
        algorithm=algorithm.algorithm_params(),
        ema=algorithm.ema_params(),
        generator_fingerprint=config_fingerprint(config.task_generator),
        pool_seed=config.seed,
        staging=staging,
        ranges=ranges,
    )
