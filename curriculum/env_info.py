"""The dict :class:`~curriculum.CurriculumEnv` puts under ``info["curriculum"]`` at terminal steps.

Always the same keys, in the order of :data:`INFO_KEYS` (vector envs batch info per key with the
dtype of the first value seen): ``task_id`` (an ``numpy.int64``: pass it back as
``reset(options={"task_id": ...})`` to play the task again), ``score``, ``stage`` and the label
figures (floats). The label figures come from ``Curriculum.stats()`` cached per curriculum
handle and process, refreshed at most every ``stats_interval_s`` seconds.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Any

import numpy as np

from backends.layout import stored_label
from curriculum import forks
from curriculum.stats import NO_DATA

INFO_KEY = "curriculum"
"""The key of the terminal step's info under which the wrapper puts its dict."""

PRIORITY_KEY = "priority"
"""The key of the terminal step's info whose value (if present) is reported as the episode's
priority (Prioritized Level Replay's score)."""

LABEL_FIGURES = (
    "completions",
    "samples",
    "evictions",
    "failures",
    "mean_reward",
    "success_rate",
    "mean_lp",
)
# Label figures that average over the label's outcomes or active tasks: NaN when there are none
# (curriculum.stats.NO_DATA), also for a label the cached stats do not know yet.
AVERAGES = frozenset({"mean_reward", "success_rate", "mean_lp"})
INFO_KEYS = ("task_id", "score", "stage", *(f"label_{name}" for name in LABEL_FIGURES))
"""The keys of ``info["curriculum"]``, in order (``task_id`` an int64, the others floats)."""


class _StatsCache:
    """``Curriculum.stats()`` of one curriculum handle in one process, at most so old."""

    __slots__ = ("generation", "stats", "taken")

    def __init__(self) -> None:
        self.generation = -1  # forks.generation() when taken: a forked child takes its own
        self.taken = -math.inf
        self.stats: dict[str, float] = {}

    def get(self, curriculum: Any, max_age_s: float) -> dict[str, float]:
        now = time.monotonic()
        generation = forks.generation()
        if generation != self.generation or now - self.taken >= max_age_s:
            self.stats = curriculum.stats()
            self.taken = now
            self.generation = generation
        return self.stats


# One cache per curriculum handle, shared by every wrapper on that handle in this process.
_STATS_CACHES: weakref.WeakKeyDictionary[Any, _StatsCache] = weakref.WeakKeyDictionary()


def terminal_info(
    curriculum: Any, max_age_s: float, task_id: int, score: float, stage: int, label: str
) -> dict[str, Any]:
    """The ``info["curriculum"]`` dict of a terminal step."""
    # A staged curriculum's label figures come from the pool of the episode's own stage.
    source = (
        curriculum.stage_curriculum(stage)
        if hasattr(curriculum, "stage_curriculum")
        else curriculum
    )
    cache = _STATS_CACHES.get(source)
    if cache is None:
        cache = _STATS_CACHES[source] = _StatsCache()
    stats = cache.get(source, max_age_s)
    prefix = f"label/{stored_label(label)}/"  # a label too long for the pool: its stored name
    figures = {
        f"label_{n}": float(stats.get(prefix + n, NO_DATA if n in AVERAGES else 0.0))
        for n in LABEL_FIGURES
    }
    return {
        "task_id": np.int64(task_id),
        "score": float(score),
        "stage": float(stage),
        **figures,
    }


def task_id_option(value: Any) -> Any:
    """``options["task_id"]`` as an int when it is an integral number (int, numpy integer or an
    integral float such as a batched info value); anything else is returned for the curriculum
    to refuse."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if (
        isinstance(value, (float, np.floating))
        and math.isfinite(value)
        and float(value).is_integer()
    ):
        return int(value)
    return value
