"""Task ids: 53-bit integers, exact in float64 and in Lua's doubles.

A pool numbers the tasks it creates with an atomic sequence counter; the id of the n-th task is a
hash of the pool's seed and n, so ids are unique in a pool, reproducible for a seed, and spread
over the whole id space (generators draw their parameters from the id).
"""

from __future__ import annotations

import operator

from curriculum.errors import ConfigError

MAX_TASK_ID = 2**53 - 1
_MASK64 = 2**64 - 1


def splitmix64(value: int) -> int:
    """Mix a 64-bit integer into a well-spread 64-bit integer (SplitMix64 finaliser)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_task_id(pool_seed: int, sequence: int) -> int:
    """The id of the ``sequence``-th task created in a pool seeded with ``pool_seed``."""
    return splitmix64(splitmix64(pool_seed & _MASK64) ^ (sequence & _MASK64)) & MAX_TASK_ID


def check_task_id(task_id: object) -> int:
    """Return ``task_id`` as an int, or raise ConfigError naming it when it is not a task id."""
    if isinstance(task_id, bool):
        raise ConfigError(f"task id must be an int, got {task_id!r}")
    try:
        value = operator.index(task_id)
    except TypeError:
        raise ConfigError(f"task id must be an int, got {task_id!r}") from None
    if not 0 <= value <= MAX_TASK_ID:
        raise ConfigError(f"task id {value} is outside [0, 2**53)")
    return value
