"""Outage mode: what a process does while its pool's server (or lock) cannot be had.

With ``on_backend_unavailable="buffer"`` the hot path goes on: ``get_task`` samples from the last
view, writes stay queued, and the server is tried again every ``outage_retry_s``; one warning says
when an outage starts and one when it ends. With ``"raise"`` the call that needed the server
raises :class:`~curriculum.errors.BackendUnavailableError`.
"""

from __future__ import annotations

import logging
import time

from curriculum.errors import BackendError, BackendUnavailableError, LockTimeoutError

logger = logging.getLogger("curriculum.pool")

# Failures after which a write stays queued and the hot path goes on from what it has (the pool
# itself is not damaged): the server cannot be reached, or the pool's lock is held too long.
TRANSIENT = (BackendUnavailableError, LockTimeoutError)


class OutageGuard:
    """Whether the pool is reachable, as last seen by this process."""

    def __init__(self, where: str, *, buffer: bool, retry_s: float) -> None:
        self.where = where  # names the pool in messages
        self.buffer = buffer
        self.retry_s = retry_s
        self.until = 0.0  # while in the future, the hot path does not try the server
        self.down = False  # the last attempt failed (in either mode)
        self.count = 0  # outages seen by this process

    def active(self) -> bool:
        """Whether the server failed recently and is not tried again yet."""
        return self.until > 0.0 and self.until > time.monotonic()

    def failed(self, exc: BackendError) -> None:
        """The server (or the lock) failed: enter outage mode, or raise ``exc`` when not
        buffering."""
        if not self.down:
            self.count += 1
            self.down = True
        if not self.buffer:
            raise exc
        if not self.until:
            logger.warning(
                "%s is unreachable; sampling from the last view and buffering writes "
                "(retry every %.1f s): %s",
                self.where,
                self.retry_s,
                exc,
            )
        self.until = time.monotonic() + self.retry_s

    def reachable(self) -> None:
        """The server answered: leave outage mode."""
        self.down = False
        if self.until:
            self.until = 0.0
            logger.warning("%s is reachable again", self.where)

    def reset(self) -> None:
        """Forget the outage (the pool was re-attached)."""
        self.until = 0.0
        self.down = False
