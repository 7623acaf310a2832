"""A /dev/shm pool trusts only its own files, never leaks, and fails loudly instead of crashing.

A segment planted by another user (or writable by others, or a symbolic link) is refused; a
dropped curriculum releases its descriptors and its private segment; a pool that does not fit in
/dev/shm raises a typed error instead of dying later with SIGBUS; a truncated segment is named.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import conftest
import pytest
from conftest import unique_session

from backends.shared_memory import SEGMENT_PREFIX, segment_path, shm_dir
from curriculum import Curriculum
from curriculum.errors import PoolCorruptedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOBODY = 65534


@pytest.fixture
def made() -> Iterator[list[Path]]:
    """Paths the test makes in the shm directory; removed afterwards whatever happened."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def config(session_id: str | None, slots: int = 8):
    return conftest.make_config(lp_session_id=session_id, num_active_tasks=slots)


def play(cur: Curriculum, n: int = 2) -> None:
    for _ in range(n):
        cur.update_task_performance(cur.get_task().task_id, 0.5)
    cur.flush()


# -- ownership ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "mode", "words"),
    [
        (NOBODY, 0o600, ["uid 65534", "0600"]),
        (None, 0o666, ["0666", "writable by nobody else"]),
        (None, 0o620, ["0620"]),
        (NOBODY, 0o666, ["uid 65534", "0666"]),
    ],
)
def test_a_segment_of_another_user_or_writable_by_others_is_refused(
    made: list[Path], owner: int | None, mode: int, words: list[str]
) -> None:
    """A live pool whose file is given to another user, or opened to group/others, as a planted
    pool would be: attaching raises PoolCorruptedError naming the owner and the mode, and
    leaves the file alone."""
    session = unique_session("plant")
    path = segment_path(session)
    made.append(path)
    with Curriculum(config(session)) as cur:
        play(cur)
        if owner is not None:
            os.chown(path, owner, -1)
        os.chmod(path, mode)
        before = os.stat(path)
        with pytest.raises(PoolCorruptedError) as caught:
            Curriculum(config(session))
        message = str(caught.value)
        assert str(path) in message
        for word in words:
            assert word in message, message
        after = os.stat(path)
        assert (after.st_ino, after.st_uid, after.st_mode) == (
            before.st_ino,
            before.st_uid,
            before.st_mode,
        )
        os.chown(path, os.geteuid(), -1)
        os.chmod(path, 0o600)
        play(cur)  # the first process's pool still works


def test_a_symbolic_link_is_refused(made: list[Path], tmp_path: Path) -> None:
    """``curriculum.<session>`` as a link to a real pool's copy: never followed."""
    source = unique_session("linksrc")
    made.append(segment_path(source))
    target = tmp_path / "pool"
    with Curriculum(config(source)) as cur:
        play(cur)
        shutil.copyfile(segment_path(source), target)
    os.chmod(target, 0o600)
    session = unique_session("link")
    link = segment_path(session)
    made.append(link)
    os.symlink(target, link)
    with pytest.raises(PoolCorruptedError, match="symbolic link"):
        Curriculum(config(session))
    assert link.is_symlink()


# -- leaks --------------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _our_segments() -> set[str]:
    return {
        n for n in os.listdir(shm_dir()) if n.startswith(f"{SEGMENT_PREFIX}auto-{os.getpid()}-")
    }


def test_dropped_curricula_release_descriptors_and_private_segments() -> None:
    """300 curricula dropped without close(): private pools (session_id None) and named pools
    alike give back their descriptors; private segments are removed."""
    gc.collect()
    fds, segments = _open_fds(), _our_segments()
    sessions = []
    for i in range(300):
        if i % 2:
            cur = Curriculum(config(None))
        else:
            sessions.append(unique_session("drop"))
            cur = Curriculum(config(sessions[-1]))
        play(cur, 1)
        del cur
    gc.collect()
    assert _open_fds() <= fds + 2, f"{_open_fds() - fds} descriptors leaked"
    assert _our_segments() == segments, "private segments left in /dev/shm"
    assert not any(segment_path(s).exists() for s in sessions), "named pools left behind"


# -- space --------------------------------------------------------------------------------------

NO_SPACE = """
import errno, os, sys
from collections import namedtuple
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
import conftest
from curriculum import Curriculum
from curriculum.errors import BackendError

how, session = sys.argv[2], sys.argv[3]
if how == "statvfs":
    real = os.statvfs
    def statvfs(path):
        st = real(path)
        fake = namedtuple("fake", "f_bavail f_frsize")
        return fake(10, 4096)
    os.statvfs = statvfs
else:
    def posix_fallocate(fd, offset, size):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.posix_fallocate = posix_fallocate
try:
    Curriculum(conftest.make_config(lp_session_id=session, num_active_tasks=5000))
except BackendError as exc:
    print(type(exc).__name__, exc)
else:
    print("no error")
"""


@pytest.mark.parametrize("how", ["statvfs", "posix_fallocate"])
def test_a_pool_larger_than_the_free_space_raises_and_leaves_nothing(
    made: list[Path], how: str
) -> None:
    """/dev/shm reports too little free space, or cannot allocate the segment: creating the pool
    raises BackendError saying how much was needed (and free), and no file is left."""
    session = unique_session("space")
    made.append(segment_path(session))
    done = subprocess.run(
        [sys.executable, "-c", NO_SPACE, ROOT, how, session],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("BackendError"), out
    assert "bytes" in out and str(shm_dir()) in out
    if how == "statvfs":
        assert "40,960 are free" in out, out
    else:
        assert "No space left" in out, out
    assert not segment_path(session).exists()


def test_a_truncated_segment_is_named_with_its_sizes(made: list[Path]) -> None:
    """A pool file cut short: attaching raises PoolCorruptedError naming the file, its size and
    the size its header needs; a process already attached gets the same error at its next
    write instead of a SIGBUS."""
    session = unique_session("trunc")
    path = segment_path(session)
    made.append(path)
    with Curriculum(config(session)) as cur:
        play(cur)
        size = path.stat().st_size
        os.truncate(path, 20_000)
        with pytest.raises(PoolCorruptedError) as caught:
            Curriculum(config(session))
        message = str(caught.value)
        assert str(path) in message and "20,000 bytes" in message and f"{size:,}" in message
        with pytest.raises(PoolCorruptedError, match="20,000 bytes"):
            cur.backend.reserve_sequence()
        os.truncate(path, size)  # put the size back (the cut pages are now zeros)
