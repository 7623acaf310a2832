"""Episodes of a training run: the CSV, the summary figures, and the curves.

No torch here: the trainer (``ppo_minigrid.py``) writes with it, ``summarize_runs.py`` reads
many runs with it, and the tests exercise it with made-up episodes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One finished episode.

    Attributes:
        env_step: Environment steps taken by all envs together when the episode ended.
        task_id: The curriculum task the episode played.
        label: The task's label (``doorkey|size:8``).
        score: The score reported to the curriculum, in [0, 1].
        success: Whether the episode reached the goal.
        episode_return: The env's undiscounted return.
        length: Steps in the episode.
    """

    env_step: int
    task_id: int
    label: str
    score: float
    success: bool
    episode_return: float
    length: int


CSV_COLUMNS = tuple(f.name for f in fields(Episode))


def write_csv(path: str | Path, episodes: Iterable[Episode]) -> None:
    """Write the episodes (one row each, a header first)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for episode in episodes:
            row = list(astuple(episode))
            row[CSV_COLUMNS.index("success")] = int(episode.success)
            writer.writerow(row)


def read_csv(path: str | Path) -> list[Episode]:
    """Read a CSV written by :func:`write_csv`.

    Raises:
        ValueError: the header is not :data:`CSV_COLUMNS`, or a row does not parse.
    """
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != CSV_COLUMNS:
            raise ValueError(f"{path}: header {header} is not {CSV_COLUMNS}")
        return [
            Episode(
                env_step=int(row[0]),
                task_id=int(row[1]),
                label=row[2],
                score=float(row[3]),
                success=bool(int(row[4])),
                episode_return=float(row[5]),
                length=int(row[6]),
            )
            for row in reader
        ]


def _of_label(episodes: Sequence[Episode], label: str) -> list[Episode]:
    return [e for e in episodes if e.label == label]


def steps_to_success(
    episodes: Sequence[Episode], label: str, level: float, window: int = 50
) -> int | None:
    """The env step at which the success rate over the last ``window`` episodes of ``label``
    first reaches ``level``; None if it never does (or fewer than ``window`` were played)."""
    mine = _of_label(episodes, label)
    if len(mine) < window:
        return None
    wins = np.cumsum([0, *(int(e.success) for e in mine)])
    rates = (wins[window:] - wins[:-window]) / window
    hits = np.flatnonzero(rates >= level)
    return None if hits.size == 0 else mine[int(hits[0]) + window - 1].env_step


def final_success(episodes: Sequence[Episode], label: str, since_step: int) -> float:
    """Success rate of the episodes of ``label`` that ended at or after ``since_step`` (NaN if
    none did)."""
    mine = [e.success for e in episodes if e.label == label and e.env_step >= since_step]
    return float(np.mean(mine)) if mine else math.nan


def impossible_share(
    episodes: Sequence[Episode], is_impossible: Callable[[str], bool]
) -> tuple[float, float]:
    """The share of episodes, and of env steps, spent on impossible tasks."""
    if not episodes:
        return math.nan, math.nan
    flags = np.array([is_impossible(e.label) for e in episodes])
    lengths = np.array([e.length for e in episodes], dtype=float)
    return float(flags.mean()), float(lengths[flags].sum() / lengths.sum())


def binned_by_label(
    episodes: Sequence[Episode], labels: Sequence[str], total_steps: int, bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label and env-step bin: the success rate (NaN where the label had no episode) and
    the share of the bin's episodes. Returns (bin centres, success [label, bin], share [label,
    bin])."""
    edges = np.linspace(0, max(total_steps, 1), bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    counts = np.zeros((len(labels), bins))
    wins = np.zeros((len(labels), bins))
    index = {label: i for i, label in enumerate(labels)}
    for e in episodes:
        row = index.get(e.label)
        if row is None:
            continue
        col = min(int(np.searchsorted(edges, e.env_step, side="right")) - 1, bins - 1)
        counts[row, max(col, 0)] += 1
        wins[row, max(col, 0)] += e.success
    with np.errstate(invalid="ignore", divide="ignore"):
        success = np.where(counts > 0, wins / counts, np.nan)
        totals = counts.sum(axis=0)
        share = np.where(totals > 0, counts / totals, np.nan)
    return centres, success, share


def plot_curves(
    runs: dict[str, list[list[Episode]]],
    labels: Sequence[str],
    total_steps: int,
    path: str | Path,
    bins: int = 20,
    title: str = "",
) -> None:
    """Success by label over env steps (top row) and sampling share by label (bottom row), one
    column per run group (e.g. ``{"lp": [run, ...], "uniform": [...]}``), averaged over its
    runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(runs)
    fig, axes = plt.subplots(2, len(groups), figsize=(6 * len(groups), 7.5), squeeze=False)
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(labels)))
    for column, group in enumerate(groups):
        results = [binned_by_label(run, labels, total_steps, bins) for run in runs[group]]
        centres = results[0][0]
        with np.errstate(invalid="ignore"), _quiet_nan_mean():
            success = np.nanmean([r[1] for r in results], axis=0)
            share = np.nanmean([r[2] for r in results], axis=0)
        top, bottom = axes[0, column], axes[1, column]
        for i, label in enumerate(labels):
            style = ":" if label.startswith("nokey") else "-"
            top.plot(centres, success[i], style, marker=".", color=colours[i], label=label)
            bottom.plot(centres, share[i], style, marker=".", color=colours[i], label=label)
        top.set_title(f"{group}: success by task ({len(runs[group])} run(s))")
        top.set_ylim(-0.02, 1.02)
        top.set_ylabel("success rate")
        bottom.set_title(f"{group}: share of episodes by task")
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("share of episodes")
        bottom.set_xlabel("env steps")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


class _quiet_nan_mean:  # noqa: N801 - used like a function
    """Silences numpy's warning for a mean over all-NaN bins (they stay NaN: no data)."""

    def __enter__(self) -> None:
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._catch.__exit__(*exc)
