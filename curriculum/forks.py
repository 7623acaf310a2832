"""Fork handling in one place: objects that hold per-process state hear about a fork once.

A process forked from one that uses a curriculum (a ``fork`` start method, a vector env that forks
its workers) inherits the parent's buffers, write ids, open lock descriptors and connections. The
parent still owns them. One ``os.register_at_fork`` hook tells every registered object, in the
child, right after the fork; the objects only drop or reset plain state there (no I/O: the child
may be about to ``exec``) and redo the rest lazily at their next use.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

_listeners: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_generation = 0


def on_fork_in_child(owner: Any, callback: Callable[[Any], None]) -> None:
    """Call ``callback(owner)`` in the child after every fork, while ``owner`` lives.

    ``callback`` should be a plain function or an unbound method (a bound method would keep
    ``owner`` alive).
    """
    _listeners[owner] = callback


def generation() -> int:
    """How many forks led to this process from the one that imported this module."""
    return _generation


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    for owner, callback in list(_listeners.items()):
        callback(owner)


os.register_at_fork(after_in_child=_after_fork_in_child)
