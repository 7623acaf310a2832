"""The key schema of a Redis pool: every key name the library and its tools use.

Keys of a session (all share the hash tag ``{session}``, so a pool lives in one Cluster slot)::

    curriculum:{session}:meta       hash: parameters, layout, counters, version, incarnation
    curriculum:{session}:rows       hash: slot -> msgpack array of the row (ROW_DTYPE order)
    curriculum:{session}:free       sorted set of free slots (score = slot)
    curriculum:{session}:labels     hash: label id -> msgpack array (LABEL_DTYPE order)
    curriculum:{session}:label_ids  hash: label name -> label id
    curriculum:{session}:tokens     hash: client id -> last write number, its time and reply
    curriculum:{session}:ranges     hash: 'record' -> msgpack range record (backends/range_state.py)
    curriculum:sessions             set of session ids (the registry the inspection tools read)

Every key of a pool carries the pool's incarnation (a token drawn when the pool was created):
the meta hash in its ``incarnation`` field, the other hashes in a field named
:data:`MARKER_FIELD`, the free set as the member ``MARKER_FIELD + incarnation`` (score -1, below
every slot). A key that is missing or carries another incarnation (evicted under memory
pressure, deleted by hand, left from an earlier pool) makes the pool lost as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

REGISTRY_KEY = "curriculum:sessions"
KEY_PREFIX = "curriculum:"
KEY_PARTS = ("meta", "rows", "free", "labels", "label_ids", "tokens", "ranges")
# Not valid UTF-8 (labels are UTF-8, slots and label ids are digits): never a real field.
MARKER_FIELD = b"\xffincarnation"
MARKER_SCORE = -1  # of the free set's marker member: ZPOPMIN-safe reads take scores >= 0


def session_keys(session_id: str) -> list[str]:
    """The keys of a session's pool, in the order every script expects them."""
    return PoolKeys.of(session_id).as_list()


def free_marker(incarnation: str) -> bytes:
    """The free set's member that says which incarnation the set belongs to."""
    return MARKER_FIELD + incarnation.encode()


@dataclass(frozen=True)
class PoolKeys:
    """The key names of one session's pool."""

    session: str
    meta: str
    rows: str
    free: str
    labels: str
    label_ids: str
    tokens: str
    ranges: str

    @classmethod
    def of(cls, session_id: str) -> PoolKeys:
        """The keys of ``session_id``'s pool."""
        prefix = f"{KEY_PREFIX}{{{session_id}}}"
        return cls(session_id, *(f"{prefix}:{part}" for part in KEY_PARTS))

    def as_list(self) -> list[str]:
        """The keys in script order (KEYS[1] .. KEYS[7])."""
        return [
            self.meta,
            self.rows,
            self.free,
            self.labels,
            self.label_ids,
            self.tokens,
            self.ranges,
        ]


def session_of_key(key: str | bytes) -> str | None:
    """The session id in a pool key's hash tag, or None for another key."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if not text.startswith(KEY_PREFIX + "{"):
        return None
    end = text.find("}", len(KEY_PREFIX) + 1)
    return text[len(KEY_PREFIX) + 1 : end] if end > 0 else None
