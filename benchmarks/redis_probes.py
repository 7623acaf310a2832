"""The Redis benchmark's baselines and meters: what one round trip, one script call and one Lua
row read-modify-write cost on the server measured, and the split of a timed block into this
process's CPU time and the server's time in EVALSHA (``INFO commandstats`` deltas)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import msgpack
import numpy as np
import redis
from harness import Timed, best_interleaved, print_table

from backends.layout import ROW_DTYPE
from backends.redis_backend import session_keys

PIPELINE_DEPTH = 64
RMW_ROWS = 1000  # rows in the scratch hash of the Lua read-modify-write baseline
RMW_PER_CALL = 10_000

# The server's ceiling for the per-row work of record.lua: read, decode, change, encode, write.
RMW_SCRIPT = """
local rows, count = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 0, count - 1 do
  local slot = i % rows
  local row = cmsgpack.unpack(redis.call('HGET', KEYS[1], slot))
  row[4] = row[4] + 1
  row[9] = row[9] + 0.1 * (0.5 - row[9])
  redis.call('HSET', KEYS[1], slot, cmsgpack.pack(row))
end
return count
"""
# A row as record.lua leaves it after a few outcomes (fields in ROW_DTYPE order; others 0).
SAMPLE_FIELDS = {
    "task_id": 3578597158538520,
    "seq": 8798,
    "label_id": 298,
    "n_outcomes": 5,
    "n_samples": 6,
    "n_success": 3,
    "score_sum": 2.5,
    "baseline": 0.5,
    "fast": 0.1234,
    "slow": 0.2345,
    "perf": 0.5123,
    "reward": 0.41,
    "reward_sq": 0.31,
}
SAMPLE_ROW = [SAMPLE_FIELDS.get(name, 0) for name in ROW_DTYPE.names]
# The arguments of a one-outcome record call (record.lua): client id, write number, 1 outcome
# (slot, task id, label id, score), 0 samples, 0 env-config failures.
RECORD_ARGS = ["1234-0123456789ab:r", 1, 1, 17, 3578597158538520, 298, "0.5", 0, 0]


def command_usec(client: redis.Redis, command: str) -> tuple[int, int]:
    """Calls and microseconds of one command since the server's stats were last reset."""
    stat = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stat.get("calls", 0)), int(stat.get("usec", 0))


@dataclass
class Meter:
    """Wall time, this process's CPU time and the server's EVALSHA calls, summed over blocks."""

    client: redis.Redis
    wall: float = 0.0
    cpu: float = 0.0
    evalsha_calls: int = 0
    evalsha_usec: int = 0

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        """Add the block's times (the INFO round trips are outside the timed span)."""
        calls, usec = command_usec(self.client, "evalsha")
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        after = command_usec(self.client, "evalsha")
        self.evalsha_calls += after[0] - calls
        self.evalsha_usec += after[1] - usec


@dataclass
class Split:
    """Mean time per outcome: wall, client CPU, server time in scripts (None if unknown)."""

    wall_us: float
    client_us: float
    server_us: float | None
    server_per_call_us: float | None

    def text(self) -> str:
        """One line of the per-outcome breakdown."""
        server = "n/a (other clients)" if self.server_us is None else f"{self.server_us:.2f}"
        line = f"wall {self.wall_us:7.2f} = client CPU {self.client_us:6.2f} + Redis {server}"
        if self.server_us is not None:
            rest = self.wall_us - self.client_us - self.server_us
            line += f" + rest {rest:.2f}; {self.server_per_call_us:,.1f} us per EVALSHA"
        return line


def split_of(meter: Meter, outcomes: int, script_calls: int) -> Split:
    """The per-outcome split; the server part only if exactly our script calls ran meanwhile."""
    clean = meter.evalsha_calls == script_calls
    return Split(
        wall_us=meter.wall / outcomes * 1e6,
        client_us=meter.cpu / outcomes * 1e6,
        server_us=meter.evalsha_usec / outcomes if clean else None,
        server_per_call_us=meter.evalsha_usec / script_calls if clean else None,
    )


class Probes:
    """The baseline runs, reusable by every section (each returns its seconds)."""

    def __init__(self, client: redis.Redis, calls: int, run_id: str) -> None:
        """Register the scripts and fill the read-modify-write scratch hash (keys named after
        ``run_id``); ``calls`` PINGs or script calls per run."""
        self.client = client
        self.calls = calls
        self.pipe = client.pipeline(transaction=False)
        self.ping_cpu = 0.0
        self.pings = 0
        self.noop = client.register_script("return 1")
        self.noop_keys = session_keys(f"{run_id}-absent")  # never created, never read
        self.rmw_key = f"{run_id}-rmw-scratch"
        self.client.hset(
            self.rmw_key, mapping=dict.fromkeys(range(RMW_ROWS), msgpack.packb(SAMPLE_ROW))
        )
        self.rmw_script = client.register_script(RMW_SCRIPT)
        self.ping()  # warm-ups (and SCRIPT LOADs)
        self.script_call()
        self.rmw_script(keys=[self.rmw_key], args=[RMW_ROWS, RMW_ROWS])

    def close(self) -> None:
        """Remove the scratch hash."""
        self.client.delete(self.rmw_key)

    def ping(self) -> float:
        """Sequential PINGs."""
        client, cpu = self.client, time.process_time()
        start = time.perf_counter()
        for _ in range(self.calls):
            client.ping()
        seconds = time.perf_counter() - start
        self.ping_cpu += time.process_time() - cpu
        self.pings += self.calls
        return seconds

    def pipelined(self) -> float:
        """PINGs, PIPELINE_DEPTH per round trip."""
        pipe = self.pipe
        start = time.perf_counter()
        for _ in range(self.calls // PIPELINE_DEPTH):
            for _ in range(PIPELINE_DEPTH):
                pipe.ping()
            pipe.execute()
        return time.perf_counter() - start

    def script_call(self) -> float:
        """Sequential calls of a script that returns at once, with a record's keys and args."""
        noop, keys = self.noop, self.noop_keys
        start = time.perf_counter()
        for _ in range(self.calls):
            noop(keys=keys, args=RECORD_ARGS)
        return time.perf_counter() - start

    def rmw(self) -> float:
        """One script call of RMW_PER_CALL read-modify-writes."""
        start = time.perf_counter()
        self.rmw_script(keys=[self.rmw_key], args=[RMW_ROWS, RMW_PER_CALL])
        return time.perf_counter() - start

    def runs(self, *names: str) -> dict[str, Timed]:
        """Named baseline runs for :func:`interleaved`."""
        work = {"pipelined": self.calls // PIPELINE_DEPTH * PIPELINE_DEPTH, "rmw": RMW_PER_CALL}
        return {name: (getattr(self, name), work.get(name, self.calls)) for name in names}

    def ping_p50_us(self) -> float:
        """Median PING round trip, each timed on its own."""
        clock, timings = time.perf_counter_ns, np.zeros(self.calls, dtype=np.int64)
        for i in range(self.calls):
            start = clock()
            self.client.ping()
            timings[i] = clock() - start
        return float(np.median(timings)) / 1000


@dataclass
class Baselines:
    """Section 1."""

    ping_rate: float
    ping_p50_us: float
    ping_cpu_us: float  # this process's CPU time per PING (user + system: the loopback too)
    pipelined_rate: float
    script_rate: float  # a script that does nothing, called like a one-outcome record
    rmw_rate: float


def run_baselines(probes: Probes, repeats: int) -> Baselines:
    """Section 1 of bench_redis: measure and print the baselines (best of ``repeats``)."""
    best = best_interleaved(probes.runs("ping", "pipelined", "script_call", "rmw"), repeats)
    ping = best["ping"]
    base = Baselines(
        ping_rate=ping,
        ping_p50_us=probes.ping_p50_us(),
        ping_cpu_us=probes.ping_cpu / probes.pings * 1e6,
        pipelined_rate=best["pipelined"],
        script_rate=best["script_call"],
        rmw_rate=best["rmw"],
    )
    print_table(
        f"1. baselines (client from backends.redis_backend.connect; best of {repeats})",
        [
            ("PING, sequential", f"{ping / 1000:,.1f}k/s", "1.00x"),
            ("PING round trip, p50", f"{base.ping_p50_us:.1f} us", ""),
            ("client CPU per sequential PING (user + sys)", f"{base.ping_cpu_us:.1f} us", ""),
            (
                f"PING, pipelined x{PIPELINE_DEPTH}",
                f"{base.pipelined_rate / 1000:,.0f}k/s",
                f"{base.pipelined_rate / ping:.2f}x",
            ),
            (
                "EVALSHA 'return 1', with a record's keys+args",
                f"{base.script_rate / 1000:,.1f}k/s",
                f"{base.script_rate / ping:.2f}x",
            ),
            (
                f"Lua row read-modify-write ({RMW_PER_CALL:,}/call)",
                f"{base.rmw_rate / 1000:,.0f}k/s",
                f"{1e6 / base.rmw_rate:.2f} us each",
            ),
        ],
    )
    return base
