"""Where a pool lives: its session name and its backend, resolved once per curriculum."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from curriculum.redaction import redact_url

STAGE_SUFFIX = ".stage"


@dataclass(frozen=True)
class PoolLocation:
    """A pool's session name and backend URL (None: /dev/shm on this host).

    ``private`` marks a generated name (the config's ``session_id`` was None): such a pool
    belongs to the curriculum that created it and its workers, and its creator removes it at
    ``close()`` on every backend.
    """

    session_id: str
    backend_url: str | None = None
    private: bool = False

    @classmethod
    def resolve(cls, session_id: str | None, backend_url: str | None) -> PoolLocation:
        """The location a config names; a generated private name when ``session_id`` is None."""
        if session_id is None:
            name = f"auto-{os.getpid()}-{secrets.token_hex(4)}"
            return cls(name, backend_url, private=True)
        return cls(session_id, backend_url)

    def stage(self, index: int) -> PoolLocation:
        """The location of stage ``index``'s pool of a staged curriculum (stage 0: this one)."""
        if index == 0:
            return self
        return PoolLocation(f"{self.session_id}{STAGE_SUFFIX}{index}", self.backend_url)

    @property
    def backend_name(self) -> str:
        """``"shm"`` or ``"redis"``: which backend holds the pool."""
        return "shm" if self.backend_url is None else "redis"

    def __str__(self) -> str:
        where = "/dev/shm" if self.backend_url is None else redact_url(self.backend_url)
        return f"pool {self.session_id!r} at {where}"
