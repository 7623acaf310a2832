"""Task generators: deterministic functions from a task id to an env config.

A generator's result depends only on its config and the task id, identically in every process and
Python run: randomness comes from a SplitMix64 mix of the id and a per-level salt. Configs are
frozen pydantic models; ``AnyTaskGeneratorConfig`` (discriminated on ``type``) round-trips through
JSON, and ``Config.create()`` builds the generator.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import math
import random
from abc import ABC, abstractmethod
from bisect import bisect_right
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializationInfo,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from curriculum.errors import ConfigError, InvariantViolationError
from curriculum.frozen_model import FrozenModel
from curriculum.frozen_model import describe_validation_error as _describe
from curriculum.paths import get_path, model_from_plain, set_in_place, split_path
from curriculum.plain_data import check_plain
from curriculum.task_ids import MAX_TASK_ID, check_task_id, splitmix64

_MODEL_KEY = "__model__"  # a model env serialises as {"__model__": "module:QualName", "fields": {}}
_SPAN_KEY = "__span__"  # a Span inside a list of bucket values serialises as {"__span__": {...}}
_FIELDS_KEY = "fields"
_SALT_CHILD, _SALT_BUCKETS, _SALT_SET = 0x6A09E667F3BCC909, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B
_SCALARS = (str, int, float, bool, type(None))


def _mix(task_id: int, salt: int) -> int:
    return splitmix64(splitmix64(task_id) ^ salt)


def _fresh(value: Any) -> Any:
    return value if isinstance(value, _SCALARS) else copy.deepcopy(value)


def _format_value(value: Any) -> str:
    """A list bucket value's text in labels; '|' (which separates a label's bucket values) shows
    as '¦', so that the label still reads back into its values (slices)."""
    return format(value, ".6g") if isinstance(value, float) else str(value).replace("|", "¦")


_FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


EXACT_INT_LABELS = 100
"""An integer span with at most this many values shows each value in labels; a larger one bins."""


class Span(FrozenModel):
    """A range of bucket values: integers in [low, high] if both bounds are ints, else floats in
    [low, high) (one float bound is enough: ``Span(8, 32.0)`` draws floats).

    Labels stay few by construction. A float value shows as the lower edge of its bin (the span
    cut into ``bins`` equal bins; 3 significant digits, more where neighbouring edges need them:
    ``Span(100.0, 101.0)`` gives 100, 100.1, ..., 100.9), so a float span adds exactly ``bins``
    distinct labels. An
    integer span with at most :data:`EXACT_INT_LABELS` (100) values shows each value as it is; a
    larger one (a map seed ``Span(0, 100_000)``) shows the lower edge of its bin: the integers cut
    into ``bins`` runs of ``ceil(count / bins)`` values (``Span(0, 100_000)``: edges 0, 10001,
    20002, ...). Env configs always get the exact value drawn.
    """

    low: StrictInt | _FiniteFloat
    high: StrictInt | _FiniteFloat
    bins: int = Field(default=10, ge=1, le=10_000)

    def __init__(self, low: float, high: float, bins: int = 10) -> None:
        super().__init__(low=low, high=high, bins=bins)

    @model_validator(mode="after")
    def _check_order(self) -> Span:
        if self.low > self.high:
            raise ValueError(f"Span low={self.low!r} > high={self.high!r}")
        return self

    def label_for(self, value: int | float) -> str:
        """The text of ``value`` in a task label."""
        if isinstance(value, int):
            count = self.high - self.low + 1
            if count <= EXACT_INT_LABELS:
                return str(value)
            int_width = -(-count // self.bins)
            return str(self.low + (value - self.low) // int_width * int_width)
        width = (self.high - self.low) / self.bins
        # A value on a bin's lower edge belongs to that bin, also when float division lands just
        # below the edge (0.3 / 0.1 = 2.9999999999999996).
        position = (value - self.low) / width + 1e-9 if width > 0 else 0.0
        index = min(max(math.floor(position), 0), self.bins - 1)
        return format(self.low + index * width, f".{self._float_digits(width)}g")

    def _float_digits(self, width: float) -> int:
        """Significant digits that tell neighbouring bin edges apart: at least 3, and one
        digit below the bin width at the magnitude of the span's largest bound
        (``Span(100.0, 101.0)``: 100, 100.1, ..., 100.9)."""
        largest = max(abs(self.low), abs(self.high))
        if width <= 0 or largest == 0:
            return 3
        return max(3, math.floor(math.log10(largest)) - math.floor(math.log10(width)) + 2)

    def sample(self, rng: random.Random) -> int | float:
        """Draw one value uniformly from the span."""
        low, high = self.low, self.high
        if isinstance(low, int) and isinstance(high, int):
            return rng.randint(low, high)
        value = low + (high - low) * rng.random()
        return value if value < high or low == high else math.nextafter(high, low)


@dataclass(frozen=True)
class GeneratedTask:
    """One generated task; ``env_cfg`` belongs to the caller (a fresh copy each call)."""

    task_id: int
    env_cfg: Any
    label: str
    bucket_values: dict[str, Any]


class _Draft:
    """A task under construction: its env config as an owned plain dict."""

    __slots__ = ("bucket_labels", "buckets", "data", "label", "model_cls")

    def __init__(self, model_cls: Any, data: dict[str, Any]) -> None:
        self.model_cls = model_cls  # the env's pydantic class, or None for a dict env
        self.data = data
        self.label: str | None = None
        self.buckets: dict[str, Any] = {}
        self.bucket_labels: dict[str, str] = {}

    def set(self, parts: tuple[str, ...], value: Any) -> None:
        set_in_place(self.data, parts, _fresh(value), create=self.model_cls is None)


class TaskGeneratorConfig(FrozenModel):
    """Fields shared by every generator config.

    Attributes:
        label: Base label when the env has no top-level string ``label`` (innermost set wins).
        overrides: Dotted paths set on every produced env config, after the generator's values.
        invariant_fields: Dotted paths whose value must be equal in every task produced.
    """

    label: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    invariant_fields: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_paths(self) -> TaskGeneratorConfig:
        for path in [*self.overrides, *self.invariant_fields]:
            split_path(path)
        for path, value in self.overrides.items():
            check_plain(value, f"overrides[{path!r}]")
        return self

    def create(self) -> TaskGenerator:
        """Build the generator this config describes."""
        raise NotImplementedError


def _import_model(path: str) -> Any:
    module, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for name in qualname.split("."):
            obj = getattr(obj, name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot import env model class {path!r}: {exc}") from None
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        return obj
    raise ValueError(f"{path!r} is not a pydantic model class")


class SingleTaskGeneratorConfig(TaskGeneratorConfig):
    """Always the same env (a dict or a pydantic model instance), plus overrides.

    A model env serialises as ``{"__model__": "module:QualName", "fields": {...}}`` and is
    re-imported on load, so its class must be importable by that path.
    """

    type: Literal["single"] = "single"
    env: Any

    @field_validator("env", mode="before")
    @classmethod
    def _load_env(cls, env: Any) -> Any:
        if isinstance(env, dict) and set(env) == {_MODEL_KEY, _FIELDS_KEY}:
            return _import_model(env[_MODEL_KEY]).model_validate(env[_FIELDS_KEY])
        if isinstance(env, (dict, BaseModel)):
            check_plain(env, "env")
            return copy.deepcopy(env)
        raise ValueError(f"env must be a dict or a pydantic model, got {type(env).__name__}")

    @field_serializer("env")
    def _dump_env(self, env: Any, info: SerializationInfo) -> Any:
        if isinstance(env, BaseModel):
            cls = env.__class__
            return {
                _MODEL_KEY: f"{cls.__module__}:{cls.__qualname__}",
                _FIELDS_KEY: env.model_dump(mode=info.mode),
            }
        return env

    def create(self) -> SingleTaskGenerator:
        """Build the generator."""
        return SingleTaskGenerator(self)


class BucketedTaskGeneratorConfig(TaskGeneratorConfig):
    """A child generator's task with each bucket path set to a value drawn from the id.

    Attributes:
        child_generator_config: Generates the base task.
        buckets: Dotted path -> list of values (one entry chosen uniformly; an entry that is a
            :class:`Span` is then drawn from its range: ``[0, Span(0.0, 1.0)]`` gives 0 half
            of the time, else a float in [0, 1)) or a :class:`Span`; applied in order. A tuple
            is refused: write ``Span(lo, hi)`` for a range or a list for separate values.
    """

    type: Literal["bucketed"] = "bucketed"
    child_generator_config: AnyTaskGeneratorConfig
    buckets: dict[str, list[Any] | Span]

    @field_validator("buckets", mode="before")
    @classmethod
    def _load_buckets(cls, buckets: Any) -> Any:
        if not isinstance(buckets, dict):
            return buckets
        loaded = {}
        for path, values in buckets.items():
            if isinstance(values, tuple):
                shown = ", ".join(repr(v) for v in values)
                raise ValueError(
                    f"bucket {path!r} is the tuple ({shown}): a tuple is neither a range nor "
                    f"a list here; did you mean Span({shown}) (the range) or [{shown}] "
                    "(these values)?"
                )
            if isinstance(values, list):
                values = [_load_span(v) for v in values]
            loaded[path] = values
        return loaded

    @field_serializer("buckets")
    def _dump_buckets(self, buckets: dict[str, list[Any] | Span], info: SerializationInfo) -> Any:
        return {
            path: values.model_dump(mode=info.mode)
            if isinstance(values, Span)
            else [
                {_SPAN_KEY: v.model_dump(mode=info.mode)} if isinstance(v, Span) else v
                for v in values
            ]
            for path, values in buckets.items()
        }

    @model_validator(mode="after")
    def _check_buckets(self) -> BucketedTaskGeneratorConfig:
        for path, values in self.buckets.items():
            split_path(path)
            if isinstance(values, list):
                if not values:
                    raise ValueError(f"bucket {path!r} has an empty list of values")
                for index, value in enumerate(values):
                    if not isinstance(value, Span):
                        check_plain(value, f"buckets[{path!r}][{index}]")
        return self

    def create(self) -> BucketedTaskGenerator:
        """Build the generator (and its child)."""
        return BucketedTaskGenerator(self)


class TaskGeneratorSetConfig(TaskGeneratorConfig):
    """Picks one child generator per id, with probability proportional to ``weights``.

    Attributes:
        generator_configs: The children (at least one).
        weights: One finite weight >= 0 per child, not all zero; ``None`` weighs them equally.
    """

    type: Literal["set"] = "set"
    generator_configs: list[AnyTaskGeneratorConfig] = Field(min_length=1)
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _check_weights(self) -> TaskGeneratorSetConfig:
        w, n = self.weights, len(self.generator_configs)
        if w is not None and (
            len(w) != n or not all(math.isfinite(x) and x >= 0 for x in w) or not any(w)
        ):
            raise ValueError(f"weights {w!r}: need {n} finite weights >= 0, not all zero")
        return self

    def create(self) -> TaskGeneratorSet:
        """Build the generator (and its children)."""
        return TaskGeneratorSet(self)


def _load_span(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {_SPAN_KEY}:
        return Span(**value[_SPAN_KEY])
    return value


AnyTaskGeneratorConfig = Annotated[
    SingleTaskGeneratorConfig | BucketedTaskGeneratorConfig | TaskGeneratorSetConfig,
    Field(discriminator="type"),
]
BucketedTaskGeneratorConfig.model_rebuild()
TaskGeneratorSetConfig.model_rebuild()
_ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyTaskGeneratorConfig)


def generator_config_from_json(text: str) -> TaskGeneratorConfig:
    """Rebuild any generator config from ``model_dump_json()`` output.

    Raises:
        ConfigError: The JSON is not a valid generator config.
    """
    try:
        return _ANY_ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise ConfigError(_describe("invalid task generator config", exc)) from None


def config_fingerprint(cfg: BaseModel) -> str:
    """First 16 hex digits of the sha256 of the config's canonical JSON (stable across runs)."""
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class TaskGenerator(ABC):
    """Base of every generator: ``generate(task_id)`` is a pure function of config and id."""

    Config: ClassVar[type[TaskGeneratorConfig]]

    def __init__(self, config: TaskGeneratorConfig) -> None:
        if not isinstance(config, self.Config):
            raise ConfigError(f"{type(self).__name__} needs a {self.Config.__name__}")
        self.config = config
        self._overrides = [(split_path(p), v) for p, v in config.overrides.items()]
        self._reference: dict[str, Any] | None = None  # invariant values of task 0, lazily

    def generate(self, task_id: int) -> GeneratedTask:
        """Build the task with this id.

        Raises:
            ConfigError: ``task_id`` is not an int in [0, 2**53), a value does not fit the env,
                or the env's 'label' is not a string (and the config gives none).
            InvariantViolationError: An invariant field differs from its reference value.
        """
        tid = check_task_id(task_id)
        draft = self._draft(tid, tid)
        env: Any = draft.data
        if draft.model_cls is not None:
            env = model_from_plain(draft.model_cls, env, f"task {tid}")
        base = draft.data.get("label")
        if not isinstance(base, str):
            if base is not None and draft.label is None:
                raise ConfigError(
                    f"task {tid}: its env's 'label' is {base!r} ({type(base).__name__}), not a "
                    "string: the task label is the env's 'label' text. Make it a string, or "
                    "give the generator config a label= of its own"
                )
            base = draft.label if draft.label is not None else "task"
        label = base + "".join(f"|{p}:{text}" for p, text in draft.bucket_labels.items())
        buckets = {p: _fresh(v) for p, v in draft.buckets.items()}
        return GeneratedTask(tid, env, label, buckets)

    @abstractmethod
    def _build(self, task_id: int, root_id: int) -> _Draft:
        """The task before this generator's overrides and invariant checks."""

    def _draft(self, task_id: int, root_id: int, check: bool = True) -> _Draft:
        draft = self._build(task_id, root_id)
        if draft.label is None:
            draft.label = self.config.label
        for parts, value in self._overrides:
            draft.set(parts, value)
        if check and self.config.invariant_fields:
            self._check_invariants(task_id, root_id, draft.data)
        return draft

    def _check_invariants(self, task_id: int, root_id: int, data: dict[str, Any]) -> None:
        if self._reference is None:
            ref_data = self._draft(0, 0, check=False).data
            self._reference = {p: get_path(ref_data, p) for p in self.config.invariant_fields}
        for path, expected in self._reference.items():
            value = get_path(data, path)
            if value != expected:
                child = f" (id {task_id} in {type(self).__name__})" if task_id != root_id else ""
                raise InvariantViolationError(
                    f"task {root_id}{child}: invariant field {path!r} is {value!r}, but "
                    f"{expected!r} in the generator's reference task (id 0)"
                )


class SingleTaskGenerator(TaskGenerator):
    """Returns (a copy of) one env config, with overrides applied."""

    Config = SingleTaskGeneratorConfig
    config: SingleTaskGeneratorConfig

    def _build(self, task_id: int, root_id: int) -> _Draft:
        env = self.config.env
        if isinstance(env, BaseModel):
            return _Draft(env.__class__, env.model_dump())
        return _Draft(None, copy.deepcopy(env))


class BucketedTaskGenerator(TaskGenerator):
    """Sets each bucket path of its child's task to a value drawn deterministically from the id."""

    Config = BucketedTaskGeneratorConfig
    config: BucketedTaskGeneratorConfig

    def __init__(self, config: BucketedTaskGeneratorConfig) -> None:
        super().__init__(config)
        self.child = config.child_generator_config.create()
        self._buckets = [(p, split_path(p), v) for p, v in config.buckets.items()]

    def _build(self, task_id: int, root_id: int) -> _Draft:
        draft = self.child._draft(_mix(task_id, _SALT_CHILD) & MAX_TASK_ID, root_id)
        rng = random.Random(_mix(task_id, _SALT_BUCKETS))
        for path, parts, values in self._buckets:
            chosen = values if isinstance(values, Span) else values[rng.randrange(len(values))]
            if isinstance(chosen, Span):
                value = chosen.sample(rng)
                text = chosen.label_for(value)
            else:
                value, text = chosen, _format_value(chosen)
            draft.set(parts, value)
            draft.buckets[path] = value
            draft.bucket_labels[path] = text
        return draft


class TaskGeneratorSet(TaskGenerator):
    """Delegates each id to one child, chosen with probability proportional to its weight."""

    Config = TaskGeneratorSetConfig
    config: TaskGeneratorSetConfig

    def __init__(self, config: TaskGeneratorSetConfig) -> None:
        super().__init__(config)
        self.children = [c.create() for c in config.generator_configs]
        weights = config.weights or [1.0] * len(self.children)
        self._cumulative = [sum(weights[: i + 1]) for i in range(len(weights))]
        self._last = max(i for i, w in enumerate(weights) if w > 0)

    def _build(self, task_id: int, root_id: int) -> _Draft:
        mixed = _mix(task_id, _SALT_SET)
        u = (mixed >> 11) * 2.0**-53 * self._cumulative[-1]
        index = min(bisect_right(self._cumulative, u), self._last)
        return self.children[index]._draft(_mix(mixed, index) & MAX_TASK_ID, root_id)
