"""``curriculum shm list`` / ``clean``: orphaned /dev/shm pools, with real processes.

A creator killed with SIGKILL (with nobody else attached) leaves its segment: it is listed as
orphaned and ``clean`` removes it, after which a new pool with that session works again. Live
pools (some process attached, even when their creator died), and files that are not ours are
listed and always kept. Every call of
``clean`` here names a session (or is a dry run): concurrent test runs' pools are never touched.
Every file a test makes is removed, and every child killed, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import unique_session

from backends.layout import STRUCT_VERSION
from backends.process_info import process_identity
from backends.shared_memory import META_INDEX, segment_path
from curriculum import (
    Curriculum,
    CurriculumConfig,
    LearningProgressConfig,
    SingleTaskGenerator,
    shm_admin,
)
from curriculum.cli import main
from curriculum.errors import PoolCorruptedError
from curriculum.shm_admin import SegmentInfo, clean_segments, list_segments

WAIT_S = 30.0
SLOTS = 8
_KEEP: list[Any] = []  # a child's curriculum, alive until the child is killed


def config(session_id: str) -> CurriculumConfig:
    return CurriculumConfig(
        task_generator=SingleTaskGenerator.Config(env={"label": "nav"}),
        num_active_tasks=SLOTS,
        write_batch_size=1,
        algorithm_config=LearningProgressConfig(session_id=session_id),
    )


def play(cur: Curriculum, n: int = 2) -> None:
    for _ in range(n):
        cur.update_task_performance(cur.get_task().task_id, 0.5)


# -- children (module level: spawn children import them) ---------------------------------------


def _create_and_die(session_id: str) -> None:
    """Create a pool, write to it, and die by SIGKILL: no close(), no exit handlers."""
    cur = Curriculum(config(session_id))
    play(cur)
    os.kill(os.getpid(), signal.SIGKILL)


def _open_and_wait(session_id: str, ready: Any, release: Any) -> None:
    """Create or attach to the pool, write, report the pid, and wait for ``release``."""
    cur = Curriculum(config(session_id))
    _KEEP.append(cur)
    play(cur)
    ready.put((os.getpid(), cur.backend.created))
    if release.wait(timeout=WAIT_S):
        play(cur)  # the pool still works for a worker whose creator died
        cur.close()


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def ctx() -> Any:
    return mp.get_context("spawn")


@pytest.fixture
def made() -> Iterator[list[Path]]:
    """Paths the test creates in the shm directory; removed afterwards whatever happened."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()


def new_session(made: list[Path], prefix: str = "shmadm") -> str:
    session = unique_session(prefix)
    made.append(segment_path(session))
    return session


def reap(*procs: Any) -> None:
    for proc in procs:
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(timeout=10)


def make_orphans(ctx: Any, sessions: list[str]) -> list[int]:
    """Each session's pool, created by a child that was then SIGKILLed; the children's pids."""
    procs = [ctx.Process(target=_create_and_die, args=(s,), daemon=True) for s in sessions]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=WAIT_S)
            assert proc.exitcode == -signal.SIGKILL, f"creator exited with {proc.exitcode}"
    finally:
        reap(*procs)
    for session in sessions:
        assert segment_path(session).exists(), "a SIGKILLed creator leaves its segment"
    return [proc.pid for proc in procs]


def only(session: str) -> SegmentInfo:
    infos = list_segments(session)
    assert [i.session for i in infos] == [session]
    return infos[0]


def clone_segment(made: list[Path], *, truncate: int | None = None, **meta: int) -> str:
    """A copy of a real pool's segment under a new session, with header fields changed.

    The original pool (created by this process) is closed; the copy has no process behind it.
    """
    source = new_session(made, "shmsrc")
    with Curriculum(config(source)) as cur:
        play(cur)
        data = bytearray(segment_path(source).read_bytes())
    header = np.frombuffer(data, np.int64, count=len(META_INDEX))
    for name, value in meta.items():
        header[META_INDEX[name]] = value
    session = new_session(made, "shmcopy")
    fd = os.open(segment_path(session), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:  # writes it all
        handle.write(data if truncate is None else data[:truncate])
    return session


def fingerprint(path: Path) -> tuple[int, int, bytes]:
    st = os.lstat(path)
    content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    return st.st_ino, st.st_mtime_ns, content


# -- orphaned pools -----------------------------------------------------------------------------


def test_killed_creator_is_listed_orphaned_and_clean_removes_it(ctx: Any, made: list[Path]) -> None:
    session = new_session(made)
    (pid,) = make_orphans(ctx, [session])
    path = segment_path(session)

    info = only(session)
    assert info.state == "orphaned"
    assert (info.creator_pid, info.creator_alive, info.creator_state) == (pid, False, "exited")
    assert info.capacity == SLOTS
    assert info.size == path.stat().st_size
    assert info.struct_version == STRUCT_VERSION
    assert info.lock_held is False  # the kernel dropped the dead creator's flock
    assert info.users == []
    assert info.in_use is False

    with pytest.raises(PoolCorruptedError, match="orphaned") as caught:
        Curriculum(config(session))
    assert str(pid) in str(caught.value)
    assert path.exists()

    report = clean_segments(session=session)
    assert [(a.segment.session, a.action) for a in report.actions] == [(session, "removed")]
    assert not path.exists()
    assert list_segments(session) == []

    with Curriculum(config(session)) as cur:  # the session is usable again
        assert cur.backend.created
        play(cur, 3)
        assert cur.stats()["curriculum/num_completed"] == 3
    assert not path.exists()


def test_reused_creator_pid_counts_as_orphaned(made: list[Path]) -> None:
    """A header naming this (running) process but another start time: its creator is gone."""
    pid, start = process_identity()
    session = clone_segment(made, creator_pid=pid, creator_start=start + 12345)
    info = only(session)
    assert (info.state, info.creator_pid, info.creator_alive) == ("orphaned", pid, False)
    assert info.creator_state == "exited (pid reused)"

    fd = os.open(segment_path(session), os.O_RDONLY)  # open, not mapped: still a user
    try:
        assert only(session).users == [pid]
        (action,) = clean_segments(session=session).actions
        assert action.action == "kept"
        assert "in use" in action.reason and str(pid) in action.reason
    finally:
        os.close(fd)
    report = clean_segments(session=session)
    assert [a.action for a in report.actions] == ["removed"]
    assert not segment_path(session).exists()


def test_pool_whose_creator_was_killed_lives_while_a_worker_is_attached(
    ctx: Any, made: list[Path]
) -> None:
    """The creator dies while a worker that attached before keeps training: the pool is live
    (the worker holds its attach lock), clean keeps it, another process may still attach, and
    the worker, leaving last, removes it."""
    session = new_session(made)
    path = segment_path(session)
    # One event each: a process killed while waiting on a multiprocessing Event leaves it
    # unusable (set() would wait for the dead waiter forever).
    ready, never, release = ctx.Queue(), ctx.Event(), ctx.Event()
    creator = ctx.Process(target=_open_and_wait, args=(session, ready, never), daemon=True)
    worker = ctx.Process(target=_open_and_wait, args=(session, ready, release), daemon=True)
    try:
        creator.start()
        assert ready.get(timeout=WAIT_S) == (creator.pid, True)
        worker.start()
        assert ready.get(timeout=WAIT_S) == (worker.pid, False)
        live = only(session)
        assert (live.state, live.attached) == ("live", True)
        assert live.users == sorted([creator.pid, worker.pid])
        os.kill(creator.pid, signal.SIGKILL)
        creator.join(timeout=WAIT_S)
        assert creator.exitcode == -signal.SIGKILL

        info = only(session)
        assert (info.state, info.creator_pid, info.creator_alive) == ("live", creator.pid, False)
        assert info.attached is True
        assert info.users == [worker.pid]
        assert info.in_use is True
        for dry_run in (True, False):
            report = clean_segments(dry_run=dry_run, session=session)
            (action,) = report.actions
            assert action.action == "kept"
            assert action.reason.startswith("live")
        assert path.exists()
        assert os.stat(path).st_ino == live.inode

        late = Curriculum(config(session))  # a restarted worker attaches, without a warning
        try:
            assert not late.backend.created
            before = late.stats()["curriculum/num_completed"]
            play(late)
            assert late.stats()["curriculum/num_completed"] > before
        finally:
            late.close()
        assert path.exists()  # the worker is still attached

        release.set()  # the worker writes again, closes (last to leave) and exits
        worker.join(timeout=WAIT_S)
        assert worker.exitcode == 0
        assert not path.exists()
        assert clean_segments(session=session).actions == []
    finally:
        reap(creator, worker)


# -- live pools ---------------------------------------------------------------------------------


def test_live_pool_is_listed_live_and_never_removed(made: list[Path]) -> None:
    session = new_session(made)
    path = segment_path(session)
    with Curriculum(config(session)) as cur:
        play(cur)
        inode = os.stat(path).st_ino
        info = only(session)
        assert info.state == "live"
        assert (info.creator_pid, info.creator_alive) == (os.getpid(), True)
        assert info.capacity == SLOTS
        assert info.lock_held is False
        assert info.users == [os.getpid()]

        cur.backend._acquire()  # a write in progress: the probe sees the lock, without waiting
        try:
            assert only(session).lock_held is True
        finally:
            cur.backend._release()
        assert only(session).lock_held is False

        for dry_run in (True, False):
            (action,) = clean_segments(dry_run=dry_run, session=session).actions
            assert action.action == "kept"
            assert action.reason.startswith("live")
        assert os.stat(path).st_ino == inode
        play(cur)  # the pool still works, the probes left no lock behind
        assert cur.stats()["curriculum/num_completed"] == 4
    assert not path.exists()


# -- files that are not ours --------------------------------------------------------------------


def test_foreign_and_unreadable_files_are_listed_and_never_touched(made: list[Path]) -> None:
    garbage = new_session(made, "foreign")
    segment_path(garbage).write_bytes(os.urandom(300))
    zeros = new_session(made, "zeros")  # pool-sized, no header: e.g. a creator died mid-create
    segment_path(zeros).write_bytes(bytes(64 * 1024))
    target = new_session(made, "target")
    segment_path(target).write_bytes(b"not a pool")
    link = new_session(made, "link")
    os.symlink(segment_path(target), segment_path(link))
    directory = new_session(made, "dir")
    os.mkdir(segment_path(directory))
    dead = {"creator_pid": 2**22 + 12345, "creator_start": 1}  # above pid_max: never running
    version = clone_segment(made, struct_version=STRUCT_VERSION + 1, **dead)
    truncated = clone_segment(made, truncate=20000, **dead)
    magic = clone_segment(made, magic=0x1234, **dead)
    expected = {
        garbage: ("not ours", "no pool header"),
        zeros: ("not ours", "no pool header"),
        target: ("not ours", "no pool header"),
        link: ("not ours", "not a regular file"),
        directory: ("not ours", "not a regular file"),
        version: ("unreadable", f"layout version {STRUCT_VERSION + 1}"),
        truncated: ("unreadable", "20000 bytes"),
        magic: ("not ours", "no pool header (another magic number)"),
    }
    before = {s: fingerprint(segment_path(s)) for s in expected}

    for session, (state, reason) in expected.items():
        info = only(session)
        assert (info.state, info.creator_alive) == (state, None), info
        assert reason in info.reason
        for dry_run in (True, False):
            (action,) = clean_segments(dry_run=dry_run, session=session).actions
            assert action.action == "kept"
            assert action.reason.startswith(state) and "never touched" in action.reason
    assert {s: fingerprint(segment_path(s)) for s in expected} == before


# -- dry run, session filter, races -------------------------------------------------------------


def test_dry_run_removes_nothing_and_session_filters(ctx: Any, made: list[Path]) -> None:
    first, second = new_session(made), new_session(made)
    make_orphans(ctx, [first, second])
    inodes = {s: os.stat(segment_path(s)).st_ino for s in (first, second)}

    for report in (clean_segments(dry_run=True), clean_segments(dry_run=True, session=first)):
        assert report.dry_run
        actions = {a.segment.session: a.action for a in report.actions}
        assert actions[first] == "would remove"
        assert actions.get(second, "would remove") == "would remove"
    assert {s: os.stat(segment_path(s)).st_ino for s in (first, second)} == inodes

    report = clean_segments(session=first)
    assert [(a.segment.session, a.action) for a in report.actions] == [(first, "removed")]
    assert not segment_path(first).exists()
    assert os.stat(segment_path(second)).st_ino == inodes[second]
    assert clean_segments(session=first).actions == []
    assert [a.action for a in clean_segments(session=second).actions] == ["removed"]
    assert not segment_path(second).exists()


def test_segment_replaced_after_the_check_is_left_alone(
    made: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the listing and the unlink, the orphan is removed and a new pool takes its name:
    the new pool (another inode) survives; a segment that just vanished is reported gone."""
    pid, start = process_identity()
    session = clone_segment(made, creator_pid=pid, creator_start=start + 1)
    stale = list_segments(session)
    assert [i.state for i in stale] == ["orphaned"]
    monkeypatch.setattr(shm_admin, "list_segments", lambda session=None: stale)

    os.unlink(segment_path(session))
    assert [a.action for a in clean_segments(session=session).actions] == ["gone"]

    with Curriculum(config(session)) as cur:
        (action,) = clean_segments(session=session).actions
        assert action.action == "kept"
        assert "replaced" in action.reason
        assert segment_path(session).exists()
        play(cur)
        assert cur.stats()["curriculum/num_completed"] == 2


# -- the command --------------------------------------------------------------------------------


def test_cli_lists_and_cleans(ctx: Any, made: list[Path], capsys: pytest.CaptureFixture) -> None:
    orphan = new_session(made)
    (pid,) = make_orphans(ctx, [orphan])
    foreign = new_session(made, "foreign")
    segment_path(foreign).write_bytes(b"\x00garbage" * 10)
    live = new_session(made)
    with Curriculum(config(live)):
        capsys.readouterr()
        assert main(["shm", "list"]) == 0
        lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
        assert lines["SESSION"].split()[:3] == ["SESSION", "STATE", "SIZE"]
        assert lines[orphan].split()[1] == "orphaned"
        assert f"{pid} (exited)" in lines[orphan]
        assert lines[live].split()[1] == "live"
        assert f"{os.getpid()} (" in lines[live]
        assert "not ours" in lines[foreign] and "no pool header" in lines[foreign]

        assert main(["shm", "list", "--json"]) == 0
        listed = {e["session"]: e for e in json.loads(capsys.readouterr().out)}
        assert listed[orphan]["state"] == "orphaned"
        assert listed[orphan]["creator_pid"] == pid
        assert listed[orphan]["creator_alive"] is False
        assert listed[orphan]["in_use"] is False
        assert listed[orphan]["capacity"] == SLOTS
        assert listed[orphan]["size"] == segment_path(orphan).stat().st_size
        assert listed[live]["state"] == "live"
        assert listed[live]["users"] == [os.getpid()]
        assert listed[foreign]["state"] == "not ours"
        assert listed[foreign]["capacity"] is None

        assert main(["shm", "list", "--session", orphan, "--json"]) == 0
        assert [e["session"] for e in json.loads(capsys.readouterr().out)] == [orphan]

        assert main(["shm", "clean", "--dry-run", "--session", orphan]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].split()[:2] == ["would", "remove"]
        assert "1 would remove, 0 kept (dry run: nothing removed)" in out
        assert segment_path(orphan).exists()

        for session, expected in ((live, "live"), (foreign, "not ours")):
            assert main(["shm", "clean", "--session", session]) == 0
            out = capsys.readouterr().out
            assert out.splitlines()[0].split()[:2] == ["kept", session]
            assert expected in out
            assert "0 removed, 1 kept" in out
            assert segment_path(session).exists()

        assert main(["shm", "clean", "--session", orphan, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["dry_run"] is False
        assert [(a["session"], a["action"]) for a in report["actions"]] == [(orphan, "removed")]
        assert report["actions"][0]["segment"]["creator_pid"] == pid
        assert not segment_path(orphan).exists()

        assert main(["shm", "clean", "--session", orphan]) == 0
        assert f"no session {orphan!r}" in capsys.readouterr().out
