"""The staged curriculum: one curriculum per stage, and a shared record of which stage runs.

Stage ``i`` keeps its tasks in a pool of its own (``<session>.stage<i>``; stage 0 in
``<session>``). The pool of stage 0 (the root pool) also holds the stage record: the current
stage, each stage's performance EMA and the step clocks. Each process buffers the outcomes of a
stage and folds them into the record in one atomic update (with the same batching as outcomes);
the update that meets the criterion moves the shared stage on, once, and that process logs the
transition. Other processes see the new stage at their next update, or after at most
``snapshot_max_age_s`` (of the first stage's config) at ``get_task``.

Every stage's pool is created, with the root pool, by the process that creates the staged
curriculum: on /dev/shm that process owns (and at exit removes) all of them, like a plain pool.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.stage_state import StageState
from curriculum.curriculum import Curriculum
from curriculum.errors import (
    CheckpointError,
    ConfigError,
    CurriculumError,
    PoolClosedError,
    PoolNotFoundError,
    UnknownTaskError,
)
from curriculum.location import PoolLocation
from curriculum.task import CurriculumTask
from curriculum.validation import (
    check_priorities,
    check_priority,
    check_scores,
    check_steps,
    check_task_id,
    sum_steps,
)

if TYPE_CHECKING:
    from curriculum.staged_config import StagedCurriculumConfig

logger = logging.getLogger("curriculum.staged")

STAGED_STATE_FORMAT = "curriculum-staged-state"
STAGED_STATE_VERSION = 1


class StagedCurriculum:
    """A handle on a staged curriculum, with the interface of :class:`~curriculum.Curriculum`.

    ``get_task`` draws from the current stage's curriculum; outcomes go to the pool of the stage
    their task came from (late outcomes of an ended stage count for that stage). Pickles, like a
    ``Curriculum``, as its config and location: a worker re-attaches to the same shared state.
    """

    def __init__(self, config: StagedCurriculumConfig) -> None:
        """Create the staged curriculum's pools (or attach to them if they exist)."""
        location = PoolLocation.resolve(config.session_id, config.backend_url)
        self._open(config, location, create=True)

    def _open(
        self, config: StagedCurriculumConfig, location: PoolLocation, *, create: bool
    ) -> None:
        self.config = config
        self.location = location
        self.rule = config.stage_rule()
        self._closed = False
        self._staging = config.staging_params()
        count = len(config.stages)
        self._stages: list[Curriculum | None] = [None] * count
        root = Curriculum._at(
            config.stage_config(0), location, create=create, staging=self._staging
        )
        self._stages[0] = root
        self._root = root
        if root.backend.created:
            for index in range(1, count):
                self._stages[index] = self._open_stage(index, create=True)
        first = config.stages[0].curriculum
        self._refresh_s = first.snapshot_max_age_s
        self._attach_timeout_s = first.lock_timeout_s
        self._task_stage: dict[int, int] = {}
        self._stage_assumed = False  # task_for_id rebuilt an unknown id in the current stage
        self._task_stage_limit = 8 * sum(s.curriculum.num_active_tasks for s in config.stages)
        # Outcomes of every stage fold into the root pool's stage record, through the root
        # session's write queue (one update per stage and batch, sent with its other writes).
        queue = root._session.queue
        queue.stage_smoothing = config.transition_smoothing
        queue.on_stage = self._on_stage_written
        self._state = StageState()  # the record as last read or written by this process
        self._state_time = -float("inf")
        self._adopt(root.backend.stage_state())

    @property
    def session_id(self) -> str:
        """The name of the root pool (stage ``i``'s pool is ``<session_id>.stage<i>``)."""
        return self.location.session_id

    def _adopt(self, state: StageState) -> None:
        self._state = state
        self._state_time = time.monotonic()

    def _on_stage_written(self, state: StageState, ended: int | None) -> None:
        if ended is not None:
            logger.info(
                "curriculum stage %r -> %r at step %d (stage performance %.3f after %d outcomes)",
                self.rule.names[ended],
                self.rule.names[ended + 1],
                state.total_steps,
                state.performance[ended],
                state.outcomes[ended],
            )
        self._adopt(state)

    def _open_stage(self, index: int, *, create: bool) -> Curriculum:
        return Curriculum._at(
            self.config.stage_config(index), self.location.stage(index), create=create
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "location": self.location}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._open(state["config"], state["location"], create=False)

    # -- stages -----------------------------------------------------------------------------------

    def _stage(self, index: int) -> Curriculum:
        """The curriculum of stage ``index``, attached on first use."""
        curriculum = self._stages[index]
        if curriculum is not None:
            return curriculum
        deadline = time.monotonic() + self._attach_timeout_s
        while True:  # its creator makes every stage's pool right after the root pool
            try:
                curriculum = self._open_stage(index, create=False)
                break
            except PoolNotFoundError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._stages[index] = curriculum
        return curriculum

    @property
    def stage(self) -> int:
        """The index of the current stage (as last read: at most ``snapshot_max_age_s`` old)."""
        self._check_open()
        if time.monotonic() - self._state_time >= self._refresh_s:
            self._adopt(self._root.backend.stage_state())
        return self._state.stage

    @property
    def stage_name(self) -> str:
        """The name of the current stage."""
        return self.rule.names[self.stage]

    def stage_curriculum(self, index: int) -> Curriculum:
        """The handle of stage ``index``'s pool (its own ``stats()``, ``task_probabilities()``).

        Raises:
            ConfigError: ``index`` is not a stage index.
        """
        return self._stage(self._check_stage_index(index))

    def stage_state(self) -> StageState:
        """A fresh copy of the shared stage record (after writing this process's outcomes)."""
        self._check_open()
        self._root.flush()
        self._adopt(self._root.backend.stage_state())
        return self._state

    # -- the hot path -----------------------------------------------------------------------------

    def get_task(self) -> CurriculumTask:
        """A task of the current stage."""
        index = self.stage
        task = self._stage(index).get_task()
        task.stage = index
        self._remember(task.task_id, index)
        return task

    def task_for_id(self, task_id: int, stage: int | None = None) -> CurriculumTask:
        """The task with this id in ``stage``, for evaluation (a task id means a task only
        within its stage's generator).

        Without ``stage``: the stage of a task this process handed out or that is active in a
        stage's pool; for any other id, the current stage, with a warning (once per process)
        that it was assumed.
        """
        if stage is not None:
            index = self._check_stage_index(stage)
        else:
            try:
                index = self._stage_of(task_id)
            except UnknownTaskError:
                index = self.stage
                if not self._stage_assumed:
                    self._stage_assumed = True
                    logger.warning(
                        "task id %s is in no stage's pool of %r and was not handed out here: "
                        "rebuilt in the current stage %r. A task id names a task within its "
                        "stage only: pass stage= (CurriculumEnv: reset(options={'task_id': id, "
                        "'stage': k}), k from the episode's info['curriculum']['stage']). "
                        "Said once",
                        task_id,
                        self.session_id,
                        self.rule.names[index],
                    )
        task = self._stage(index).task_for_id(task_id)
        task.stage = index
        return task

    def _remember(self, task_id: int, index: int) -> None:
        known = self._task_stage
        if len(known) >= self._task_stage_limit:
            for old in list(known)[: len(known) // 2]:
                del known[old]
        known[task_id] = index

    def _stage_of(self, task_id: int) -> int:
        index = self._task_stage.get(task_id)
        if index is not None:
            return index
        current = self.stage
        for candidate in [current, *range(len(self._stages))]:
            try:
                self._stage(candidate)._session.locate(task_id)
            except UnknownTaskError:
                continue
            self._remember(task_id, candidate)
            return candidate
        raise UnknownTaskError(
            f"task id {task_id} is not active in any stage of {self.session_id!r} "
            "and was not handed out by this curriculum"
        )

    def _check_stage_index(self, stage: object) -> int:
        if isinstance(stage, bool) or not isinstance(stage, int):
            raise ConfigError(f"stage {stage!r} is not a stage index")
        if not 0 <= stage < len(self._stages):
            raise ConfigError(f"stage {stage} is outside [0, {len(self._stages)})")
        return stage

    def update_task_performance(
        self, task_id: int, score: float, *, steps: int = 1, priority: float | None = None
    ) -> None:
        """Record an episode's score (and length in steps, and its priority: see
        :meth:`Curriculum.update_task_performance`) for the stage its task came from.

        Raises:
            ScoreError: the score is not in [0, 1] (unless clipped), ``steps`` is not an int
                >= 0, or ``priority`` is not a finite real of magnitude at most 1e30.
            UnknownTaskError: the task is in no stage's pool and was not handed out here.
        """
        self._check_open()
        task_id = check_task_id(task_id)
        index = self._stage_of(task_id)
        curriculum = self._stage(index)
        value = curriculum.check_score(task_id, score)
        count = check_steps(steps)
        if priority is not None:
            priority = check_priority(task_id, priority)
        with self._stage_outcomes(index, [value], count):
            curriculum.update_task_performance(task_id, value, steps=count, priority=priority)

    def update_task_performance_batch(
        self,
        task_ids: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        *,
        steps: Sequence[int] | np.ndarray | None = None,
        priorities: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Record many outcomes (and their priorities, if given); every value is validated
        before anything is recorded."""
        self._check_open()
        ids = [check_task_id(t) for t in task_ids]
        given = check_priorities(ids, priorities)
        score_list = list(scores)
        step_list = [1] * len(ids) if steps is None else list(steps)
        sum_steps(np.asarray(step_list), len(ids))  # validates
        if len(score_list) != len(ids):
            check_scores(ids, score_list)  # raises, naming the mismatch
        groups: dict[int, list[int]] = {}
        for position, task_id in enumerate(ids):
            groups.setdefault(self._stage_of(task_id), []).append(position)
        checked = {
            index: self._stage(index).check_scores(
                [ids[p] for p in positions], [score_list[p] for p in positions]
            )
            for index, positions in groups.items()
        }
        for index, positions in groups.items():
            values = checked[index]
            group_steps = [step_list[p] for p in positions]
            with self._stage_outcomes(index, values.tolist(), int(sum(group_steps))):
                self._stage(index).update_task_performance_batch(
                    [ids[p] for p in positions],
                    values,
                    steps=group_steps,
                    priorities=None if given is None else [given[p] for p in positions],
                )

    @contextlib.contextmanager
    def _stage_outcomes(self, index: int, scores: list[float], steps: int) -> Iterator[None]:
        """Queue outcomes of stage ``index`` for the stage record around recording them in the
        stage's pool (taken back if that raised), then write the root pool's queue when due."""
        session = self._root._session
        session.ready()
        session.queue.add_stage_outcomes(index, scores, steps)
        try:
            yield
        except BaseException:
            session.queue.take_back_stage_outcomes(index, len(scores), steps)
            raise
        session.flush_if_due()

    def report_task_failure(self, task_id: int) -> None:
        """Record that the task's env config failed to build or apply (in its stage's pool)."""
        self._check_open()
        task_id = check_task_id(task_id)
        self._stage(self._stage_of(task_id)).report_task_failure(task_id)

    def flush(self) -> None:
        """Write this process's buffered outcomes to the stage pools and the stage record."""
        self._check_open()
        for curriculum in self._stages:
            if curriculum is not None:
                curriculum.flush()

    # -- stats, epochs, checkpoints ---------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """The current stage's pool stats plus the stage keys.

        Stage keys: ``curriculum/current_stage``, ``curriculum/stage_transitions``,
        ``curriculum/stage_steps`` (steps since the current stage began),
        ``curriculum/total_steps``, and per stage ``curriculum/stage_performance/<name>`` and
        ``curriculum/stage_outcomes/<name>``. The ``label/``, ``lp/`` and other pool keys
        describe the current stage's pool.
        """
        self.flush()
        state = self.stage_state()
        stats = self._stage(state.stage).stats()
        stats.update(self.health())
        stats["curriculum/current_stage"] = float(state.stage)
        stats["curriculum/stage_transitions"] = float(state.transitions)
        stats["curriculum/stage_steps"] = float(state.stage_steps)
        stats["curriculum/total_steps"] = float(state.total_steps)
        for index, name in enumerate(self.rule.names):
            stats[f"curriculum/stage_performance/{name}"] = float(state.performance[index])
            stats[f"curriculum/stage_outcomes/{name}"] = float(state.outcomes[index])
        return stats

    def health(self) -> dict[str, float]:
        """This process's ``health/`` figures over every stage's pool (the stage record's
        writes included): counts add up, ``in_outage`` and ``writers`` are the largest."""
        total: dict[str, float] = {}
        for curriculum in self._stages:
            if curriculum is None:
                continue
            for key, value in curriculum.health().items():
                if key in ("health/in_outage", "health/writers"):
                    total[key] = max(total.get(key, 0.0), value)
                else:
                    total[key] = total.get(key, 0.0) + value
        return total

    def on_epoch_end(self) -> dict[str, float]:
        """End the epoch in every stage's pool; the epoch counters summed over the stages."""
        self._check_open()
        totals: dict[str, float] = {}
        for index in range(len(self._stages)):
            for key, value in self._stage(index).on_epoch_end().items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def get_state(self) -> dict[str, Any]:
        """A checkpoint of every stage's pool and of the stage record, as plain data."""
        self.flush()
        return {
            "format": STAGED_STATE_FORMAT,
            "version": STAGED_STATE_VERSION,
            "stages": list(self.rule.names),
            "pools": [self._stage(i).get_state() for i in range(len(self._stages))],
        }

    def load_state(self, state: dict[str, Any], *, allow_param_mismatch: bool = False) -> None:
        """Replace every stage's pool and the stage record with a checkpoint's.

        Resuming continues in the checkpoint's stage, with its performance and step clocks.

        Raises:
            CheckpointError: the checkpoint is damaged, of another staged curriculum (other stage
                names), or incompatible with a stage's pool. Every stage's part is checked
                before any pool changes; a pool that refuses its part while loading (its labels
                do not fit) has the pools loaded before it put back as they were.
        """
        self._check_open()
        if not isinstance(state, dict) or state.get("format") != STAGED_STATE_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"not a staged curriculum checkpoint (format {found!r})")
        if state.get("version") != STAGED_STATE_VERSION:
            raise CheckpointError(
                f"staged checkpoint version {state.get('version')!r} is not supported "
                f"(expected {STAGED_STATE_VERSION})"
            )
        names, pools = state.get("stages"), state.get("pools")
        if names != list(self.rule.names):
            raise CheckpointError(
                f"checkpoint stages {names!r} differ from this curriculum's {list(self.rule.names)}"
            )
        if not isinstance(pools, list) or len(pools) != len(self._stages):
            raise CheckpointError(f"checkpoint must hold {len(self._stages)} stage pools")
        handles = [self._stage(i) for i in range(len(pools))]
        checked = [
            handle._checked_state(part, allow_param_mismatch)
            for handle, part in zip(handles, pools, strict=True)
        ]
        self.flush()
        # What each pool holds now, to put back when a later pool refuses its part.
        saved = [h._checked_state(h.get_state(), True) for h in handles]
        loaded: list[int] = []
        try:
            # the root pool last: its stage record switches the stage once the others are in
            for index in [*range(1, len(pools)), 0]:
                handles[index]._load_checked(*checked[index])
                loaded.append(index)
        except BaseException:
            for index in reversed(loaded):
                with contextlib.suppress(CurriculumError):
                    handles[index]._load_checked(*saved[index])
            raise
        self._task_stage.clear()
        self._adopt(self._root.backend.stage_state())

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Write queued outcomes and release every stage's pool (see ``Curriculum.close``)."""
        if self._closed:
            return
        self._closed = True
        for curriculum in reversed(self._stages):  # the root pool (and stage record) last
            if curriculum is not None:
                session = curriculum._session
                curriculum._closed = True
                session.close(destroy=self.location.private and self._root._session.owner)

    def destroy(self) -> None:
        """Remove every stage's pool (and the stage record) now, and close this handle."""
        self._check_open()
        handles = [self._stage(i) for i in range(len(self._stages))]
        self._closed = True
        for curriculum in reversed(handles):
            curriculum.destroy()

    def __enter__(self) -> StagedCurriculum:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError(f"staged curriculum {self.session_id!r} is closed")

    def __repr__(self) -> str:
        return f"StagedCurriculum(session_id={self.session_id!r}, stages={list(self.rule.names)})"
