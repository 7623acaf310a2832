"""``scripts/example.py``, the README's example, runs and prints its stats in a readable order."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from conftest import unique_session

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "example.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slice_lines_are_sorted_by_value(capsys) -> None:
    _load().main(session_id=unique_session("example"))
    out = capsys.readouterr().out
    sizes = [int(v) for v in re.findall(r"^slice/size/(\d+)/tasks", out, flags=re.MULTILINE)]
    assert len(sizes) > 10
    assert sizes == sorted(sizes)  # 8, 9, 10, ... not 10, 11, ..., 8, 9
    difficulties = re.findall(r"^slice/difficulty/([\d.]+)/tasks", out, flags=re.MULTILINE)
    assert difficulties == ["0.1", "0.5", "0.9"]
    assert "checkpoint slots: 256" in out
