"""Read-only inspection of curriculum pools in Redis (the ``curriculum inspect`` command).

Views (the same as ``scripts/lua/*.lua`` and ``scripts/pool-inspect.sh``):

- ``sessions``: every registered session with its size, activity and counters;
- ``summary``: one pool's counters, learning-progress statistics and stored hyper-parameters;
- ``top``: the tasks with the highest score: raw learning progress (``lp``), or a Prioritized
  Level Replay pool's own task score (``plr_score``);
- ``labels``: the pool's composition by task label, with the mean score (as in ``top``).

Nothing here writes: a pool is read through the backend's read path
(:func:`backends.redis_read.read_raw`: one MULTI/EXEC of read commands, keys from
:mod:`backends.redis_keys`; never by attaching a
:class:`~backends.redis_backend.RedisBackend`, whose constructor may create a pool), decoded and
checked by the same code as the backend's snapshots, and scored with
:func:`~curriculum.algorithms.learning_progress.raw_learning_progress` under a
:class:`~curriculum.config.LearningProgressConfig` rebuilt from the pool's stored parameters
(defaults for fields a pool does not store, e.g. for ``discrete_random`` pools), or for a
``prioritized_level_replay`` pool with its own
:func:`~curriculum.algorithms.prioritized_replay.task_scores`. URLs are shown with their password
masked.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import msgpack
import numpy as np
import redis

from backends.base import PoolSnapshot
from backends.layout import label_totals
from backends.redis_connection import connect, summarise
from backends.redis_keys import REGISTRY_KEY, PoolKeys
from backends.redis_read import decode_snapshot, read_raw
from backends.stage_state import StageState
from curriculum.algorithms.base import CurriculumAlgorithm, PoolView
from curriculum.algorithms.learning_progress import LearningProgressAlgorithm
from curriculum.algorithms.prioritized_replay import PrioritizedReplayAlgorithm
from curriculum.config import SESSION_ID_PATTERN, LearningProgressConfig
from curriculum.errors import ConfigError, CurriculumError
from curriculum.plr_config import PrioritizedLevelReplayConfig
from curriculum.redaction import redact_text, redact_url
from curriculum.stats import compute_stats

VIEWS = ("sessions", "summary", "top", "labels")
EXIT_ERROR = 2
# Fields of the stored algorithm parameters that are not LearningProgressConfig scoring fields.
_NOT_SCORING = frozenset({"type", "session_id", "backend_url", "num_active_tasks"})
# Meta fields of the sessions view -> its column names.
_SESSION_FIELDS = {
    "capacity": "capacity",
    "num_active": "active",
    "num_labels": "labels",
    "num_created": "created",
    "num_completed": "completions",
    "num_scheduled": "scheduled",
    "num_evicted": "evictions",
    "version": "version",
}


class InspectError(CurriculumError):
    """A view cannot be shown (unknown session, unreachable Redis, ...): exit code 2."""


@dataclass
class PoolReading:
    """One read-only, consistent reading of a pool, scored."""

    session: str
    meta: dict[str, str]
    params: dict[str, Any]
    free: int
    config: LearningProgressConfig
    view: PoolView
    stage: StageState | None = None  # the stage record of a staged curriculum's root pool

    @property
    def snapshot(self) -> PoolSnapshot:
        """The decoded rows, labels and counters."""
        return self.view.snapshot

    @property
    def score_name(self) -> str:
        """What the top and labels views score by: ``plr_score`` (PLR pools), else ``lp``."""
        return "plr_score" if _is_plr(self.params.get("algorithm")) else "lp"


# -- reading (HGETALL, HMGET, SMEMBERS, ZCARD only) -------------------------------------------


def _redis_failure(exc: redis.RedisError, url: str) -> InspectError:
    what = "cannot reach" if isinstance(exc, redis.ConnectionError) else "failed to read"
    return InspectError(f"{what} Redis at {redact_url(url)}: {summarise(exc, url)}")


def open_client(url: str) -> redis.Redis:
    """A client for ``url`` (lazy: nothing is sent until the first read)."""
    return connect(url)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def lp_config(algorithm: Mapping[str, Any]) -> LearningProgressConfig:
    """The scoring config of a pool's stored ``params["algorithm"]`` (defaults when absent)."""
    known = {
        k: v
        for k, v in algorithm.items()
        if k in LearningProgressConfig.model_fields and k not in _NOT_SCORING
    }
    try:
        return LearningProgressConfig(**known)
    except ConfigError:  # stored by another library version: score with the values as they are
        return LearningProgressConfig.model_construct(**known)


def _algorithm(algorithm: Any, config: LearningProgressConfig) -> CurriculumAlgorithm:
    """What scores the pool: its own Prioritized Level Replay settings, else learning progress
    with ``config``."""
    if _is_plr(algorithm):
        names = PrioritizedLevelReplayConfig.model_fields
        known = {k: v for k, v in algorithm.items() if k in names and k not in _NOT_SCORING}
        return PrioritizedReplayAlgorithm(PrioritizedLevelReplayConfig.model_construct(**known))
    return LearningProgressAlgorithm(config)


def _is_plr(algorithm: Any) -> bool:
    return isinstance(algorithm, dict) and algorithm.get("type") == "prioritized_level_replay"


def check_session(session: str) -> None:
    """Refuse a session id the library could not have created (it would name other keys)."""
    if not SESSION_ID_PATTERN.fullmatch(session):
        raise InspectError(
            f"invalid session id {session!r}: 1-100 letters, digits, '.', '_' or '-'"
        )


def registered_sessions(client: redis.Redis) -> list[str]:
    """The session ids in the registry, sorted."""
    return sorted(_text(s) for s in client.smembers(REGISTRY_KEY))


def read_pool(client: redis.Redis, session: str, url: str = "") -> PoolReading:
    """Read one pool in one MULTI/EXEC of read commands, decode and score it."""
    check_session(session)
    raw = read_raw(client, PoolKeys.of(session))
    if not raw.meta:
        known = registered_sessions(client)
        hint = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "") if known else "none"
        where = f" at {redact_url(url)}" if url else ""
        raise InspectError(f"no pool for session {session!r}{where} (registered: {hint})")
    damaged = raw.damaged_keys()
    if damaged:
        raise InspectError(
            f"pool {session!r} lost keys or holds keys of another pool ({', '.join(damaged)}): "
            "its next user re-creates it empty"
        )
    stage_raw = raw.meta.get(b"stage")  # msgpack, not text
    meta = {_text(k): _text(v) for k, v in raw.meta.items() if k != b"stage"}
    try:
        params = json.loads(meta.get("params", ""))
    except ValueError:
        params = {}
    if not isinstance(params, dict):
        params = {}
    algorithm = params.get("algorithm")
    config = lp_config(algorithm if isinstance(algorithm, dict) else {})
    stored = decode_snapshot(raw, int(meta.get("capacity", 0)))
    snapshot = PoolSnapshot(
        stored.version,
        stored.rows,
        label_totals(stored.labels, stored.rows),
        stored.label_names,
        stored.counters,
    )
    free = raw.free_slots
    view = _algorithm(algorithm, config).view(snapshot)
    stage = None
    if params.get("staging") and stage_raw is not None:
        with contextlib.suppress(ValueError, TypeError, msgpack.UnpackException):
            stage = StageState.from_list(msgpack.unpackb(stage_raw))
    return PoolReading(session, meta, params, free, config, view, stage)


# -- views: plain data (what --json prints) ---------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def sessions_view(client: redis.Redis) -> dict[str, Any]:
    """Every registered session with its size and counters (``None`` when its pool is gone)."""
    names = registered_sessions(client)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hmget(PoolKeys.of(name).meta, list(_SESSION_FIELDS))
    sessions = []
    for name, values in zip(names, pipe.execute() if names else [], strict=True):
        entry: dict[str, Any] = {"session": name, "state": "ok" if values[0] else "missing"}
        for column, value in zip(_SESSION_FIELDS.values(), values, strict=True):
            entry[column] = int(value) if value is not None else None
        sessions.append(entry)
    return {"sessions": sessions}


def summary_view(reading: PoolReading) -> dict[str, Any]:
    """Size, counters, learning-progress statistics and stored hyper-parameters of a pool."""
    counters = reading.snapshot.counters
    stats = compute_stats(reading.view, reading.config.min_samples_for_lp)
    data: dict[str, Any] = {
        "session": reading.session,
        "struct_version": int(reading.meta.get("struct_version", 0)),
        "capacity": len(reading.snapshot.rows),
        "label_capacity": int(reading.meta.get("label_capacity", 0)),
        "active": len(reading.view.active),
        "free": reading.free,
        "labels": counters["num_labels"],
        "created": counters["num_created"],
        "completions": counters["num_completed"],
        "scheduled": counters["num_scheduled"],
        "evictions": counters["num_evicted"],
        "late_outcomes": counters["num_late_outcomes"],
        "epoch": counters["epoch"],
        "epoch_created": counters["epoch_created"],
        "epoch_completed": counters["epoch_completed"],
        "epoch_scheduled": counters["epoch_scheduled"],
        "epoch_evicted": counters["epoch_evicted"],
        "version": reading.snapshot.version,
        "mean_score": stats["reward/mean"] if counters["num_completed"] else None,
        "lp_mean": stats["lp/mean"],
        "lp_median": stats["lp/median"],
        "lp_max": stats["lp/max"],
        "warm_tasks": int(stats["lp/num_warm"]),
        "zero_lp_tasks": int(stats["lp/num_zero"]),
    }
    if reading.stage is not None:  # the root pool of a staged curriculum
        names = reading.params["staging"].get("names", [])
        index = reading.stage.stage
        data["stage"] = index
        data["stage_name"] = names[index] if index < len(names) else None
        data["stage_transitions"] = reading.stage.transitions
    data["params"] = {
        key: reading.params[key]
        for key in ("algorithm", "ema", "generator_fingerprint", "pool_seed")
        if key in reading.params
    }
    return data


def _score_order(raw: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Positions by score descending, ties by slot; NaN last (as in top.lua)."""
    key = np.where(np.isnan(raw), -np.inf, raw)
    return np.lexsort((slots, -key))


def top_view(reading: PoolReading, n: int) -> dict[str, Any]:
    """The ``n`` tasks (0: all) with the highest score (:attr:`PoolReading.score_name`)."""
    view, rows = reading.view, reading.snapshot.rows
    order = _score_order(view.raw_scores, view.active)
    if n > 0:
        order = order[:n]
    names = reading.snapshot.label_names
    tasks = []
    for rank, position in enumerate(order.tolist(), start=1):
        slot = int(view.active[position])
        row = rows[slot]
        label_id = int(row["label_id"])
        outcomes = int(row["n_outcomes"])
        tasks.append(
            {
                "rank": rank,
                "slot": slot,
                "task_id": int(row["task_id"]),
                "label_id": label_id,
                "label": names[label_id] if 0 <= label_id < len(names) else None,
                "outcomes": outcomes,
                "samples": int(row["n_samples"]),
                "successes": int(row["n_success"]),
                "mean_score": _ratio(float(row["score_sum"]), outcomes),
                reading.score_name: float(view.raw_scores[position]),
            }
        )
    return {
        "session": reading.session,
        "version": reading.snapshot.version,
        "score": reading.score_name,
        "tasks": tasks,
    }


def labels_view(reading: PoolReading) -> dict[str, Any]:
    """Active tasks, counters, mean score and the mean of the top view's score per label (key
    ``mean_<score>``), with totals."""
    snapshot, view = reading.snapshot, reading.view
    label_ids = snapshot.rows["label_id"][view.active]
    raw = view.raw_scores
    n_labels = len(snapshot.labels)
    known = (label_ids >= 0) & (label_ids < n_labels)
    active = np.bincount(label_ids[known], minlength=n_labels)
    lp_sum = np.bincount(label_ids[known], weights=raw[known], minlength=n_labels)
    counts = ("created", "evicted", "completions", "samples", "successes", "late")
    entries: list[dict[str, Any]] = []
    for label_id, name in enumerate(snapshot.label_names):
        record = snapshot.labels[label_id]
        entry: dict[str, Any] = {"id": label_id, "label": name, "active": int(active[label_id])}
        entry |= {field: int(record[field]) for field in counts}
        entry["score_sum"] = float(record["score_sum"])
        entry["lp_sum"] = float(lp_sum[label_id])
        entries.append(entry)
    if (~known).any():
        none: dict[str, Any] = {"id": None, "label": "(none)", "active": int((~known).sum())}
        none |= {field: 0 for field in counts}
        none |= {"score_sum": 0.0, "lp_sum": float(raw[~known].sum())}
        entries.append(none)
    total: dict[str, Any] = {"id": None, "label": "total"}
    for field in ("active", *counts, "score_sum", "lp_sum"):
        total[field] = sum(entry[field] for entry in entries)
    for entry in (*entries, total):
        entry["mean_score"] = _ratio(entry.pop("score_sum"), entry["completions"])
        entry[f"mean_{reading.score_name}"] = _ratio(entry.pop("lp_sum"), entry["active"])
    return {
        "session": reading.session,
        "version": snapshot.version,
        "score": reading.score_name,
        "labels": entries,
        "total": total,
    }


# -- rendering ---------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns: text left, numbers (and '-') right."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(header))
    ]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(header)]
    lines = []
    for row in [list(header), *cells]:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _param_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return _cell(value)


def render(view: str, data: Mapping[str, Any]) -> str:
    """The aligned-table text of a view's data."""
    if view == "sessions":
        columns = ("session", "state", *_SESSION_FIELDS.values())
        if not data["sessions"]:
            return "no registered sessions"
        return format_table(columns, [[s[c] for c in columns] for s in data["sessions"]])
    if view == "summary":
        rows: list[list[Any]] = [[k, _cell(v)] for k, v in data.items() if k != "params"]
        for group, values in data["params"].items():
            if isinstance(values, dict):
                rows += [[f"{group}.{k}", _param_value(values[k])] for k in sorted(values)]
            else:
                rows.append([group, _param_value(values)])
        return format_table(("field", "value"), rows)
    if view == "top":
        columns = ("rank", "slot", "task_id", "label", "outcomes", "samples", "successes")
        columns += ("mean_score", data["score"])
        return format_table(columns, [[t[c] for c in columns] for t in data["tasks"]])
    if view == "labels":
        columns = ("id", "label", "active", "created", "evicted", "completions", "samples")
        columns += ("successes", "late", "mean_score", f"mean_{data['score']}")
        entries = [*data["labels"], data["total"]]
        return format_table(columns, [[e[c] for c in columns] for e in entries])
    raise ValueError(f"unknown view {view!r}")


# -- the command -------------------------------------------------------------------------------


def collect(client: redis.Redis, view: str, session: str | None, top: int, url: str = "") -> Any:
    """The data of ``view`` (read-only)."""
    if view not in VIEWS:
        raise InspectError(f"unknown view {view!r}: one of {', '.join(VIEWS)}")
    if view == "sessions":
        return sessions_view(client)
    if session is None:
        raise InspectError(f"the {view} view needs --session (see --view sessions)")
    reading = read_pool(client, session, url)
    if view == "summary":
        return summary_view(reading)
    if view == "top":
        return top_view(reading, top)
    return labels_view(reading)


def _title(view: str, session: str | None, url: str, top: int, score: str = "lp") -> str:
    where = redact_url(url)
    if view == "sessions":
        return f"# curriculum sessions at {where}"
    by = {"lp": "LP", "plr_score": "PLR score"}[score]
    what = {"summary": "summary", "labels": "labels"}.get(view, f"top {top or 'all'} by {by}")
    return f"# {what} of session {session!r} at {where}"


def run(
    url: str,
    *,
    session: str | None = None,
    view: str | None = None,
    top: int = 10,
    as_json: bool = False,
    watch: float | None = None,
    iterations: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print a view once, or every ``watch`` seconds until Ctrl-C (or ``iterations``).

    Returns the exit code: 0, or 2 with a message on ``err`` (never a traceback or a password).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    view = view or ("summary" if session else "sessions")
    client: redis.Redis | None = None
    count = 0
    try:
        client = open_client(url)
        while True:
            data = collect(client, view, session, top, url)
            if as_json:
                text = json.dumps(json_safe(data), indent=None if watch else 2, allow_nan=False)
            else:
                score = data.get("score", "lp")  # the top and labels views name their score
                text = _title(view, session, url, top, score) + "\n" + render(view, data)
                if watch:
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                    text = f"{text}\n# {stamp}, every {watch:g} s (Ctrl-C to stop)"
                    if out.isatty():
                        text = "\033[H\033[2J" + text
            print(redact_text(text, url), file=out, flush=True)
            count += 1
            if not watch or (iterations is not None and count >= iterations):
                return 0
            sleep(watch)
    except KeyboardInterrupt:
        return 0 if watch else 130
    except InspectError as exc:
        print(f"curriculum inspect: {redact_text(str(exc), url)}", file=err)
    except redis.RedisError as exc:
        print(f"curriculum inspect: {_redis_failure(exc, url)}", file=err)
    except (CurriculumError, ValueError) as exc:  # ConfigError (bad URL), corrupted pool data
        print(f"curriculum inspect: {redact_text(str(exc), url)}", file=err)
    finally:
        if client is not None:
            client.close()
    return EXIT_ERROR


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (not valid JSON) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
