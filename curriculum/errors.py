"""Typed errors of the curriculum library.

Every error the library raises on purpose derives from :class:`CurriculumError`, so a trainer can
catch one class. Messages name the offending value.
"""

from __future__ import annotations


class CurriculumError(Exception):
    """Root of every error raised by this library."""


class ConfigError(CurriculumError, ValueError):
    """A configuration value is invalid or inconsistent."""


class InvariantViolationError(ConfigError):
    """A generated task breaks an invariant field declared by its generator."""


class ScoreError(CurriculumError, ValueError):
    """A reported outcome is invalid: a score NaN, infinite or outside [0, 1], or bad steps."""


class UnknownTaskError(CurriculumError, KeyError):
    """A task id is neither active in the pool nor was handed out by this curriculum."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class BackendError(CurriculumError):
    """The pool's storage failed or is in a state the library cannot use."""


class PoolMismatchError(BackendError):
    """A process attached to a pool with a configuration that differs from the pool's."""


class PoolNotFoundError(BackendError):
    """A pool that should exist (for example when a worker attaches) does not."""


class PoolLostError(PoolNotFoundError):
    """The pool this process attached to is gone (destroyed, or lost when Redis restarted without
    persistence) or was re-created since: its tasks, ids and labels are no longer the pool's."""


class BackendUnavailableError(BackendError):
    """The pool's server cannot be reached (connection refused, lost or timed out)."""


class PoolCorruptedError(BackendError):
    """A pool's storage holds data this library did not write or cannot read."""


class LockTimeoutError(BackendError, TimeoutError):
    """The pool's lock could not be acquired in time (its holder hangs or is stopped)."""


class PoolClosedError(BackendError):
    """The curriculum or backend was used after ``close()``."""


class CheckpointError(CurriculumError, ValueError):
    """A checkpoint is corrupted, foreign, or incompatible with the pool it is loaded into."""
