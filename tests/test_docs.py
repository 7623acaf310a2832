"""docs/stats.md names every key that ``stats()`` and the terminal info produce."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import unique_session
from test_staged import play, staged_config

from curriculum import StagedCurriculum
from curriculum.env import INFO_KEYS

STATS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "stats.md"


def _pattern(key: str, labels: set[str], stages: set[str]) -> str:
    """The key as the page writes it: placeholders for labels, slice values and stage names."""
    parts = key.split("/")
    if parts[0] == "label":
        return f"label/<label>/{parts[-1]}"
    if parts[0] == "slice":
        return f"slice/<axis>/<value>/{parts[-1]}"
    if parts[-1] in stages and parts[-1] not in labels:
        return "/".join([*parts[:-1], "<name>"])
    return key


def test_every_stats_key_is_documented() -> None:
    page = STATS_PAGE.read_text()
    documented = set(re.findall(r"`([a-z_]+(?:/[<>a-z_]+)+)`", page))
    config = staged_config(session_id=unique_session("docs"))
    with StagedCurriculum(config) as curriculum:
        play(curriculum, 20, score=0.5, steps=3)
        stats = curriculum.stats()
        curriculum.destroy()
    stages = {stage.name for stage in config.stages}
    labels = {key.split("/")[1] for key in stats if key.startswith("label/")}
    missing = {_pattern(k, labels, stages) for k in stats} - documented
    assert not missing, f"stats keys missing from docs/stats.md: {sorted(missing)}"
    assert any(key.startswith("slice/") for key in stats)  # the page's slice rows are exercised
    for key in INFO_KEYS:
        assert f"`{key}`" in page, key
