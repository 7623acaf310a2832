"""``curriculum demo``: it runs, shows every label, writes its picture, and leaves no pool."""

from __future__ import annotations

import os

import pytest

from backends.shared_memory import SEGMENT_PREFIX, shm_dir
from curriculum.cli import main
from curriculum.demo import CATEGORIES, run_demo

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
