"""``curriculum demo``: it runs, shows every label, writes its picture, and leaves no pool."""

from __future__ import annotations

import os
import re

import pytest

from backends.shared_memory import SEGMENT_PREFIX, shm_dir
from curriculum.cli import main
from curriculum.demo import (
    CATEGORIES,
    WINDOWS,
    Timeline,
    figure_for,
    label_table,
    mastery_text,
    run_demo,
)
from curriculum.simulation import DIFFICULTIES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _demo_segments() -> set[str]:
    return {p.name for p in shm_dir().glob(f"{SEGMENT_PREFIX}demo-*-{os.getpid()}-*")}


def test_the_demo_prints_every_label_and_writes_its_png(tmp_path, capsys) -> None:
    png = tmp_path / "demo.png"
    code = main(["demo", "--episodes", "3000", "--output", str(png), "--seed", "3"])
    assert code == 0
    out = capsys.readouterr().out
    for label in (*(f"graded|difficulty:{c}" for c in CATEGORIES[:-2]), "impossible", "trivial"):
        assert label in out, label
    assert "uniform sampling" in out and "wrote" in out
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert not _demo_segments()  # the demo's pools are gone


def test_a_demo_run_follows_its_workers_progress(process_backend_url) -> None:
    result = run_demo(
        episodes=2000, workers=2, backend_url=process_backend_url, progress=False, seed=1
    )
    assert result.episodes == 2000
    assert result.stats["curriculum/num_completed"] == 2000
    timeline = result.timeline
    assert timeline.episodes[-1] == 2000
    assert timeline.episodes == sorted(set(timeline.episodes))
    ends, shares = result.timeline.sampling_shares(windows=4)
    assert len(ends) == 4 and shares.shape == (4, len(CATEGORIES))
    for row in shares:
        assert row.sum() == pytest.approx(1.0)
    assert (
        0.0 <= min(min(s) for s in timeline.success) <= max(max(s) for s in timeline.success) <= 1.0
    )


def test_demo_arguments_are_checked(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--workers", "0"])
    assert "not a positive integer" in capsys.readouterr().err


# -- what the demo shows ----------------------------------------------------------------------


def _timeline(lp_during: float, lp_end: float) -> Timeline:
    """Three polls: learning progress ``lp_during`` while learning, ``lp_end`` at the end."""
    timeline = Timeline()
    timeline.episodes = [0, 1000, 2000]
    timeline.samples = [[0.0] * len(CATEGORIES)] * 3
    timeline.success = [[0.5] * len(DIFFICULTIES)] * 3
    timeline.lp = [[lp_during] * len(CATEGORIES)] * 2 + [[lp_end] * len(CATEGORIES)]
    return timeline


def _stats(lp: float) -> dict[str, float]:
    stats = {}
    for name in CATEGORIES:
        label = name if name in ("impossible", "trivial") else f"graded|difficulty:{name}"
        for figure, value in (("samples", 10.0), ("mean_reward", 0.5), ("evictions", 1.0)):
            stats[f"label/{label}/{figure}"] = value
        stats[f"label/{label}/mean_lp"] = lp
    return stats


def test_the_table_shows_the_learning_progress_of_the_run_not_only_its_end() -> None:
    timeline = _timeline(lp_during=0.02, lp_end=0.0)
    assert timeline.run_mean_lp()["0.5"] == pytest.approx(0.01)  # weighted by episodes
    table = label_table(_stats(0.0), timeline)
    header, *rows = table.splitlines()
    assert "LP (run)" in header and "LP (end)" in header
    assert len(rows) == len(CATEGORIES)
    for row in rows:
        assert "0.0100" in row and row.count("0.0000") == 1


def test_a_learning_student_shows_learning_progress_in_the_table() -> None:
    result = run_demo(episodes=2000, workers=1, progress=False, seed=2)
    run_lp = result.timeline.run_mean_lp()
    assert max(run_lp[f"{d:g}"] for d in DIFFICULTIES) > 0.001
    assert run_lp["impossible"] < max(run_lp.values())


def test_the_figure_shows_the_baseline_legends_window_and_the_printed_mastery() -> None:
    result = run_demo(episodes=1000, workers=1, progress=False, seed=4)
    baseline = run_demo(algorithm="discrete_random", episodes=1000, workers=1, progress=False)
    figure = figure_for(result, baseline)
    left, right = figure.axes[:2]
    window = (result.timeline.episodes[-1] - result.timeline.episodes[0]) / WINDOWS
    assert f"windows of {window:,.0f} episodes" in left.get_title()
    assert left.get_legend() is not None and right.get_legend() is not None
    labels = [text.get_text() for text in right.get_legend().get_texts()]
    assert f"mastery, uniform sampling ({mastery_text(baseline.mastery)})" in labels
    assert f"mastery, learning progress ({mastery_text(result.mastery)})" in labels
    title = figure._suptitle.get_text()
    assert f"mastery {mastery_text(result.mastery)}" in title  # as printed in the terminal
    assert f"uniform sampling {mastery_text(baseline.mastery)}" in title


def test_the_terminal_prints_the_mastery_as_the_figure_does(tmp_path, capsys) -> None:
    main(["demo", "--episodes", "1000", "--workers", "1", "--output", "", "--no-compare"])
    out = capsys.readouterr().out
    mastery = re.search(r"student mastery (\S+)", out).group(1)
    assert mastery == mastery_text(float(mastery))  # the same three decimals as the title
