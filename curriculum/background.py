"""One piece of work in a helper thread, for a caller that must not wait for it.

A large pool's view takes milliseconds to re-read and re-score (about 3 ms at 10,000 tasks);
``get_task`` must not stall an environment's reset that long. When a refresh of a pool of at
least :data:`BACKGROUND_MIN_TASKS` slots costs more than :data:`BACKGROUND_REFRESH_S`, the
session runs it in a short-lived helper thread and keeps sampling from its current view until
the new one is ready (the scoring is numpy, which mostly runs without the GIL). On /dev/shm a
view that has become stale in this process's outcomes waits a little for its refresh at each
call (:meth:`ViewRefresher.overdue`), so a loop that holds the GIL does not sample for long from
a view that has seen none of its recent outcomes. The thread lives only while one refresh runs,
so a process that forks (a vector env starting its workers) almost never forks with it alive; a
forked child drops a refresh its parent had started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from backends.base import TaskMemoryBackend
    from curriculum.algorithms import PoolView
    from curriculum.view_cache import ViewCache

T = TypeVar("T")

# A refresh of a pool of at least BACKGROUND_MIN_TASKS slots that cost more than
# BACKGROUND_REFRESH_S (seconds) runs in the background from then on.
BACKGROUND_REFRESH_S = 0.001
BACKGROUND_MIN_TASKS = 512
# A view the caller keeps sampling from while its refresh runs is stale once this process
# recorded this many times the refresh threshold of outcomes on it; from then on each call
# waits up to STALE_WAIT_S (seconds) for the refresh (the wait releases the GIL to the helper).
STALE_REFRESHES = 1
STALE_WAIT_S = 0.0005


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


class ViewRefresher:
    """A view refresh running in a helper thread, and the tasks placed while it runs.

    The new view is made from a snapshot taken when the thread started: a task this process put
    into a slot since then is shown in it on :meth:`finish` (and is not an eviction candidate on
    its predecessor's score) when the snapshot still shows the task it replaced there; a slot
    showing any other task was changed again after this process's placement.
    """

    def __init__(self) -> None:
        self.call: BackgroundCall[tuple[PoolView | None, float, int]] | None = None
        self.placed: list[tuple[int, int, int, int, int]] = []

    @property
    def running(self) -> bool:
        """Whether a refresh was started and not yet finished or dropped."""
        return self.call is not None

    def start(self, backend: TaskMemoryBackend, views: ViewCache, version: int) -> None:
        """Re-read and re-score the pool in a helper thread (when it changed since ``version``)."""
        score = views.score

        def work() -> tuple[PoolView | None, float, int]:
            started = time.thread_time()  # its CPU time: not the waits for the caller's GIL
            if backend.version() == version:
                return None, time.thread_time() - started, views.own_outcomes
            own_outcomes = views.own_outcomes  # what the snapshot counts of this process's
            view = score(backend.snapshot())
            view.prepare_sampling()  # here, not at the caller's next sample
            return view, time.thread_time() - started, own_outcomes

        self.placed = []
        self.call = BackgroundCall(work)

    def overdue(self, views: ViewCache, *, catch_up: bool) -> bool:
        """Whether the refresh in flight is done. With ``catch_up``, when the caller's view is
        stale (``STALE_REFRESHES`` times the refresh threshold of this process's outcomes were
        recorded on it), wait up to ``STALE_WAIT_S`` for the refresh first.

        A loop that keeps the GIL busy (a simulated student plays thousands of episodes a
        second) starves the helper thread: measured on /dev/shm, a refresh of 1,000 tasks that
        takes a few ms of CPU took 90-130 ms, a thousand episodes sampled from a view that had
        seen none of them. The wait hands the GIL to the helper, which bounds that lag in
        outcomes, at a cost to one call of at most ``STALE_WAIT_S``. It is for backends whose
        reads are local memory copies: a Redis refresh waits on round trips and decodes rows
        in Python, holding the GIL against the caller after its wait (measured: get_task's
        longest call at 10,000 tasks went from 5 ms to 11-16 ms).
        """
        call = self.call
        assert call is not None
        if call.done():
            return True
        if not catch_up or views.outcomes_since < STALE_REFRESHES * views.refresh_after_outcomes:
            return False
        return call.wait(STALE_WAIT_S)

    def note_placed(self, slot: int, replaced: int, task_id: int, label_id: int, seq: int) -> None:
        """This process put a task into ``slot`` in place of the task ``replaced``
        (``EMPTY_TASK`` for a free slot); shown in the new view when it comes."""
        if self.call is not None:
            self.placed.append((slot, replaced, task_id, label_id, seq))

    def finish(self, views: ViewCache) -> None:
        """Install the new view into ``views`` (waiting for it if need be).

        Raises:
            Whatever the refresh raised (e.g. ``BackendUnavailableError``, ``PoolLostError``).
        """
        call, placed = self.call, self.placed
        self.drop()
        assert call is not None
        call.wait()
        view, cost, own_outcomes = call.result()
        if view is None and views.view is None:
            return  # this process changed the pool since: the next call refreshes inline
        replayed = set()
        if view is not None:
            for slot, replaced, task_id, label_id, seq in placed:
                if view.task_id(slot) == replaced:  # read before this process's placement
                    view.place_new_task(slot, task_id, label_id, seq)
                    replayed.add(slot)
        views.install(view, cost, own_outcomes)
        if replayed:  # their eviction scores were the replaced tasks'
            views.evictions = [s for s in views.evictions if s not in replayed]

    def drop(self) -> None:
        """Forget a refresh in flight (its thread, if any, finishes into nothing)."""
        self.call, self.placed = None, []
