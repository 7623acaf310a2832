"""The PPO MiniGrid example without torch: its task family, env factory, episode log and table.

The real MiniGrid envs are used (the ``minigrid`` package is in the test extra): the tests check
that every task shares one observation space, that the impossible rooms are impossible by
construction, and that worker processes of an ``AsyncVectorEnv`` play the tasks of one shared
pool (a random policy stands in for PPO).
"""

from __future__ import annotations

import json
import sys
from collections import deque
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import episode_log  # noqa: E402
import minigrid_tasks  # noqa: E402
import summarize_runs  # noqa: E402
from minigrid.core.world_object import Door, Goal, Key  # noqa: E402

from curriculum import DiscreteRandomConfig, LearningProgressConfig  # noqa: E402
from curriculum.errors import ConfigError  # noqa: E402

Episode = episode_log.Episode


def task_ids_by_label(count: int = 600) -> dict[str, list[int]]:
    """Task ids 1..count grouped by the label the family's generator gives them."""
    generator = minigrid_tasks.task_generator().create()
    by_label: dict[str, list[int]] = {}
    for task_id in range(1, count + 1):
        by_label.setdefault(generator.generate(task_id).label, []).append(task_id)
    return by_label


# -- the task family ----------------------------------------------------------------------------


def test_family_has_every_label_and_a_third_of_tasks_impossible() -> None:
    by_label = task_ids_by_label()
    assert sorted(by_label) == sorted(minigrid_tasks.all_labels())
    impossible = sum(len(ids) for label, ids in by_label.items() if label.startswith("nokey"))
    assert 0.25 < impossible / 600 < 0.42
    assert minigrid_tasks.HARDEST_LABEL in by_label
    assert [minigrid_tasks.is_impossible_label(label) for label in minigrid_tasks.all_labels()] == [
        False,
        False,
        False,
        False,
        True,
        True,
    ]


def test_curriculum_config_selects_the_algorithm() -> None:
    lp = minigrid_tasks.curriculum_config("lp", seed=3)
    uniform = minigrid_tasks.curriculum_config("uniform", seed=3, backend_url="redis://h:1/0")
    assert isinstance(lp.algorithm_config, LearningProgressConfig)
    assert isinstance(uniform.algorithm_config, DiscreteRandomConfig)
    assert uniform.algorithm_config.backend_url == "redis://h:1/0"
    assert lp.seed == uniform.seed == 3
    with pytest.raises(ConfigError, match="'plr'"):
        minigrid_tasks.curriculum_config("plr", seed=0)


def test_every_task_has_the_same_observation_space() -> None:
    by_label = task_ids_by_label()
    curriculum = minigrid_tasks.curriculum_config("lp", seed=0).make()
    env = minigrid_tasks.make_env(curriculum)
    try:
        space = env.observation_space
        assert space.shape == (7, 7, 3)
        for label, ids in by_label.items():
            size = int(label.split(":")[1])
            obs, _ = env.reset(seed=1, options={"task_id": ids[0]})
            assert env.observation_space == space
            assert obs.shape == space.shape and space.contains(obs)
            assert env.unwrapped.width == env.unwrapped.height == size
            assert env.unwrapped.max_steps == 10 * size * size
    finally:
        env.close()
        curriculum.close()


def _reachable(env: minigrid_tasks.CurriculumDoorKeyEnv, target: type) -> bool:
    """Whether the agent can walk to an object of ``target`` type without opening a door."""
    grid = env.grid
    start = tuple(int(v) for v in env.agent_pos)
    seen, todo = {start}, deque([start])
    while todo:
        x, y = todo.popleft()
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if (nx, ny) in seen or not (0 <= nx < grid.width and 0 <= ny < grid.height):
                continue
            cell = grid.get(nx, ny)
            if isinstance(cell, target):
                return True
            if cell is None or (isinstance(cell, Door) and cell.is_open):
                seen.add((nx, ny))
                todo.append((nx, ny))
    return False


def _objects(env: minigrid_tasks.CurriculumDoorKeyEnv, kind: type) -> list[object]:
    grid = env.grid
    cells = (grid.get(i, j) for i in range(grid.width) for j in range(grid.height))
    return [cell for cell in cells if isinstance(cell, kind)]


@pytest.mark.parametrize("size", minigrid_tasks.IMPOSSIBLE_SIZES)
def test_rooms_without_a_key_are_impossible_by_construction(size: int) -> None:
    env = minigrid_tasks.CurriculumDoorKeyEnv()
    for seed in range(25):
        env.set_task({"label": "nokey", "size": size})
        env.reset(seed=seed)
        assert _objects(env, Key) == []
        doors = _objects(env, Door)
        assert len(doors) == 1 and doors[0].is_locked  # and no key anywhere to unlock it
        assert len(_objects(env, Goal)) == 1
        assert not _reachable(env, Goal)  # the locked door is the only way to the goal


@pytest.mark.parametrize("size", minigrid_tasks.SOLVABLE_SIZES)
def test_rooms_with_a_key_have_a_reachable_key(size: int) -> None:
    env = minigrid_tasks.CurriculumDoorKeyEnv()
    for seed in range(25):
        env.set_task({"label": "doorkey", "size": size})
        env.reset(seed=seed)
        assert len(_objects(env, Key)) == 1
        assert _reachable(env, Key)
        assert not _reachable(env, Goal)  # the door must be opened: the task is not trivial


def test_set_task_rejects_unknown_tasks() -> None:
    env = minigrid_tasks.CurriculumDoorKeyEnv()
    with pytest.raises(ValueError, match="'lava'"):
        env.set_task({"label": "lava", "size": 6})
    with pytest.raises(ValueError, match="got 3"):
        env.set_task({"label": "doorkey", "size": 3})


def test_success_score_is_one_only_for_a_positive_return() -> None:
    assert minigrid_tasks.success_score({}, 0.37) == 1.0
    assert minigrid_tasks.success_score({}, 0.0) == 0.0


# -- worker processes share one pool ------------------------------------------------------------


def test_vector_env_workers_play_one_shared_pool_with_a_random_policy() -> None:
    curriculum = minigrid_tasks.curriculum_config("lp", seed=5, num_active_tasks=8).make()
    collector = minigrid_tasks.EpisodeCollector(
        lambda task_id: curriculum.task_for_id(task_id).get_label()
    )
    envs = gym.vector.AsyncVectorEnv(
        [minigrid_tasks.env_factory(curriculum)] * 2,
        context="spawn",
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    rng = np.random.default_rng(0)
    try:
        obs, infos = envs.reset(seed=0)
        assert obs.shape == (2, 7, 7, 3)
        for step in range(1, 701):  # the longest episode (size 8) lasts 640 steps
            _, _, _, _, infos = envs.step(rng.integers(0, 7, size=2))
            collector.add(infos, env_step=2 * step)
    finally:
        envs.close()  # the workers flush their outcomes into the pool
    try:
        stats = curriculum.stats()
    finally:
        curriculum.close()
    episodes = collector.episodes
    assert len(episodes) >= 2
    assert stats["curriculum/num_completed"] == len(episodes)
    assert collector.overhead_s > 0.0
    for episode in episodes:
        size = int(episode.label.split(":")[1])
        assert episode.label in minigrid_tasks.all_labels()
        assert 1 <= episode.length <= 10 * size * size
        assert episode.success == (episode.episode_return > 0) == (episode.score == 1.0)
        assert not (minigrid_tasks.is_impossible_label(episode.label) and episode.success)
    assert "doorkey" in collector.recent_success() or "nokey" in collector.recent_success()


# -- the episode log, the run summary and the table ---------------------------------------------


def made_up_run(hard_wins_from: int) -> list[Episode]:
    """200 episodes: doorkey 8 succeeds from episode ``hard_wins_from`` on, nokey 5 never."""
    episodes = []
    for i in range(200):
        label = "doorkey|size:8" if i % 2 == 0 else "nokey|size:5"
        success = label == "doorkey|size:8" and i >= hard_wins_from
        episodes.append(
            Episode(
                env_step=100 * i + 50,
                task_id=7 if i % 2 == 0 else 9,
                label=label,
                score=float(success),
                success=success,
                episode_return=0.5 if success else 0.0,
                length=10 if success else 30,
            )
        )
    return episodes


def test_csv_round_trips(tmp_path: Path) -> None:
    episodes = made_up_run(100)
    episode_log.write_csv(tmp_path / "e.csv", episodes)
    assert episode_log.read_csv(tmp_path / "e.csv") == episodes
    (tmp_path / "bad.csv").write_text("step,score\n1,0.5\n")
    with pytest.raises(ValueError, match="header"):
        episode_log.read_csv(tmp_path / "bad.csv")


def test_run_figures() -> None:
    episodes = made_up_run(100)
    # doorkey 8 wins from episode 100 (step 10,050); a window of 10 of its episodes reaches 0.5
    # at its 5th win: episode 108, step 10,850.
    assert episode_log.steps_to_success(episodes, "doorkey|size:8", 0.5, window=10) == 10_850
    assert episode_log.steps_to_success(episodes, "doorkey|size:8", 1.0, window=10) == 11_850
    assert episode_log.steps_to_success(episodes, "nokey|size:5", 0.1, window=10) is None
    assert episode_log.steps_to_success(episodes[:10], "doorkey|size:8", 0.0, window=10) is None
    assert episode_log.final_success(episodes, "doorkey|size:8", since_step=15_000) == 1.0
    assert episode_log.final_success(episodes, "doorkey|size:5", since_step=0) != 0.0  # NaN
    episode_share, step_share = episode_log.impossible_share(
        episodes, minigrid_tasks.is_impossible_label
    )
    assert episode_share == 0.5
    assert step_share == pytest.approx(30 * 100 / (30 * 100 + 30 * 50 + 10 * 50))
    centres, success, share = episode_log.binned_by_label(
        episodes, ["doorkey|size:8", "nokey|size:5", "doorkey|size:5"], 20_000, bins=2
    )
    assert centres.tolist() == [5_000.0, 15_000.0]
    assert success[0].tolist() == [0.0, 1.0] and success[1].tolist() == [0.0, 0.0]
    assert np.isnan(success[2]).all()
    assert share[:2].tolist() == [[0.5, 0.5], [0.5, 0.5]]


def write_run(root: Path, algorithm: str, seed: int, episodes: list[Episode]) -> dict:
    run = root / f"{algorithm}-seed{seed}"
    run.mkdir(parents=True)
    summary = summarize_runs.run_summary(algorithm, seed, 8, "shm", episodes, 20_000, 40.0, 0.4)
    episode_log.write_csv(run / "episodes.csv", episodes)
    (run / "summary.json").write_text(json.dumps(summary))
    return summary


def test_summary_table_and_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lp = write_run(tmp_path, "lp", 1, made_up_run(100))
    write_run(tmp_path, "uniform", 1, made_up_run(400))  # doorkey 8 never succeeds
    assert lp["steps_to_success"]["0.5"] is not None
    assert lp["final_success"]["doorkey|size:5"] is None  # JSON null, not NaN
    assert lp["curriculum_us_per_step"] == pytest.approx(20.0)
    assert lp["steps_per_s"] == 500.0

    png = tmp_path / "curves.png"
    assert summarize_runs.main([str(tmp_path), "--png", str(png)]) == 0
    table = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| *"): line for line in table.splitlines()}
    assert "never" not in rows["lp seed 1"] and "never" in rows["uniform seed 1"]
    assert "1/1 runs" not in rows["lp mean"]  # one run: its own figure
    assert rows["lp seed 1"].endswith("| 40 | 500 | 20.0 | 1.00 |")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_needs_runs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no \*/summary\.json"):
        summarize_runs.load_runs(tmp_path)
