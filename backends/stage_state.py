"""The staged curriculum's shared state: which stage runs, and how well each stage is going.

A staged curriculum keeps this record in the pool of its first stage (the root pool), where every
process on every host reads it; each backend changes it only in one atomic step.

Spec of one update, applied atomically (the Redis script implements the same, operation for
operation, and a parity test compares both):

- an update carries the stage its outcomes were played in (``s``), their count, their steps, and
  the affine fold ``(decay, add)`` of their scores into an EMA (:func:`fold_scores`);
- ``total_steps += steps``; ``performance[s] = performance[s] * decay + add``;
  ``outcomes[s] += count`` (outcomes that arrive after their stage ended still count for it);
- only when ``s`` is the current stage: ``stage_steps += steps``, and the stage ends when its
  criterion holds and it is not the last stage: ``performance[s] >= threshold``
  ("performance"), ``stage_steps >= budgets[s]`` ("time"), or both ("combined"). Ending a stage
  sets ``stage = s + 1``, ``transitions += 1``, ``stage_steps = 0``, at most once per update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_STAGES = 16
CRITERIA = ("performance", "time", "combined")


def _zeros_f() -> list[float]:
    return [0.0] * MAX_STAGES


def _zeros_i() -> list[int]:
    return [0] * MAX_STAGES


@dataclass
class StageState:
    """The shared stage record (``performance`` and ``outcomes`` hold one entry per stage)."""

    stage: int = 0
    transitions: int = 0
    stage_steps: int = 0
    total_steps: int = 0
    performance: list[float] = field(default_factory=_zeros_f)
    outcomes: list[int] = field(default_factory=_zeros_i)

    def to_list(self) -> list[Any]:
        """Flat form: the four counters, then performance, then outcomes (backends store this)."""
        return [
            self.stage,
            self.transitions,
            self.stage_steps,
            self.total_steps,
            *self.performance,
            *self.outcomes,
        ]

    @classmethod
    def from_list(cls, values: Iterable[Any]) -> StageState:
        """Inverse of :meth:`to_list`; raises ValueError on a record of the wrong size."""
        flat = list(values)
        if len(flat) != 4 + 2 * MAX_STAGES:
            raise ValueError(f"a stage record has {4 + 2 * MAX_STAGES} fields, got {len(flat)}")
        return cls(
            stage=int(flat[0]),
            transitions=int(flat[1]),
            stage_steps=int(flat[2]),
            total_steps=int(flat[3]),
            performance=[float(v) for v in flat[4 : 4 + MAX_STAGES]],
            outcomes=[int(v) for v in flat[4 + MAX_STAGES :]],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for checkpoints."""
        return {
            "stage": self.stage,
            "transitions": self.transitions,
            "stage_steps": self.stage_steps,
            "total_steps": self.total_steps,
            "performance": list(self.performance),
            "outcomes": list(self.outcomes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageState:
        """Inverse of :meth:`to_dict`; raises KeyError/TypeError/ValueError on malformed data."""
        return cls.from_list(
            [
                data["stage"],
                data["transitions"],
                data["stage_steps"],
                data["total_steps"],
                *data["performance"],
                *data["outcomes"],
            ]
        )


@dataclass(frozen=True)
class StageRule:
    """When a stage ends: stored in the root pool's parameters (``PoolParams.staging``)."""

    criteria: str
    threshold: float
    budgets: tuple[int, ...]  # steps per stage for the "time" and "combined" criteria
    smoothing: float
    names: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (part of the pool's parameters)."""
        return {
            "criteria": self.criteria,
            "threshold": self.threshold,
            "budgets": list(self.budgets),
            "smoothing": self.smoothing,
            "names": list(self.names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRule:
        """Inverse of :meth:`to_dict`."""
        return cls(
            criteria=str(data["criteria"]),
            threshold=float(data["threshold"]),
            budgets=tuple(int(b) for b in data["budgets"]),
            smoothing=float(data["smoothing"]),
            names=tuple(str(n) for n in data["names"]),
        )

    @property
    def criteria_code(self) -> int:
        """0 performance, 1 time, 2 combined (what the Redis script receives)."""
        return CRITERIA.index(self.criteria)


@dataclass
class StageUpdate:
    """Outcomes of one stage to fold into the record in one atomic step.

    ``write_id`` is given by a backend on the first attempt (0 until then); an update sent again
    after a failed write keeps it, so the backend can recognise an update it already applied.
    """

    stage: int
    count: int
    decay: float
    add: float
    steps: int
    write_id: int = 0


def fold_scores(scores: Iterable[float], smoothing: float) -> tuple[float, float]:
    """``(decay, add)`` such that applying the scores one by one to an EMA ``e`` with rate
    ``smoothing`` gives ``e * decay + add``."""
    keep = 1.0 - smoothing
    decay, add = 1.0, 0.0
    for score in scores:
        decay *= keep
        add = add * keep + smoothing * score
    return decay, add


def apply_stage_update(state: StageState, update: StageUpdate, rule: StageRule) -> int | None:
    """Apply ``update`` to ``state`` in place (the spec above); the ended stage, or None."""
    s = update.stage
    state.total_steps += update.steps
    if not 0 <= s < MAX_STAGES:
        return None
    state.performance[s] = state.performance[s] * update.decay + update.add
    state.outcomes[s] += update.count
    if s != state.stage:
        return None
    state.stage_steps += update.steps
    if s >= len(rule.budgets) - 1:
        return None
    good = state.performance[s] >= rule.threshold
    long_enough = state.stage_steps >= rule.budgets[s]
    ends = {0: good, 1: long_enough, 2: good and long_enough}[rule.criteria_code]
    if not ends:
        return None
    state.stage = s + 1
    state.transitions += 1
    state.stage_steps = 0
    return s
