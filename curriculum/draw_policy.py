"""The draw policy of a session: put a new task into a free slot, or evict and replace the most
evictable one, each in one atomic backend operation.

A new task's id derives from the pool's next sequence number; its label is interned in the pool's
label table (a full table is said once; the overflow bucket's own name is refused as a label).
Eviction is a compare-and-set on (slot, task id): a candidate another process replaced first is
skipped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backends.layout import EMPTY_TASK, LABEL_NAME_BYTES, OVERFLOW_LABEL, stored_label
from curriculum.errors import ConfigError, PoolCorruptedError
from curriculum.outage import TRANSIENT
from curriculum.task_ids import derive_task_id

if TYPE_CHECKING:
    from curriculum.algorithms import PoolView
    from curriculum.session import PoolSession

logger = logging.getLogger("curriculum")


def new_task_fields(session: PoolSession) -> tuple[int, int, int]:
    """Reserve the next task of the pool: ``(task_id, label_id, seq)``, its label interned."""
    seq = session.backend.reserve_sequence()
    ranges = session.ranges  # range expansion encodes the task's axis values in its id
    if ranges is None:
        task_id = derive_task_id(session.backend.params.pool_seed, seq)
    else:
        task_id = ranges.new_task_id(seq)
    label = session.generator.generate(task_id).label
    if label == OVERFLOW_LABEL:
        raise ConfigError(
            f"task {task_id} has the label {label!r}, which names the overflow bucket of "
            "the label table; give its env config another 'label'"
        )
    label_id = session.backend.intern_label(label)
    _warn_if_shortened(session, label)
    if label_id == session.backend.params.label_capacity - 1 and not session.overflow_warned:
        session.overflow_warned = True
        logger.warning(
            "%s: the label table is full (max_labels=%d); label %r and every new label "
            "from now on are counted under %r. Raise max_labels, or use fewer bucket values "
            "(a Span gives binned labels)",
            session.location,
            session.backend.params.label_capacity,
            label,
            OVERFLOW_LABEL,
        )
    return task_id, label_id, seq


_SHORTENED_WARNED: set[str] = set()  # pools (by location) warned of a shortened label


def _warn_if_shortened(session: PoolSession, label: str) -> None:
    """Say once per pool and process that a label is too long to be stored as it is."""
    stored = stored_label(label)
    where = str(session.location) if stored != label else ""
    if not where or where in _SHORTENED_WARNED:
        return
    _SHORTENED_WARNED.add(where)
    logger.warning(
        "%s: the task label %r is %d bytes, longer than the %d a pool stores: it is kept as "
        "%r (its label/ stats keys and the env info use that name) and its tasks count in no "
        "slice/ figure (its last bucket values are cut off). Shorten the env 'label' or the "
        "bucket paths. Said once",
        where,
        label,
        len(label.encode("utf-8")),
        LABEL_NAME_BYTES,
        stored,
    )


def view_with_tasks(session: PoolSession, view: PoolView) -> PoolView:
    """``view``, or when it shows no task (the draw found no free slot: the view is older than
    the tasks other processes created since) a fresh view.

    Raises:
        BackendUnavailableError: the pool cannot be read now (an outage, in either mode: this
            process has no task it could hand out from memory).
        PoolCorruptedError: the pool has no free slot and yet no task.
    """
    if len(view.active):
        return view
    view = session.view(fresh=True)
    if not len(view.active):
        raise PoolCorruptedError(
            f"{session.location} has no free slot and no active task: its free-slot record is "
            "damaged; restore a checkpoint or destroy() the pool"
        )
    return view


def try_create(session: PoolSession) -> tuple[int, int, int] | None:
    """Create a task in a free slot: ``(task_id, slot, label_id)``, or None when full."""
    if not session.views.maybe_free_slots or session.outage.active():
        return None
    try:
        task_id, label_id, seq = new_task_fields(session)
        slot = session.backend.create_task(task_id, label_id, seq)
    except TRANSIENT as exc:
        session.outage.failed(exc)
        return None
    if slot is None:
        session.views.maybe_free_slots = False
        return None
    session.registry.remember(task_id, slot, label_id)
    session.refresher.note_placed(slot, EMPTY_TASK, task_id, label_id, seq)
    session.views.invalidate()
    return task_id, slot, label_id


def try_evict_and_replace(session: PoolSession, view: PoolView) -> tuple[int, int, int] | None:
    """Evict the view's most evictable task and create a new one in its slot.

    Candidates another process already replaced fail the backend's compare-and-set and are
    skipped; the view shows the new task until it is refreshed.
    """
    if session.outage.active():
        return None
    evictions = session.views.evictions
    try:
        while evictions:
            slot = evictions.pop()
            if slot in session.queue.pending_slots():
                session.flush()  # this process's outcomes for the candidate count before it goes
            old_task = view.task_id(slot)
            task_id, label_id, seq = new_task_fields(session)
            if session.backend.replace_task(slot, old_task, task_id, label_id, seq):
                session.registry.remember(task_id, slot, label_id)
                view.place_new_task(slot, task_id, label_id, seq)
                session.refresher.note_placed(slot, old_task, task_id, label_id, seq)
                return task_id, slot, label_id
    except TRANSIENT as exc:
        session.outage.failed(exc)
    return None
