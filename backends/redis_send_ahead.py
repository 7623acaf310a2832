"""A batch of outcomes sent to Redis without waiting for its reply, and its encoding.

The session's write queue sends the newest batch of its hot path this way and reads the reply
before it sends anything else (or when it must know the batch was applied), so a process does not
wait a round trip per batch. The batch stays at the head of the queue until its reply is read: a
reply that fails leaves it there, and it is sent again (synchronously) with its write id, which
the record script recognises, so it is applied once.

The write travels on a connection of its own, taken from the client's pool, so that a reader in
another thread never reads its reply. A connection whose reply failed is closed (its state is
unknown); a forked child forgets the connection without touching it (its parent owns it).
"""

from __future__ import annotations

from typing import Any

import msgpack
import redis
from redis.commands.core import Script

from backends.base import WriteBatch


def encode_batch(batch: WriteBatch) -> bytes:
    """The record script's batch argument (see ``backends/lua/record.lua``)."""
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
    data.append(len(batch.priority_positions))
    for position, value in zip(batch.priority_positions, batch.priority_values, strict=True):
        data.extend((position, float(value)))
    return msgpack.packb(data)  # scores and priorities travel as exact float64


class SentWrite:
    """At most one script call in flight on a connection of its own."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = getattr(client, "connection_pool", None)  # a cluster client has none
        self._connection: Any = None
        self.batch: WriteBatch | None = None  # sent, reply not read

    def send(self, script: Script, keys: list[str], args: tuple[Any, ...]) -> None:
        """Send one EVALSHA of ``script`` (loaded on the server already)."""
        if self.batch is not None:  # its queue was dropped: nobody will read this reply
            self.close()
        if self._connection is None:
            assert self._pool is not None, "no write is sent ahead to a Redis Cluster"
            self._connection = self._pool.get_connection()
        try:
            self._connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.RedisError:
            self.close()
            raise

    def receive(self) -> Any:
        """The reply of the call sent last (raised when it is an error).

        Raises:
            redis.RedisError: the reply failed or is an error (the connection is closed unless
                the error is the script's own).
        """
        self.batch = None
        try:
            return self._connection.read_response()
        except redis.ResponseError:
            raise  # the connection is fine: the server answered with the script's error
        except redis.RedisError:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (a reply still unread is lost with it)."""
        self.batch = None
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()
            if self._pool is not None:
                self._pool.release(connection)

    def forget(self) -> None:
        """In a forked child: drop the connection unread and untouched (the parent's)."""
        self.batch, self._connection = None, None
