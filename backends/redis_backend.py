"""The Redis backend: one pool shared by processes on many hosts.

Keys of a session (all share the hash tag ``{session}``, so a pool lives in one Cluster slot)::

    curriculum:{session}:meta       hash: parameters, layout, counters, version
    curriculum:{session}:rows       hash: slot -> msgpack array of the row (ROW_DTYPE order)
    curriculum:{session}:free       sorted set of free slots (score = slot)
    curriculum:{session}:labels     hash: label id -> msgpack array (LABEL_DTYPE order)
    curriculum:{session}:label_ids  hash: label name -> label id
    curriculum:{session}:tokens     hash: client id -> last write number and its reply
    curriculum:sessions             set of session ids (the registry the inspection tools read)

Every read-modify-write is one Lua script (``backends/lua``). Writes carry a client id and a write
number: a write retried after a connection error is recognised by the script and not applied twice.
Snapshots are one MULTI/EXEC of HGETALLs. No live client crosses a process boundary: the backend
pickles as its URL and session and reconnects in the new process.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgpack
import numpy as np
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from backends.base import (
    PoolParams,
    PoolSnapshot,
    PoolState,
    RecordResult,
    TaskMemoryBackend,
    WriteBatch,
)
from backends.layout import (
    COUNTER_NAMES,
    EMPTY_TASK,
    EPOCH_COUNTERS,
    LABEL_DTYPE,
    OVERFLOW_LABEL,
    ROW_DTYPE,
    STRUCT_VERSION,
    decode_label,
    empty_rows,
    encode_label,
    label_totals,
)
from backends.stage_state import StageState, StageUpdate
from curriculum.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    PoolClosedError,
    PoolCorruptedError,
    PoolLostError,
    PoolMismatchError,
    PoolNotFoundError,
)
from curriculum.redaction import redact_text, redact_url

REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
REGISTRY_KEY = "curriculum:sessions"
NOSCRIPT_ATTEMPTS = 3
LUA_DIR = Path(__file__).parent / "lua"
SCRIPT_NAMES = (
    "attach",
    "reserve_sequence",
    "intern_label",
    "create_task",
    "replace_task",
    "record",
    "end_epoch",
    "import_state",
    "update_stage",
    "destroy",
)

ClientFactory = Callable[[str], "redis.Redis"]
_CLIENT_FACTORIES: dict[str, ClientFactory] = {}


def register_client_factory(scheme: str, factory: ClientFactory) -> None:
    """Build clients for URLs of ``scheme`` with ``factory(url)`` (e.g. a test double)."""
    _CLIENT_FACTORIES[scheme] = factory


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that retries connection errors with jittered backoff.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) connects to a Redis Cluster through
    any of its nodes; the client follows MOVED and ASK redirections.
    """
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise ConfigError(f"backend_url {redact_url(url)!r} is invalid: {exc}") from None
    if scheme in _CLIENT_FACTORIES:
        return _CLIENT_FACTORIES[scheme](url)
    if scheme not in REDIS_SCHEMES and scheme not in CLUSTER_SCHEMES:
        raise ConfigError(
            f"backend_url {redact_url(url)!r} is not a redis://, rediss://, unix://, "
            "redis+cluster:// or rediss+cluster:// URL"
        )
    _check_url_options(url)
    options: dict[str, Any] = {
        "decode_responses": False,
        "retry": Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.01), retries=5),
        "socket_timeout": 10.0,
        "socket_connect_timeout": 5.0,
    }
    try:
        if scheme in CLUSTER_SCHEMES:
            plain = CLUSTER_SCHEMES[scheme] + url[len(scheme) :]
            return RedisCluster.from_url(plain, **options)  # type: ignore[return-value]
        return redis.Redis.from_url(url, health_check_interval=30, **options)
    except ValueError as exc:
        raise ConfigError(f"backend_url {redact_url(url)!r} is invalid: {exc}") from None
    except redis.RedisError as exc:  # a cluster client reads the cluster's layout at once
        raise BackendUnavailableError(
            f"Redis Cluster at {redact_url(url)} is unavailable: {type(exc).__name__}: "
            f"{redact_text(str(exc), url)}"
        ) from None


SSL_CERT_REQS = ("none", "optional", "required")


def _check_url_options(url: str) -> None:
    """Refuse query options redis-py would only reject when it first connects."""
    for key, value in parse_qsl(urlsplit(url).query):
        if key == "ssl_cert_reqs" and value.lower() not in SSL_CERT_REQS:
            raise ConfigError(
                f"backend_url {redact_url(url)!r}: ssl_cert_reqs={value!r} is not one of "
                f"{', '.join(SSL_CERT_REQS)}"
            )


def load_script(name: str) -> str:
    """The source of a pool script, with the shared helpers in front."""
    return (LUA_DIR / "_lib.lua").read_text() + "\n" + (LUA_DIR / f"{name}.lua").read_text()


def session_keys(session_id: str) -> list[str]:
    """The keys of a session's pool, in the order every script expects them."""
    prefix = f"curriculum:{{{session_id}}}"
    return [
        f"{prefix}:{part}" for part in ("meta", "rows", "free", "labels", "label_ids", "tokens")
    ]


class RedisBackend(TaskMemoryBackend):
    """A pool in Redis, changed only by Lua scripts."""

    def __init__(
        self, url: str, session_id: str, params: PoolParams, *, create: bool = True
    ) -> None:
        """Attach to the session's pool on ``url``, creating it when absent and ``create``.

        Raises:
            PoolMismatchError: the existing pool was made with different parameters.
            PoolNotFoundError: the pool does not exist and ``create`` is false.
            BackendError: Redis is unreachable or answered with an error.
        """
        self.url = url
        self.session_id = session_id
        self._keys = session_keys(session_id)
        self._client = connect(url)
        self._cluster = isinstance(self._client, RedisCluster)
        self._scripts = {
            name: self._client.register_script(load_script(name)) for name in SCRIPT_NAMES
        }
        self._new_client_id()
        self._closed = False
        self._ahead: redis.connection.Connection | None = None  # carries writes sent ahead
        self._ahead_pool: redis.ConnectionPool | None = None  # where that connection came from
        # a record sent ahead and not yet confirmed: (args, sent, its outcome count)
        self._inflight: tuple[tuple[Any, ...], bool, int] | None = None
        self.dropped_outcomes = 0  # outcomes of writes meant for a pool that was lost
        self._label_ids: dict[str, int] = {}
        self._incarnation = ""
        self._attach(params, create=create)
        if self.created:
            self._redis("SADD", REGISTRY_KEY, session_id)

    def _attach(self, params: PoolParams, *, create: bool) -> None:
        token = secrets.token_hex(8)
        reply = self._call(
            "attach",
            params.to_json(),
            params.capacity,
            params.label_capacity,
            params.struct_version,
            "1" if create else "0",
            repr(params.ema.ema_timescale),
            repr(params.ema.slow_timescale_factor),
            repr(params.ema.task_tracker_ema_alpha),
            repr(params.ema.success_threshold),
            msgpack.packb(StageState().to_list()),
            token,
        )
        status = _text(reply[0])
        session_id, url = self.session_id, self.url
        if status == "missing":
            raise PoolNotFoundError(f"no pool for session {session_id!r} at {redact_url(url)}")
        # a retried attach whose first copy created the pool finds it with our own token
        self.created = status == "created" or (status == "exists" and _text(reply[3]) == token)
        if self.created:
            self.params = params
            self._incarnation = token
            return
        if int(reply[2]) != STRUCT_VERSION:
            raise PoolMismatchError(
                f"pool {session_id!r} uses layout version {int(reply[2])}, "
                f"this library writes {STRUCT_VERSION}"
            )
        try:
            stored = PoolParams.from_dict(json.loads(reply[1]))
        except (ValueError, KeyError, TypeError) as exc:
            raise PoolCorruptedError(
                f"pool {session_id!r} has unreadable parameters: {exc}"
            ) from None
        problems = stored.mismatches(params)
        if problems:
            raise PoolMismatchError(
                f"pool {session_id!r} was created with other parameters: " + "; ".join(problems)
            )
        self.params = stored
        self._incarnation = _text(reply[3])

    def reattach(self, params: PoolParams) -> bool:
        """Attach again after the pool was lost, creating it anew (with ``params``) if absent.

        Writes sent ahead and cached label ids belong to the lost pool and are dropped. Returns
        True when this process created the new pool.
        """
        self._check_open()
        if self._inflight is not None:
            self.dropped_outcomes += self._inflight[2]
        self._inflight = None
        self._drop_ahead()
        self._label_ids.clear()
        self._new_client_id()
        self._attach(params, create=True)
        if self.created:
            self._redis("SADD", REGISTRY_KEY, self.session_id)
        return self.created

    # -- plumbing -------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a RedisBackend holds a live client; pickle the Curriculum instead")

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError(f"pool {self.session_id!r} is closed in this process")

    def _redis(self, *command: Any) -> Any:
        self._check_open()
        self._confirm()
        try:
            return self._client.execute_command(*command)
        except redis.RedisError as exc:
            raise self._error(exc) from exc

    def _call(self, name: str, *args: Any) -> Any:
        self._check_open()
        self._confirm()
        script = self._scripts[name]
        if name != "attach":
            args = (*args, self._incarnation)
        for attempt in range(NOSCRIPT_ATTEMPTS):
            try:
                return script(keys=self._keys, args=args, client=self._client)
            except redis.exceptions.NoScriptError as exc:
                # flushed again while redis-py was reloading it: load and run it once more
                # (the write id makes a repeated write harmless)
                if attempt == NOSCRIPT_ATTEMPTS - 1:
                    raise self._error(exc) from exc
            except redis.RedisError as exc:
                raise self._error(exc) from exc
        raise AssertionError("unreachable")

    def _lost(self, what: str) -> PoolLostError:
        return PoolLostError(f"pool {self.session_id!r} {what} at {redact_url(self.url)}")

    def _new_client_id(self) -> None:
        self._pid = os.getpid()
        self._client_id = f"{self._pid}-{secrets.token_hex(6)}"
        self._write_seq = 0
        self._record_seq = 0
        self._stage_seq = 0

    def _write(self, name: str, *args: Any) -> Any:
        """Run a mutating script under this client's next write number (safe to retry)."""
        if self._pid != os.getpid():
            # A forked child: redis-py reconnects by itself; the child needs its own write ids.
            self._new_client_id()
        self._write_seq += 1
        return self._call(name, f"{self._client_id}:w", self._write_seq, *args)

    def _error(self, exc: redis.RedisError) -> BackendError:
        if isinstance(exc, redis.ResponseError) and "NOPOOL" in str(exc):
            return self._lost("no longer exists")
        if isinstance(exc, redis.ResponseError) and "NEWPOOL" in str(exc):
            return self._lost("was re-created since this process attached")
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return BackendUnavailableError(
                f"Redis at {redact_url(self.url)} is unavailable for pool {self.session_id!r}: "
                f"{type(exc).__name__}: {redact_text(str(exc), self.url)}"
            )
        return BackendError(
            f"Redis at {redact_url(self.url)} failed for pool {self.session_id!r}: "
            f"{type(exc).__name__}: {redact_text(str(exc), self.url)}"
        )

    # -- the interface --------------------------------------------------------------------------

    def version(self) -> int:
        """Moves on every write."""
        return int(self._redis("HGET", self._keys[0], "version") or 0)

    def reserve_sequence(self) -> int:
        """Take the next task sequence number."""
        return int(self._call("reserve_sequence"))

    def intern_label(self, name: str) -> int:
        """The label's id (assigned by the pool on first use, never changed afterwards)."""
        cached = self._label_ids.get(name)
        if cached is not None:
            return cached
        reply = self._call(
            "intern_label", encode_label(name), OVERFLOW_LABEL, self.params.label_capacity
        )
        label_id = int(reply)
        if len(self._label_ids) >= 2 * self.params.label_capacity:
            self._label_ids.clear()  # a cache of an append-only table: safe to drop
        self._label_ids[name] = label_id
        return label_id

    def create_task(self, task_id: int, label_id: int, seq: int) -> int | None:
        """Put a new task into the lowest free slot."""
        slot = int(self._write("create_task", task_id, label_id, seq))
        return None if slot < 0 else slot

    def replace_task(
        self, slot: int, expected_task_id: int, task_id: int, label_id: int, seq: int
    ) -> bool:
        """Compare-and-set eviction and creation in one script."""
        if not 0 <= slot < self.params.capacity:
            raise BackendError(f"slot {slot} is outside the pool's {self.params.capacity} slots")
        reply = self._write("replace_task", slot, expected_task_id, task_id, label_id, seq)
        return _text(reply) == "1"

    def record(self, batch: WriteBatch, *, wait: bool = True) -> RecordResult:
        """Apply outcomes, sample counts and failures in one script call.

        With ``wait=False`` the call is sent on a connection of its own and its reply is read at
        this backend's next call (which overlaps the round trip with the caller's work); a write
        whose reply shows an error or never comes is sent again then, with the same write id, so
        it is applied once. The result then counts every outcome as applied.
        """
        capacity = self.params.capacity
        for slots in (batch.outcome_slots, batch.sample_slots, batch.failure_slots):
            if slots and (min(slots) < 0 or max(slots) >= capacity):
                raise BackendError(f"batch names slots outside the pool: {slots}")
        data: list[Any] = [len(batch.outcome_slots)]
        for entry in zip(
            batch.outcome_slots,
            batch.outcome_task_ids,
            batch.outcome_labels,
            batch.outcome_scores,
            strict=True,
        ):
            data.extend(entry)
        for slots, task_ids, labels in (
            (batch.sample_slots, batch.sample_task_ids, batch.sample_labels),
            (batch.failure_slots, batch.failure_task_ids, batch.failure_labels),
        ):
            data.append(len(slots))
            for entry in zip(slots, task_ids, labels, strict=True):
                data.extend(entry)
        data.append(batch.steps)
        blob = msgpack.packb(data)  # scores travel as exact float64
        if self._pid != os.getpid():
            self._new_client_id()
        if not batch.write_id:
            self._record_seq += 1
            batch.write_id = self._record_seq
        args = (f"{self._client_id}:r", batch.write_id, blob)
        if wait:
            applied, late = _text(self._call("record", *args)).split(":")
            return RecordResult(applied=int(applied), late=int(late))
        self._send_ahead(args, len(batch.outcome_slots))
        return RecordResult(applied=len(batch.outcome_slots), late=0)

    def _send_ahead(self, args: tuple[Any, ...], outcomes: int) -> None:
        self._check_open()
        self._confirm()
        script = self._scripts["record"]
        try:
            if self._ahead is None:
                self._ahead_pool = self._connection_pool()
                self._ahead = self._ahead_pool.get_connection()
            self._ahead.send_command(
                "EVALSHA", script.sha, len(self._keys), *self._keys, *args, self._incarnation
            )
            self._inflight = (args, True, outcomes)
        except redis.RedisError:
            self._drop_ahead()
            self._inflight = (args, False, outcomes)  # not sent: the next call sends it, waits

    def _confirm(self) -> None:
        """Read the reply of the write sent ahead; send it again (same write id) if it failed."""
        if self._pid != os.getpid():  # a forked child: the parent owns the write sent ahead
            self._ahead = self._inflight = None
            self._new_client_id()
        pending = self._inflight
        if pending is None:
            return
        self._inflight = None
        args, sent, outcomes = pending
        try:
            if sent and self._ahead is not None:
                try:
                    self._ahead.read_response()
                    return
                except (
                    redis.exceptions.NoScriptError,
                    redis.ConnectionError,
                    redis.TimeoutError,
                    redis.exceptions.MovedError,  # the pool's slot moved to another node
                    redis.exceptions.AskError,
                    redis.exceptions.TryAgainError,
                    redis.exceptions.ClusterDownError,
                ):
                    self._drop_ahead()
                except redis.ResponseError as exc:
                    raise self._error(exc) from exc
            self._call("record", *args)  # waits; the write id makes a repeat harmless
        except PoolNotFoundError:
            self.dropped_outcomes += outcomes  # its pool is gone: so are its tasks
            raise
        except BaseException:
            self._inflight = (args, False, outcomes)
            raise

    def _connection_pool(self) -> redis.ConnectionPool:
        """The pool of connections to the server holding this pool's keys."""
        if self._cluster:
            node = self._client.get_node_from_key(self._keys[0])
            return node.redis_connection.connection_pool
        return self._client.connection_pool

    def _drop_ahead(self) -> None:
        if self._ahead is not None and self._ahead_pool is not None:
            self._ahead.disconnect()
            self._ahead_pool.release(self._ahead)
        self._ahead = self._ahead_pool = None

    def sync(self) -> None:
        """Wait for the write sent ahead, if any (a closed backend has none left)."""
        if not self._closed:
            self._confirm()

    def stage_state(self) -> StageState:
        """The stage record, read with one HGET."""
        raw, incarnation = self._redis("HMGET", self._keys[0], "stage", "incarnation")
        if raw is None:
            raise self._lost("no longer exists")
        if _text(incarnation or b"") != self._incarnation:
            raise self._lost("was re-created since this process attached")
        return _decode_stage(raw, self.session_id)

    def update_stage(self, update: StageUpdate) -> tuple[StageState, int | None]:
        """Fold ``update`` into the stage record in one script call.

        Stage updates are numbered apart from other writes (``<client>:s``): an update whose
        write failed must be sent again, with its id, before any newer one.
        """
        rule = self.params.stage_rule()
        if rule is None:
            raise BackendError(
                f"pool {self.session_id!r} is not the root pool of a staged curriculum"
            )
        if self._pid != os.getpid():
            self._new_client_id()
        if not update.write_id:
            self._stage_seq += 1
            update.write_id = self._stage_seq
        reply = self._call(
            "update_stage",
            f"{self._client_id}:s",
            update.write_id,
            update.stage,
            update.count,
            repr(float(update.decay)),
            repr(float(update.add)),
            update.steps,
            rule.criteria_code,
            repr(float(rule.threshold)),
            msgpack.packb(list(rule.budgets)),
        )
        raw = reply if isinstance(reply, bytes) else str(reply).encode()
        ended, _, packed = raw.partition(b":")
        stage = int(ended)
        return _decode_stage(packed, self.session_id), (None if stage < 0 else stage)

    def end_epoch(self) -> dict[str, int]:
        """Reset the epoch counters; their values before the reset."""
        values = _text(self._write("end_epoch")).split(":")
        return {name: int(value or 0) for name, value in zip(EPOCH_COUNTERS, values, strict=True)}

    def snapshot(self) -> PoolSnapshot:
        """One MULTI/EXEC of the pool's hashes, decoded; label totals include live rows."""
        snapshot, _ = self._read()
        snapshot.labels = label_totals(snapshot.labels, snapshot.rows)
        return snapshot

    def _read(self, *, with_stage: bool = False) -> tuple[PoolSnapshot, StageState | None]:
        """The pool as stored (labels without their live rows), and its stage record if asked."""
        self._check_open()
        self._confirm()
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(self._keys[0])
        pipe.hgetall(self._keys[1])
        pipe.hgetall(self._keys[3])
        try:
            meta, rows_raw, labels_raw = pipe.execute()
        except redis.RedisError as exc:
            raise self._error(exc) from exc
        if not meta:
            raise self._lost("no longer exists")
        if _text(meta.get(b"incarnation", b"")) != self._incarnation:
            raise self._lost("was re-created since this process attached")
        counters = {name: int(meta.get(name.encode(), 0)) for name in COUNTER_NAMES}
        rows = decode_rows(rows_raw, self.params.capacity)
        labels, names = decode_labels(labels_raw, counters["num_labels"])
        snapshot = PoolSnapshot(int(meta.get(b"version", 0)), rows, labels, names, counters)
        stage = _decode_stage(meta.get(b"stage"), self.session_id) if with_stage else None
        return snapshot, stage

    def export_state(self) -> PoolState:
        """Everything in the pool, from one consistent snapshot."""
        snap, stage = self._read(with_stage=True)
        return PoolState(
            params=self.params,
            rows=snap.rows,
            labels=snap.labels,
            counters=snap.counters,
            stage=stage,
        )

    def import_state(self, state: PoolState) -> None:
        """Replace rows, label counters and counters in one script call."""
        if len(state.rows) != self.params.capacity:
            raise PoolMismatchError(
                f"state has {len(state.rows)} slots, pool {self.session_id!r} has "
                f"{self.params.capacity}"
            )
        rows = [list(row) if row[0] != EMPTY_TASK else [EMPTY_TASK] for row in state.rows.tolist()]
        labels = [[decode_label(label[0]), *label[1:]] for label in state.labels.tolist()]
        counters = {name: int(state.counters.get(name, 0)) for name in COUNTER_NAMES}
        self._write(
            "import_state",
            msgpack.packb(rows),
            msgpack.packb(labels),
            msgpack.packb(counters),
            OVERFLOW_LABEL,
            self.params.label_capacity,
            msgpack.packb(state.stage.to_list()),
        )
        self._label_ids.clear()

    def close(self) -> None:
        """Wait for a write sent ahead, close this process's connections; the pool stays."""
        if self._closed:
            return
        try:
            self._confirm()
        finally:
            self._closed = True
            self._drop_ahead()
            self._client.close()

    def destroy(self) -> None:
        """Remove every key of the pool and its registry entry."""
        self._call("destroy")
        self._redis("SREM", REGISTRY_KEY, self.session_id)
        self.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_stage(raw: bytes | None, session_id: str) -> StageState:
    try:
        return StageState.from_list(msgpack.unpackb(raw))
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise PoolCorruptedError(
            f"pool {session_id!r} has an unreadable stage record: {exc}"
        ) from None


def decode_rows(raw: dict[bytes, bytes], capacity: int) -> np.ndarray:
    """The pool's rows from its rows hash (slot -> msgpack array); absent slots are empty."""
    rows = empty_rows(capacity)
    if not raw:
        return rows
    n, width = len(raw), len(ROW_DTYPE.names)
    slots = np.fromiter((int(k) for k in raw), dtype=np.int64, count=n)
    # one unpack of all rows: a msgpack array header in front of the concatenated values
    decoded = msgpack.unpackb(b"\xdd" + n.to_bytes(4, "big") + b"".join(raw.values()))
    if any(len(row) != width for row in decoded):
        raise PoolCorruptedError(f"pool rows must have {width} fields each")
    flat = itertools.chain.from_iterable(decoded)
    values = np.fromiter(flat, dtype=np.float64, count=n * width).reshape(n, width)
    for column, name in enumerate(ROW_DTYPE.names):
        rows[name][slots] = values[:, column]
    return rows


def decode_labels(raw: dict[bytes, bytes], count: int) -> tuple[np.ndarray, list[str]]:
    """Label records and names (index = label id) from the labels hash.

    Ids at or past ``count`` (assigned after the counter was read) are left out.
    """
    labels = np.zeros(count, LABEL_DTYPE)
    names = [""] * count
    for key, blob in raw.items():
        label_id = int(key)
        if not 0 <= label_id < count:
            continue
        values = msgpack.unpackb(blob, raw=True)
        names[label_id] = decode_label(values[0])
        labels[label_id] = (values[0], *values[1:])
    return labels, names
