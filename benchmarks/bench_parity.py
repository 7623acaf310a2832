"""Multi-process parity: one student's AUC with N processes sharing a pool, against one process.

Runs the learning-progress defaults (or the ``CurriculumConfig`` fields given with ``--set``) on
one student of the quality benchmark (``benchmarks/students.py``) over many seeds: first with one
process (two runs at a time), then with each process count of ``--processes`` (one run at a time:
its spawned workers share one pool and one student, as in ``bench_quality.py``'s ``LP N
processes`` rows). Prints each seed's AUC, and each count's mean AUC with its standard error and
its ratio to one process (with that ratio's standard error).

Runs of one configuration spread by about 0.012 AUC on the noisy student, so a 1% gap needs
about 20 seeds a side to show. ``--set write_batch_size=4`` (a JSON value per field) measures
another setting; the one-process runs use it too.

Example: ``python benchmarks/bench_parity.py --student noisy --processes 4 --seeds 20``
(about 3 minutes on an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys

import checkout  # noqa: F401  (this checkout's package, in workers too)
import numpy as np
from quality_runs import Row, Run, ratio_with_error, run_one, run_pool
from students import STUDENTS


def _aucs(runs: list[Run]) -> np.ndarray:
    return np.array([float(np.mean(run.mastery)) for run in runs])


def _line(name: str, aucs: np.ndarray) -> str:
    error = aucs.std(ddof=1) / np.sqrt(len(aucs)) if len(aucs) > 1 else 0.0
    return f"{name}: AUC {aucs.mean():.4f} ± {error:.4f} (standard error, {len(aucs)} seeds)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="noisy", choices=list(STUDENTS))
    parser.add_argument("--processes", default="4", help="comma-separated counts, e.g. 2,4")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=JSON", help="a config field"
    )
    args = parser.parse_args(argv)
    fields = {}
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key] = json.loads(value)
    plan = STUDENTS[args.student]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    settings = f" with {fields}" if fields else ""
    print(f"{args.student} student, LP defaults{settings}, seeds {seeds.start}-{seeds.stop - 1}")
    single = Row("LP defaults", "lp", config=fields)
    with mp.get_context("spawn").Pool(2) as pool:
        one = _aucs(pool.map(run_one, [(single, s, plan) for s in seeds], chunksize=1))
    print(_line("1 process", one))
    for count in (int(c) for c in args.processes.split(",")):
        row = Row(f"LP {count} processes", "lp", processes=count, config=fields)
        multi = _aucs([run_pool(row, seed, plan) for seed in seeds])
        ratio, error = ratio_with_error(multi, one)
        print(_line(f"{count} processes", multi) + f"; {ratio:.3f}x of 1 process (± {error:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
