"""An inter-process lock on a file, with a timeout, that survives fork and dies with its holder.

``fcntl.flock`` locks belong to an open file description, which ``fork`` shares: a child that used
its parent's descriptor would hold the parent's lock. The lock therefore reopens its file in every
new process (through ``/proc/self/fd`` when the path may be gone). The kernel releases a flock when
its holder dies, so a crashed worker never blocks the others; a holder that hangs (or is stopped)
makes the others raise :class:`LockTimeoutError` after the timeout.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable

from curriculum.errors import LockTimeoutError


class FileLock:
    """Exclusive lock on an open file, re-opened per process, with a timeout."""

    def __init__(self, fd: int, timeout_s: float, describe_holder: Callable[[], str]) -> None:
        """Lock the file open as ``fd`` in this process.

        Args:
            fd: An open descriptor of the file (the lock opens its own descriptor per process).
            timeout_s: How long :meth:`acquire` waits before raising.
            describe_holder: Returns a text naming the current holder, for the timeout error.
        """
        self._source_fd = fd
        self.timeout_s = timeout_s
        self._describe_holder = describe_holder
        self._fd = -1
        self._pid = -1
        self._thread_lock = threading.Lock()

    def _own_fd(self) -> int:
        if self._pid != os.getpid():
            # A new open file description for the same inode, even if the path was unlinked.
            self._fd = os.open(f"/proc/self/fd/{self._source_fd}", os.O_RDWR | os.O_CLOEXEC)
            self._pid = os.getpid()
            self._thread_lock = threading.Lock()
        return self._fd

    def acquire(self) -> None:
        """Take the lock, or raise LockTimeoutError after ``timeout_s``."""
        fd = self._own_fd()
        deadline = time.monotonic() + self.timeout_s
        if not self._thread_lock.acquire(timeout=self.timeout_s):
            raise LockTimeoutError(self._timeout_message())
        try:
            delay = 20e-6
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeoutError(self._timeout_message()) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 2e-3)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        """Release the lock taken by :meth:`acquire`."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _timeout_message(self) -> str:
        return f"lock not acquired within {self.timeout_s:g} s; {self._describe_holder()}"

    def close(self) -> None:
        """Close this process's descriptor (the source descriptor belongs to the caller)."""
        if self._pid == os.getpid() and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._pid = -1
