"""One piece of work in a helper thread, for a caller that must not wait for it.

A large pool's view takes milliseconds to re-read and re-score (about 3 ms at 10,000 tasks);
``get_task`` must not stall an environment's reset that long. When a refresh costs more than
:data:`BACKGROUND_REFRESH_S`, the session runs it in a short-lived helper thread and keeps
sampling from its current view until the new one is ready (the scoring is numpy, which mostly
runs without the GIL). The thread lives only while one refresh runs, so a process that forks
(a vector env starting its workers) almost never forks with it alive; a forked child drops a
refresh its parent had started.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# A refresh that cost more than this (seconds) runs in the background from then on.
BACKGROUND_REFRESH_S = 0.001


class BackgroundCall(Generic[T]):
    """``work()`` running in a daemon thread; its result (or error) once :meth:`done`."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._done = threading.Event()
        self._result: T | None = None
        self._error: BaseException | None = None
        thread = threading.Thread(
            target=self._run, args=(work,), name="curriculum-view-refresh", daemon=True
        )
        thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._result = work()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        """Whether the work finished (or failed)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the work finished; whether it did within ``timeout``."""
        return self._done.wait(timeout)

    def result(self) -> T:
        """The work's result, or its error raised here (call only once :meth:`done`)."""
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]
