"""Compare runs of ``ppo_minigrid.py``: a Markdown table and the averaged curves.

    python examples/summarize_runs.py benchmarks/results/ppo_minigrid --png docs/ppo-minigrid.png

Reads every ``*/summary.json`` and ``*/episodes.csv`` under the directory, prints one row per run
and one mean row per algorithm, and plots success and sampling share by task, averaged over the
seeds of each algorithm, one column per algorithm.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from episode_log import (
    Episode,
    final_success,
    impossible_share,
    plot_curves,
    read_csv,
    steps_to_success,
)
from minigrid_tasks import HARDEST_LABEL, all_labels, is_impossible_label

SUCCESS_LEVELS = (0.5, 0.8)
LEVELS = tuple(str(level) for level in SUCCESS_LEVELS)
FINAL_SHARE = 0.2
"""The final success of a label is measured over the last this share of the run's env steps."""


def run_summary(
    algorithm: str,
    seed: int,
    num_envs: int,
    backend: str,
    episodes: Sequence[Episode],
    env_steps: int,
    wall_s: float,
    overhead_s: float,
) -> dict[str, Any]:
    """The figures of one run (``summary.json``); a figure without data is null (not NaN).

    Args:
        algorithm: ``lp`` or ``uniform``.
        seed: The run's seed.
        num_envs: Worker envs.
        backend: ``shm`` or ``redis``.
        episodes: The run's episodes.
        env_steps: Env steps of all envs together.
        wall_s: Wall time of the training loop.
        overhead_s: Seconds spent in the curriculum wrapper, summed over the envs.
    """
    since = int(env_steps * (1.0 - FINAL_SHARE))
    episode_share, step_share = impossible_share(episodes, is_impossible_label)
    return {
        "algorithm": algorithm,
        "seed": seed,
        "num_envs": num_envs,
        "backend": backend,
        "env_steps": env_steps,
        "episodes": len(episodes),
        "wall_s": wall_s,
        "steps_per_s": env_steps / wall_s,
        "curriculum_s": overhead_s,
        "curriculum_us_per_step": 1e6 * overhead_s / max(env_steps, 1),
        "hardest_label": HARDEST_LABEL,
        "steps_to_success": {
            str(level): steps_to_success(episodes, HARDEST_LABEL, level) for level in SUCCESS_LEVELS
        },
        "final_success_since_step": since,
        "final_success": {
            label: _or_none(final_success(episodes, label, since)) for label in all_labels()
        },
        "impossible_episode_share": _or_none(episode_share),
        "impossible_step_share": _or_none(step_share),
    }


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def load_runs(root: Path) -> list[tuple[dict[str, Any], list[Episode]]]:
    """(summary, episodes) of every run under ``root``, sorted by algorithm then seed.

    Raises:
        FileNotFoundError: no run (no ``*/summary.json``) is under ``root``.
    """
    runs = []
    for summary_path in sorted(root.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        runs.append((summary, read_csv(summary_path.parent / "episodes.csv")))
    if not runs:
        raise FileNotFoundError(f"no */summary.json under {root}: run ppo_minigrid.py first")
    runs.sort(key=lambda run: (run[0]["algorithm"], run[0]["seed"]))
    return runs


def _fmt_steps(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "never"
    return f"{value / 1000:.0f}k"


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _mean(values: Sequence[float | None]) -> float:
    known = [v for v in values if v is not None and not math.isnan(v)]
    return sum(known) / len(known) if known else math.nan


def table(summaries: Sequence[dict[str, Any]]) -> str:
    """One Markdown row per run, and a mean row per algorithm."""
    labels = all_labels()
    short = [label.replace("|size:", " ") for label in labels]
    header = (
        ["run"]
        + [f"steps to {level} on {HARDEST_LABEL.replace('|size:', ' ')}" for level in LEVELS]
        + [f"final {name}" for name in short]
        + [
            "impossible (episodes)",
            "impossible (steps)",
            "wall s",
            "steps/s",
            "curriculum us/step",
            "curriculum % of wall",
        ]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(name: str, group: Sequence[dict[str, Any]]) -> str:
        reached = []
        for level in LEVELS:
            hits = [s["steps_to_success"][level] for s in group]
            if len(group) == 1:
                reached.append(_fmt_steps(hits[0]))
            else:
                done = [h for h in hits if h is not None]
                text = f"{len(done)}/{len(group)} runs"
                reached.append(text + (f", mean {_fmt_steps(_mean(done))}" if done else ""))
        finals = [_fmt_rate(_mean([s["final_success"][label] for s in group])) for label in labels]
        wall_per_step = _mean([1e6 / s["steps_per_s"] for s in group])
        overhead = _mean([s["curriculum_us_per_step"] for s in group])
        cells = [
            name,
            *reached,
            *finals,
            _fmt_rate(_mean([s["impossible_episode_share"] for s in group])),
            _fmt_rate(_mean([s["impossible_step_share"] for s in group])),
            f"{_mean([s['wall_s'] for s in group]):.0f}",
            f"{_mean([s['steps_per_s'] for s in group]):.0f}",
            f"{overhead:.1f}",
            f"{100 * overhead / wall_per_step:.2f}",
        ]
        return "| " + " | ".join(cells) + " |"

    for summary in summaries:
        lines.append(row(f"{summary['algorithm']} seed {summary['seed']}", [summary]))
    for algorithm in sorted({s["algorithm"] for s in summaries}):
        group = [s for s in summaries if s["algorithm"] == algorithm]
        lines.append(row(f"**{algorithm} mean**", group))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a directory of run directories")
    parser.add_argument("--png", type=Path, default=None, help="write the averaged curves here")
    args = parser.parse_args(argv)
    runs = load_runs(args.root)
    summaries = [summary for summary, _ in runs]
    print(table(summaries))
    if args.png is not None:
        groups: dict[str, list[list[Episode]]] = {}
        for summary, episodes in runs:
            groups.setdefault(summary["algorithm"], []).append(episodes)
        total = max(summary["env_steps"] for summary in summaries)
        plot_curves(
            groups,
            all_labels(),
            total,
            args.png,
            title="PPO on MiniGrid DoorKey: learning progress vs uniform (mean over seeds)",
        )
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
