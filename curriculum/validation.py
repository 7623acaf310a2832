"""Checks of what a trainer reports: task ids, scores and episode lengths.

One module for every entry point (``Curriculum``, ``StagedCurriculum``, ``CurriculumEnv``): a
value is refused the same way wherever it comes in, with a :class:`~curriculum.errors.ScoreError`
(or :class:`~curriculum.errors.ConfigError` for a task id) that names it, before anything is
recorded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from curriculum.errors import ScoreError
from curriculum.task_ids import MAX_TASK_ID, check_task_id

MAX_EPISODE_STEPS = 2**40  # far beyond any episode; keeps every step counter exact in int64
MAX_PRIORITY = 1e30  # far beyond any value loss or regret; keeps every priority EMA finite

logger = logging.getLogger("curriculum")
_clip_said = False  # clip_scores=True clipped a score in this process, and a warning said so


def _say_clipped(task_id: object, score: object) -> None:
    global _clip_said
    if not _clip_said:
        _clip_said = True
        logger.warning(
            "score %r for task %s was clipped into [0, 1] (clip_scores=True); learning progress "
            "then steers on clipped scores. Map scores into [0, 1] instead (this is said once)",
            score,
            task_id,
        )


__all__ = [
    "MAX_EPISODE_STEPS",
    "check_number",
    "check_priorities",
    "check_priority",
    "check_score",
    "check_scores",
    "check_steps",
    "check_task_id",
    "check_task_ids",
    "sum_steps",
]


def check_number(value: object, what: str) -> float:
    """``value`` as a finite float, or ScoreError saying that ``what`` is not one.

    Bools are refused (a success flag must be given as ``float(flag)``), as are strings, bytes,
    None, objects, NaN, infinities and integers too large for a float.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ScoreError(f"{what} is a bool, not a number (give float(flag) for a success flag)")
    if isinstance(value, (str, bytes, bytearray)):
        raise ScoreError(f"{what} is not a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise ScoreError(f"{what} is too large") from None
    except (TypeError, ValueError):
        raise ScoreError(f"{what} is not a number") from None
    if not math.isfinite(number):
        raise ScoreError(f"{what} is not finite")
    return number


def check_score(task_id: object, score: object, *, clip: bool = False) -> float:
    """``score`` as the float that would be recorded (clipped into [0, 1] when ``clip``).

    Raises:
        ScoreError: the score is not a real number (a bool, a string, None, an object), is not
            finite or too large for a float, or lies outside [0, 1] without ``clip``.
    """
    value = check_number(score, f"score {score!r:.60} for task {task_id}")
    if not 0.0 <= value <= 1.0:
        if not clip:
            raise ScoreError(
                f"score {score!r} for task {task_id} is outside [0, 1] "
                "(map returns into [0, 1], or set clip_scores=True to clip)"
            )
        _say_clipped(task_id, score)
        value = min(max(value, 0.0), 1.0)
    return value


def check_scores(
    task_ids: list[int], scores: Sequence[float] | np.ndarray, *, clip: bool = False
) -> np.ndarray:
    """The scores as they would be recorded, one per task id (all checked before any is used).

    Raises:
        ScoreError: the first bad score, naming its task; or a length mismatch.
    """
    try:
        raw = np.asarray(scores)
    except (ValueError, OverflowError):  # ragged, or ints too large for any dtype
        raw = np.asarray(list(scores), dtype=object)
    if raw.dtype.kind in "fiu":  # numbers: checked all at once below
        values = raw.astype(np.float64, copy=False)
    elif raw.ndim == 1:  # strings, None, bools, objects: one by one (check_score decides)
        values = np.array(
            [check_score(t, s, clip=clip) for t, s in zip(task_ids, raw.tolist(), strict=False)],
            dtype=np.float64,
        )
    else:
        values = raw
    if values.shape != (len(task_ids),):
        raise ScoreError(f"{len(task_ids)} task ids but scores of shape {values.shape}")
    bad = ~np.isfinite(values)
    if not clip:
        bad |= (values < 0) | (values > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        check_score(task_ids[i], float(values[i]), clip=clip)
    outside = (values < 0) | (values > 1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        _say_clipped(task_ids[i], float(values[i]))
    return np.clip(values, 0.0, 1.0)


def check_priority(task_id: object, priority: object) -> float:
    """``priority`` as the float that would be recorded.

    Raises:
        ScoreError: the priority is not a real number (a bool, a string, an object), is not
            finite, or its magnitude is above ``MAX_PRIORITY`` (1e30).
    """
    value = check_number(priority, f"priority {priority!r:.60} for task {task_id}")
    if abs(value) > MAX_PRIORITY:
        raise ScoreError(
            f"priority {priority!r} for task {task_id} is beyond +-{MAX_PRIORITY:g} "
            "(scale it down: only the order of priorities counts for rank prioritisation)"
        )
    return value


def check_priorities(
    task_ids: list[int], priorities: Sequence[float] | np.ndarray | None
) -> list[float] | None:
    """One checked priority per task id (see :func:`check_priority`), or None when none came.

    Raises:
        ScoreError: the first bad priority, naming its task; or a length mismatch.
    """
    if priorities is None:
        return None
    given = priorities.tolist() if isinstance(priorities, np.ndarray) else list(priorities)
    if len(given) != len(task_ids):
        raise ScoreError(f"{len(task_ids)} task ids but {len(given)} priorities")
    return [check_priority(t, p) for t, p in zip(task_ids, given, strict=True)]


def check_steps(steps: object) -> int:
    """``steps`` as an int in [0, MAX_EPISODE_STEPS], or ScoreError naming it."""
    if (
        isinstance(steps, (bool, np.bool_))
        or not isinstance(steps, (int, np.integer))
        or not 0 <= steps <= MAX_EPISODE_STEPS
    ):
        raise ScoreError(
            f"steps {steps!r:.60} must be an int in [0, 2**40] (environment steps of the episode)"
        )
    return int(steps)


def sum_steps(steps: Sequence[int] | np.ndarray | None, count: int) -> int:
    """The total of per-episode ``steps`` (one per outcome; None counts 1 each), validated."""
    if steps is None:
        return count
    try:
        values = steps.tolist() if isinstance(steps, np.ndarray) else list(steps)
    except TypeError:  # a scalar: one value for the whole batch is ambiguous
        values = None
    if (
        values is None
        or len(values) != count
        or (isinstance(steps, np.ndarray) and steps.ndim != 1)
    ):
        raise ScoreError(f"steps must be {count} ints >= 0, got {steps!r:.200}")
    return sum(check_steps(value) for value in values)


def check_task_ids(task_ids: Sequence[int] | np.ndarray) -> list[int]:
    """Validated task ids (vectorised when they come as an integer array)."""
    if not isinstance(task_ids, np.ndarray):
        task_ids = list(task_ids)
        kinds = set(map(type, task_ids))
        if bool in kinds or np.bool_ in kinds:
            return [check_task_id(t) for t in task_ids]  # raises, naming the bool
    array = np.asarray(task_ids) if task_ids is not None else np.asarray([])
    if array.dtype.kind in "iu" and array.ndim == 1:
        if len(array) and (array.min() < 0 or array.max() > MAX_TASK_ID):
            bad = array[(array < 0) | (array > MAX_TASK_ID)][0]
            check_task_id(int(bad))  # raises, naming it
        return array.tolist()
    return [check_task_id(t) for t in task_ids]
