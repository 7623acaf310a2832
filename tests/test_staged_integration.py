"""The staged curriculum end to end: many processes, CurriculumEnv, Redis retries, inspection.

Every stage of these curricula has a label of its own (``stage0``, ``stage1``, ...), so a task's
env config tells which stage's generator made it. Scores are deterministic (1.0 moves a stage's
performance EMA towards the threshold), so every transition follows from the outcomes reported,
never from timing. Worker functions live at module level: ``spawn`` children import this module
again (see ``tests/workers.py``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import pickle
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gymnasium as gym
import numpy as np
import pytest
import redis_support
from conftest import remove_pool, unique_session
from workers import open_handle, run_workers

from backends import open_backend
from backends.redis_backend import session_keys
from backends.stage_state import StageState, StageUpdate, apply_stage_update, fold_scores
from curriculum import (
    BucketedTaskGenerator,
    CurriculumConfig,
    CurriculumEnv,
    CurriculumStage,
    LearningProgressConfig,
    SingleTaskGenerator,
    Span,
    StagedCurriculum,
    StagedCurriculumConfig,
)
from curriculum.cli import main
from curriculum.curriculum import pool_params
from curriculum.staged_config import stage_session

LOGGER_NAME = "curriculum.staged"
LUA_SUMMARY = Path(__file__).resolve().parent.parent / "scripts" / "lua" / "summary.lua"
ENV_OVERRIDES = {"extras.mode": "fixed"}


# -- configs --------------------------------------------------------------------------------------


def stage_generator(index: int, lengths: list[int] | None = None) -> BucketedTaskGenerator.Config:
    """Tasks labelled ``stage<index>|...`` with an episode length from ``lengths`` and a variant
    (so each pool holds many distinct tasks); stage ``index`` also overrides ``level``."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": f"stage{index}", "length": 1, "level": -1, "origin": index}
        ),
        buckets={"length": lengths or [1, 2, 3], "variant": Span(0, 1_000_000)},
        overrides={"level": index},
    )


def staged_config(
    session_id: str,
    backend_url: str | None,
    *,
    n_stages: int = 3,
    capacity: int = 16,
    write_batch_size: int = 8,
    threshold: float = 0.9,
    smoothing: float = 0.01,
    lengths: list[list[int]] | None = None,
) -> StagedCurriculumConfig:
    """A performance-criterion staged curriculum of ``n_stages`` small pools."""
    stages = [
        CurriculumStage(
            name=f"s{index}-{('warmup', 'middle', 'final', 'extra')[index]}",
            curriculum=CurriculumConfig(
                task_generator=stage_generator(index, lengths[index] if lengths else None),
                algorithm_config=LearningProgressConfig(min_presentations_for_eviction=4),
                num_active_tasks=capacity,
                write_batch_size=write_batch_size,
                seed=7,
            ),
        )
        for index in range(n_stages)
    ]
    return StagedCurriculumConfig(
        stages=stages,
        transition_criteria="performance",
        performance_threshold=threshold,
        transition_smoothing=smoothing,
        env_overrides=ENV_OVERRIDES,
        session_id=session_id,
        backend_url=backend_url,
    )


def outcomes_to_threshold(smoothing: float, threshold: float) -> int:
    """How many scores of 1.0 take a stage's performance EMA (from 0) to ``threshold``."""
    n, performance = 0, 0.0
    while performance < threshold:
        performance = performance * (1.0 - smoothing) + smoothing
        n += 1
    return n


def stage_pool(staged: StagedCurriculum, index: int) -> Any:
    """The ``Curriculum`` of one stage (to read that stage's pool stats)."""
    return staged._stage(index)


@pytest.fixture
def sessions() -> Iterator[list[tuple[str, str | None, int]]]:
    """(session, backend URL, stage count) of the staged curricula a test made: their pools
    are removed after the test even when it fails (fakeredis pools vanish with their server)."""
    made: list[tuple[str, str | None, int]] = []
    yield made
    for session, url, count in made:
        if url is not None and not url.startswith(("redis://", "unix://")):
            continue
        for index in range(count):
            remove_pool(stage_session(session, index), url)


def new_staged(
    sessions: list[tuple[str, str | None, int]], url: str | None, prefix: str, **fields: Any
) -> StagedCurriculum:
    session = unique_session(prefix)
    config = staged_config(session, url, **fields)
    sessions.append((session, url, len(config.stages)))
    return StagedCurriculum(config)


# -- workers (module level: spawn children import them) -----------------------------------------


class _Collect(logging.Handler):
    """Keeps every record logged in this process."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _collect_transitions() -> _Collect:
    handler = _Collect()
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def _play_to_last_stage(
    index: int, handle: StagedCurriculum | bytes, barrier: Any, steps: int, max_episodes: int
) -> dict[str, Any]:
    """Once every worker is attached, score 1.0 (``steps`` steps each) until a task of the last
    stage was played, then close."""
    handler = _collect_transitions()
    staged = open_handle(handle)  # type: ignore[arg-type]
    barrier.wait(timeout=60)  # spawned workers start seconds apart: play together
    n_stages = len(staged.config.stages)
    outcomes = [0] * n_stages
    steps_per_stage = [0] * n_stages
    last_task_stage = -1
    for _ in range(max_episodes):
        task = staged.get_task()
        assert task.get_env_cfg()["origin"] == task.stage, "a task of another stage's generator"
        staged.update_task_performance(task.task_id, 1.0, steps=steps)
        outcomes[task.stage] += 1
        steps_per_stage[task.stage] += steps
        last_task_stage = task.stage
        if task.stage == n_stages - 1:
            break
    stage_before_close = staged.stage
    staged.close()  # writes the buffered outcomes (and may end a stage: still logged here)
    return {
        "logged": [(r.levelno, r.getMessage()) for r in handler.records],
        "outcomes": outcomes,
        "steps": steps_per_stage,
        "last_task_stage": last_task_stage,
        "stage_before_close": stage_before_close,
    }


def _attach_and_play(index: int, handle: bytes, episodes: int) -> dict[str, Any]:
    """Attach to a running staged curriculum, play ``episodes`` episodes scoring 0, close."""
    handler = _collect_transitions()
    staged = open_handle(handle)  # type: ignore[arg-type]
    stages, origins = [], []
    for _ in range(episodes):
        task = staged.get_task()
        stages.append(task.stage)
        origins.append(task.get_env_cfg()["origin"])
        staged.update_task_performance(task.task_id, 0.0, steps=1)
    staged.close()
    return {"stages": stages, "origins": origins, "logged": len(handler.records)}


def _play_and_exit(index: int, handle: StagedCurriculum | bytes, episodes: int) -> int:
    """Play ``episodes`` episodes (2 steps each) and return without closing: the process's
    clean exit must write what it still buffers."""
    staged = open_handle(handle)  # type: ignore[arg-type]
    for _ in range(episodes):
        task = staged.get_task()
        staged.update_task_performance(task.task_id, 0.5, steps=2)
    return episodes


# -- 1. many processes move through every stage, each transition once -----------------------------

N_WORKERS = 4
STEPS_PER_EPISODE = 3
MAX_EPISODES = 4_000


def test_workers_move_through_every_stage_once_and_lose_nothing(
    process_backend_url: str | None, sessions: list[tuple[str, str | None, int]]
) -> None:
    staged = new_staged(sessions, process_backend_url, "staged-mp")
    names = staged.rule.names
    last = len(names) - 1
    try:
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(N_WORKERS)
        reports = run_workers(
            _play_to_last_stage,
            [(staged, barrier, STEPS_PER_EPISODE, MAX_EPISODES) for _ in range(N_WORKERS)],
            ctx=ctx,
        )
        state = staged.stage_state()
        stats = staged.stats()

        # every transition happened once, in one process, and was logged there once
        records = [record for report in reports for record in report["logged"]]
        assert len(records) == last == 2  # every record of the logger is a transition
        assert all(level == logging.INFO for level, _ in records)
        logged = [message for _, message in records]
        for ended in range(last):
            pair = f"{names[ended]!r} -> {names[ended + 1]!r}"
            assert sum(pair in message for message in logged) == 1, (pair, logged)
        steps_logged = sorted(int(re.search(r" at step (\d+)", m).group(1)) for m in logged)
        assert all(step % STEPS_PER_EPISODE == 0 for step in steps_logged)
        assert 0 < steps_logged[0] < steps_logged[1] <= state.total_steps
        assert state.transitions == 2 and state.stage == last
        assert staged.stage == last and staged.stage_name == names[last]

        # every worker got to the last stage
        for report in reports:
            assert report["last_task_stage"] == last
            assert report["stage_before_close"] == last

        # the stage record holds exactly what the workers reported (after they closed)
        outcomes = [sum(r["outcomes"][i] for r in reports) for i in range(len(names))]
        steps = [sum(r["steps"][i] for r in reports) for i in range(len(names))]
        assert state.outcomes[: len(names)] == outcomes
        assert not any(state.outcomes[len(names) :])
        assert state.total_steps == sum(steps)
        assert state.stage_steps == steps[last]  # the last stage never ends: all its steps count
        needed = outcomes_to_threshold(
            staged.config.transition_smoothing, staged.config.performance_threshold
        )
        for index in range(last):
            assert outcomes[index] >= needed  # a stage ends only once its EMA got there
            assert state.performance[index] >= staged.config.performance_threshold

        # each stage's pool counted its own outcomes and draws, and the stats agree
        for index, name in enumerate(names):
            pool_stats = stage_pool(staged, index).stats()
            assert pool_stats["curriculum/num_completed"] == outcomes[index]
            assert pool_stats["curriculum/num_scheduled"] == outcomes[index]
            assert stats[f"curriculum/stage_outcomes/{name}"] == outcomes[index]
            assert stats[f"curriculum/stage_performance/{name}"] == state.performance[index]
        assert stats["curriculum/current_stage"] == last
        assert stats["curriculum/stage_transitions"] == 2
        assert stats["curriculum/total_steps"] == sum(steps)
        assert stats["curriculum/stage_steps"] == steps[last]
        assert stats["curriculum/num_completed"] == outcomes[last]  # the current stage's pool
    finally:
        staged.close()


# -- 2. CurriculumEnv plays a staged curriculum ----------------------------------------------------


class LengthEnv(gym.Env):
    """Episodes of ``cfg["length"]`` steps; the terminal info scores 1.0."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.cfg: dict[str, Any] | None = None
        self.t = 0

    def set_task(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self.cfg is not None
        self.t += 1
        done = self.t >= self.cfg["length"]
        info: dict[str, Any] = {"score": 1.0} if done else {}
        return np.zeros(1, dtype=np.float32), 0.0, done, False, info


def test_env_reports_episode_lengths_and_the_stage_of_each_task(
    backend_url: str | None, sessions: list[tuple[str, str | None, int]]
) -> None:
    smoothing, threshold = 0.5, 0.7
    staged = new_staged(
        sessions,
        backend_url,
        "staged-env",
        n_stages=2,
        write_batch_size=1,  # every outcome reaches the stage record at once
        smoothing=smoothing,
        threshold=threshold,
        lengths=[[2, 3], [4, 5, 6]],
    )
    stage0_episodes = outcomes_to_threshold(smoothing, threshold)
    episodes = stage0_episodes + 6
    env = CurriculumEnv(LengthEnv(), staged, stats_interval_s=0.0)
    played: list[tuple[float, int, dict[str, Any]]] = []  # (info stage, length, env config)
    try:
        for _ in range(episodes):
            env.reset()
            cfg = env.unwrapped.cfg
            length = 0
            while True:
                _, _, terminated, truncated, info = env.step(0)
                length += 1
                if terminated or truncated:
                    break
            played.append((info["curriculum"]["stage"], length, dict(cfg)))
        env.close()  # flushes

        stages = [stage for stage, _, _ in played]
        assert stages == [0.0] * stage0_episodes + [1.0] * (episodes - stage0_episodes)
        for stage, length, cfg in played:
            index = int(stage)
            assert cfg["label"] == f"stage{index}" and cfg["origin"] == index
            assert cfg["level"] == index  # the stage generator's own override
            assert cfg["extras"] == {"mode": "fixed"}  # the staged config's env_overrides
            assert length == cfg["length"] in ([2, 3], [4, 5, 6])[index]

        state = staged.stage_state()
        lengths = [length for _, length, _ in played]
        assert state.total_steps == sum(lengths)
        assert state.stage_steps == sum(lengths[stage0_episodes:])
        assert state.outcomes[:2] == [stage0_episodes, episodes - stage0_episodes]
        assert (state.stage, state.transitions) == (1, 1)
        for index, first, stop in ((0, 0, stage0_episodes), (1, stage0_episodes, episodes)):
            pool_stats = stage_pool(staged, index).stats()
            assert pool_stats["curriculum/num_completed"] == stop - first
            assert pool_stats["curriculum/num_steps"] == sum(lengths[first:stop])
    finally:
        staged.close()


# -- 3. a stage update sent again is applied once (Redis write ids) -------------------------------


@pytest.mark.parametrize("redis_kind", ["fakeredis", "redis"])
def test_a_repeated_stage_update_is_applied_once(
    redis_kind: str, request: pytest.FixtureRequest, sessions: list[tuple[str, str | None, int]]
) -> None:
    if redis_kind == "fakeredis":
        redis_support.FAKE.reset()
        url = "fakeredis://"
    else:
        url = request.getfixturevalue("redis_url")
    staged = new_staged(sessions, url, "staged-ids", n_stages=2, threshold=0.5, smoothing=0.25)
    config, rule = staged.config, staged.rule
    params = pool_params(config.stage_config(0), config.staging_params())
    backend = open_backend(url, staged.session_id, params, create=False, lock_timeout_s=5.0)
    other = open_backend(url, staged.session_id, params, create=False, lock_timeout_s=5.0)
    try:
        expected = StageState()
        first = StageUpdate(0, 2, *fold_scores([0.2, 0.4], rule.smoothing), steps=7)
        after_first, ended = backend.update_stage(first)
        assert first.write_id != 0 and ended is None
        assert apply_stage_update(expected, first, rule) is None
        assert after_first == expected

        again, ended = backend.update_stage(first)  # same object: same write id
        assert (again, ended) == (after_first, None)
        assert backend.stage_state() == after_first

        # an update that ends the stage, sent twice: one transition; the retry learns it ended
        ending = StageUpdate(0, 4, *fold_scores([1.0] * 4, rule.smoothing), steps=5)
        after_end, ended = backend.update_stage(ending)
        assert ended == 0 and apply_stage_update(expected, ending, rule) == 0
        assert after_end == expected and (after_end.stage, after_end.transitions) == (1, 1)
        retried, ended = backend.update_stage(ending)
        assert (retried, ended) == (after_end, 0)
        assert backend.stage_state() == after_end

        # a new update applies; so does another client's update that happens to reuse the number
        late = StageUpdate(1, 1, *fold_scores([0.5], rule.smoothing), steps=2)
        after_late, ended = backend.update_stage(late)
        assert late.write_id != ending.write_id and ended is None
        apply_stage_update(expected, late, rule)
        assert after_late == expected
        foreign = StageUpdate(1, 1, *fold_scores([0.5], rule.smoothing), 2, write_id=late.write_id)
        after_foreign, _ = other.update_stage(foreign)
        apply_stage_update(expected, foreign, rule)
        assert after_foreign == expected
        assert after_foreign.total_steps == 7 + 5 + 2 + 2
        assert after_foreign.outcomes[:2] == [2 + 4, 1 + 1]

        # the staged curriculum's own handle reads the same record
        assert staged.stage_state() == after_foreign
        assert staged.stage == 1
    finally:
        backend.close()
        other.close()
        staged.close()


# -- 4. the inspection tools show the stage of the root pool only ---------------------------------


def _inspect_summary(capsys: pytest.CaptureFixture[str], url: str, session: str) -> dict:
    code = main(["inspect", "--url", url, "--session", session, "--json", "--view", "summary"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _lua_summary(url: str, session: str) -> dict[str, str]:
    parts = urlsplit(url)
    target = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    target += ["-n", parts.path.strip("/") or "0"]
    keys = session_keys(session)[:4]
    command = ["redis-cli", *target, "--eval", str(LUA_SUMMARY), *keys, ",", "tsv"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows and rows[0] == ["field", "value"], result.stdout
    return dict(rows[1:])


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="no redis-cli")
def test_inspect_shows_the_stage_of_the_root_pool(
    capsys: pytest.CaptureFixture[str],
    redis_url: str,
    sessions: list[tuple[str, str | None, int]],
) -> None:
    staged = new_staged(
        sessions, redis_url, "staged-inspect", write_batch_size=1, threshold=0.5, smoothing=0.5
    )
    try:
        before = _inspect_summary(capsys, redis_url, staged.session_id)
        assert (before["stage"], before["stage_name"], before["stage_transitions"]) == (
            0,
            staged.rule.names[0],
            0,
        )
        assert _lua_summary(redis_url, staged.session_id)["stage"] == "0"

        for _ in range(100):  # scores of 1.0 until the first stage ends
            task = staged.get_task()
            staged.update_task_performance(task.task_id, 1.0)
            if staged.stage == 1:
                break
        state = staged.stage_state()
        assert (state.stage, state.transitions) == (1, 1)

        data = _inspect_summary(capsys, redis_url, staged.session_id)
        assert data["stage"] == state.stage
        assert data["stage_name"] == staged.rule.names[state.stage] == staged.stage_name
        assert data["stage_transitions"] == state.transitions
        lua = _lua_summary(redis_url, staged.session_id)
        assert lua["session"] == staged.session_id
        assert lua["stage"] == str(state.stage)
        assert lua["stage_name"] == staged.rule.names[state.stage]
        assert lua["stage_transitions"] == str(state.transitions)

        for index in (1, 2):  # the other stages' pools hold no stage record of their own
            session = stage_session(staged.session_id, index)
            data = _inspect_summary(capsys, redis_url, session)
            assert data["session"] == session
            assert not {"stage", "stage_name", "stage_transitions"} & set(data)
            lua = _lua_summary(redis_url, session)
            assert lua["session"] == session
            assert not {"stage", "stage_name", "stage_transitions"} & set(lua)
    finally:
        staged.destroy()


# -- 5. a process attaching after a transition starts in the current stage ------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_late_worker_starts_in_the_current_stage(
    method: str, process_backend_url: str | None, sessions: list[tuple[str, str | None, int]]
) -> None:
    staged = new_staged(
        sessions,
        process_backend_url,
        "staged-late",
        n_stages=2,
        write_batch_size=1,
        threshold=0.5,
        smoothing=0.5,
    )
    try:
        for _ in range(100):
            task = staged.get_task()
            staged.update_task_performance(task.task_id, 1.0, steps=2)
            if staged.stage == 1:
                break
        staged.flush()
        before = staged.stage_state()
        assert (before.stage, before.transitions) == (1, 1)
        scheduled = [stage_pool(staged, i).stats()["curriculum/num_scheduled"] for i in (0, 1)]

        episodes = 5
        (report,) = run_workers(
            _attach_and_play, [(pickle.dumps(staged), episodes)], ctx=mp.get_context(method)
        )
        assert report["stages"] == [1] * episodes
        assert report["origins"] == [1] * episodes  # stage 1's generator made every task
        assert report["logged"] == 0  # the last stage never ends

        after = staged.stage_state()
        assert (after.stage, after.transitions) == (1, 1)
        assert after.outcomes[:2] == [before.outcomes[0], before.outcomes[1] + episodes]
        assert after.total_steps == before.total_steps + episodes
        now = [stage_pool(staged, i).stats()["curriculum/num_scheduled"] for i in (0, 1)]
        assert now == [scheduled[0], scheduled[1] + episodes]
    finally:
        staged.close()


# -- 6. a worker that exits without closing still counts its outcomes ----------------------------


@pytest.mark.parametrize(
    ("method", "transport"),
    [
        ("fork", "pickle"),
        ("spawn", "pickle"),
        ("fork", "inherit"),
    ],
    ids=["fork-pickled", "spawn", "fork-inherited"],
)
def test_a_worker_exiting_without_close_counts_its_buffered_outcomes(
    method: str,
    transport: str,
    process_backend_url: str | None,
    sessions: list[tuple[str, str | None, int]],
) -> None:
    staged = new_staged(sessions, process_backend_url, "staged-exit", n_stages=2)
    try:
        episodes = staged.config.stages[0].curriculum.write_batch_size - 3  # stays buffered
        handle = staged if transport == "inherit" else pickle.dumps(staged)
        (played,) = run_workers(_play_and_exit, [(handle, episodes)], ctx=mp.get_context(method))
        state = staged.stage_state()
        completed = stage_pool(staged, 0).stats()["curriculum/num_completed"]
        assert completed == played  # the stage pool got them at the worker's exit
        assert state.outcomes[0] == played  # and so must the stage record
        assert state.total_steps == 2 * played
    finally:
        staged.close()
