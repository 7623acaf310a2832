"""Makes a benchmark measure the code of the checkout it lives in.

``python benchmarks/bench_x.py`` puts ``benchmarks/`` first on ``sys.path``, so without this
``curriculum`` and ``backends`` would come from wherever the package is installed (an editable
install points at one checkout). Imported by :mod:`harness` before anything of the package;
spawned workers inherit the parent's ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)
