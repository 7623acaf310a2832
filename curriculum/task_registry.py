"""The tasks one process handed out: where they are, which episodes still run, which were lost.

A cache, never the truth: the slot of a task is verified by the backend's compare-and-set on
every write. It lets a process record an outcome without searching the pool, keeps a task whose
episode is still running findable after it was evicted (its late outcome still counts for its
label), and remembers the tasks of a pool that was lost (their late outcomes are dropped and
counted instead of raising ``UnknownTaskError``).
"""

from __future__ import annotations

import itertools


class TaskRegistry:
    """Task id -> (slot, label id) for the tasks this process handed out, bounded in size."""

    def __init__(self, capacity: int) -> None:
        self.limit = 8 * capacity + 16_384
        self.issued: dict[int, tuple[int, int]] = {}  # insertion order = least recent first
        self.running: dict[int, int] = {}  # task id -> episodes handed out and not reported
        self.lost: set[int] = set()  # tasks handed out from a pool that was lost since

    def get(self, task_id: int) -> tuple[int, int] | None:
        """``(slot, label_id)`` of a task this process handed out, or None."""
        return self.issued.get(task_id)

    def remember(self, task_id: int, slot: int, label_id: int) -> None:
        """Note a task this process created or found; the oldest half goes when full."""
        issued = self.issued
        if len(issued) >= self.limit:
            # Forget the older half (dicts keep insertion order; a task handed out again moves
            # to the end), except tasks whose episodes are still running.
            running = self.running
            for old in list(itertools.islice(issued, len(issued) // 2)):
                if old not in running:
                    del issued[old]
        issued[task_id] = (slot, label_id)

    def touch(self, task_id: int, slot: int, label_id: int) -> None:
        """Note that a task was handed out again (it is forgotten last)."""
        known = self.issued.pop(task_id, None)
        if known is None:
            self.remember(task_id, slot, label_id)
        else:
            self.issued[task_id] = known

    def started(self, task_id: int) -> None:
        """An episode of ``task_id`` began."""
        running = self.running
        if len(running) >= self.limit:  # episodes never reported (a crashed env)
            for old in list(itertools.islice(running, len(running) // 2)):
                del running[old]
        running[task_id] = running.get(task_id, 0) + 1

    def ended(self, task_id: int) -> None:
        """An episode of ``task_id`` ended (its outcome or failure came)."""
        count = self.running.pop(task_id, 0)
        if count > 1:
            self.running[task_id] = count - 1

    def was_lost(self, task_id: int) -> bool:
        """Whether ``task_id`` was handed out from a pool that was lost since."""
        return task_id in self.lost

    def mark_lost(self) -> None:
        """The pool is gone: every task handed out so far belongs to the lost pool."""
        self.lost = set(itertools.islice(self.issued, self.limit))
        self.clear()

    def clear(self) -> None:
        """Forget every task (after a fork or a checkpoint replaced the pool's contents)."""
        self.issued.clear()
        self.running.clear()
