"""Each benchmark runs end to end in its tiny ``--smoke`` mode: every section is measured, every
goal is printed with PASS or MISS, the JSON output holds the same goals, and the run exits 0
(nothing lost, no worker failed). No figure is checked: performance is measured by the
benchmarks themselves, never asserted in tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOAL_LINE = re.compile(r"^  (PASS|MISS)  (.+)$", re.MULTILINE)


def run_benchmark(script: str, tmp_path: Path, *args: str) -> tuple[str, dict]:
    """Run ``benchmarks/<script> --smoke --json ...``; its output and its JSON."""
    out = tmp_path / "figures.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout, json.loads(out.read_text())


def goal_lines(stdout: str) -> list[tuple[str, str]]:
    """The (verdict, text) lines after the ``goals`` header."""
    assert "\ngoals\n" in stdout, stdout[-2000:]
    return GOAL_LINE.findall(stdout.split("\ngoals\n", 1)[1])


def check_goals(stdout: str, figures: dict, expected: list[str]) -> None:
    """Every expected goal is printed once with a verdict, and the JSON holds the same ones."""
    printed = goal_lines(stdout)
    texts = [text for _, text in printed]
    for fragment in expected:
        assert sum(fragment in text for text in texts) >= 1, (fragment, texts)
    assert [(g["goal"], g["pass"]) for g in figures["goals"]] == [
        (text, verdict == "PASS") for verdict, text in printed
    ]
    assert figures["figures"], "the JSON output holds no figures"


def test_bench_core_smoke(tmp_path: Path) -> None:
    stdout, figures = run_benchmark("bench_core.py", tmp_path)
    for section in ("1. baselines", "2. get_task latency", "3. recording", "4. spawned processes"):
        assert section in stdout
    check_goals(
        stdout,
        figures,
        ["get_task p50 at 1,000", "batch API (64/call)", "2 processes", "zero outcomes lost"],
    )
    assert figures["goals"][-1] == {"goal": "zero outcomes lost", "pass": True}


def test_bench_redis_smoke(tmp_path: Path, redis_url: str) -> None:
    stdout, figures = run_benchmark("bench_redis.py", tmp_path, "--url", redis_url)
    for section in range(1, 7):
        assert f"\n{section}. " in stdout
    check_goals(
        stdout,
        figures,
        ["immediate update_task_performance", "get_task p50", "snapshot of", "zero outcomes lost"],
    )
    assert figures["goals"][-1] == {"goal": "zero outcomes lost", "pass": True}


def test_bench_compare_smoke(tmp_path: Path, redis_url: str) -> None:
    stdout, figures = run_benchmark("bench_compare.py", tmp_path, "--redis-url", redis_url)
    for table in ("/dev/shm backend", "Redis backend", "side by side", "backends side by side"):
        assert table in stdout
    check_goals(stdout, figures, ["every outcome counted", "worker processes ran"])
    assert all(goal["pass"] for goal in figures["goals"])


def test_bench_hot_loop_smoke(tmp_path: Path, redis_url: str) -> None:
    stdout, figures = run_benchmark("bench_hot_loop.py", tmp_path, "--redis-url", redis_url)
    for section in ("1. loop", "2. get_task latency", "3. one and two spawned processes"):
        assert section in stdout
    expected = []
    for backend in ("/dev/shm", "Redis"):
        expected += [
            f"{backend} loop >= ",
            f"{backend} get_task p50 at",
            f"{backend} get_task p99.9 at",
            f"{backend} get_task max at",
            f"{backend} 2 processes >= 1.5x",
        ]
    check_goals(stdout, figures, expected)
    assert len(figures["goals"]) == len(expected)
    latency = figures["figures"]["latency"]
    assert {(x["backend"], x["num_tasks"]) for x in latency} == {
        (b, n) for b in ("/dev/shm", "Redis") for n in (1_000, 2_000)
    }


@pytest.mark.parametrize("flag", ["--quick", "--smoke"])
def test_every_benchmark_documents_its_short_modes(flag: str) -> None:
    for script in ("bench_core.py", "bench_redis.py", "bench_compare.py", "bench_hot_loop.py"):
        completed = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        assert flag in completed.stdout, script
