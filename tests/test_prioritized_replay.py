"""Prioritized Level Replay: rank prioritisation, staleness and priorities kept by the pool on
every backend, the explore/replay rule, the priority API, checkpoints of both layouts."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import _backend, nav_generator, remove_pool, unique_session
from test_staged import stage, staged_config
from workers import open_handle, run_workers

from backends.base import PoolSnapshot, WriteBatch
from backends.layout import LAYOUT_5_FIELDS, STRUCT_VERSION, empty_rows
from backends.shared_memory import META_INDEX, segment_path
from curriculum import (
    Curriculum,
    CurriculumConfig,
    CurriculumEnv,
    LearningProgressConfig,
    StagedCurriculum,
)
from curriculum.algorithm_config import DEFAULT_EMA
from curriculum.algorithms import make_algorithm
from curriculum.algorithms.prioritized_replay import (
    ReplayView,
    rank_weights,
    replay_probabilities,
    task_scores,
)
from curriculum.config import AlgorithmConfig
from curriculum.errors import ConfigError, PoolMismatchError, ScoreError
from curriculum.plr_config import PrioritizedLevelReplayConfig
from curriculum.view_cache import ViewCache

STATS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "stats.md"


@pytest.fixture(params=["shm", "fakeredis", "redis", "cluster"])
def url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Where the test's pool lives: /dev/shm (None), fakeredis, a real Redis or Cluster."""
    yield from _backend(request)


def plr_config(url: str | None = None, **fields: Any) -> CurriculumConfig:
    """A PLR curriculum on a fresh session; ``CurriculumConfig`` fields go in ``fields`` too."""
    names = set(PrioritizedLevelReplayConfig.model_fields) - {"num_active_tasks"}
    algo = {k: fields.pop(k) for k in list(fields) if k in names}
    algo.setdefault("session_id", unique_session("plr"))
    fields.setdefault("num_active_tasks", 8)
    return CurriculumConfig(
        task_generator=nav_generator(),
        algorithm_config=PrioritizedLevelReplayConfig(backend_url=url, **algo),
        **fields,
    )


def snapshot_of(rows: np.ndarray, num_scheduled: int) -> PoolSnapshot:
    return PoolSnapshot(0, rows, np.zeros(0), [], {"num_scheduled": num_scheduled})


def pool_rows(perf: list[float], outcomes: list[int], last_sampled: list[int]) -> np.ndarray:
    rows = empty_rows(len(perf))
    rows["task_id"] = np.arange(len(perf))
    rows["label_id"] = 0
    rows["perf"], rows["n_outcomes"], rows["last_sampled"] = perf, outcomes, last_sampled
    return rows


# -- the algorithm, pure ------------------------------------------------------------------------


def test_rank_prioritisation_orders_by_score_and_sharpens_with_lower_temperature() -> None:
    scores = np.array([0.1, 0.5, 0.3, 0.3])
    weights = rank_weights(scores, temperature=1.0)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] > weights[2] > weights[0]
    assert weights[2] == weights[3]  # tied scores share their best rank
    assert weights[1] / weights[2] == pytest.approx(2.0)  # (1/1) / (1/2)
    assert weights[1] / weights[0] == pytest.approx(4.0)  # rank 4: two tasks tie above it
    sharp = rank_weights(scores, temperature=0.1)
    assert sharp[1] / sharp[2] == pytest.approx(2.0**10)
    assert sharp[1] > weights[1]


def test_staleness_coefficient_mixes_in_the_draws_since_last_sampled() -> None:
    scores, stale = np.array([1.0, 0.0, 0.0]), np.array([0.0, 30.0, 10.0])
    only_staleness = PrioritizedLevelReplayConfig(staleness_coef=1.0)
    assert replay_probabilities(scores, stale, only_staleness).tolist() == [0.0, 0.75, 0.25]
    only_rank = PrioritizedLevelReplayConfig(staleness_coef=0.0, temperature=1.0)
    # ranks 1, 2, 2 (the tie shares rank 2): weights 1, 1/2, 1/2
    assert replay_probabilities(scores, stale, only_rank).tolist() == [0.5, 0.25, 0.25]
    mixed = replay_probabilities(scores, stale, PrioritizedLevelReplayConfig(staleness_coef=0.3))
    assert mixed.sum() == pytest.approx(1.0) and mixed[1] > mixed[2]


@pytest.mark.parametrize(
    ("function", "field", "value", "expected"),
    [
        ("learnability", "perf", 0.5, 0.25),
        ("learnability", "perf", 1.0, 0.0),
        ("progress", "fast", 0.7, 0.5),  # slow is 0.2
        ("score_variance", "reward_sq", 0.5, 0.25),  # reward is 0.5
        ("priority", "priority", -3.5, -3.5),
    ],
)
def test_score_functions(function: str, field: str, value: float, expected: float) -> None:
    rows = pool_rows([0.0], [4], [0])
    rows["slow"], rows["reward"], rows["n_priorities"] = 0.2, 0.5, 1
    rows[field] = value
    config = PrioritizedLevelReplayConfig(score_function=function)
    assert task_scores(rows, config)[0] == pytest.approx(expected)


def test_figures_over_the_seen_tasks_are_nan_while_none_is_seen() -> None:
    rows = pool_rows([0.0, 0.0], [0, 0], [0, 0])
    stats = make_algorithm(PrioritizedLevelReplayConfig()).view(snapshot_of(rows, 2)).extra_stats()
    assert stats["plr/num_seen"] == 0.0 and stats["plr/unseen_share"] == 1.0
    for key in ("mean_staleness", "max_staleness", "score_mean", "score_std", "score_max"):
        assert math.isnan(stats[f"plr/{key}"]), key


def test_draws_explore_each_unseen_task_once_then_evict_the_lowest_scoring() -> None:
    # slots 0-2 seen (perf 0.5 scores highest), slots 3-4 unseen
    rows = pool_rows([0.5, 0.9, 0.1, 0.0, 0.0], [3, 3, 2, 0, 0], [0, 4, 6, 8, 8])
    config = PrioritizedLevelReplayConfig(replay_prob=0.75, min_presentations_for_eviction=3)
    view = make_algorithm(config).view(snapshot_of(rows, 10))
    assert isinstance(view, ReplayView)
    assert view.explore_prob == 0.25
    assert sorted(view.unseen) == [3, 4]
    assert view.eviction_order == [1, 0]  # 0.09 < 0.25; slot 2 has too few outcomes
    assert view.probabilities[3:].sum() == pytest.approx(0.25)
    assert view.extra_stats()["plr/mean_staleness"] == pytest.approx((10 + 6 + 4) / 3)
    rng = np.random.default_rng(0)
    picks = [view.sample_slot(rng) for _ in range(400)]
    assert sorted(p for p in picks if p >= 3) == [3, 4]  # each new task explored once
    replayed = [p for p in picks if p < 3]
    assert replayed.count(0) > replayed.count(1) and replayed.count(0) > replayed.count(2)
    # with no unseen task left, an explore draw asks for an eviction, a replay draw does not
    asked = [view.wants_eviction(rng) for _ in range(400)]
    assert 0 < sum(asked) < 400
    assert view._pending is False  # a draw that did not ask for an eviction replays


def test_a_new_task_this_process_is_playing_is_not_explored_again() -> None:
    rows = pool_rows([0.5, 0.0, 0.0], [3, 0, 0], [0, 0, 0])  # task ids = slots
    algorithm = make_algorithm(PrioritizedLevelReplayConfig(replay_prob=0.0))
    rng = np.random.default_rng(1)
    view = algorithm.view(snapshot_of(rows, 3))
    view.running = {1: 1, 2: 1}  # both unseen tasks are in play here
    assert view.wants_eviction(rng)  # every draw explores, and no unseen task is free
    view = algorithm.view(snapshot_of(rows, 3))
    view.running = {1: 1}
    assert not view.wants_eviction(rng)
    assert view.sample_slot(rng) == 2
    assert view.wants_eviction(rng)
    view = algorithm.view(snapshot_of(rows, 3))
    view.running = {1: 1}
    assert [view.sample_slot(rng) for _ in range(3)] == [2, 0, 0]  # then replay


def test_a_task_whose_config_keeps_failing_is_evicted_even_on_replay_draws() -> None:
    rows = pool_rows([0.5, 0.4, 0.3], [3, 3, 3], [0, 0, 0])
    rows["n_failures"][2] = 3
    algorithm = make_algorithm(PrioritizedLevelReplayConfig(replay_prob=1.0))
    views = ViewCache(
        algorithm, capacity=3, max_age_s=1.0, refresh_after_outcomes=8, max_task_failures=3
    )
    view = views.score(snapshot_of(rows, 3))
    assert view.explore_prob == 0.0 and view.eviction_order[0] == 2
    rng = np.random.default_rng(0)
    assert view.wants_eviction(rng)  # the broken task goes first
    assert not any(view.wants_eviction(rng) for _ in range(50))  # then replay only


def test_without_seen_tasks_every_draw_explores() -> None:
    view = make_algorithm(PrioritizedLevelReplayConfig()).view(
        snapshot_of(pool_rows([0.0] * 3, [0] * 3, [0] * 3), 0)
    )
    assert view.explore_prob == 1.0 and view.eviction_order == []
    assert view.probabilities.tolist() == pytest.approx([1 / 3] * 3)


# -- config -------------------------------------------------------------------------------------


def test_config_defaults_validation_and_union() -> None:
    config = PrioritizedLevelReplayConfig()
    assert (config.temperature, config.staleness_coef, config.replay_prob) == (0.1, 0.1, 0.5)
    assert config.ema_params().priority_ema_alpha == 1.0
    assert PrioritizedLevelReplayConfig(score_ema_alpha=0.3).ema_params().priority_ema_alpha == 0.3
    assert LearningProgressConfig().ema_params() == DEFAULT_EMA  # the shared defaults agree
    for bad in (
        {"temperature": 0.0},
        {"staleness_coef": 1.5},
        {"replay_prob": -0.1},
        {"score_ema_alpha": 0.0},
        {"min_presentations_for_eviction": 0},
        {"score_function": "regret"},
    ):
        with pytest.raises(ConfigError):
            PrioritizedLevelReplayConfig(**bad)
    data = json.loads(plr_config().model_dump_json())
    assert data["algorithm_config"]["type"] == "prioritized_level_replay"
    again = CurriculumConfig.model_validate(data)
    assert isinstance(again.algorithm_config, PrioritizedLevelReplayConfig)
    assert PrioritizedLevelReplayConfig in AlgorithmConfig.__origin__.__args__  # type: ignore[attr-defined]


# -- the pool keeps staleness and priorities, on every backend ----------------------------------


@pytest.mark.parametrize("write_batch_size", [1, 64])
def test_the_share_of_first_plays_is_the_explore_share_whatever_the_batching(
    write_batch_size: int,
) -> None:
    """A task played here whose outcome still waits in this process's write queue looks unseen
    to the view; exploring it again would replay it. The share of draws that play a task for
    the first time must be ``1 - replay_prob`` with batched writes as with single ones."""
    config = plr_config(
        num_active_tasks=256,
        write_batch_size=write_batch_size,
        replay_prob=0.5,
        score_function="priority",
    )
    rng = np.random.default_rng(1)
    played: set[int] = set()
    first = 0
    with Curriculum(config) as curriculum:
        for _ in range(4000):
            task = curriculum.get_task()
            first += task.task_id not in played
            played.add(task.task_id)
            curriculum.update_task_performance(task.task_id, rng.random(), priority=rng.random())
        assert curriculum.stats()["plr/explore_share"] == 0.5
    assert 0.45 <= first / 4000 <= 0.58, f"{first / 4000:.3f} of draws played a new task"


def test_staleness_grows_for_unsampled_tasks_and_resets_when_sampled(url: str | None) -> None:
    config = plr_config(url, num_active_tasks=4)
    with Curriculum(config) as cur:
        backend = cur.backend
        label = backend.intern_label("x")
        slots = [backend.create_task(t, label, backend.reserve_sequence()) for t in (11, 12)]
        rows = backend.snapshot().rows
        assert rows["last_sampled"][slots].tolist() == [0, 0]
        batch = WriteBatch()
        batch.add_sample(slots[0], 11, label)
        batch.add_sample(slots[0], 11, label)
        backend.record(batch)
        snapshot = backend.snapshot()
        assert snapshot.counters["num_scheduled"] == 2
        assert snapshot.rows["last_sampled"][slots].tolist() == [2, 0]  # task 12: stale by 2
        batch = WriteBatch()
        batch.add_sample(slots[1], 12, label)
        backend.record(batch)
        third = backend.create_task(13, label, backend.reserve_sequence())
        rows = backend.snapshot().rows
        assert rows["last_sampled"][[*slots, third]].tolist() == [2, 3, 3]  # new: now
        view = make_algorithm(config.algorithm_config).view(backend.snapshot())
        assert view.extra_stats()["plr/num_seen"] == 0.0  # samples alone do not make seen
        cur.destroy()


def test_priorities_are_folded_per_task_on_every_backend(url: str | None) -> None:
    config = plr_config(url, num_active_tasks=4, score_ema_alpha=0.5, score_function="priority")
    with Curriculum(config) as cur:
        task = cur.get_task()
        for priority in (4.0, 2.0, None, -2.0):
            cur.update_task_performance(task.task_id, 0.5, priority=priority)
        cur.flush()
        row = cur.backend.snapshot().rows
        row = row[row["task_id"] == task.task_id][0]
        assert row["n_priorities"] == 3 and row["n_outcomes"] == 4
        assert row["priority"] == (4.0 + 0.5 * (2.0 - 4.0)) + 0.5 * (-2.0 - 3.0)
        assert cur.stats()["plr/num_seen"] == 1.0
        cur.destroy()


def _prioritise(index: int, handle: Any, rounds: int) -> dict[int, list[float]]:
    """Play ``rounds`` episodes, each with a priority unique to this worker and round."""
    cur = open_handle(handle)
    sent: dict[int, list[float]] = {}
    for i in range(rounds):
        task = cur.get_task()
        priority = float(index * 100_000 + i)
        cur.update_task_performance(task.task_id, 0.5, priority=priority)
        sent.setdefault(task.task_id, []).append(priority)
    cur.close()
    return sent


@pytest.mark.parametrize("where", ["shm", "redis"])
def test_priorities_from_four_processes_are_all_counted(where: str, request) -> None:
    url = None if where == "shm" else request.getfixturevalue("redis_url")
    # replay only once tasks are seen: no evictions, so every priority stays in a live row
    config = plr_config(url, replay_prob=1.0, score_function="priority", write_batch_size=16)
    session = config.algorithm_config.session_id
    try:
        with Curriculum(config) as cur:
            reports = run_workers(
                _prioritise, [(cur, 1500) for _ in range(4)], ctx=mp.get_context("fork")
            )
            snapshot = cur.backend.snapshot()
            assert snapshot.counters["num_evicted"] == 0
            rows = snapshot.rows[snapshot.rows["task_id"] >= 0]
            sent: dict[int, list[float]] = {}
            for report in reports:
                for task_id, values in report.items():
                    sent.setdefault(task_id, []).extend(values)
            assert int(rows["n_priorities"].sum()) == 4 * 1500
            for row in rows:
                values = sent.get(int(row["task_id"]), [])
                assert row["n_priorities"] == len(values) == row["n_outcomes"]
                if values:  # the newest priority of some process (alpha 1.0 replaces)
                    assert row["priority"] in values
            assert len(rows) == 8 and snapshot.counters["num_scheduled"] == 4 * 1500
    finally:
        remove_pool(session, url)


# -- the public API -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "words"),
    [
        (float("nan"), "not finite"),
        (float("inf"), "not finite"),
        ("high", "not a number"),
        (True, "is a bool"),
        (1e31, "beyond"),
    ],
)
def test_bad_priorities_raise_and_record_nothing(priority: Any, words: str) -> None:
    with Curriculum(plr_config(score_function="priority")) as cur:
        task = cur.get_task()
        with pytest.raises(ScoreError, match=words):
            cur.update_task_performance(task.task_id, 0.5, priority=priority)
        with pytest.raises(ScoreError, match=words):
            cur.update_task_performance_batch([task.task_id], [0.5], priorities=[priority])
        with pytest.raises(ScoreError, match="1 task ids but 2 priorities"):
            cur.update_task_performance_batch([task.task_id], [0.5], priorities=[1.0, 2.0])
        cur.flush()
        assert cur.stats()["curriculum/num_completed"] == 0


def test_a_priority_the_algorithm_does_not_read_is_stored_and_said_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import curriculum.priority_notes as notes

    monkeypatch.setattr(notes, "_said", set())
    config = CurriculumConfig(
        task_generator=nav_generator(),
        num_active_tasks=4,
        algorithm_config=LearningProgressConfig(session_id=unique_session("lp-prio")),
    )
    with caplog.at_level(logging.WARNING, "curriculum"), Curriculum(config) as cur:
        for _ in range(3):
            task = cur.get_task()
            cur.update_task_performance(task.task_id, 0.5, priority=1.5)
        cur.update_task_performance_batch([task.task_id], [0.5], priorities=[2.5])
        cur.flush()
        rows = cur.backend.snapshot().rows
        assert int(rows["n_priorities"].sum()) == 4
    said = [r for r in caplog.records if "does not read priorities" in r.getMessage()]
    assert len(said) == 1 and "learning_progress" in said[0].getMessage()


def test_outcomes_without_priority_under_priority_scoring_are_said_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import curriculum.priority_notes as notes

    monkeypatch.setattr(notes, "_said", set())
    config = plr_config(score_function="priority")
    with caplog.at_level(logging.WARNING, "curriculum"), Curriculum(config) as cur:
        for _ in range(3):
            cur.update_task_performance(cur.get_task().task_id, 0.5)
    said = [r for r in caplog.records if "without a priority" in r.getMessage()]
    assert len(said) == 1


def test_plr_stats_keys_are_documented() -> None:
    documented = set(re.findall(r"`([a-z_]+(?:/[<>a-z_]+)+)`", STATS_PAGE.read_text()))
    with Curriculum(plr_config()) as cur:
        for _ in range(40):
            cur.update_task_performance(cur.get_task().task_id, 0.5)
        keys = {k for k in cur.stats() if k.startswith("plr/")}
    assert keys and not keys - documented, sorted(keys - documented)


# -- checkpoints and layouts --------------------------------------------------------------------


def _played(url: str | None = None, **fields: Any) -> Curriculum:
    cur = Curriculum(plr_config(url, score_function="priority", **fields))
    rng = np.random.default_rng(3)
    for _ in range(200):
        task = cur.get_task()
        cur.update_task_performance(task.task_id, float(rng.random()), priority=rng.normal())
    cur.flush()
    return cur


def test_checkpoints_keep_staleness_and_priorities(url: str | None) -> None:
    with _played(url) as source:
        state = json.loads(json.dumps(source.get_state()))
        before = source.backend.snapshot()
        config = source.config.model_copy(
            update={
                "algorithm_config": source.config.algorithm_config.model_copy(
                    update={"session_id": unique_session("plr-copy")}
                )
            }
        )
    with Curriculum(config) as target:
        target.load_state(state)
        after = target.backend.snapshot()
        target.destroy()
    assert (before.rows["n_priorities"] > 0).any()
    for field in LAYOUT_5_FIELDS:
        assert np.array_equal(before.rows[field], after.rows[field]), field


def test_a_checkpoint_of_the_previous_layout_loads_with_the_new_fields_defaulted() -> None:
    with _played() as source:
        state = json.loads(json.dumps(source.get_state()))
        before = source.backend.snapshot()
        config = source.config
    # the same checkpoint as layout 4 wrote it: no new row fields, no priority rate
    assert state["params"]["struct_version"] == STRUCT_VERSION == 5
    state["params"]["struct_version"] = 4
    del state["params"]["ema"]["priority_ema_alpha"]
    for field in LAYOUT_5_FIELDS:
        del state["rows"][field]
    with Curriculum(config) as target:
        target.load_state(state)
        after = target.backend.snapshot()
        scheduled = after.counters["num_scheduled"]
        live = after.rows["task_id"] >= 0
        assert scheduled == before.counters["num_scheduled"] > 0
        assert (after.rows["last_sampled"][live] == scheduled).all()
        assert (after.rows["priority"] == 0).all() and (after.rows["n_priorities"] == 0).all()
        for field in ("task_id", "n_outcomes", "perf", "fast", "reward_sq"):
            assert np.array_equal(before.rows[field], after.rows[field]), field
        target.get_task()  # and the pool goes on
    state["params"]["struct_version"] = 3
    with Curriculum(config) as target, pytest.raises(Exception, match="layout version 3"):
        target.load_state(state)


@pytest.mark.parametrize("where", ["shm", "redis"])
def test_a_pool_of_the_previous_layout_is_refused_with_the_fix(where: str, request) -> None:
    url = None if where == "shm" else request.getfixturevalue("redis_url")
    config = plr_config(url)
    session = config.algorithm_config.session_id
    with Curriculum(config) as cur:
        if url is None:
            fd = os.open(segment_path(session), os.O_RDWR)
            offset = 8 * META_INDEX["struct_version"]
            os.pwrite(fd, (4).to_bytes(8, "little", signed=True), offset)
        else:
            cur.backend._client.hset(cur.backend._pool_keys.meta, "struct_version", 4)  # type: ignore[attr-defined]
        with pytest.raises(PoolMismatchError, match="layout version 4") as raised:
            Curriculum(config)
        assert ("remove it with" if url else "curriculum shm clean") in str(raised.value)
        if url is None:
            os.pwrite(fd, STRUCT_VERSION.to_bytes(8, "little", signed=True), offset)
            os.close(fd)
        cur.destroy()
    remove_pool(session, url)


class PriorityEnv(gym.Env):
    """One-step episodes whose terminal info carries a score and a priority."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, priority: Any) -> None:
        self.priority = priority

    def set_task(self, cfg: dict[str, Any]) -> None:
        pass

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        info = {"score": 0.5, "priority": self.priority}
        return np.zeros(1, dtype=np.float32), 1.0, True, False, info


def test_curriculum_env_reports_the_terminal_info_priority() -> None:
    with Curriculum(plr_config(score_function="priority", write_batch_size=1)) as cur:
        env = CurriculumEnv(PriorityEnv(7.25), cur)
        for _ in range(3):
            env.reset()
            env.step(0)
        rows = cur.backend.snapshot().rows
        assert int(rows["n_priorities"].sum()) == 3
        assert set(rows["priority"][rows["n_priorities"] > 0].tolist()) == {7.25}
        bad = CurriculumEnv(PriorityEnv(float("nan")), cur)
        bad.reset()
        with pytest.raises(ScoreError, match="priority nan"):
            bad.step(0)


def test_staged_curricula_pass_priorities_to_their_stage_pools() -> None:
    plr = PrioritizedLevelReplayConfig(score_function="priority")
    config = staged_config(
        stages=[stage("easy", algorithm_config=plr), stage("hard", algorithm_config=plr)]
    )
    with StagedCurriculum(config) as cur:
        task = cur.get_task()
        cur.update_task_performance(task.task_id, 0.5, priority=3.0)
        other = cur.get_task()
        cur.update_task_performance_batch(
            [task.task_id, other.task_id], [0.5, 0.5], priorities=[1.0, 2.0]
        )
        with pytest.raises(ScoreError, match="priority inf"):
            cur.update_task_performance_batch([task.task_id], [0.5], priorities=[float("inf")])
        with pytest.raises(ScoreError, match="1 task ids but 0 priorities"):
            cur.update_task_performance_batch([task.task_id], [0.5], priorities=[])
        cur.flush()
        counts = {}
        for index in range(2):
            rows = cur._stage(index).backend.snapshot().rows
            for row in rows[rows["n_priorities"] > 0]:
                counts[int(row["task_id"])] = (int(row["n_priorities"]), float(row["priority"]))
        cur.destroy()
    expected = {task.task_id: (2, 1.0)}
    expected[other.task_id] = (1, 2.0) if other.task_id != task.task_id else (3, 2.0)
    assert counts == expected
