"""How :class:`~curriculum.CurriculumEnv` turns a finished episode into a score in [0, 1].

The score is ``score_fn(info, episode_return)`` if given, else ``info["score"]`` when the
terminal info has it, else the episode return mapped linearly from ``score_range`` (default
``(0, 1)``) onto [0, 1]. The pool steers on scores in [0, 1], so a score outside is never clipped
silently. ``out_of_range`` decides:

- ``"raise"`` (default): a :class:`~curriculum.errors.ScoreError` names the score, where it came
  from, and the fixes (CartPole's returns, 0..500, need ``score_range=(0, 500)``);
- ``"clip"``: the score is clipped to [0, 1] and counted in ``clipped_scores``; the first clip in
  a process warns once (``RuntimeWarning``) with the same fixes.

A NaN, infinite or non-numeric score always raises ``ScoreError``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal, SupportsFloat

from curriculum.errors import ConfigError, ScoreError
from curriculum.validation import check_number

OutOfRange = Literal["raise", "clip"]
OUT_OF_RANGE_MODES = ("raise", "clip")

_warned_clipping = False  # once per process


class Scorer:
    """Scores finished episodes by the rule above."""

    __slots__ = ("clipped", "high", "low", "out_of_range", "score_fn")

    def __init__(
        self,
        score_fn: Callable[[dict[str, Any], float], SupportsFloat] | None,
        score_range: Any,
        out_of_range: Any,
    ) -> None:
        """Check the arguments.

        Raises:
            ConfigError: ``score_fn`` is not callable, ``score_range`` is not two finite numbers
                with low < high, or ``out_of_range`` is not ``"raise"`` or ``"clip"``.
        """
        if score_fn is not None and not callable(score_fn):
            raise ConfigError(f"score_fn must be callable, got {type(score_fn).__name__}")
        if out_of_range not in OUT_OF_RANGE_MODES:
            raise ConfigError(f"out_of_range must be 'raise' or 'clip', got {out_of_range!r}")
        self.score_fn = score_fn
        self.low, self.high = _check_score_range(score_range)
        self.out_of_range: OutOfRange = out_of_range
        self.clipped = 0

    def score(self, info: Mapping[str, Any], episode_return: float, task_id: int | None) -> float:
        """The episode's score in [0, 1].

        Raises:
            ScoreError: the score is not a finite number, or outside [0, 1] with
                ``out_of_range="raise"``.
        """
        if self.score_fn is not None:
            raw: Any = self.score_fn(dict(info), episode_return)
            source = "score_fn"
        elif "score" in info:
            raw, source = info["score"], "info['score']"
        else:
            raw = (episode_return - self.low) / (self.high - self.low)
            source = f"episode return {episode_return:g} mapped from score_range={self._range()}"
        value = check_number(raw, f"score {raw!r:.60} (from {source}) of task {task_id}")
        if 0.0 <= value <= 1.0:
            return value
        if self.out_of_range == "raise":
            raise ScoreError(
                f"score {value:g} (from {source}) of task {task_id} is outside [0, 1]; "
                f"{self._fixes(source)}, or out_of_range='clip' to clip (warned once)"
            )
        self.clipped += 1
        global _warned_clipping
        if not _warned_clipping:
            _warned_clipping = True
            warnings.warn(
                f"CurriculumEnv clipped the score {value:g} (from {source}) of task {task_id} "
                "into [0, 1] (out_of_range='clip'): the curriculum steers on clipped scores, "
                "which hide the differences between the tasks they clip. Warned once per "
                "process; each wrapper counts its clipped scores in clipped_scores. To score "
                f"without clipping: {self._fixes(source)}",
                RuntimeWarning,
                stacklevel=3,
            )
        return min(max(value, 0.0), 1.0)

    def _range(self) -> str:
        return f"({self.low:g}, {self.high:g})"

    def _fixes(self, source: str) -> str:
        if source.startswith("episode return"):
            return (
                "pass the env's return range as score_range=(lowest, highest) (CartPole-v1: "
                "score_range=(0, 500)), or score_fn=(info, episode_return) -> score in [0, 1]"
            )
        return (
            f"make {source} give a score in [0, 1], or pass "
            "score_fn=(info, episode_return) -> score in [0, 1]"
        )


def _check_score_range(score_range: Any) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in score_range)
    except (TypeError, ValueError):
        raise ConfigError(
            f"score_range must be two numbers (low, high), got {score_range!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"score_range must be finite with low < high, got {score_range!r}")
    return low, high
