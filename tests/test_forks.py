"""Fork handling lives in one place: curriculum/forks.py's os.register_at_fork hook."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from curriculum import forks

ROOT = Path(__file__).resolve().parent.parent


class _Owner:
    def __init__(self) -> None:
        self.forked = 0

    def after_fork(self) -> None:
        self.forked += 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_listeners_hear_of_a_fork_in_the_child_only() -> None:
    owner = _Owner()
    forks.on_fork_in_child(owner, _Owner.after_fork)
    generation = forks.generation()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it saw, leave without running any clean-up
        os.write(write, f"{owner.forked} {forks.generation() - generation}".encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert seen == "1 1"
    assert owner.forked == 0 and forks.generation() == generation


def test_a_dropped_listener_is_forgotten() -> None:
    owner = _Owner()
    forks.on_fork_in_child(owner, _Owner.after_fork)
    count = len(forks._listeners)
    del owner
    assert len(forks._listeners) == count - 1


def test_no_process_id_comparisons_outside_the_fork_hook() -> None:
    """Fork detection by comparing process ids is gone: objects register with curriculum.forks."""
    pattern = re.compile(r"(!=|==)\s*os\.getpid\(\)|os\.getpid\(\)\s*(!=|==)")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("curriculum", "backends")
        for path in (ROOT / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, f"fork detection by pid comparison at {found}"
