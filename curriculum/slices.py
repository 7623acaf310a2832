"""Slice analysis: for each bucket axis, how the active tasks of each value score and are sampled.

A task's label carries its bucket values (``nav|difficulty:0.5|size:17``; a float span shows the
lower edge of its bin), so slices are computed from the pool's labels alone. Keys, per axis (at
most ``max_axes`` axes, in the order they appear in labels) and per value:

- ``slice/<axis>/<value>/tasks``: active tasks with that value;
- ``slice/<axis>/<value>/mean_score`` and ``score_std``: mean and spread of the mean scores of
  those tasks that have outcomes (0 when none has);
- ``slice/<axis>/<value>/sampling_share``: the share of samples the curriculum gives them now.

A value over-sampled, never explored (tasks but no outcomes) or hard (low mean score) shows at a
glance.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from backends.layout import is_shortened
from curriculum.algorithms import PoolView
from curriculum.stats import NO_DATA


def bucket_values(label: str) -> dict[str, str]:
    """``{axis: value text}`` of a label such as ``nav|difficulty:0.5|size:17`` (an axis is a
    bucket path, which holds no ':'; its value may: ``map:C:/maps/a.txt``)."""
    values = {}
    for part in label.split("|")[1:]:
        axis, sep, value = part.partition(":")
        if sep and axis:
            values[axis] = value
    return values


def slice_stats(view: PoolView, max_axes: int) -> dict[str, float]:
    """Per-axis, per-value slice figures of the active tasks of ``view``."""
    if max_axes <= 0 or len(view.active) == 0:
        return {}
    snapshot = view.snapshot
    rows = snapshot.rows[view.active]
    # A shortened label (too long for the pool) lost its last bucket values: it is left out.
    parsed = [{} if is_shortened(name) else bucket_values(name) for name in snapshot.label_names]
    axes: list[str] = []
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for position, label_id in enumerate(rows["label_id"].tolist()):
        if not 0 <= label_id < len(parsed):
            continue
        for axis, value in parsed[label_id].items():
            if axis not in axes:
                if len(axes) >= max_axes:
                    continue
                axes.append(axis)
            groups[(axis, value)].append(position)
    played = rows["n_outcomes"] > 0
    mean_scores = np.divide(
        rows["score_sum"], rows["n_outcomes"], out=np.zeros(len(rows)), where=played
    )
    stats: dict[str, float] = {}
    for (axis, value), members in groups.items():
        index = np.asarray(members)
        scored = index[played[index]]
        prefix = f"slice/{axis}/{value}"
        stats[f"{prefix}/tasks"] = float(len(index))
        none = not len(scored)
        stats[f"{prefix}/mean_score"] = NO_DATA if none else float(mean_scores[scored].mean())
        stats[f"{prefix}/score_std"] = NO_DATA if none else float(mean_scores[scored].std())
        stats[f"{prefix}/sampling_share"] = float(view.probabilities[index].sum())
    return stats
