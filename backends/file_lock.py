"""An inter-process lock on a file, with a timeout, that survives fork and dies with its holder.

``fcntl.flock`` locks belong to an open file description, which ``fork`` shares: a child that used
its parent's descriptor would hold the parent's lock. The lock therefore drops the inherited
descriptor when it hears of a fork (:mod:`curriculum.forks`) and reopens its file in the new
process (through ``/proc/self/fd`` when the path may be gone). The kernel releases a flock when
its holder dies, so a crashed worker never blocks the others; a holder that hangs (or is stopped)
makes the others raise :class:`LockTimeoutError` after the timeout.

The same file also carries *attach locks*: every process attached to a pool holds a shared
open-file-description (OFD) record lock on byte 0 of the segment for as long as it is attached.
Record locks and ``flock`` locks are independent on Linux, so attach locks never delay a write.
The kernel drops an attach lock when the last descriptor of its open file description closes (on
``close()``, or when the process dies), so "does any other description hold an attach lock?" tells
whether any process is still attached, whatever its pid namespace, without trusting pids.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from collections.abc import Callable

from curriculum import forks
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
        self._fd = -1  # this process's own descriptor, opened at first use
        self._thread_lock = threading.Lock()
        forks.on_fork_in_child(self, FileLock._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: the inherited descriptor shares the parent's lock; drop it."""
        if self._fd >= 0:
            os.close(self._fd)  # the child's copy only
        self._fd = -1
        self._thread_lock = threading.Lock()

    def _own_fd(self) -> int:
        if self._fd < 0:
            # A new open file description for the same inode, even if the path was unlinked.
            self._fd = os.open(f"/proc/self/fd/{self._source_fd}", os.O_RDWR | os.O_CLOEXEC)
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

    def descriptor(self) -> int:
        """This process's own descriptor of the file (an open file description of its own)."""
        return self._own_fd()

    def close(self) -> None:
        """Close this process's descriptor (the source descriptor belongs to the caller)."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


# -- attach locks (OFD record locks on byte 0) --------------------------------------------------

# struct flock on 64-bit Linux: type, whence, start, len, pid
_FLOCK_STRUCT = struct.Struct("hhqqi4x")


def _ofd(fd: int, command: int, lock_type: int) -> int:
    reply = fcntl.fcntl(fd, command, _FLOCK_STRUCT.pack(lock_type, os.SEEK_SET, 0, 1, 0))
    return _FLOCK_STRUCT.unpack(reply)[0]


def hold_attach_lock(fd: int) -> None:
    """Mark the open file description of ``fd`` as attached (a shared lock; never waits)."""
    _ofd(fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK)


def others_attached(fd: int) -> bool:
    """Whether an open file description other than ``fd``'s holds an attach lock on the file."""
    return _ofd(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK) != fcntl.F_UNLCK
