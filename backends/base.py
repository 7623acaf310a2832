"""The storage interface of a task pool, and the plain data that crosses it.

A :class:`TaskMemoryBackend` owns all state that processes share: slots, labels, counters and the
pool's hyper-parameters. Every method that changes state is atomic; :meth:`snapshot` is a
consistent copy taken without blocking writers for long.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from backends.layout import LABEL_DTYPE, ROW_DTYPE, STRUCT_VERSION
from backends.range_state import RangeRule, RangeState, RangeUpdate
from backends.stage_state import StageRule, StageState, StageUpdate
from curriculum.ema import EmaParams
from curriculum.errors import BackendError, CheckpointError

# How the pool's parameters are called in the configs users write.
CONFIG_NAMES = {
    "capacity": "num_active_tasks",
    "label_capacity": "max_labels",
    "generator_fingerprint": "task_generator (fingerprint)",
    "staging": "stages",
    "ranges": "algorithm_config (range expansion)",
}


_EMA_NAMES = frozenset(f.name for f in fields(EmaParams))


@dataclass(frozen=True)
class PoolParams:
    """What defines a pool: checked on every attach and on every checkpoint load.

    ``pool_seed`` is the creator's seed; attaching processes adopt it (their own seed only drives
    their sampling), so it is not compared. ``staging`` is the stage rule of a staged
    curriculum's root pool (:class:`~backends.stage_state.StageRule` as a dict), else None.
    ``ranges`` is the range rule of a range-expansion pool
    (:class:`~backends.range_state.RangeRule` as a dict), else None.
    """

    capacity: int
    label_capacity: int
    algorithm: dict[str, Any]
    ema: EmaParams
    generator_fingerprint: str
    pool_seed: int = 0
    struct_version: int = STRUCT_VERSION
    staging: dict[str, Any] | None = None
    ranges: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON- and msgpack-serialisable)."""
        return {
            "struct_version": self.struct_version,
            "capacity": self.capacity,
            "label_capacity": self.label_capacity,
            "algorithm": self.algorithm,
            "ema": self.ema.as_dict(),
            "generator_fingerprint": self.generator_fingerprint,
            "pool_seed": self.pool_seed,
            "staging": self.staging,
            "ranges": self.ranges,
        }

    def to_json(self) -> str:
        """Canonical JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolParams:
        """Inverse of :meth:`to_dict`; raises KeyError/TypeError on malformed data."""
        return cls(
            capacity=int(data["capacity"]),
            label_capacity=int(data["label_capacity"]),
            # pools and checkpoints of earlier versions repeated the timescales here
            algorithm={k: v for k, v in dict(data["algorithm"]).items() if k not in _EMA_NAMES},
            ema=EmaParams(**data["ema"]),
            generator_fingerprint=str(data["generator_fingerprint"]),
            pool_seed=int(data["pool_seed"]),
            struct_version=int(data["struct_version"]),
            staging=dict(data["staging"]) if data.get("staging") is not None else None,
            ranges=dict(data["ranges"]) if data.get("ranges") is not None else None,
        )

    def stage_rule(self) -> StageRule | None:
        """The stage rule of a staged curriculum's root pool, or None."""
        return StageRule.from_dict(self.staging) if self.staging is not None else None

    def range_rule(self) -> RangeRule | None:
        """The range rule of a range-expansion pool, or None."""
        return RangeRule.from_dict(self.ranges) if self.ranges is not None else None

    def initial_ranges(self) -> RangeState:
        """The range record of a new pool (all zeros when the pool expands no range)."""
        rule = self.range_rule()
        return rule.initial_state() if rule is not None else RangeState()

    def mismatches(self, other: PoolParams) -> list[str]:
        """Human-readable differences (``field: pool=X, requested=Y``), ignoring the seed."""
        mine, theirs = flatten(self.to_dict()), flatten(other.to_dict())
        out = []
        for key in sorted(set(mine) | set(theirs)):
            if key == "pool_seed":
                continue
            if mine.get(key) != theirs.get(key):
                name = CONFIG_NAMES.get(key, key)
                out.append(f"{name}: pool={mine.get(key)!r}, requested={theirs.get(key)!r}")
        return out


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys (a non-dict is one entry under ``prefix``)."""
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass
class PoolSnapshot:
    """A consistent copy of a pool, taken at ``version``."""

    version: int
    rows: np.ndarray  # ROW_DTYPE, one per slot
    labels: np.ndarray  # LABEL_DTYPE, one per assigned label id: totals incl. live tasks
    label_names: list[str]  # decoded names, index = label id
    counters: dict[str, int]


@dataclass
class WriteBatch:
    """Outcomes and sample counts to record under one atomic write.

    Each outcome or sample names its slot and the task id the writer believes is there; entries
    whose task has since been evicted are credited to their label only (and counted as late).
    ``write_id`` is given by the backend on the first attempt (0 until then); a batch sent again
    after a failed write keeps it, so the backend can recognise a write it already applied.
    ``steps`` is the environment steps of the batch's episodes, added to the pool's step counters.
    ``priority_positions`` / ``priority_values``: the outcomes (by position in the outcome lists)
    that carry a priority, and its value (see :mod:`curriculum.ema`).
    """

    write_id: int = 0
    steps: int = 0

    outcome_slots: list[int] = field(default_factory=list)
    outcome_task_ids: list[int] = field(default_factory=list)
    outcome_labels: list[int] = field(default_factory=list)
    outcome_scores: list[float] = field(default_factory=list)
    sample_slots: list[int] = field(default_factory=list)
    sample_task_ids: list[int] = field(default_factory=list)
    sample_labels: list[int] = field(default_factory=list)
    failure_slots: list[int] = field(default_factory=list)
    failure_task_ids: list[int] = field(default_factory=list)
    failure_labels: list[int] = field(default_factory=list)
    priority_positions: list[int] = field(default_factory=list)
    priority_values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcome_slots) + len(self.sample_slots) + len(self.failure_slots)

    def add_outcome(
        self,
        slot: int,
        task_id: int,
        label_id: int,
        score: float,
        steps: int = 1,
        priority: float | None = None,
    ) -> None:
        """Queue one outcome of an episode that took ``steps`` environment steps (and its
        finite ``priority``, if any)."""
        if priority is not None:
            self.priority_positions.append(len(self.outcome_slots))
            self.priority_values.append(priority)
        self.steps += steps
        self.outcome_slots.append(slot)
        self.outcome_task_ids.append(task_id)
        self.outcome_labels.append(label_id)
        self.outcome_scores.append(score)

    def extend_outcomes(
        self,
        slots: list[int],
        task_ids: list[int],
        labels: list[int],
        scores: list[float],
        steps: int,
    ) -> None:
        """Queue many outcomes (equal-length lists) whose episodes took ``steps`` in total."""
        self.steps += steps
        self.outcome_slots.extend(slots)
        self.outcome_task_ids.extend(task_ids)
        self.outcome_labels.extend(labels)
        self.outcome_scores.extend(scores)

    def add_sample(self, slot: int, task_id: int, label_id: int) -> None:
        """Queue one scheduling of a task."""
        self.sample_slots.append(slot)
        self.sample_task_ids.append(task_id)
        self.sample_labels.append(label_id)

    def add_failure(self, slot: int, task_id: int, label_id: int) -> None:
        """Queue one failure of a task's env config to build or apply."""
        self.failure_slots.append(slot)
        self.failure_task_ids.append(task_id)
        self.failure_labels.append(label_id)


@dataclass(frozen=True)
class RecordResult:
    """What a write applied: outcomes on live tasks, and late ones credited to labels only."""

    applied: int
    late: int

    @property
    def outcomes(self) -> int:
        """Outcomes the write counted in the pool (applied or late)."""
        return self.applied + self.late


@dataclass
class PoolState:
    """Everything a pool holds, for checkpoints (labels as stored: without the live rows)."""

    params: PoolParams
    rows: np.ndarray
    labels: np.ndarray
    counters: dict[str, int]
    stage: StageState = field(default_factory=StageState)
    ranges: RangeState | None = None  # None: the pool's initial range record

    def __post_init__(self) -> None:
        if self.rows.dtype != ROW_DTYPE or self.labels.dtype != LABEL_DTYPE:
            raise TypeError("PoolState rows and labels must use the pool layout's dtypes")


def labels_full_error(session_id: str, folded: int, label_capacity: int) -> CheckpointError:
    """Why :meth:`TaskMemoryBackend.import_state` refused a state whose labels do not fit."""
    return CheckpointError(
        f"pool {session_id!r} cannot take the checkpoint's labels: with the labels it already "
        f"holds (kept, so that every process's label ids stay valid), {folded} of them would "
        f"be counted under '(other)' (max_labels={label_capacity}); nothing was changed. Load "
        "it into a new pool (another session_id), or raise max_labels"
    )


class TaskMemoryBackend(ABC):
    """Shared storage of one pool. Every mutating method is atomic across processes."""

    session_id: str
    params: PoolParams
    created: bool
    # version() and snapshot() may run in a helper thread while the owner thread writes
    thread_safe_reads: bool = False
    # A snapshot is a copy of local memory, so a refresh is CPU work only (no round trips, no
    # decoding in Python): a caller whose view is stale may wait for it (curriculum.background).
    in_memory_reads: bool = False

    @abstractmethod
    def version(self) -> int:
        """A counter that moves on every change of the pool (cheap to read)."""

    @abstractmethod
    def snapshot(self) -> PoolSnapshot:
        """A consistent copy of rows, labels and counters."""

    @abstractmethod
    def reserve_sequence(self) -> int:
        """Atomically take the next task sequence number (ids derive from it)."""

    @abstractmethod
    def intern_label(self, name: str) -> int:
        """The id of label ``name``, assigning the next free one if it is new."""

    @abstractmethod
    def create_task(self, task_id: int, label_id: int, seq: int) -> int | None:
        """Put a new task into a free slot; its slot, or None when the pool is full."""

    @abstractmethod
    def replace_task(
        self, slot: int, expected_task_id: int, task_id: int, label_id: int, seq: int
    ) -> bool:
        """Evict ``expected_task_id`` from ``slot`` and create the new task there, atomically.

        Returns False (and changes nothing) when the slot no longer holds ``expected_task_id``.
        """

    @abstractmethod
    def record(self, batch: WriteBatch) -> RecordResult:
        """Apply a batch of outcomes, sample counts and failures atomically.

        ``batch.write_id`` names the write (the session's write queue numbers it): a backend
        that may already have applied it (a reply lost with its connection) applies it once.
        """

    # record_send() / record_receive(): a batch sent without waiting for its reply
    can_send_ahead: bool = False

    def record_send(self, batch: WriteBatch) -> None:
        """Send ``batch`` (as :meth:`record` would apply it) without waiting for the reply;
        :meth:`record_receive` reads it. Only when :attr:`can_send_ahead`."""
        raise NotImplementedError

    def record_receive(self) -> RecordResult:
        """The reply of the batch :meth:`record_send` sent (waiting for it). Raises as
        :meth:`record` does; the batch may or may not have been applied then (its write id
        makes sending it again safe)."""
        raise NotImplementedError

    @abstractmethod
    def stage_state(self) -> StageState:
        """A consistent copy of the pool's stage record (read without blocking writers)."""

    @abstractmethod
    def update_stage(self, update: StageUpdate) -> tuple[StageState, int | None]:
        """Fold ``update`` into the stage record atomically (spec: :mod:`backends.stage_state`).

        Returns the record after the update and the stage that this update ended (None when it
        ended none): exactly one caller sees each transition.

        Raises:
            BackendError: the pool is not a staged curriculum's root pool.
        """

    @abstractmethod
    def range_state(self) -> RangeState:
        """A consistent copy of the pool's range record (read without blocking writers)."""

    @abstractmethod
    def update_ranges(self, update: RangeUpdate) -> RangeState:
        """Fold ``update`` into the range record atomically (spec: :mod:`backends.range_state`).

        Returns the record after the update.

        Raises:
            BackendError: the pool is not a range-expansion pool.
        """

    @abstractmethod
    def end_epoch(self) -> dict[str, int]:
        """Reset the epoch counters atomically; returns their values before the reset."""

    @abstractmethod
    def export_state(self) -> PoolState:
        """A consistent copy of everything the pool holds (rows, labels, counters, stage and
        range records)."""

    @abstractmethod
    def import_state(self, state: PoolState) -> None:
        """Replace the pool's rows, labels, counters, stage and range records with ``state``
        atomically (``state.ranges`` None: the range record starts anew from the rule).

        Labels are merged by name: the pool's own keep their ids (with their counters cleared).

        Raises:
            PoolMismatchError: another slot count.
            CheckpointError: labels that would not all fit in the label table beside the
                pool's own (:func:`labels_full_error`).

        Either way the pool is left as it was.
        """

    def reattach(self, params: PoolParams) -> bool:
        """Attach again after the pool was lost, creating it (with ``params``) if absent.

        Only a server-backed pool can be lost while a process uses it; the others refuse.
        """
        raise BackendError(f"{type(self).__name__} cannot re-create a lost pool")

    @abstractmethod
    def close(self) -> None:
        """Release this process's handles; the creator also removes the pool."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the pool's storage now, whoever created it."""
