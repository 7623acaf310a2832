"""Lifetime of the /dev/shm segment and of its lock, across real processes.

Who removes ``/dev/shm/curriculum.<session>`` (only its creator, at close or exit), what a dead,
stopped or sleeping lock holder does to the others (flock dies with its holder; a live holder makes
writers raise LockTimeoutError naming it), and how attaching fails (PoolMismatchError,
PoolNotFoundError) without harming the pool. Children are always killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing as mp
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import conftest
import numpy as np
import pytest
from conftest import nav_generator, remove_pool, unique_session
from workers import open_handle, record, run_workers

from backends.shared_memory import META_INDEX, segment_path
from curriculum import Curriculum, CurriculumConfig, Span
from curriculum.errors import (
    LockTimeoutError,
    PoolCorruptedError,
    PoolLostError,
    PoolMismatchError,
    PoolNotFoundError,
)

WAIT_S = 60.0
_KEEP: list[Any] = []  # keeps a child's curriculum alive until its process exits


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def session_id() -> Iterator[str]:
    """A session id no other test uses; its segment is removed even when the test fails."""
    sid = unique_session("life")
    yield sid
    remove_pool(sid)


def make_config(session_id: str, **fields: Any) -> CurriculumConfig:
    """:func:`conftest.make_config` on ``session_id`` in /dev/shm, with 64 slots unless told."""
    fields.setdefault("num_active_tasks", 64)
    return conftest.make_config(lp_session_id=session_id, **fields)


def completed(cur: Curriculum) -> float:
    return cur.stats()["curriculum/num_completed"]


def reap(*procs: Any) -> None:
    """Kill (after resuming, if stopped) every child still alive."""
    for proc in procs:
        if proc is not None and proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.join(timeout=10)


def finish(proc: Any) -> None:
    """Wait (bounded) for a child that should exit on its own, successfully."""
    proc.join(timeout=WAIT_S)
    assert not proc.is_alive(), f"child {proc.pid} did not exit"
    assert proc.exitcode == 0, f"child {proc.pid} exited with {proc.exitcode}"


def child_report(ctx: Any, target: Callable[..., None], *args: Any) -> tuple[Any, int]:
    """Run ``target(*args, report)`` in a ``ctx`` child that should exit on its own, successfully:
    what it put on the queue ``report``, and its pid. The child is killed in ``finally``."""
    report = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, report), daemon=True)
    try:
        proc.start()
        reported = report.get(timeout=WAIT_S)
        finish(proc)
    finally:
        reap(proc)
    return reported, proc.pid


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        raw = handle.read()
    return raw[raw.rfind(")") + 2]


def lock_is_held(session_id: str) -> bool:
    """Whether some process holds the segment's flock (probed on a fresh open file)."""
    fd = os.open(segment_path(session_id), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def names_pid(message: str, pid: int) -> bool:
    return re.search(rf"(?<!\d){pid}(?!\d)", message) is not None


# -- children (module level: spawn children import them) ---------------------------------------


def _create_and_return(session_id: str, report: Any) -> None:
    """Create a pool, record, and return without close() (keeping the curriculum until exit)."""
    cur = Curriculum(make_config(session_id, num_active_tasks=8))
    _KEEP.append(cur)
    record(cur, 3)
    report.put((os.getpid(), segment_path(session_id).exists()))


def _attach_and_record(handle: Curriculum | bytes, n: int, ending: str, report: Any) -> None:
    """Attach, write ``n`` outcomes, then close() or just return (exit with the pool open)."""
    cur = open_handle(handle)
    record(cur, n)
    if ending == "close":
        cur.close()
    elif ending == "flush-and-exit":
        cur.flush()
        _KEEP.append(cur)
    else:  # "exit": leave the outcomes buffered; the process exits with them
        _KEEP.append(cur)
    report.put(os.getpid())


def _hold_lock_mid_write(handle: Curriculum, ready: Any, release: Any) -> None:
    """Take the pool's lock as a write does (seqlock odd), and keep it until ``release``."""
    cur = open_handle(handle)
    with cur.backend._locked():
        cur.backend._change()  # the seqlock is odd and an (empty) undo record is set
        ready.put(os.getpid())
        if not release.wait(timeout=WAIT_S):
            os._exit(3)
    record(cur, 1)
    cur.close()


def _hold_raw_lock(handle: Curriculum, attached: Any, go: Any, ready: Any, release: Any) -> None:
    """Attach, wait for ``go``, then hold the pool's lock (no write) until ``release``."""
    cur = open_handle(handle)
    attached.set()
    if not go.wait(timeout=WAIT_S):
        os._exit(3)
    cur.backend._acquire()
    ready.put(os.getpid())
    if not release.wait(timeout=WAIT_S):
        os._exit(3)
    cur.backend._release()
    cur.close()


def _try_to_open(config: CurriculumConfig | None, blob: bytes | None, report: Any) -> None:
    """Build a curriculum from ``config`` or unpickle ``blob``; report the error it raised."""
    try:
        cur = Curriculum(config) if config is not None else pickle.loads(blob)
    except Exception as exc:  # the parent inspects it
        report.put((type(exc).__name__, str(exc)))
    else:
        cur.close()
        report.put(("no error", ""))


# -- who removes the segment --------------------------------------------------------------------


def test_creator_close_removes_the_segment(session_id: str) -> None:
    path = segment_path(session_id)
    cur = Curriculum(make_config(session_id))
    assert path.exists()
    record(cur, 5)
    cur.close()
    assert not path.exists()
    cur.close()  # idempotent
    assert not path.exists()


# What the scripts below start with: pool(session_id) opens a small pool on /dev/shm.
POOL_PRELUDE = """
import sys
from curriculum import Curriculum, CurriculumConfig, LearningProgressConfig, SingleTaskGenerator

def pool(session_id):
    return Curriculum(CurriculumConfig(
        task_generator=SingleTaskGenerator.Config(env={"label": "nav"}),
        num_active_tasks=8,
        write_batch_size=1,
        algorithm_config=LearningProgressConfig(session_id=session_id),
    ))
"""


def run_script(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``POOL_PRELUDE + source`` in a fresh interpreter with ``args`` (bounded)."""
    return subprocess.run(
        [sys.executable, "-c", POOL_PRELUDE + source, *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


CREATOR_SCRIPT = """
from backends.shared_memory import segment_path

session_id, ending = sys.argv[1], sys.argv[2]
cur = pool(session_id)
task = cur.get_task()
cur.update_task_performance(task.task_id, 0.5)
print("exists" if segment_path(session_id).exists() else "missing", flush=True)
if ending == "exception":
    raise RuntimeError("the trainer crashed")
"""


@pytest.mark.parametrize("ending", ["return", "exception"])
def test_creator_process_exiting_without_close_removes_the_segment(
    session_id: str, ending: str
) -> None:
    """A fresh interpreter creates the pool and exits (normally, or on an uncaught exception)
    without close(): nothing is left in /dev/shm."""
    done = run_script(CREATOR_SCRIPT, session_id, ending)
    assert done.stdout.strip() == "exists", done.stderr
    assert done.returncode == (0 if ending == "return" else 1), done.stderr
    assert not segment_path(session_id).exists()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_creator_child_returning_without_close_removes_the_segment(
    session_id: str, method: str
) -> None:
    """A multiprocessing child that created the pool returns normally without close(): its exit
    removes the segment."""
    ctx = mp.get_context(method)
    (pid, existed), child_pid = child_report(ctx, _create_and_return, session_id)
    assert (pid, existed) == (child_pid, True)
    assert not segment_path(session_id).exists(), f"segment left behind by {method} child"


@pytest.mark.parametrize("ending", ["close", "flush-and-exit"])
@pytest.mark.parametrize(
    ("method", "transport"),
    [("spawn", "inherit"), ("fork", "pickle"), ("fork", "inherit")],
    ids=["spawn", "fork-pickled", "fork-inherited"],
)
def test_attached_worker_never_removes_the_segment(
    session_id: str, method: str, transport: str, ending: str
) -> None:
    """A worker attaches, records, closes (or just exits) and is gone: the creator's segment
    (same inode) and the worker's outcomes remain, and the pool keeps working."""
    ctx = mp.get_context(method)
    path = segment_path(session_id)
    with Curriculum(make_config(session_id, write_batch_size=1)) as cur:
        record(cur, 3)
        inode = os.stat(path).st_ino
        handle = cur if transport == "inherit" else pickle.dumps(cur)
        reported_pid, child_pid = child_report(ctx, _attach_and_record, handle, 7, ending)
        assert reported_pid == child_pid
        assert path.exists(), "a worker removed the creator's segment"
        assert os.stat(path).st_ino == inode, "the segment was replaced"
        assert completed(cur) == 3 + 7
        record(cur, 2)
        assert completed(cur) == 3 + 7 + 2
    assert not path.exists()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_worker_exiting_without_close_writes_its_buffered_outcomes(
    session_id: str, method: str
) -> None:
    """Outcomes a worker still buffers (fewer than write_batch_size) when its process ends
    without close() are written at exit, as the curriculum promises."""
    ctx = mp.get_context(method)
    with Curriculum(make_config(session_id)) as cur:
        blob = pickle.dumps(cur)
        reported_pid, child_pid = child_report(ctx, _attach_and_record, blob, 5, "exit")
        assert reported_pid == child_pid
        assert segment_path(session_id).exists()
        assert completed(cur) == 5, f"{method} worker's buffered outcomes were lost at exit"


def _record_wait_and_end(cur: Curriculum, go: Any, ending: str, report: Any) -> None:
    """An inherited curriculum (fork): record, wait for ``go``, then close() or just return."""
    record(cur, 2)
    report.put(os.getpid())
    if not go.wait(timeout=WAIT_S):
        os._exit(3)
    if ending == "close":
        cur.close()
    else:
        _KEEP.append(cur)


@pytest.mark.parametrize("ending", ["close", "return"])
def test_a_forked_child_that_outlives_its_parents_close_removes_the_segment(
    session_id: str, ending: str
) -> None:
    """The parent closes while a forked child (which shares the parent's attach) still trains;
    the child ends last, with or without close(): it removes the segment, which nobody uses."""
    ctx = mp.get_context("fork")
    path = segment_path(session_id)
    cur = Curriculum(make_config(session_id, write_batch_size=1))
    report, go = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_record_wait_and_end, args=(cur, go, ending, report))
    try:
        child.start()
        assert report.get(timeout=WAIT_S) == child.pid
        cur.close()
        assert path.exists(), "the parent removed the segment its child still uses"
        go.set()
        finish(child)
    finally:
        reap(child)
    assert not path.exists(), f"segment left behind by a forked child that ended by {ending!r}"


def _record_and_return(cur: Curriculum) -> None:
    record(cur, 3)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_worker_given_the_curriculum_as_an_argument_leaves_at_exit(
    session_id: str, method: str
) -> None:
    """A spawn or forkserver worker unpickles its curriculum (attaching on its own) before
    multiprocessing clears the exit handlers registered so far; returning without close(), it
    still leaves: only the parent counts as attached afterwards (a worker counted forever would
    make the pool look orphaned, and be refused, once the parent is killed)."""
    ctx = mp.get_context(method)
    with Curriculum(make_config(session_id, write_batch_size=1)) as cur:
        worker = ctx.Process(target=_record_and_return, args=(cur,))
        worker.start()
        finish(worker)
        assert completed(cur) == 3
        assert cur.backend._meta[META_INDEX["attached"]] == 1, f"the {method} worker never left"
    assert not segment_path(session_id).exists()


PARENT_WITH_DAEMON_CHILD = """
import multiprocessing as mp
import time

def train(cur):
    task = cur.get_task()
    cur.update_task_performance(task.task_id, 0.5)
    print("child trains", flush=True)
    time.sleep(60)

if __name__ == "__main__":
    cur = pool(sys.argv[1])
    worker = mp.get_context("fork").Process(target=train, args=(cur,), daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while cur.stats()["curriculum/num_completed"] < 1:  # until the child has used the pool
        assert time.monotonic() < deadline, "the child never recorded"
        time.sleep(0.05)
    print("parent exits", flush=True)
"""


def test_a_parent_exiting_while_its_forked_daemon_child_trains_leaves_nothing(
    session_id: str,
) -> None:
    """The parent returns without close() while a daemonic forked worker still trains (a vector
    env's workers at the end of a script): multiprocessing stops the worker at exit, and the
    segment is removed after it, not left behind."""
    done = run_script(PARENT_WITH_DAEMON_CHILD, session_id)
    assert done.returncode == 0, done.stderr
    assert "parent exits" in done.stdout, done.stdout + done.stderr
    assert not segment_path(session_id).exists(), "segment left behind by the parent's exit"


PARENT_KILLED_AFTER_CHILD_CLOSED = """
import multiprocessing as mp
import os
import signal

def leave(cur):
    cur.close()

if __name__ == "__main__":
    cur = pool(sys.argv[1])
    task = cur.get_task()
    cur.update_task_performance(task.task_id, 0.5)
    child = mp.get_context("fork").Process(target=leave, args=(cur,))
    child.start()
    child.join()
    print(child.exitcode, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_forked_child_leaving_does_not_count_as_its_parent_leaving(session_id: str) -> None:
    """A forked child closes (it shares its parent's attach), then the parent is killed: the
    pool is orphaned (refused with a message, its statistics kept), not taken for one its last
    user left cleanly and silently replaced by an empty pool."""
    done = run_script(PARENT_KILLED_AFTER_CHILD_CLOSED, session_id)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "0", done.stdout + done.stderr
    assert segment_path(session_id).exists()
    with pytest.raises(PoolCorruptedError, match="orphaned"):
        Curriculum(make_config(session_id, num_active_tasks=8))
    assert segment_path(session_id).exists(), "the refused pool must be left for inspection"


# -- dead, stopped and sleeping lock holders ----------------------------------------------------


def test_holder_killed_mid_write_releases_the_lock(session_id: str) -> None:
    """SIGKILL a process inside a write: the kernel drops its flock; the parent and a new worker
    write, and stats stay readable."""
    ctx = mp.get_context("spawn")
    path = segment_path(session_id)
    holder = None
    with Curriculum(make_config(session_id, write_batch_size=1, lock_timeout_s=5.0)) as cur:
        record(cur, 3)
        try:
            ready, release = ctx.Queue(), ctx.Event()
            holder = ctx.Process(target=_hold_lock_mid_write, args=(cur, ready, release))
            holder.start()
            assert ready.get(timeout=WAIT_S) == holder.pid
            assert lock_is_held(session_id)
            os.kill(holder.pid, signal.SIGKILL)
            holder.join(timeout=WAIT_S)
            assert not holder.is_alive()
            assert holder.exitcode == -signal.SIGKILL
            assert not lock_is_held(session_id)

            record(cur, 3)  # writes succeed
            stats = cur.stats()  # reads succeed (the seqlock was left mid-write)
            assert stats["curriculum/num_completed"] == 6
            snapshot = cur.backend.snapshot()
            assert snapshot.counters["num_completed"] == 6

            blob = pickle.dumps(cur)
            reported_pid, other_pid = child_report(ctx, _attach_and_record, blob, 4, "close")
            assert reported_pid == other_pid
        finally:
            reap(holder)
        assert completed(cur) == 10
        assert cur.backend.snapshot().version > snapshot.version
        assert path.exists()


class StoppedWriter:
    """A child that attached to a pool, took its lock inside a write, and was SIGSTOPped."""

    def __init__(self, holder: Any, release: Any) -> None:
        self.holder = holder
        self.pid: int = holder.pid
        self._release = release

    def resume(self) -> None:
        """Continue it: it releases the lock, records one outcome and exits successfully."""
        os.kill(self.pid, signal.SIGCONT)
        self._release.set()
        finish(self.holder)

    def kill(self) -> None:
        """SIGKILL it while stopped, still holding the lock."""
        os.kill(self.pid, signal.SIGKILL)
        self.holder.join(timeout=WAIT_S)
        assert not self.holder.is_alive()
        assert self.holder.exitcode == -signal.SIGKILL


@contextlib.contextmanager
def stopped_writer(ctx: Any, cur: Curriculum) -> Iterator[StoppedWriter]:
    """Start a :class:`StoppedWriter` on ``cur``'s pool; it is killed on the way out if alive."""
    ready, release = ctx.Queue(), ctx.Event()
    holder = ctx.Process(target=_hold_lock_mid_write, args=(cur, ready, release), daemon=True)
    try:
        holder.start()
        pid = ready.get(timeout=WAIT_S)
        assert pid == holder.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + WAIT_S
        while process_state(pid) not in "Tt":
            assert time.monotonic() < deadline, "holder never stopped"
            time.sleep(0.01)
        assert lock_is_held(cur.session_id)
        yield StoppedWriter(holder, release)
    finally:
        reap(holder)


@pytest.mark.parametrize("recovery", ["resume", "kill"])
def test_stopped_holder_makes_writers_raise_lock_timeout(session_id: str, recovery: str) -> None:
    """A holder stopped (SIGSTOP) inside a write: a write times out instead of hanging (the
    outcome stays queued and the call does not raise; flush() raises LockTimeoutError naming the
    holder); once the holder resumes (or is killed), the queued write goes through exactly
    once."""
    ctx = mp.get_context("spawn")
    with Curriculum(make_config(session_id, write_batch_size=1, lock_timeout_s=0.5)) as cur:
        task = cur.get_task()
        with stopped_writer(ctx, cur) as holder:
            cur.update_task_performance(task.task_id, 0.25)  # writes at once (batch 1): times out
            assert cur.health()["health/pending_outcomes"] == 1  # kept for the next write
            assert cur.health()["health/outages"] == 1
            with pytest.raises(LockTimeoutError) as caught:
                cur.flush()
            message = str(caught.value)
            assert isinstance(caught.value, TimeoutError)
            assert names_pid(message, holder.pid), message
            assert "stopped" in message, message
            if recovery == "resume":
                holder.resume()
            else:
                holder.kill()
        cur.flush()
        holders_outcomes = 1 if recovery == "resume" else 0
        assert completed(cur) == 1 + holders_outcomes  # the parent's outcome, once
        record(cur, 1)
        assert completed(cur) == 2 + holders_outcomes


def test_attach_during_a_stopped_write_raises_lock_timeout_naming_the_holder(
    session_id: str,
) -> None:
    """A new process attaching while the lock's holder is stopped raises LockTimeoutError (no
    hang) naming the holder; after the holder resumes, attaching works."""
    ctx = mp.get_context("spawn")
    with Curriculum(make_config(session_id, write_batch_size=1, lock_timeout_s=0.5)) as cur:
        record(cur, 1)
        blob = pickle.dumps(cur)
        with stopped_writer(ctx, cur) as holder:
            with pytest.raises(LockTimeoutError) as caught:
                pickle.loads(blob)  # what a worker does when it starts
            message = str(caught.value)
            holder.resume()
        with pickle.loads(blob) as worker:
            record(worker, 1)
        assert completed(cur) == 3
        assert names_pid(message, holder.pid), (
            f"holder {holder.pid} not named in: {message!r} (the test process is {os.getpid()})"
        )


def test_sleeping_lock_holder_is_named_in_the_timeout(session_id: str) -> None:
    """A live holder of the raw lock (as get_state() or an attach takes it), after another
    process wrote last: reads still work without the lock, writes time out (the outcome stays
    queued; flush() raises LockTimeoutError naming the holder), and writing works again once it
    releases."""
    ctx = mp.get_context("spawn")
    holder = None
    with Curriculum(make_config(session_id, write_batch_size=1, lock_timeout_s=0.5)) as cur:
        try:
            attached, go, release = ctx.Event(), ctx.Event(), ctx.Event()
            ready = ctx.Queue()
            holder = ctx.Process(
                target=_hold_raw_lock, args=(cur, attached, go, ready, release), daemon=True
            )
            holder.start()
            assert attached.wait(timeout=WAIT_S)
            record(cur, 1)
            task = cur.get_task()
            cur.flush()  # this process is now the last writer
            go.set()
            pid = ready.get(timeout=WAIT_S)
            assert pid == holder.pid
            assert lock_is_held(session_id)

            assert completed(cur) == 1  # snapshots need no lock
            cur.update_task_performance(task.task_id, 0.75)  # times out: queued
            with pytest.raises(LockTimeoutError) as caught:
                cur.flush()
            message = str(caught.value)

            release.set()
            finish(holder)
        finally:
            reap(holder)
        cur.flush()
        assert completed(cur) == 2
        assert names_pid(message, pid), (
            f"holder {pid} not named in: {message!r} (the test process is {os.getpid()})"
        )


# -- attaching fails cleanly --------------------------------------------------------------------

MISMATCHES = {
    "num_active_tasks": (
        {"num_active_tasks": 128},
        [r"capacity|num_active_tasks", r"\b64\b", r"\b128\b"],
    ),
    "ema_timescale": ({"lp_ema_timescale": 0.3}, [r"ema_timescale", r"0\.2\b", r"0\.3\b"]),
    "task_generator": ({"generator": nav_generator(Span(8, 64))}, [r"generator"]),
    "algorithm": ({"algorithm": "discrete_random"}, [r"algorithm", r"discrete_random"]),
    "max_labels": ({"max_labels": 1000}, [r"label_capacity|max_labels", r"\b4096\b", r"\b1000\b"]),
    "min_presentations": (
        {"lp_min_presentations_for_eviction": 5},
        [r"min_presentations_for_eviction", r"\b10\b", r"\b5\b"],
    ),
}


def _pool_state(cur: Curriculum) -> tuple[Any, ...]:
    snapshot = cur.backend.snapshot()
    return snapshot.version, snapshot.rows.copy(), snapshot.labels.copy(), snapshot.counters


@pytest.mark.parametrize("variant", sorted(MISMATCHES))
def test_mismatched_attach_raises_and_leaves_the_pool_intact(session_id: str, variant: str) -> None:
    overrides, patterns = MISMATCHES[variant]
    path = segment_path(session_id)
    with Curriculum(make_config(session_id, write_batch_size=1)) as cur:
        record(cur, 20)
        stats_before = cur.stats()
        version, rows, labels, counters = _pool_state(cur)
        inode = os.stat(path).st_ino

        with pytest.raises(PoolMismatchError) as caught:
            Curriculum(make_config(session_id, **overrides))
        message = str(caught.value)
        assert session_id in message, message
        for pattern in patterns:
            assert re.search(pattern, message), f"{pattern!r} not in: {message}"

        assert cur.stats() == stats_before
        after_version, after_rows, after_labels, after_counters = _pool_state(cur)
        assert after_version == version
        assert np.array_equal(after_rows, rows)
        assert np.array_equal(after_labels, labels)
        assert after_counters == counters
        assert os.stat(path).st_ino == inode
        with pickle.loads(pickle.dumps(cur)) as same:  # a matching attach still works
            record(same, 2)
        record(cur, 1)
        assert completed(cur) == 23
    assert not path.exists()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_mismatched_attach_from_another_process(session_id: str, method: str) -> None:
    ctx = mp.get_context(method)
    with Curriculum(make_config(session_id, write_batch_size=1)) as cur:
        record(cur, 4)
        stats_before = cur.stats()
        bad = make_config(session_id, num_active_tasks=128)
        kind, message = child_report(ctx, _try_to_open, bad, None)[0]
        assert kind == "PoolMismatchError", message
        assert re.search(r"capacity|num_active_tasks", message), message
        assert cur.stats() == stats_before
        assert segment_path(session_id).exists()


@pytest.mark.parametrize("method", ["spawn", "fork", "in-process"])
def test_unpickling_after_the_creator_closed_raises_pool_not_found(
    session_id: str, method: str
) -> None:
    cur = Curriculum(make_config(session_id))
    record(cur, 2)
    blob = pickle.dumps(cur)
    cur.close()
    assert not segment_path(session_id).exists()
    if method == "in-process":
        with pytest.raises(PoolNotFoundError) as caught:
            pickle.loads(blob)
        kind, message = type(caught.value).__name__, str(caught.value)
    else:
        kind, message = child_report(mp.get_context(method), _try_to_open, None, blob)[0]
    assert kind == "PoolNotFoundError", message
    assert session_id in message
    assert not segment_path(session_id).exists(), "a failed attach must not create a pool"


# -- one session, one pool: the segment lives while any process is attached --------------------


def _attach_record_wait(handle: bytes, n: int, go: Any, report: Any) -> None:
    """Attach, write ``n`` outcomes, report; on ``go`` write ``n`` more and close."""
    cur = open_handle(handle)
    record(cur, n)
    cur.flush()
    report.put(os.getpid())
    if not go.wait(timeout=WAIT_S):
        os._exit(3)
    record(cur, n)
    cur.close()
    report.put("closed")


def test_the_pool_lives_while_any_process_is_attached(session_id: str) -> None:
    """A creates, B attaches, A closes while B trains; C, started with the same session, joins
    the same pool (not a new empty one) and sees every outcome; B and C leave, and the last one
    out removes the segment."""
    ctx = mp.get_context("spawn")
    path = segment_path(session_id)
    a = Curriculum(make_config(session_id, write_batch_size=1))
    record(a, 3)
    inode = os.stat(path).st_ino
    report, go = ctx.Queue(), ctx.Event()
    b = ctx.Process(target=_attach_record_wait, args=(pickle.dumps(a), 5, go, report))
    try:
        b.start()
        assert report.get(timeout=WAIT_S) == b.pid
        a.close()
        assert path.exists() and os.stat(path).st_ino == inode, "A removed the pool B uses"
        with Curriculum(make_config(session_id, write_batch_size=1)) as c:
            assert not c.backend.created
            assert completed(c) == 3 + 5
            go.set()
            assert report.get(timeout=WAIT_S) == "closed"
            finish(b)
            assert completed(c) == 3 + 5 + 5
            record(c, 1)
            assert completed(c) == 14
            assert path.exists()
        assert not path.exists(), "the last process to leave must remove the segment"
    finally:
        reap(b)


def _attach_and_hang(handle: bytes, report: Any) -> None:
    cur = open_handle(handle)
    _KEEP.append(cur)
    report.put(os.getpid())
    time.sleep(WAIT_S)


def test_a_killed_attacher_does_not_keep_the_pool_alive(session_id: str) -> None:
    """B attaches and is SIGKILLed (no clean-up of any kind): when A leaves, A is the last one
    attached, and removes the segment."""
    ctx = mp.get_context("spawn")
    path = segment_path(session_id)
    a = Curriculum(make_config(session_id))
    report = ctx.Queue()
    b = ctx.Process(target=_attach_and_hang, args=(pickle.dumps(a), report), daemon=True)
    try:
        b.start()
        assert report.get(timeout=WAIT_S) == b.pid
        os.kill(b.pid, signal.SIGKILL)
        b.join(timeout=WAIT_S)
        assert b.exitcode == -signal.SIGKILL
        record(a, 2)
        a.close()
        assert not path.exists()
    finally:
        reap(b)


def _write_after_removal(handle: bytes, removed: Any, report: Any) -> None:
    cur = open_handle(handle)
    record(cur, 1)
    report.put("attached")
    if not removed.wait(timeout=WAIT_S):
        os._exit(3)
    try:
        record(cur, 1)
    except PoolLostError as exc:
        report.put(("PoolLostError", str(exc)))
    else:
        report.put(("no error", ""))
    with contextlib.suppress(PoolLostError):
        cur.close()


def test_a_write_to_a_removed_segment_raises_pool_lost(session_id: str) -> None:
    """The segment's file is removed (``rm``, a /dev/shm clean-up) while B is attached: B's next
    write raises PoolLostError instead of going into a file no other process will see."""
    ctx = mp.get_context("spawn")
    path = segment_path(session_id)
    config = make_config(session_id, write_batch_size=1, on_pool_lost="raise")
    with Curriculum(config) as a:
        report, removed = ctx.Queue(), ctx.Event()
        b = ctx.Process(target=_write_after_removal, args=(pickle.dumps(a), removed, report))
        try:
            b.start()
            assert report.get(timeout=WAIT_S) == "attached"
            os.unlink(path)
            removed.set()
            kind, message = report.get(timeout=WAIT_S)
            finish(b)
        finally:
            reap(b)
        assert kind == "PoolLostError", message
        assert session_id in message and "removed" in message
        with pytest.raises(PoolLostError):
            record(a, 1)


@pytest.mark.parametrize("on_pool_lost", ["recreate", "raise"])
def test_a_handle_that_only_reads_notices_its_pool_was_removed(
    session_id: str, on_pool_lost: str
) -> None:
    """A monitor that only calls stats() must not keep reporting a removed segment (which no
    other process sees any more): it follows the pool the trainer re-created, or raises."""
    trainer = Curriculum(make_config(session_id, write_batch_size=1, num_active_tasks=8))
    monitor_config = make_config(session_id, write_batch_size=1, num_active_tasks=8)
    monitor = Curriculum(monitor_config.model_copy(update={"on_pool_lost": on_pool_lost}))
    try:
        record(trainer, 10)
        assert completed(monitor) == 10
        os.unlink(segment_path(session_id))
        record(trainer, 5)  # the trainer re-creates the pool (on_pool_lost="recreate")
        assert completed(trainer) <= 5
        if on_pool_lost == "raise":
            with pytest.raises(PoolLostError, match="removed"):
                monitor.stats()
        else:
            assert completed(monitor) == completed(trainer)
    finally:
        with contextlib.suppress(PoolLostError):
            monitor.close()
        trainer.close()


def _come_and_go(index: int, session_id: str, cycles: int) -> int:
    """Attach (or create), write one outcome and leave, ``cycles`` times; outcomes seen last."""
    seen = 0
    for _ in range(cycles):
        with Curriculum(make_config(session_id, write_batch_size=1)) as cur:
            record(cur, 1)
            seen = int(completed(cur))
    return seen


def test_processes_coming_and_going_never_see_an_orphan_or_a_leftover(session_id: str) -> None:
    """Three processes attach, write and leave in a loop on one session, racing each other's
    last-one-out removal: none gets an error, and nothing is left behind."""
    results = run_workers(_come_and_go, [(session_id, 25)] * 3)
    assert all(seen >= 1 for seen in results)
    assert not segment_path(session_id).exists()
