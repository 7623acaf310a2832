"""Section 5 of the Redis benchmark: ``backend.snapshot()`` of a full pool of 10,000 tasks whose
rows all hold outcomes, the whole call and apart its MULTI/EXEC round trip and the decoding."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import redis
from harness import fill_pool, open_pool, print_table, score_of
from redis_probes import command_usec

import backends.redis_backend as redis_backend
from backends.redis_backend import session_keys
from curriculum import CurriculumConfig

SNAPSHOT_TASKS = 10_000


@dataclass
class SnapshotTimes:
    """Medians (ms) of one full snapshot and of its parts (None: not measurable here)."""

    total: float
    redis: float
    decode_rows: float | None
    decode_labels: float | None
    rows: int
    labels: int
    payload_kib: float
    hgetall_usec: float | None  # server time of the three HGETALLs together


def bench_snapshot(config: CurriculumConfig, client: redis.Redis, calls: int) -> SnapshotTimes:
    """backend.snapshot() of a full pool whose every row holds outcomes; and its parts apart.

    The Redis part is the same MULTI/EXEC of three HGETALLs (meta, rows, labels) sent through a
    client with the library's settings, alternating with whole ``snapshot()`` calls; the decode
    part is the difference. When the backend module exposes ``decode_rows`` and
    ``decode_labels``, they are also timed apart on the last reply (warm caches: a lower bound).
    """
    size = config.num_active_tasks
    with open_pool(config) as curriculum:
        ids = fill_pool(curriculum)
        for start in range(0, len(ids), 1000):  # every task gets two outcomes
            chunk = ids[start : start + 1000] * 2
            curriculum.update_task_performance_batch(chunk, [score_of(t, 0.3) for t in chunk])
        backend = curriculum.backend
        populated = int((backend.snapshot().rows["n_outcomes"] > 0).sum())
        if populated != size:
            raise RuntimeError(f"only {populated} of {size} rows hold outcomes")
        meta_key, rows_key, _, labels_key, *_ = session_keys(config.algorithm_config.session_id)
        totals, redis_s, rows_s, labels_s = [], [], [], []
        hgetall_before = command_usec(client, "hgetall")
        for _ in range(calls):
            pipe = client.pipeline(transaction=True)
            pipe.hgetall(meta_key)
            pipe.hgetall(rows_key)
            pipe.hgetall(labels_key)
            start = time.perf_counter()
            meta, rows_raw, labels_raw = pipe.execute()
            redis_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            backend.snapshot()
            totals.append(time.perf_counter() - start)
        hgetall_after = command_usec(client, "hgetall")
    decode_rows = getattr(redis_backend, "decode_rows", None)
    decode_labels = getattr(redis_backend, "decode_labels", None)
    if decode_rows is not None and decode_labels is not None:
        for _ in range(calls):
            start = time.perf_counter()
            decode_rows(rows_raw, size)
            middle = time.perf_counter()
            decode_labels(labels_raw, int(meta[b"num_labels"]))
            rows_s.append(middle - start)
            labels_s.append(time.perf_counter() - middle)
    payload = sum(len(k) + len(v) for part in (rows_raw, labels_raw) for k, v in part.items())
    calls = hgetall_after[0] - hgetall_before[0]
    clean = calls == 6 * calls  # ours and snapshot()'s, nobody else's
    return SnapshotTimes(
        total=median_ms(totals),
        redis=median_ms(redis_s),
        decode_rows=median_ms(rows_s) if rows_s else None,
        decode_labels=median_ms(labels_s) if labels_s else None,
        rows=len(rows_raw),
        labels=len(labels_raw),
        payload_kib=payload / 1024,
        hgetall_usec=(hgetall_after[1] - hgetall_before[1]) / calls * 3 if clean else None,
    )


def median_ms(seconds: list[float]) -> float:
    """The median, in milliseconds."""
    return float(np.median(seconds)) * 1000


def run_snapshot(
    config: CurriculumConfig, client: redis.Redis, calls: int, ping_p50_us: float
) -> SnapshotTimes:
    """Section 5: measure and print (``config`` names a new pool, of SNAPSHOT_TASKS tasks in
    bench_redis's full and quick runs)."""
    s = bench_snapshot(config, client, calls)
    ping_ms = ping_p50_us / 1000
    parts = [
        ("MULTI/EXEC of 3 HGETALLs (pipe.execute)", s.redis),
        ("decode (snapshot() minus the above)", s.total - s.redis),
    ]
    if s.decode_rows is not None and s.decode_labels is not None:
        parts += [("  decode_rows alone (warm cache)", s.decode_rows)]
        parts += [("  decode_labels alone (warm cache)", s.decode_labels)]
    print_table(
        f"5. backend.snapshot(), {s.rows:,} tasks, every row populated (median of {calls})",
        [
            ("PING round trip p50 (section 1)", f"{ping_ms:.3f} ms", "1.00x"),
            ("backend.snapshot()", f"{s.total:.1f} ms", f"{s.total / ping_ms:,.0f}x PING"),
            *((f"  {name}", f"{ms:.1f} ms", f"{ms / s.total:.0%}") for name, ms in parts),
        ],
    )
    server = "n/a (other clients)" if s.hgetall_usec is None else f"{s.hgetall_usec / 1000:.1f} ms"
    print(
        f"  {s.rows:,} rows and {s.labels:,} labels, {s.payload_kib:,.0f} KiB of hash fields; "
        f"server time of the 3 HGETALLs: {server}"
    )
    return s
