"""The Redis backend: one pool shared by processes on many hosts.

The keys of a pool are described in :mod:`backends.redis_keys`; every read-modify-write is one
Lua script (``backends/lua``, :mod:`backends.redis_scripts`); snapshots go through the read path
of :mod:`backends.redis_read`; URLs and clients are :mod:`backends.redis_connection`'s. Writes
carry a client id and a write number: a write retried after a connection error or a timeout is
recognised by the script and not applied twice. No live client crosses a process boundary.

Every wait on the server is bounded by ``timeout_s`` (``CurriculumConfig.backend_timeout_s``): a
server that hangs costs a call at most about that long before ``BackendUnavailableError`` (which
``on_backend_unavailable="buffer"`` turns into sampling from the last view).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any

import redis
from redis.cluster import RedisCluster

from backends.base import (
    PoolParams,
    PoolSnapshot,
    RecordResult,
    TaskMemoryBackend,
    WriteBatch,
)
from backends.layout import (
    EPOCH_COUNTERS,
    OVERFLOW_LABEL,
    encode_label,
    label_totals,
)
from backends.range_state import RangeState
from backends.redis_attach import attach_pool
from backends.redis_connection import (
    CLUSTER_SCHEMES,
    DEFAULT_TIMEOUT_S,
    REDIS_SCHEMES,
    connect,
    register_client_factory,
)
from backends.redis_errors import lost_error, translate_error
from backends.redis_keys import REGISTRY_KEY, PoolKeys, session_keys
from backends.redis_pool_info import eviction_warning
from backends.redis_pool_state import RedisPoolStateOps
from backends.redis_read import (
    decode_labels,
    decode_ranges,
    decode_rows,
    decode_snapshot,
    decode_stage,
    read_raw,
)
from backends.redis_scripts import (
    LUA_DIR,
    SCRIPT_NAMES,
    SLOW_SCRIPTS,
    load_script,
    register_scripts,
)
from backends.redis_send_ahead import SentWrite, encode_batch
from backends.stage_state import StageState
from curriculum import forks
from curriculum.errors import (
    BackendError,
    PoolClosedError,
    PoolLostError,
)

logger = logging.getLogger("curriculum.redis")

NOSCRIPT_ATTEMPTS = 3
ATTACH_ATTEMPTS = 5  # an attach whose reply timed out is sent again (up to this many copies)
# Scripts that run long on large pools wait at least this long for their reply.
SLOW_CALL_TIMEOUT_S = 10.0
# Write tokens (idempotency) are kept this long after their write: a retry of a write (after an
# outage, a timeout, a restart of Redis) is recognised if it comes within this window.
TOKEN_WINDOW_S = 24 * 3600.0


class RedisBackend(RedisPoolStateOps, TaskMemoryBackend):
    """A pool in Redis, changed only by Lua scripts."""

    thread_safe_reads = True  # reads go through redis-py's thread-safe connection pool

    def __init__(
        self,
        url: str,
        session_id: str,
        params: PoolParams,
        *,
        create: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ttl_s: float | None = None,
        generator_json: str = "",
        prefetch_sequence: bool = False,
    ) -> None:
        """Attach to the session's pool on ``url``, creating it when absent and ``create``.

        Args:
            timeout_s: The longest wait for the server (connect, each reply) on the hot path.
            ttl_s: A pool created now expires after this long without a write (every write
                refreshes it); None: it stays until destroyed.
            generator_json: The task generator's config, stored with a new pool so that a
                mismatch names the differing fields.
            prefetch_sequence: Each task creation or replacement also reserves the sequence
                number of this process's next new task, in the same script call, so that an
                eviction costs one round trip instead of two. Sequence numbers stay unique and
                increase, but a process that closes leaves its reserved one unused (a gap), and
                its tasks' numbers follow the order of reservation, not of creation.

        Raises:
            PoolMismatchError: the existing pool was made with different parameters.
            PoolNotFoundError: the pool does not exist and ``create`` is false.
            BackendError: Redis is unreachable or answered with an error.
        """
        self.url = url
        self.session_id = session_id
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._generator_json = generator_json
        self._pool_keys = PoolKeys.of(session_id)
        self._keys = self._pool_keys.as_list()
        self._client = connect(url, timeout_s)
        self._slow_client: redis.Redis | None = None  # for scripts that run long on big pools
        self._cluster = isinstance(self._client, RedisCluster)
        self._scripts = register_scripts(self._client)
        self._sent = SentWrite(self._client)  # a batch sent ahead of its reply
        self._new_client_id()
        forks.on_fork_in_child(self, RedisBackend._after_fork)
        self._closed = False
        self._label_ids: dict[str, int] = {}
        self._prefetch = prefetch_sequence
        self._next_seq: int | None = None  # reserved with the last creation, not yet taken
        self._incarnation = ""
        self._attach(params, create=create)
        if self.created:
            self._redis("SADD", REGISTRY_KEY, session_id)
        warning = eviction_warning(self._client, url, session_id, expires=self._expires)
        if warning:
            logger.warning(warning)

    @property
    def _expires(self) -> bool:
        return self.ttl_s is not None and self.ttl_s > 0

    def _attach(self, params: PoolParams, *, create: bool) -> None:
        ttl_ms = int(self.ttl_s * 1000) if self.ttl_s is not None and self.ttl_s > 0 else 0
        attached = attach_pool(
            lambda *args: self._call("attach", *args),
            self.session_id,
            self.url,
            params,
            create=create,
            ttl_ms=ttl_ms,
            generator_json=self._generator_json,
            token_window_ms=int(TOKEN_WINDOW_S * 1000),
        )
        self.created, self.params, self._incarnation = (
            attached.created,
            attached.params,
            attached.incarnation,
        )

    def reattach(self, params: PoolParams) -> bool:
        """Attach again after the pool was lost, creating it anew (with ``params``) if absent.

        Cached label ids belong to the lost pool and are dropped. Returns True when this process
        created the new pool.
        """
        self._check_open()
        self._label_ids.clear()
        self._next_seq = None  # reserved in the lost pool
        self._sent.close()  # a reply still unread belongs to the lost pool
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
        try:
            return self._client.execute_command(*command)
        except redis.RedisError as exc:
            raise self._error(exc) from None

    def _call(self, name: str, *args: Any) -> Any:
        self._check_open()
        script = self._scripts[name]
        client = self._client_for(name)
        if name != "attach":
            args = (*args, self._incarnation)
        started = time.monotonic()
        for attempt in range(max(NOSCRIPT_ATTEMPTS, ATTACH_ATTEMPTS)):
            try:
                return script(keys=self._keys, args=args, client=client)
            except redis.exceptions.NoScriptError as exc:
                # flushed again while redis-py was reloading it: load and run it once more
                # (the write id makes a repeated write harmless)
                if attempt >= NOSCRIPT_ATTEMPTS - 1:
                    raise self._error(exc) from None
            except redis.TimeoutError as exc:
                # attach is sent again (its token tells a copy that already ran); other calls
                # give up at the bound and their writes stay pending with their ids
                if (
                    name != "attach"
                    or attempt == ATTACH_ATTEMPTS - 1
                    or time.monotonic() - started >= SLOW_CALL_TIMEOUT_S
                ):
                    raise self._error(exc) from None
                time.sleep(0.1)
            except redis.RedisError as exc:
                raise self._error(exc) from None
        raise AssertionError("unreachable")

    def _client_for(self, script: str) -> redis.Redis:
        """The hot path's client, or for a script that runs long on big pools one that waits
        longer (at least SLOW_CALL_TIMEOUT_S)."""
        if script not in SLOW_SCRIPTS or self.timeout_s >= SLOW_CALL_TIMEOUT_S:
            return self._client
        if self._slow_client is None:
            self._slow_client = connect(self.url, SLOW_CALL_TIMEOUT_S)
        return self._slow_client

    def _lost(self, what: str) -> PoolLostError:
        return lost_error(self.session_id, self.url, what)

    def _new_client_id(self) -> None:
        self._client_id = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._write_seq = 0

    def _after_fork(self) -> None:
        """In a forked child: redis-py reconnects by itself; the child writes under a client id
        of its own (its write numbers would repeat its parent's), and leaves the sequence number
        its parent reserved to the parent."""
        self._new_client_id()
        self._next_seq = None
        self._sent.forget()

    def _unnumbered(self) -> int:
        """A write id for a bare backend call (tools, tests): the session numbers its own."""
        self._write_seq += 1
        return self._write_seq

    def _write(self, name: str, *args: Any) -> Any:
        """Run a mutating script under this client's next write number (safe to retry)."""
        self._write_seq += 1
        return self._call(name, f"{self._client_id}:w", self._write_seq, *args)

    def _error(self, exc: redis.RedisError) -> BackendError:
        return translate_error(exc, self.session_id, self.url)

    # -- the interface --------------------------------------------------------------------------

    def version(self) -> int:
        """Moves on every write."""
        return int(self._redis("HGET", self._keys[0], "version") or 0)

    def reserve_sequence(self) -> int:
        """Take the next task sequence number (the one reserved with the last creation, when
        sequence numbers are prefetched)."""
        seq, self._next_seq = self._next_seq, None
        if seq is not None:
            return seq
        return int(self._call("reserve_sequence"))

    def _reserve_flag(self) -> int:
        """1 when the creation script should reserve the next sequence number too."""
        return 1 if self._prefetch and self._next_seq is None else 0

    def _take_reply(self, reply: Any) -> str:
        """The creation script's reply, keeping a sequence number it reserved."""
        text, _, seq = _text(reply).partition(":")
        if seq:
            self._next_seq = int(seq)
        return text

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
        reply = self._write("create_task", task_id, label_id, seq, self._reserve_flag())
        slot = int(self._take_reply(reply))
        return None if slot < 0 else slot

    def replace_task(
        self, slot: int, expected_task_id: int, task_id: int, label_id: int, seq: int
    ) -> bool:
        """Compare-and-set eviction and creation in one script."""
        if not 0 <= slot < self.params.capacity:
            raise BackendError(f"slot {slot} is outside the pool's {self.params.capacity} slots")
        reply = self._write(
            "replace_task", slot, expected_task_id, task_id, label_id, seq, self._reserve_flag()
        )
        return self._take_reply(reply) == "1"

    def record(self, batch: WriteBatch) -> RecordResult:
        """Apply outcomes, sample counts and failures in one script call.

        The script records the batch's write id with its reply: a batch sent again after a
        failure (a reply lost with its connection) gets the first reply instead of being
        applied twice.
        """
        args = self._record_args(batch)
        return _record_result(self._call("record", *args))

    def _record_args(self, batch: WriteBatch) -> tuple[Any, ...]:
        """The record script's arguments for ``batch`` (numbered here if it has no write id)."""
        capacity = self.params.capacity
        for slots in (batch.outcome_slots, batch.sample_slots, batch.failure_slots):
            if slots and (min(slots) < 0 or max(slots) >= capacity):
                raise BackendError(f"batch names slots outside the pool: {slots}")
        if not batch.write_id:
            batch.write_id = self._unnumbered()
        return (f"{self._client_id}:r", batch.write_id, encode_batch(batch))

    @property
    def can_send_ahead(self) -> bool:  # type: ignore[override]
        """Batches may be sent without waiting for their reply (not on a Redis Cluster)."""
        return not self._cluster

    def record_send(self, batch: WriteBatch) -> None:
        """Send ``batch`` on the write connection; :meth:`record_receive` reads the reply."""
        self._check_open()
        args = (*self._record_args(batch), self._incarnation)
        try:
            self._sent.send(self._scripts["record"], self._keys, args)
        except redis.RedisError as exc:
            raise self._error(exc) from None
        self._sent.batch = batch

    def record_receive(self) -> RecordResult:
        """The reply of the batch :meth:`record_send` sent; a script the server no longer
        has (flushed) is loaded and the batch sent again, with its write id."""
        batch = self._sent.batch
        assert batch is not None, "no batch was sent ahead"
        try:
            return _record_result(self._sent.receive())
        except redis.exceptions.NoScriptError:
            return self.record(batch)
        except redis.RedisError as exc:
            raise self._error(exc) from None

    def end_epoch(self) -> dict[str, int]:
        """Reset the epoch counters; their values before the reset."""
        values = _text(self._write("end_epoch")).split(":")
        return {name: int(value or 0) for name, value in zip(EPOCH_COUNTERS, values, strict=True)}

    def snapshot(self) -> PoolSnapshot:
        """One MULTI/EXEC of the pool's hashes, decoded; label totals include live rows."""
        snapshot = self._read()[0]
        snapshot.labels = label_totals(snapshot.labels, snapshot.rows)
        return snapshot

    def _read(
        self, *, with_stage: bool = False
    ) -> tuple[PoolSnapshot, StageState | None, RangeState | None]:
        """The pool as stored (labels without their live rows), and its stage and range records
        if asked.

        Raises:
            PoolLostError: the pool is gone, was re-created, or lost some of its keys.
            PoolCorruptedError: a key holds data this library did not write.
        """
        self._check_open()
        try:
            raw = read_raw(self._client, self._pool_keys, self._incarnation)
        except redis.RedisError as exc:
            raise self._error(exc) from None
        if not raw.meta:
            raise self._lost("no longer exists")
        if raw.incarnation != self._incarnation:
            raise self._lost("was re-created since this process attached")
        damaged = raw.damaged_keys()
        if damaged:
            raise self._lost(f"lost keys or holds keys of another pool ({', '.join(damaged)})")
        snapshot = decode_snapshot(raw, self.params.capacity)
        if not with_stage:
            return snapshot, None, None
        stage = decode_stage(raw.meta.get(b"stage"), self.session_id)
        return snapshot, stage, decode_ranges(raw.ranges[1], self.session_id)

    def close(self) -> None:
        """Close this process's connections; the pool stays."""
        if self._closed:
            return
        self._closed = True
        self._sent.close()
        self._client.close()
        if self._slow_client is not None:
            self._slow_client.close()

    def destroy(self) -> None:
        """Remove every key of the pool and its registry entry."""
        self._call("destroy")
        self._redis("SREM", REGISTRY_KEY, self.session_id)
        self.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record_result(reply: Any) -> RecordResult:
    applied, late = _text(reply).split(":")
    return RecordResult(applied=int(applied), late=int(late))


__all__ = [
    "CLUSTER_SCHEMES",
    "LUA_DIR",
    "REDIS_SCHEMES",
    "REGISTRY_KEY",
    "SCRIPT_NAMES",
    "RedisBackend",
    "connect",
    "decode_labels",
    "decode_rows",
    "load_script",
    "register_client_factory",
    "session_keys",
]
