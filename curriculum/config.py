"""Configuration models: the curriculum, its algorithm, and where its pool lives.

Configs are frozen pydantic models: they cross process boundaries (pickled into workers, or rebuilt
from JSON on another host), never live clients or locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from curriculum.algorithm_config import (  # noqa: F401 - re-exported
    DEFAULT_EMA,
    EMA_FIELDS,
    SESSION_ID_PATTERN,
    PoolAlgorithmConfig,
)
from curriculum.errors import ConfigError
from curriculum.frozen_model import FrozenModel
from curriculum.generators import AnyTaskGeneratorConfig
from curriculum.plr_config import PrioritizedLevelReplayConfig
from curriculum.range_rule import range_rule

if TYPE_CHECKING:
    from curriculum.curriculum import Curriculum


class DiscreteRandomConfig(PoolAlgorithmConfig):
    """Samples active tasks uniformly and never evicts.

    Its pool still tracks every statistic (with the default timescales of
    :class:`LearningProgressConfig`), so runs with either algorithm report comparable stats.
    """

    type: Literal["discrete_random"] = "discrete_random"


class LearningProgressConfig(PoolAlgorithmConfig):
    """Samples tasks by learning progress (how fast the success on a task is changing).

    The defaults were chosen on the curriculum-quality benchmark (``benchmarks/bench_quality.py``;
    measurements and reasons in BENCHMARKS.md, "Curriculum quality"). ``preset(name)`` gives
    named alternatives (see :data:`LEARNING_PROGRESS_PRESETS`).

    Attributes:
        use_bidirectional: Score by |fast EMA - slow EMA| of the normalised score (bidirectional
            learning progress). ``False`` scores by the variance of the score (basic scoring).
        ema_timescale: Rate ``a`` of the fast EMA and of the true-performance EMA (per outcome of
            the task). Default 0.2: follows a task's progress within about 5 of its outcomes.
        slow_timescale_factor: The slow EMA's rate is ``a * slow_timescale_factor``. Default 0.35
            (slow rate 0.07): a shorter lag than 0.2, so a task stops looking like it progresses
            sooner after it is learned.
        exploration_bonus: Z-score given to cold tasks (fewer than ``min_samples_for_lp``
            outcomes): a cold task is sampled like a warm task that many standard deviations
            above the pool's mean learning progress, on the same scale.
        progress_smoothing: Reweighting of the EMAs before their difference, in [0, 0.5).
            0 disables it; towards 0.5 it stretches progress made at low success rates. Default
            0.3: the first successes on a task that was always failed count about 4x, so tasks
            that became learnable (through practice on their neighbours) are found sooner.
        performance_bonus_weight: Adds this times the true-performance EMA to the raw score
            (at most 1e6, so that the scores' statistics stay finite).
        lp_score_temperature: When > 0, weights are ``exp(z / T)`` (softmax with temperature T);
            0 selects the sigmoid of ``z_score_amplification * z``. Default 0.5: the sigmoid
            caps any task at about twice the weight of an average one, the softmax lets the
            tasks that progress take most of the episodes.
        z_score_amplification: Slope of the sigmoid applied to the z-scored learning progress
            (used only when ``lp_score_temperature`` is 0).
        noise_floor: The spread that z-scores learning progress is at least this many times the
            spread that outcome noise alone would give the warm tasks (bidirectional scoring;
            estimated from each task's score variance and the two EMA rates). Without it, when
            no task progresses, z-scoring stretches noise (e.g. on tasks succeeding 95% of the
            time) into strong preferences; with it, sampling then stays broad and keeps
            re-trying tasks whose progress is zero so far. 0 disables it. Default 2.
        rand_task_rate: Share of samples drawn uniformly from the active tasks, mixed into the
            learning-progress distribution.
        min_samples_for_lp: Outcomes a task needs before its learning progress counts (warm).
        min_presentations_for_eviction: Outcomes a task needs before it may be evicted. At most
            one eviction per this many recorded outcomes can happen, which bounds churn.
        eviction_threshold_percentile: A task may be evicted when its score is at or below this
            quantile (a fraction in (0, 1]) of the scores of the tasks eligible for eviction.
        task_tracker_ema_alpha: Rate of the per-task reward EMAs (mean and second moment) shown
            in stats and used by basic scoring and by the noise floor.
        success_threshold: A score at or above this counts as a success in the success counts.
        noise_discount: Bidirectional scoring: each task's learning progress ``|d|`` is
            multiplied by ``d**2 / (d**2 + (c * sd)**2)`` with ``c = noise_discount`` and ``sd``
            the spread that outcome noise alone gives that task's ``d`` (estimated from its
            score variance and outcome count): progress well above the task's own noise counts
            fully, progress within it little; the noise floor shrinks to match. 0 (the default)
            disables it: measured, it cost AUC on binary scores and did not fix noisy ones.
        eviction_confidence: A task may be evicted by the percentile rule only when its score
            plus this many ``sd`` (as above) is still at or below the threshold: a low score
            evicts only when it is low beyond the task's own noise, not when noise took it there
            for a moment. Tasks whose outcomes do not vary (always failed, always solved) have
            no noise and go as before. Default 1: on the quality benchmark it cut evictions
            2x (graded student) to 7x (noisy continuous scores), for 0.01-0.02 less AUC on the
            graded student and 0.01 more on the noisy one. 0 disables it.
        dead_label_rate: Label priors (opt-in). A task's success rate shrunk towards its
            label's (its label's rate while cold) at most this makes the task *dead*, at least
            ``1 - dead_label_rate`` *solved*: both get next to no learning-progress weight
            (``rand_task_rate`` still samples them), and dead tasks are evicted first once they
            have ``dead_task_outcomes`` outcomes. It spends far fewer episodes on impossible
            tasks, but also starves levels that become learnable only later (their labels look
            dead until then): see BENCHMARKS.md. 0 (the default) disables it.
        dead_task_outcomes: Outcomes after which a dead task is evicted ahead of the percentile
            rule (with ``dead_label_rate``).
        flat_label_min_tasks: Flat labels (bidirectional scoring, continuous scores only): when
            a label has at least this many warm tasks with continuous scores and, pooled over
            them, their learning progress is no more than outcome noise would give them
            (:mod:`curriculum.algorithms.flat_labels`), they are sampled as if their progress
            were 0, like binary tasks that never succeeded (see ``flat_label_cap`` too). With
            continuous scores an impossible task's noise otherwise looks like slow progress: on
            the noisy student 40% of the episodes went to impossible tasks, 12-13% with progress
            0 (AUC 0.736 -> 0.787; BENCHMARKS.md, "Flat labels"). Eviction is unchanged; tasks
            with 0/1 scores are never affected. 0 disables it. Default 8.
        flat_label_cap: A flat label's warm tasks together weigh at most this many mean labels
            (active labelled tasks per label) of tasks, in the learning-progress weights and in
            the uniform ``rand_task_rate`` share: a label holding 40% of the pool no longer takes
            40% of the uniform share; labels of average size or smaller are unchanged. On the
            noisy student impossible tasks went from 12-13% to 6% of the episodes and AUC from
            0.784 to 0.800 (10 seeds); 0.5 starved levels still out of reach a little more, 2
            left 8%, a fixed 32 tasks left a level unlearned (BENCHMARKS.md, "A flat label
            weighs at most a mean label"). 0 disables the cap. Default 1.
    """

    type: Literal["learning_progress"] = "learning_progress"
    use_bidirectional: bool = True
    ema_timescale: float = Field(default=0.2, gt=0.0, le=1.0)
    slow_timescale_factor: float = Field(default=0.35, gt=0.0, le=1.0)
    exploration_bonus: float = Field(default=0.5, allow_inf_nan=False)
    progress_smoothing: float = Field(default=0.3, ge=0.0, lt=0.5)
    performance_bonus_weight: float = Field(default=0.0, ge=0.0, le=1e6, allow_inf_nan=False)
    lp_score_temperature: float = Field(default=0.5, ge=0.0, allow_inf_nan=False)
    z_score_amplification: float = Field(default=3.0, gt=0.0, allow_inf_nan=False)
    noise_floor: float = Field(default=2.0, ge=0.0, allow_inf_nan=False)
    rand_task_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    min_samples_for_lp: int = Field(default=3, ge=1)
    min_presentations_for_eviction: int = Field(default=10, ge=1)
    eviction_threshold_percentile: float = Field(default=0.4, gt=0.0, le=1.0)
    task_tracker_ema_alpha: float = Field(default=0.1, gt=0.0, le=1.0)
    success_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    noise_discount: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    eviction_confidence: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    dead_label_rate: float = Field(default=0.0, ge=0.0, lt=0.5)
    dead_task_outcomes: int = Field(default=3, ge=1)
    flat_label_min_tasks: int = Field(default=8, ge=0, le=1_000_000)
    flat_label_cap: float = Field(default=1.0, ge=0.0, le=1e6, allow_inf_nan=False)

    @classmethod
    def preset(cls, name: str, **fields: Any) -> LearningProgressConfig:
        """The named preset of :data:`LEARNING_PROGRESS_PRESETS`, with ``fields`` on top.

        ``fields`` take precedence over the preset's values: where the pool lives
        (``session_id``, ``backend_url``) or any other field.

        Raises:
            ConfigError: ``name`` is not a preset (the message lists them), or a value is invalid.
        """
        values = LEARNING_PROGRESS_PRESETS.get(name)
        if values is None:
            raise ConfigError(
                f"unknown LearningProgressConfig preset {name!r}; "
                f"choose one of {sorted(LEARNING_PROGRESS_PRESETS)}"
            )
        return cls(**{**values, **fields})


# Named alternatives to the defaults; each is measured by benchmarks/bench_quality.py (its table
# has a row per preset; BENCHMARKS.md, "Curriculum quality", says what each trades).
LEARNING_PROGRESS_PRESETS: dict[str, dict[str, Any]] = {
    # The tuned defaults.
    "default": {},
    # Slower EMAs, averaging twice as many outcomes per estimate: less weight on noise (fewer
    # episodes on impossible tasks), as fast as the defaults for a slow learner, slower to follow
    # an agent that masters a task within a few tens of its episodes.
    "stable": {"ema_timescale": 0.1, "slow_timescale_factor": 0.5},
    # Faster EMAs and a colder softmax: follows an agent that masters a task within a few tens of
    # its episodes, at the price of more weight on noise (more episodes on impossible tasks).
    "fast": {"ema_timescale": 0.3, "slow_timescale_factor": 0.5, "lp_score_temperature": 0.3},
    # The defaults before the quality benchmark tuned them (the reference implementation's
    # values): sigmoid weights, slower EMAs, no reweighting, no noise floor.
    "reference": {
        "ema_timescale": 0.1,
        "slow_timescale_factor": 0.2,
        "progress_smoothing": 0.0,
        "lp_score_temperature": 0.0,
        "noise_floor": 0.0,
        "flat_label_min_tasks": 0,
    },
}


class RangeAxis(FrozenModel):
    """The initial range of one expanding axis: values inside its Span (snapped to the grid).

    Attributes:
        low: Lower end of the initial range; None: the Span's lower end.
        high: Upper end of the initial range; None: equal to ``low`` (one value, ADR's start).
    """

    low: float | None = Field(default=None, allow_inf_nan=False)
    high: float | None = Field(default=None, allow_inf_nan=False)


class RangeExpansionConfig(PoolAlgorithmConfig):
    """Range expansion (automatic domain randomisation, ADR: OpenAI et al. 2019, "Solving
    Rubik's Cube with a Robot Hand").

    Each expanding axis is a ``Span`` bucket of the (bucketed) task generator, cut into
    ``grid`` points. Its range starts at the initial range and moves one ``step`` at a time: a
    share ``boundary_prob`` of new tasks is placed at one bound (the other axes drawn uniformly
    in their ranges); once ``buffer_size`` outcomes of one bound's tasks are in, their mean
    score moves the bound out (``>= widen_at``, never past the Span) or in (``<= narrow_at``,
    never inside the initial range). The ranges live in the pool (one record for every process
    and host, changed atomically: :mod:`backends.range_state`); a task's axis values are encoded
    in its id (:mod:`curriculum.range_ids`). Tasks are sampled uniformly (as ADR does) and
    turned over fast, as ADR draws a fresh environment per episode: a task is evicted after
    ``task_outcomes`` outcomes, and tasks outside the current range (or at a bound that moved)
    first.

    Attributes:
        axes: Bucket path -> its initial range. Each path must name a ``Span`` bucket of a
            ``BucketedTaskGeneratorConfig`` task generator (at most 8 axes).
        grid: Points of each axis's grid over its Span (an integer Span with fewer values has
            one point per value). Finer grids take more task-id bits.
        step: Grid points a bound moves per decision.
        boundary_prob: Share of new tasks placed at a bound (chosen uniformly among the bounds
            that can still move).
        buffer_size: Outcomes of one bound's tasks per decision (ADR's buffer size m).
        widen_at: A bound whose buffer's mean score is at least this moves out.
        narrow_at: A bound whose buffer's mean score is at most this moves in.
        task_outcomes: Outcomes after which a task is evicted (a fresh one takes its slot).
    """

    type: Literal["range_expansion"] = "range_expansion"
    axes: dict[str, RangeAxis] = Field(min_length=1, max_length=8)
    grid: int = Field(default=21, ge=2, le=1 << 16)
    step: int = Field(default=1, ge=1)
    boundary_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    buffer_size: int = Field(default=20, ge=1, le=1 << 30)
    widen_at: float = Field(default=0.8, ge=0.0, le=1.0)
    narrow_at: float = Field(default=0.3, ge=0.0, le=1.0)
    task_outcomes: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check_thresholds(self) -> RangeExpansionConfig:
        if self.narrow_at >= self.widen_at:
            raise ValueError(f"narrow_at={self.narrow_at} must be below widen_at={self.widen_at}")
        return self


AlgorithmConfig = Annotated[
    DiscreteRandomConfig
    | LearningProgressConfig
    | PrioritizedLevelReplayConfig
    | RangeExpansionConfig,
    Field(discriminator="type"),
]


class CurriculumConfig(FrozenModel):
    """Everything a process needs to join (or create) a curriculum's shared pool.

    Attributes:
        task_generator: Builds a task's env config from its id (deterministic in the id).
        num_active_tasks: Number of slots in the shared pool.
        algorithm_config: How tasks are sampled and evicted, and where the pool lives.
        seed: Seeds the task ids of a pool this process creates and this process's sampling.
        max_labels: Capacity of the pool's label table; labels past it count under "(other)".
        write_batch_size: Outcomes buffered per process before they are written under one lock
            acquisition (the buffer is also written before each refresh of the scored view);
            1 writes every outcome immediately.
        write_max_delay_s: Buffered outcomes older than this are written at the next call.
        snapshot_max_age_s: How stale the scored snapshot used for sampling may get while other
            processes write to the pool.
        lock_timeout_s: How long a write waits for the pool's lock before raising.
        clip_scores: Clip scores outside [0, 1] instead of raising ScoreError.
        max_task_failures: A task whose env config failed to build or apply this many times
            (``report_task_failure``) is evicted at the next chance, with any algorithm.
        slice_axes: Bucket axes (at most) that ``stats()`` slices by (``slice/...`` keys); 0
            turns slice analysis off.
        on_backend_unavailable: When the pool's server cannot be reached: ``"buffer"`` keeps
            training (``get_task`` samples from the last view of the pool, outcomes and sample
            counts stay buffered and are written, once, when the server answers again; the
            server is tried again every ``outage_retry_s``); ``"raise"`` raises
            ``BackendUnavailableError`` from the call that needed the server.
        outage_retry_s: How often, during an outage, the hot path tries the server again.
        max_buffered_outcomes: Outcomes a process may buffer during an outage; one more raises
            ``BackendUnavailableError`` (the buffer is kept).
        deterministic: Refresh the scored view by outcome count instead of by time, so that
            one process with a seed picks the same tasks for the same outcomes, and a
            checkpoint restored into a new process continues the same sequence. For
            reproducible single-process runs and tests; with several processes the order of
            their writes still varies.
        background_refresh: Refresh the scored view of a large pool (512 slots or more, once
            a refresh costs more than a millisecond) in a short-lived helper thread,
            sampling from the current view meanwhile, so that ``get_task`` never waits for a
            whole re-read and re-score. Off: every refresh runs inside the call that needs it.
            Deterministic mode never refreshes in the background.
        refresh_cpu_share: Pools of 512 slots or more: the largest share of a process's CPU
            time that re-reading and re-scoring the pool may take (a view lives at least
            ``1 / refresh_cpu_share`` times what a refresh costs, whatever else asks for a
            refresh). Default 0.1. It binds only for loops far faster than real environments
            (tens of thousands of episodes a second per process); 1 lets such loops refresh
            after every ``max(write_batch_size, num_active_tasks // 8)`` outcomes. Smaller
            pools refresh cheaply and have no such bound.
        on_pool_lost: When the pool vanished (destroyed, or Redis restarted without
            persistence) or was re-created by another process: ``"recreate"`` attaches to it
            anew (creating it empty from this config), drops the writes meant for the lost pool
            (logged with their count) and goes on; ``"raise"`` raises ``PoolLostError`` (what
            this process had queued for the lost pool is dropped too, counted in
            ``health/dropped_outcomes``).
        backend_timeout_s: Redis: the longest a call waits for the server (connect, each reply)
            before it counts as unavailable (then ``on_backend_unavailable`` applies), so a
            server that hangs never freezes training for longer. Raise it for pools whose
            snapshot takes longer to read.
        private_pool_ttl_s: Redis: a private pool (``session_id=None``) expires this long
            after its last write, so one whose process never closed it does not stay forever.
    """

    task_generator: AnyTaskGeneratorConfig
    num_active_tasks: int = Field(default=256, gt=0, le=1_000_000)
    algorithm_config: AlgorithmConfig = Field(default_factory=LearningProgressConfig)
    seed: int = 0
    max_labels: int = Field(default=4096, gt=0, le=1_000_000)
    write_batch_size: int = Field(default=64, ge=1, le=100_000)
    write_max_delay_s: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    snapshot_max_age_s: float = Field(default=0.05, ge=0.0, allow_inf_nan=False)
    lock_timeout_s: float = Field(default=10.0, gt=0.0, allow_inf_nan=False)
    clip_scores: bool = False
    max_task_failures: int = Field(default=3, ge=1)
    slice_axes: int = Field(default=3, ge=0, le=32)
    on_backend_unavailable: Literal["buffer", "raise"] = "buffer"
    outage_retry_s: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    max_buffered_outcomes: int = Field(default=1_000_000, ge=1)
    on_pool_lost: Literal["recreate", "raise"] = "recreate"
    deterministic: bool = False
    background_refresh: bool = True
    refresh_cpu_share: float = Field(default=0.1, gt=0.0, le=1.0, allow_inf_nan=False)
    backend_timeout_s: float = Field(default=1.0, gt=0.0, le=3600.0, allow_inf_nan=False)
    private_pool_ttl_s: float = Field(default=3600.0, gt=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check_pool_size(self) -> CurriculumConfig:
        declared = self.algorithm_config.num_active_tasks
        if declared is not None and declared != self.num_active_tasks:
            raise ValueError(
                f"algorithm_config.num_active_tasks={declared} disagrees with "
                f"num_active_tasks={self.num_active_tasks}"
            )
        if isinstance(self.algorithm_config, RangeExpansionConfig):
            range_rule(self.algorithm_config, self.task_generator)  # raises, naming the problem
        return self

    def make(self) -> Curriculum:
        """Build the curriculum (same as ``Curriculum(config)``)."""
        from curriculum.curriculum import Curriculum

        return Curriculum(self)
