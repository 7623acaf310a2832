"""Read-only pool inspection: ``curriculum inspect``, ``scripts/lua/*.lua``, pool-inspect.sh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis
import redis_support
from conftest import kinds_generator, unique_session

from backends.redis_backend import REGISTRY_KEY, session_keys
from curriculum import Curriculum, CurriculumConfig, LearningProgressConfig
from curriculum.algorithms.learning_progress import raw_learning_progress
from curriculum.algorithms.prioritized_replay import task_scores
from curriculum.cli import main
from curriculum.inspect import lp_config, render
from curriculum.plr_config import PrioritizedLevelReplayConfig

ROOT = Path(__file__).resolve().parent.parent
LUA_DIR = ROOT / "scripts" / "lua"
SHELL_SCRIPT = ROOT / "scripts" / "pool-inspect.sh"
SECRET = "hunter2-Pa55"
WRITE_COMMANDS = ("'SET'", "'HSET'", "'DEL'", "'HDEL'", "'ZADD'", "'SADD'", "'HINCRBY'")

# On CI these run (and fail without redis-cli) instead of being skipped.
needs_redis_cli = pytest.mark.skipif(
    shutil.which("redis-cli") is None and not os.environ.get("CI"), reason="no redis-cli"
)
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


@dataclass
class Pool:
    """A played pool on a real Redis."""

    curriculum: Curriculum
    url: str
    session: str
    stats: dict[str, float]

    @property
    def keys(self) -> list[str]:
        """The meta, rows, free and labels keys (what the Lua scripts take)."""
        return session_keys(self.session)[:4]


def play(curriculum: Curriculum, episodes: int, seed: int = 0, continuous: bool = False) -> None:
    """Impossible tasks fail, mastered ones succeed, learnable ones improve with practice (or,
    ``continuous``, score uniformly in [0, 1]); each outcome carries a priority (a stand-in for
    a value loss) that grows with practice."""
    rng = np.random.default_rng(seed)
    practice: dict[int, int] = {}
    for _ in range(episodes):
        task = curriculum.get_task()
        kind = task.get_label().split("|")[0]
        practice[task.task_id] = practice.get(task.task_id, 0) + 1
        if kind == "impossible":
            score = 0.0
        elif kind == "mastered":
            score = 1.0
        elif continuous:
            score = float(rng.random())
        else:
            score = float(rng.random() < min(1.0, practice[task.task_id] / 12))
        priority = abs(score - 0.5) + practice[task.task_id] / 100
        curriculum.update_task_performance(task.task_id, score, priority=priority)


def build_pool(url: str, episodes: int = 800, plr: str | None = None, **lp_fields: object) -> Pool:
    """A pool on ``url`` with ``episodes`` played and flushed (caller destroys it): learning
    progress with ``lp_fields``, or Prioritized Level Replay with the score function ``plr``
    (learnable tasks then score in [0, 1])."""
    session = unique_session("inspect")
    where = {"session_id": session, "backend_url": url}
    algorithm: LearningProgressConfig | PrioritizedLevelReplayConfig
    if plr is None:
        algorithm = LearningProgressConfig(**where, min_presentations_for_eviction=8, **lp_fields)
    else:
        algorithm = PrioritizedLevelReplayConfig(**where, score_function=plr)
    config = CurriculumConfig(
        task_generator=kinds_generator(), num_active_tasks=32, algorithm_config=algorithm, seed=3
    )
    curriculum = Curriculum(config)
    try:
        play(curriculum, episodes, continuous=plr is not None)
        stats = curriculum.stats()  # flushes
    except BaseException:
        destroy(curriculum)
        raise
    return Pool(curriculum, url, session, stats)


def destroy(curriculum: Curriculum) -> None:
    """Remove the pool's keys and registry entry, then close the handle."""
    try:
        curriculum.backend.destroy()
    finally:
        curriculum.close()


SCORINGS = {
    "bidirectional": {"progress_smoothing": 0.1},
    "basic+bonus": {
        "use_bidirectional": False,
        "performance_bonus_weight": 0.3,
        "lp_score_temperature": 0.0,  # the sigmoid weighting, which spreads samples more
    },
}


@pytest.fixture(scope="module")
def inspect_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A Redis of this module's own when redis-server is installed, else ``redis_url``.

    A private server keeps the pools safe from test runs sharing ``redis_url``: their Redis
    fixture removes every session registered while one of their tests runs, ours included.
    """
    if shutil.which("redis-server") is None:
        yield request.getfixturevalue("redis_url")
        return
    with redis_support.spawned_redis() as (url, _):
        yield url


@pytest.fixture(scope="module", params=sorted(SCORINGS))
def pool(request: pytest.FixtureRequest, inspect_url: str) -> Iterator[Pool]:
    """A played pool per scoring mode, removed after the module."""
    built = build_pool(inspect_url, **SCORINGS[request.param])
    try:
        yield built
    finally:
        destroy(built.curriculum)


def inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``curriculum inspect ARGV``: exit code, stdout, stderr."""
    code = main(["inspect", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def inspect_json(capsys: pytest.CaptureFixture[str], pool: Pool, *argv: str) -> dict:
    code, out, err = inspect(capsys, "--url", pool.url, "--session", pool.session, "--json", *argv)
    assert code == 0, err
    return json.loads(out)


def cli_target(url: str) -> list[str]:
    """redis-cli connection options for a test URL (no password)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return ["-s", parts.path]
    db = parts.path.strip("/") or "0"
    return ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379), "-n", db]


def run_lua(url: str, script: str, keys: list[str], *args: str) -> subprocess.CompletedProcess:
    """``redis-cli --eval scripts/lua/<script> KEYS , ARGS``."""
    command = ["redis-cli", *cli_target(url), "--eval", str(LUA_DIR / script), *keys, ",", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def lua_rows(url: str, script: str, keys: list[str], *args: str) -> list[list[str]]:
    """The tab-separated rows a script returns (header first)."""
    result = run_lua(url, script, keys, *args, "tsv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and "\t" in lines[0], result.stdout
    return [line.split("\t") for line in lines]


def run_shell(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``scripts/pool-inspect.sh ARGV``."""
    return subprocess.run(
        ["bash", str(SHELL_SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def shell_target(url: str) -> list[str]:
    """pool-inspect.sh connection options for a test URL."""
    parts = urlsplit(url)
    return ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]


def dump_pool(url: str, session: str) -> dict[bytes, tuple[bytes | None, int]]:
    """Every key of the session (DUMP and TTL), found by SCAN so new keys would show too."""
    client = redis.Redis.from_url(url)
    try:
        keys = set(client.scan_iter(match=f"curriculum:{{{session}}}*", count=1000))
        keys |= {k.encode() for k in session_keys(session)}
        state = {key: (client.dump(key), client.pttl(key)) for key in sorted(keys)}
        state[b"registered"] = (str(client.sismember(REGISTRY_KEY, session)).encode(), 0)
        return state
    finally:
        client.close()


# -- the Python views ----------------------------------------------------------------------------


def test_summary_reports_the_pools_counters(capsys, pool: Pool) -> None:
    data = inspect_json(capsys, pool, "--view", "summary")
    assert data["completions"] == pool.stats["curriculum/num_completed"] > 0
    assert data["evictions"] == pool.stats["curriculum/num_evicted"] > 0
    assert data["active"] == pool.stats["curriculum/num_active_tasks"] == 32
    assert data["scheduled"] == pool.stats["curriculum/num_scheduled"]
    assert data["capacity"] == 32 and data["free"] == 0
    assert data["mean_score"] == pytest.approx(pool.stats["reward/mean"])
    assert data["lp_mean"] == pytest.approx(pool.stats["lp/mean"])
    assert data["params"]["algorithm"] == pool.curriculum.config.algorithm_config.algorithm_params()
    assert "stage" not in data  # pools of this library version have none

    code, out, err = inspect(capsys, "--url", pool.url, "--session", pool.session)
    assert code == 0, err
    lines = out.splitlines()
    assert pool.session in lines[0]
    completions = [line.split() for line in lines if line.startswith("completions ")]
    assert completions == [["completions", str(int(pool.stats["curriculum/num_completed"]))]]
    assert any(line.startswith("algorithm.min_presentations_for_eviction") for line in lines)


def test_top_is_ordered_by_learning_progress_of_the_snapshot(capsys, pool: Pool) -> None:
    n = 8
    data = inspect_json(capsys, pool, "--view", "top", "--top", str(n))
    tasks = data["tasks"]
    assert [t["rank"] for t in tasks] == list(range(1, n + 1))
    lps = [t["lp"] for t in tasks]
    assert lps == sorted(lps, reverse=True)

    snapshot = pool.curriculum.backend.snapshot()
    assert snapshot.version == data["version"]
    raw = raw_learning_progress(snapshot.rows, pool.curriculum.config.algorithm_config)
    active = np.flatnonzero(snapshot.rows["task_id"] >= 0)
    assert lps == pytest.approx(sorted(raw[active], reverse=True)[:n], rel=1e-12, abs=0)
    for task in tasks:
        row = snapshot.rows[task["slot"]]
        assert task["task_id"] == int(row["task_id"])
        assert task["lp"] == pytest.approx(float(raw[task["slot"]]), rel=1e-12, abs=0)
        assert task["outcomes"] == int(row["n_outcomes"])
        assert task["samples"] == int(row["n_samples"])
        assert task["label"] == snapshot.label_names[int(row["label_id"])]

    everything = inspect_json(capsys, pool, "--view", "top", "--top", "0")["tasks"]
    assert len(everything) == len(active)
    assert [t["task_id"] for t in everything[:n]] == [t["task_id"] for t in tasks]


def test_labels_add_up_to_the_pools_totals(capsys, pool: Pool) -> None:
    data = inspect_json(capsys, pool, "--view", "labels")
    labels, total = data["labels"], data["total"]
    completions = pool.stats["curriculum/num_completed"]
    assert sum(entry["completions"] for entry in labels) == total["completions"] == completions
    assert sum(entry["active"] for entry in labels) == total["active"] == 32
    assert total["evicted"] == pool.stats["curriculum/num_evicted"]
    for entry in labels:
        prefix = f"label/{entry['label']}"
        assert entry["completions"] == pool.stats[f"{prefix}/completions"]
        assert entry["active"] == pool.stats[f"{prefix}/active_tasks"]
        assert entry["samples"] == pool.stats[f"{prefix}/samples"]
        if entry["active"]:
            assert entry["mean_lp"] == pytest.approx(pool.stats[f"{prefix}/mean_lp"])


def test_sessions_lists_the_pool(capsys, pool: Pool) -> None:
    code, out, err = inspect(capsys, "--url", pool.url, "--json")  # no session: sessions view
    assert code == 0, err
    mine = [s for s in json.loads(out)["sessions"] if s["session"] == pool.session]
    assert mine == [
        {
            "session": pool.session,
            "state": "ok",
            "capacity": 32,
            "active": 32,
            "labels": pool.stats["curriculum/num_labels"],
            "created": pool.stats["curriculum/num_created"],
            "completions": pool.stats["curriculum/num_completed"],
            "scheduled": pool.stats["curriculum/num_scheduled"],
            "evictions": pool.stats["curriculum/num_evicted"],
            "version": pool.curriculum.backend.version(),
        }
    ]


def test_tables_are_aligned(capsys, pool: Pool) -> None:
    for view in ("top", "labels", "sessions"):
        code, out, err = inspect(
            capsys, "--url", pool.url, "--session", pool.session, "--view", view
        )
        assert code == 0, err
        table = out.splitlines()[1:]  # after the title
        assert len(table) >= 2
        if view != "sessions":  # other tests' sessions may have other widths: still aligned
            assert len({len(line) for line in table}) == 1, out
        header = table[0]
        assert header.split()[0] in ("rank", "id", "session")


def test_watch_refreshes_until_stopped(capsys, pool: Pool) -> None:
    base = ["--url", pool.url, "--session", pool.session, "--watch", "0.01", "--iterations", "3"]
    code, out, err = inspect(capsys, *base, "--view", "top", "--top", "3")
    assert code == 0, err
    assert out.count(f"top 3 by LP of session {pool.session!r}") == 3
    code, out, err = inspect(capsys, *base, "--json")
    assert code == 0, err
    frames = [json.loads(line) for line in out.splitlines()]
    assert len(frames) == 3 and all(f["session"] == pool.session for f in frames)


def test_scoring_config_is_rebuilt_from_stored_params() -> None:
    assert lp_config({"type": "discrete_random"}) == LearningProgressConfig()
    rebuilt = lp_config({"type": "learning_progress", "progress_smoothing": 0.2, "future": 1})
    assert rebuilt.progress_smoothing == 0.2
    odd = lp_config({"progress_smoothing": 0.7})  # out of today's range: used as stored
    assert odd.progress_smoothing == 0.7
    assert render("sessions", {"sessions": []}) == "no registered sessions"


# -- read-only, errors, secrets ------------------------------------------------------------------


def test_unknown_session_exits_2_with_a_message(capsys, inspect_url: str) -> None:
    missing = unique_session("missing")
    for view in ("summary", "top", "labels"):
        code, out, err = inspect(capsys, "--url", inspect_url, "--session", missing, "--view", view)
        assert code == 2
        assert f"no pool for session {missing!r}" in err
        assert "Traceback" not in err and out == ""
    code, _, err = inspect(capsys, "--url", inspect_url, "--view", "top")
    assert code == 2 and "--session" in err
    code, _, err = inspect(capsys, "--url", inspect_url, "--session", "a}b")
    assert code == 2 and "invalid session id" in err


def test_unreachable_redis_exits_2_without_the_password(capsys) -> None:
    port = redis_support.free_port()
    for url in (
        f"redis://trainer:{SECRET}@127.0.0.1:{port}/0",
        f"redis://:{SECRET}@127.0.0.1:not-a-port/0",
        f"http://:{SECRET}@127.0.0.1:{port}/0",
        # unencoded '/', '#', '?' in a password: the URL does not parse; no piece of it shows
        f"redis://:{SECRET}/x@127.0.0.1:{port}/0",
        f"redis://trainer:{SECRET}#x@127.0.0.1:{port}/0",
        f"redis://:{SECRET}?x@127.0.0.1:{port}/0",
    ):
        code, out, err = inspect(capsys, "--url", url, "--session", "anything")
        assert code == 2, url
        assert err.startswith("curriculum inspect: ") and "Traceback" not in err
        assert SECRET not in out + err
    code, _, err = inspect(capsys, "--url", f"redis://trainer:{SECRET}@127.0.0.1:{port}/0")
    assert code == 2 and "cannot reach Redis" in err and "trainer:***@" in err


@needs_redis_cli
def test_every_inspection_leaves_the_pool_byte_identical(capsys, pool: Pool) -> None:
    before = dump_pool(pool.url, pool.session)
    assert before[session_keys(pool.session)[1].encode()][0]  # the rows hash exists

    def unchanged(what: str) -> None:
        assert dump_pool(pool.url, pool.session) == before, what

    for view in ("summary", "top", "labels", "sessions"):
        for extra in ([], ["--json"], ["--watch", "0.01", "--iterations", "2"]):
            code, _, err = inspect(
                capsys, "--url", pool.url, "--session", pool.session, "--view", view, *extra
            )
            assert code == 0, err
            unchanged(f"inspect --view {view} {extra}")
    for script, args in (
        ("summary.lua", []),
        ("top.lua", ["5"]),
        ("labels.lua", []),
        ("sessions.lua", []),
    ):
        keys = [REGISTRY_KEY] if script == "sessions.lua" else pool.keys
        for fmt in ([], ["tsv"]):
            result = run_lua(pool.url, script, keys, *args, *fmt)
            assert result.returncode == 0, result.stderr
            unchanged(f"{script} {fmt}")
    if shutil.which("bash") is not None:
        for argv in (["sessions"], ["summary", pool.session], ["top", pool.session, "3"]):
            result = run_shell(*shell_target(pool.url), *argv)
            assert result.returncode == 0, result.stderr
            unchanged(f"pool-inspect.sh {argv}")
        result = run_shell(*shell_target(pool.url), "labels", pool.session)
        assert result.returncode == 0, result.stderr
        unchanged("pool-inspect.sh labels")


def test_lua_scripts_are_flagged_read_only() -> None:
    for script in ("sessions.lua", "summary.lua", "top.lua", "labels.lua"):
        source = (LUA_DIR / script).read_text()
        assert source.startswith("#!lua flags=no-writes\n"), script
        assert "KEYS:" in source and "ARGV:" in source and "Returns:" in source
        upper = source.upper()
        assert not any(command in upper for command in WRITE_COMMANDS), script


# -- the Lua scripts agree with the Python views -------------------------------------------------


def eval_view(url: str, script: str, keys: list[str], *args: str) -> list[list[str]]:
    """A redis-cli view run through EVAL from Python (no redis-cli needed): its TSV rows."""
    client = redis.Redis.from_url(url)
    try:
        reply = client.eval((LUA_DIR / script).read_text(), len(keys), *keys, *args, "tsv")
    finally:
        client.close()
    return [line.decode().split("\t") for line in reply]


def test_lua_views_lp_figures_match_python_on_every_run(capsys, pool: Pool) -> None:
    """The LP of every task (top.lua) and per label (labels.lua), as the redis-cli views print
    them, equal the Python figures of the same pool (``curriculum inspect`` and the
    algorithm's raw learning progress) to the 6 decimals they print. Runs wherever a Redis
    runs: the views are evaluated with EVAL, not redis-cli."""
    rows = eval_view(pool.url, "top.lua", pool.keys, "0")
    column = {name: index for index, name in enumerate(rows[0])}
    snapshot = pool.curriculum.backend.snapshot()
    raw = raw_learning_progress(snapshot.rows, pool.curriculum.config.algorithm_config)
    tasks = inspect_json(capsys, pool, "--view", "top", "--top", "0")["tasks"]
    assert len(rows) - 1 == len(tasks) == 32
    warm = 0
    for row, task in zip(rows[1:], tasks, strict=True):
        slot = int(row[column["slot"]])
        assert (slot, int(row[column["task_id"]])) == (task["slot"], task["task_id"])
        assert row[column["lp"]] == f"{task['lp']:.6f}" == f"{float(raw[slot]):.6f}"
        warm += float(raw[slot]) > 0
    assert warm >= 8, "the pool must hold real statistics"

    labels = eval_view(pool.url, "labels.lua", pool.keys)
    column = {name: index for index, name in enumerate(labels[0])}
    expected = inspect_json(capsys, pool, "--view", "labels")
    for row, entry in zip(labels[1:], [*expected["labels"], expected["total"]], strict=True):
        assert row[column["label"]] == entry["label"]
        shown = "-" if entry["mean_lp"] is None else f"{entry['mean_lp']:.6f}"
        assert row[column["mean_lp"]] == shown, entry["label"]


def top_slots(top: dict) -> list[int]:
    return [task["slot"] for task in top["tasks"]]


@pytest.mark.parametrize("function", ["learnability", "progress", "score_variance", "priority"])
def test_views_of_a_plr_pool_rank_by_its_own_scores(
    capsys, inspect_url: str, function: str
) -> None:
    """A Prioritized Level Replay pool: the Lua views and ``curriculum inspect`` rank its tasks
    by PLR's task score under the pool's score function (not by learning progress, which that
    pool does not sample by), name the column ``plr_score``, and agree to the printed digit."""
    pool = build_pool(inspect_url, plr=function)
    try:
        snapshot = pool.curriculum.backend.snapshot()
        expected = task_scores(snapshot.rows, pool.curriculum.config.algorithm_config)
        top = inspect_json(capsys, pool, "--view", "top", "--top", "0")
        assert top["score"] == "plr_score"
        rows = eval_view(pool.url, "top.lua", pool.keys, "0")
        assert rows[0][-1] == "plr_score"
        assert len(rows) - 1 == len(top["tasks"]) == 32
        for row, task in zip(rows[1:], top["tasks"], strict=True):
            slot = int(row[1])
            assert (slot, int(row[2])) == (task["slot"], task["task_id"])
            assert row[-1] == f"{task['plr_score']:.6f}" == f"{float(expected[slot]):.6f}"
        shown = [float(row[-1]) for row in rows[1:]]
        assert shown == sorted(shown, reverse=True)
        assert max(shown) > 0, "the pool must hold scored tasks"
        progress = raw_learning_progress(snapshot.rows, LearningProgressConfig())
        assert not np.allclose(progress[top_slots(top)], expected[top_slots(top)])
        assert "plr_score" in render("top", top).splitlines()[0]
        where = ("--url", pool.url, "--session", pool.session)
        code, out, _ = inspect(capsys, *where, "--view", "top")
        assert code == 0 and out.startswith("# top 10 by PLR score of session")
        if shutil.which("bash") and shutil.which("redis-cli"):  # CI has both
            shell = run_shell(*shell_target(pool.url), "top", pool.session, "3")
            assert shell.returncode == 0, shell.stderr
            assert shell.stdout.startswith("# top 3 by PLR score of session"), shell.stdout

        labels = eval_view(pool.url, "labels.lua", pool.keys)
        assert labels[0][-1] == "mean_plr_score"
        python = inspect_json(capsys, pool, "--view", "labels")
        assert python["score"] == "plr_score"
        for row, entry in zip(labels[1:], [*python["labels"], python["total"]], strict=True):
            mean = entry["mean_plr_score"]
            assert row[-1] == ("-" if mean is None else f"{mean:.6f}"), entry["label"]
    finally:
        destroy(pool.curriculum)


@needs_redis_cli
def test_lua_top_matches_python(capsys, pool: Pool) -> None:
    n = 10
    rows = lua_rows(pool.url, "top.lua", pool.keys, str(n))
    assert rows[0] == [
        "rank",
        "slot",
        "task_id",
        "label",
        "outcomes",
        "samples",
        "successes",
        "mean_score",
        "lp",
    ]
    tasks = inspect_json(capsys, pool, "--view", "top", "--top", str(n))["tasks"]
    assert len(rows) == n + 1
    for row, task in zip(rows[1:], tasks, strict=True):
        assert int(row[2]) == task["task_id"]
        assert (int(row[1]), row[3]) == (task["slot"], task["label"])
        assert [int(v) for v in row[4:7]] == [task["outcomes"], task["samples"], task["successes"]]
        assert row[8] == f"{task['lp']:.6f}"
        assert row[7] == f"{task['mean_score']:.6f}"
    # without 'tsv' the reply is one array of strings per row
    plain = run_lua(pool.url, "top.lua", pool.keys, "2")
    assert plain.returncode == 0
    assert plain.stdout.splitlines()[:9] == rows[0]
    assert plain.stdout.splitlines()[11] == rows[1][2]


@needs_redis_cli
def test_lua_labels_and_summary_match_python(capsys, pool: Pool) -> None:
    rows = lua_rows(pool.url, "labels.lua", pool.keys)
    header, body = rows[0], rows[1:]
    assert header[:3] == ["id", "label", "active"]
    python = inspect_json(capsys, pool, "--view", "labels")
    expected = [*python["labels"], python["total"]]
    assert len(body) == len(expected)
    column = {name: i for i, name in enumerate(header)}
    for row, entry in zip(body, expected, strict=True):
        assert row[column["label"]] == entry["label"]
        for name in ("active", "created", "evicted", "completions", "samples", "successes"):
            assert int(row[column[name]]) == entry[name], name
        shown = "-" if entry["mean_lp"] is None else f"{entry['mean_lp']:.6f}"
        assert row[column["mean_lp"]] == shown
    assert int(body[-1][column["completions"]]) == pool.stats["curriculum/num_completed"]

    summary = dict(lua_rows(pool.url, "summary.lua", pool.keys)[1:])
    data = inspect_json(capsys, pool, "--view", "summary")
    for name in ("capacity", "active", "free", "completions", "scheduled", "evictions", "version"):
        assert int(summary[name]) == data[name], name
    assert summary["session"] == pool.session
    assert summary["mean_score"] == f"{data['mean_score']:.6f}"
    algorithm = data["params"]["algorithm"]
    assert summary["algorithm.use_bidirectional"] == str(algorithm["use_bidirectional"]).lower()
    assert float(summary["algorithm.progress_smoothing"]) == algorithm["progress_smoothing"]
    assert "stage" not in summary

    sessions = lua_rows(pool.url, "sessions.lua", [REGISTRY_KEY, pool.keys[0]])
    assert sessions[1][:4] == [pool.session, "ok", "32", "32"]
    assert int(sessions[1][6]) == pool.stats["curriculum/num_completed"]
    everyone = lua_rows(pool.url, "sessions.lua", [REGISTRY_KEY])
    assert pool.session in [row[0] for row in everyone[1:]]


@needs_redis_cli
def test_lua_scripts_report_a_missing_pool(inspect_url: str) -> None:
    keys = session_keys(unique_session("missing"))[:4]
    for script in ("summary.lua", "top.lua", "labels.lua"):
        result = subprocess.run(
            ["redis-cli", *cli_target(inspect_url), "-e", "--eval", str(LUA_DIR / script), *keys],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert "NOPOOL no pool for session missing-" in result.stdout + result.stderr
    rows = lua_rows(inspect_url, "sessions.lua", [keys[0]])
    assert rows[1][1] == "missing"


# -- scripts/pool-inspect.sh ---------------------------------------------------------------------


@needs_bash
@needs_redis_cli
def test_pool_inspect_sh_shows_every_view(capsys, pool: Pool) -> None:
    target = shell_target(pool.url)
    result = run_shell(*target, "top", pool.session, "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"# top 5 by LP of session '{pool.session}'")
    assert lines[1].split()[:3] == ["rank", "slot", "task_id"]
    tasks = inspect_json(capsys, pool, "--view", "top", "--top", "5")["tasks"]
    assert [int(line.split()[2]) for line in lines[2:]] == [t["task_id"] for t in tasks]
    assert len({len(line) for line in lines[1:]}) == 1  # aligned

    result = run_shell(*target, "summary", pool.session)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines()[2:])
    assert int(fields["completions"]) == pool.stats["curriculum/num_completed"]

    result = run_shell(*target, "labels", pool.session)
    assert result.returncode == 0, result.stderr
    total = result.stdout.splitlines()[-1].split()
    assert total[:3] == ["-", "total", "32"]
    assert int(total[5]) == pool.stats["curriculum/num_completed"]

    result = run_shell("-u", pool.url, "sessions")
    assert result.returncode == 0, result.stderr
    assert any(line.split()[:2] == [pool.session, "ok"] for line in result.stdout.splitlines())


@needs_bash
@needs_redis_cli
def test_pool_inspect_sh_errors(inspect_url: str) -> None:
    for argv in ([], ["bogus"], ["top"], ["top", "s", "x"], ["summary"], ["-z", "sessions"]):
        result = run_shell(*argv)
        assert result.returncode == 2, argv
        assert "usage:" in result.stderr or "must be" in result.stderr, argv
    missing = unique_session("missing")
    result = run_shell(*shell_target(inspect_url), "summary", missing)
    assert result.returncode == 2
    assert f"no pool for session {missing}" in result.stderr
    port = redis_support.free_port()
    result = run_shell("-u", f"redis://trainer:{SECRET}@127.0.0.1:{port}/0", "top", "s")
    assert result.returncode == 2
    assert SECRET not in result.stdout + result.stderr
    assert "trainer:***@" in result.stderr


@needs_redis_cli
@needs_bash
def test_the_shell_views_take_a_password_from_the_query_and_never_show_it() -> None:
    """``redis://host/0?password=...`` (which redis-py reads) works in pool-inspect.sh too, and
    the password shows as *** in everything it prints."""
    with redis_support.spawned_redis("--requirepass", SECRET) as (url, _):
        for query in (f"?password={SECRET}", f"?password=wrong-{SECRET}"):
            result = run_shell("-u", f"{url}{query}", "sessions")
            text = result.stdout + result.stderr
            assert result.returncode == (0 if "wrong" not in query else 2), text
            assert SECRET not in text and "password=***" in text


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
def test_a_password_protected_unix_socket_redis_works_and_never_shows(capsys) -> None:
    """ACL user + password over a unix socket: every tool reads the pool, no output leaks."""
    socket_dir = tempfile.mkdtemp(prefix="curriculum-inspect-")
    path = os.path.join(socket_dir, "redis.sock")
    acl = ["--user", "default", "off", "--user", "trainer", "on", f">{SECRET}", "~*", "&*", "+@all"]
    try:
        with redis_support.spawned_redis("--unixsocket", path, "--unixsocketperm", "700", *acl):
            url = f"unix://trainer:{SECRET}@{path}?db=0"
            pool = build_pool(url, episodes=120)
            try:
                shown = []
                for view in ("summary", "top", "labels", "sessions"):
                    code, out, err = inspect(
                        capsys, "--url", url, "--session", pool.session, "--view", view
                    )
                    assert code == 0, err
                    shown.append(out + err)
                assert "completions" in shown[0]
                if shutil.which("bash") and shutil.which("redis-cli"):
                    for argv in (["summary", pool.session], ["top", pool.session], ["sessions"]):
                        result = run_shell("-u", url, *argv)
                        assert result.returncode == 0, result.stdout + result.stderr
                        shown.append(result.stdout + result.stderr)
                    assert "trainer:***@" in shown[-1]
                wrong = url.replace(SECRET, f"wrong-{SECRET}")
                code, out, err = inspect(capsys, "--url", wrong, "--session", pool.session)
                assert code == 2
                shown.append(out + err)
                for text in shown:
                    assert SECRET not in text, text
            finally:
                destroy(pool.curriculum)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_inspect_reads_through_the_backends_read_path(capsys, pool: Pool, monkeypatch) -> None:
    """One read path and one key schema: inspect calls the backend's reader and builds no key."""
    import curriculum.inspect as inspect_module
    from backends import redis_read

    calls = []

    def counting(client, keys, incarnation=None):
        calls.append(keys)
        return redis_read.read_raw(client, keys, incarnation)

    monkeypatch.setattr(inspect_module, "read_raw", counting)
    inspect_json(capsys, pool, "--view", "summary")
    assert [k.meta for k in calls] == [session_keys(pool.session)[0]]
    assert "curriculum:{" not in (ROOT / "curriculum" / "inspect.py").read_text()
