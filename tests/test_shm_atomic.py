"""A /dev/shm write is all or nothing, even when its process dies in the middle of it.

Writers are real processes: killed with SIGKILL after random delays while they record huge
batches and replace tasks in a loop, or stopped at a chosen point inside a write (the test-only
``CURRICULUM_SHM_CRASH_AT`` hook, which exits like SIGKILL). After each death the pool must hold
whole batches only and its counters must agree with its rows and labels.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import conftest
import numpy as np
import pytest
from conftest import remove_pool, unique_session

from backends.base import PoolParams, PoolSnapshot, WriteBatch
from backends.layout import EMPTY_TASK
from backends.shared_memory import SharedMemoryBackend
from backends.shm_journal import CRASH_EXIT_CODE
from curriculum.curriculum import pool_params

SLOTS = 16
BATCH = 40_000  # outcomes per write: long enough that a kill often lands inside one
WAIT_S = 60.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def session_id() -> Iterator[str]:
    sid = unique_session("atomic")
    yield sid
    remove_pool(sid)


def params() -> PoolParams:
    return pool_params(conftest.make_config(num_active_tasks=SLOTS), None)


def fill(backend: SharedMemoryBackend) -> None:
    """A task with its own label in every slot."""
    for slot in range(SLOTS):
        seq = backend.reserve_sequence()
        label = backend.intern_label(f"label-{slot % 5}")
        assert backend.create_task(1000 + seq, label, seq) == slot


def batch_for(snapshot: PoolSnapshot, n: int, seed: int) -> WriteBatch:
    """``n`` outcomes and ``n // 4`` samples on the pool's live tasks."""
    rng = np.random.default_rng(seed)
    rows = snapshot.rows
    slots = rng.integers(0, len(rows), size=n)
    batch = WriteBatch()
    batch.extend_outcomes(
        slots.tolist(),
        rows["task_id"][slots].tolist(),
        rows["label_id"][slots].tolist(),
        rng.random(n).tolist(),
        steps=3 * n,
    )
    for slot in slots[: n // 4].tolist():
        batch.add_sample(slot, int(rows["task_id"][slot]), int(rows["label_id"][slot]))
    return batch


def check_invariants(snapshot: PoolSnapshot) -> None:
    """Counters agree with rows and labels (label totals include the live rows)."""
    c, rows, labels = snapshot.counters, snapshot.rows, snapshot.labels
    live = rows["task_id"] != EMPTY_TASK
    assert labels["completions"].sum() == c["num_completed"], (labels["completions"].sum(), c)
    assert labels["samples"].sum() == c["num_scheduled"]
    assert labels["created"].sum() == c["num_created"]
    assert labels["evicted"].sum() == c["num_evicted"]
    assert c["num_active"] == int(live.sum())
    assert c["num_created"] - c["num_evicted"] == c["num_active"]
    evicted_and_late = labels["completions"].sum() - rows["n_outcomes"][live].sum()
    assert c["num_completed"] == rows["n_outcomes"][live].sum() + evicted_and_late
    assert c["num_steps"] == 3 * c["num_completed"]
    assert c["num_labels"] == len(snapshot.label_names)


# -- random kills -------------------------------------------------------------------------------

WRITER = """
import pickle, sys
from backends.base import WriteBatch
from backends.shared_memory import SharedMemoryBackend
sys.path.insert(0, sys.argv[3])
from test_shm_atomic import batch_for

session, params = sys.argv[1], pickle.loads(bytes.fromhex(sys.argv[2]))
backend = SharedMemoryBackend(session, params, create=False)
print("attached", flush=True)
seed = 0
while True:
    seed += 1
    snapshot = backend.snapshot()
    backend.record(batch_for(snapshot, int(sys.argv[4]), seed))
    slot = seed % len(snapshot.rows)
    seq = backend.reserve_sequence()
    label = backend.intern_label(f"label-{seq % 7}")
    backend.replace_task(slot, int(snapshot.rows["task_id"][slot]), 1000 + seq, label, seq)
"""


def start_writer(session_id: str, batch: int = BATCH, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            session_id,
            pickle.dumps(params()).hex(),
            os.path.join(ROOT, "tests"),
            str(batch),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ROOT, **env},
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"attached"
    return proc


def test_writers_killed_at_random_points_leave_whole_batches_only(session_id: str) -> None:
    """SIGKILL a writer of 40,000-outcome batches (and task replacements) after random delays,
    many times: every kill leaves whole batches only, and counters agree with rows and labels;
    the pool keeps working for the survivors."""
    rng = random.Random(11)
    backend = SharedMemoryBackend(session_id, params())
    try:
        fill(backend)
        kills_inside_a_write = 0
        for _ in range(12):
            proc = start_writer(session_id)
            try:
                time.sleep(rng.uniform(0.05, 0.6))
            finally:
                proc.kill()
                proc.wait(timeout=WAIT_S)
            assert proc.returncode == -signal.SIGKILL
            kills_inside_a_write += int(backend._journal.pending)
            snapshot = backend.snapshot()  # rolls a half write back first
            assert not backend._journal.pending
            assert snapshot.counters["num_completed"] % BATCH == 0, snapshot.counters
            check_invariants(snapshot)
        before = backend.snapshot().counters["num_completed"]
        backend.record(batch_for(backend.snapshot(), 100, seed=99))
        after = backend.snapshot()
        assert after.counters["num_completed"] == before + 100
        check_invariants(after)
        assert kills_inside_a_write > 0, "no kill landed inside a write: the test proved nothing"
    finally:
        backend.close()


# -- a crash at each point of a write -----------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "applied"),
    [
        ("saving", False),
        ("saved", False),
        ("applying", False),
        ("applied", False),
        ("committed", True),
    ],
)
def test_a_writer_dying_at_each_point_of_a_write_applies_all_or_nothing(
    session_id: str, point: str, applied: bool
) -> None:
    """A writer exits (as if killed) at ``point`` of its first batch: the next process finds
    the pool exactly as before the batch, or (once committed) with the whole batch."""
    backend = SharedMemoryBackend(session_id, params())
    try:
        fill(backend)
        backend.record(batch_for(backend.snapshot(), 500, seed=1))
        before = backend.export_state()
        proc = start_writer(session_id, 5000, CURRICULUM_SHM_CRASH_AT=point)
        assert proc.wait(timeout=WAIT_S) == CRASH_EXIT_CODE
        after = backend.snapshot()
        check_invariants(after)
        completed = after.counters["num_completed"]
        if applied:
            assert completed == before.counters["num_completed"] + 5000
        else:
            state = backend.export_state()
            assert state.counters == before.counters
            assert np.array_equal(state.rows, before.rows)
            assert np.array_equal(state.labels, before.labels)
        backend.record(batch_for(after, 10, seed=2))  # and the pool keeps working
        check_invariants(backend.snapshot())
    finally:
        backend.close()


def test_a_process_dying_while_it_rolls_back_leaves_the_roll_back_to_the_next(
    session_id: str,
) -> None:
    backend = SharedMemoryBackend(session_id, params())
    try:
        fill(backend)
        before = backend.export_state()
        first = start_writer(session_id, 5000, CURRICULUM_SHM_CRASH_AT="applying")
        assert first.wait(timeout=WAIT_S) == CRASH_EXIT_CODE
        second = start_writer(session_id, 5000, CURRICULUM_SHM_CRASH_AT="rolling-back")
        assert second.wait(timeout=WAIT_S) == CRASH_EXIT_CODE
        assert backend._journal.pending
        state = backend.export_state()  # this process finishes the roll-back
        assert state.counters == before.counters
        assert np.array_equal(state.rows, before.rows)
        assert np.array_equal(state.labels, before.labels)
        check_invariants(backend.snapshot())
    finally:
        backend.close()


def _raise_midway(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("the update failed midway")


def test_a_write_that_raises_midway_changes_nothing(
    session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside a write (here: in the EMA update of the repeated slots, after each
    slot's first outcome was applied) rolls the write back before it propagates."""
    import backends.shm_records as records

    backend = SharedMemoryBackend(session_id, params())
    try:
        fill(backend)
        before = backend.export_state()
        monkeypatch.setattr(records, "apply_in_order", _raise_midway)
        with pytest.raises(RuntimeError, match="midway"):
            backend.record(batch_for(backend.snapshot(), 200, seed=5))
        state = backend.export_state()
        assert state.counters == before.counters
        assert np.array_equal(state.rows, before.rows)
        assert not backend._journal.pending
    finally:
        backend.close()


def test_a_checkpoint_load_killed_midway_changes_nothing(session_id: str) -> None:
    """import_state with a new label (interned inside the change), exiting in the middle of the
    change: the pool is exactly as before, labels included."""
    backend = SharedMemoryBackend(session_id, params())
    try:
        fill(backend)
        backend.record(batch_for(backend.snapshot(), 300, seed=3))
        before = backend.export_state()
        state = backend.export_state()
        state.labels["name"][0] = b"a label the pool does not have"
        state.counters["num_completed"] += 1
        code = (
            "import pickle, sys\n"
            "from backends.shared_memory import SharedMemoryBackend\n"
            "session, params, state = pickle.loads(sys.stdin.buffer.read())\n"
            "backend = SharedMemoryBackend(session, params, create=False)\n"
            "backend.import_state(state)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=pickle.dumps((session_id, params(), state)),
            env={**os.environ, "PYTHONPATH": ROOT, "CURRICULUM_SHM_CRASH_AT": "applying"},
            cwd=ROOT,
            capture_output=True,
            timeout=WAIT_S,
            check=False,
        )
        assert done.returncode == CRASH_EXIT_CODE, done.stderr
        after = backend.export_state()
        assert after.counters == before.counters
        assert np.array_equal(after.rows, before.rows)
        assert np.array_equal(after.labels, before.labels)
    finally:
        backend.close()
