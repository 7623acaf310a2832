"""CurriculumEnv on multi-agent envs whose ``step`` returns per-agent arrays.

The rule under test: the episode ends when every agent is done (terminated or truncated, at any
step); the score is the mean of the agents' episode returns (each agent's rewards up to and
including its own last step), mapped by ``score_range``, or ``score_fn(info, mean_return)``.

``TeamEnv`` has ``num_agents`` agents: agent ``i`` is done after ``length + i`` steps (the last
one by truncation), each agent earns 1 per step while it plays and a bogus 5 per step after it
is done (which must not count).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import make_config

from backends.shared_memory import segment_path
from curriculum import BucketedTaskGenerator, Curriculum, CurriculumEnv, SingleTaskGenerator
from curriculum.env import INFO_KEY


def team_generator(lengths: list[int] | None = None) -> BucketedTaskGenerator.Config:
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "team", "length": 2}),
        buckets={"length": lengths or [2, 3, 4]},
    )


class TeamEnv(gym.Env):
    """``num_agents`` agents; per-agent rewards, terminations and truncations as arrays."""

    def __init__(self, num_agents: int = 3) -> None:
        self.num_agents = num_agents
        self.observation_space = gym.spaces.Box(0.0, 100.0, (num_agents, 1), np.float32)
        self.action_space = gym.spaces.MultiDiscrete([2] * num_agents)
        self.length = 2
        self.t = 0

    def set_task(self, cfg: dict[str, Any]) -> None:
        self.length = cfg["length"]

    def _obs(self) -> np.ndarray:
        return np.full((self.num_agents, 1), self.t, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> Any:
        self.t += 1
        ends = self.length + np.arange(self.num_agents)
        done_now = self.t >= ends
        was_done = self.t > ends
        rewards = np.where(was_done, 5.0, 1.0).astype(np.float32)
        last = np.arange(self.num_agents) == self.num_agents - 1
        terminated = done_now & ~last
        truncated = done_now & last
        return self._obs(), rewards, terminated, truncated, {}


def make_team_env(curriculum: Curriculum, num_agents: int = 3, **kwargs: Any) -> CurriculumEnv:
    kwargs.setdefault("score_range", (0.0, 10.0))
    kwargs.setdefault("stats_interval_s", 0.0)
    return CurriculumEnv(TeamEnv(num_agents), curriculum, **kwargs)


@pytest.fixture
def team(curricula: Callable[..., Curriculum]) -> Curriculum:
    return curricula(generator=team_generator(), num_active_tasks=6)


def test_episode_ends_when_every_agent_is_done(team: Curriculum) -> None:
    env = make_team_env(team)
    for _ in range(6):
        env.reset()
        length = env.task.get_env_cfg()["length"]
        for step in range(1, length + 3):
            _, rewards, *_, info = env.step(env.action_space.sample())
            assert rewards.shape == (3,)  # the caller still sees per-agent arrays
            assert (INFO_KEY in info) == (step == length + 2)
        # agent i played length + i steps at reward 1: mean return length + 1
        assert info[INFO_KEY]["score"] == pytest.approx((length + 1) / 10.0)
    assert env.reported_episodes == 6
    assert team.stats()["curriculum/num_completed"] == 6


def test_score_fn_gets_the_mean_return(team: Curriculum) -> None:
    returns: list[float] = []

    def score_fn(info: dict[str, Any], episode_return: float) -> float:
        returns.append(episode_return)
        return 0.25

    env = make_team_env(team, score_fn=score_fn)
    env.reset()
    length = env.task.get_env_cfg()["length"]
    while True:
        *_, info = env.step(env.action_space.sample())
        if INFO_KEY in info:
            break
    assert returns == [pytest.approx(length + 1)]
    assert info[INFO_KEY]["score"] == 0.25
    np.testing.assert_allclose(env.agent_returns, length + np.arange(3))


def test_a_single_agent_as_an_array_of_shape_one(team: Curriculum) -> None:
    env = make_team_env(team, num_agents=1)
    env.reset()
    length = env.task.get_env_cfg()["length"]
    for _ in range(length):
        *_, info = env.step(env.action_space.sample())
    assert info[INFO_KEY]["score"] == pytest.approx(length / 10.0)


def test_per_agent_arrays_that_change_shape_are_refused(team: Curriculum) -> None:
    class Shrinking(TeamEnv):
        def step(self, action: Any) -> Any:
            obs, rewards, terminated, truncated, info = super().step(action)
            cut = 3 if self.t == 1 else 2
            return obs, rewards[:cut], terminated[:cut], truncated[:cut], info

    env = CurriculumEnv(Shrinking(), team, score_range=(0.0, 10.0))
    env.reset()
    env.step(env.action_space.sample())
    with pytest.raises(ValueError, match=r"3 agents.*2"):
        env.step(env.action_space.sample())


# -- under PufferLib's vectorisation ------------------------------------------------------------


def make_puffer_team(curriculum: Curriculum, buf: Any = None, seed: int = 0) -> Any:
    """A PufferLib creator: the multi-agent CurriculumEnv as a native PufferLib env."""
    from curriculum.env_puffer import CurriculumPufferEnv

    return CurriculumPufferEnv(
        functools.partial(make_team_env, curriculum, stats_interval_s=600.0), buf=buf, seed=seed
    )


def _import_pufferlib_vector() -> Any:
    try:
        import pufferlib.vector
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("pufferlib-core is not installed (pip install -e '.[test]')")
        pytest.skip("pufferlib is an optional extra (pip install -e '.[puffer]')")
    return pufferlib.vector


@pytest.mark.parametrize("backend", ["Serial", "Multiprocessing"])
def test_multi_agent_env_under_pufferlib(backend: str) -> None:
    vector = _import_pufferlib_vector()
    curriculum = Curriculum(
        make_config(generator=team_generator([2]), num_active_tasks=4, write_batch_size=1)
    )
    try:
        workers = {"num_workers": 2} if backend == "Multiprocessing" else {}
        envs = vector.make(
            make_puffer_team,
            env_args=[curriculum],
            num_envs=2,
            backend=getattr(vector, backend),
            **workers,
        )
        assert envs.num_agents == 6  # 2 envs of 3 agents
        assert curriculum.stats()["curriculum/num_scheduled"] == 0
        try:
            envs.reset(seed=0)
            for _ in range(4 * 8):  # 8 episodes of 4 steps (length 2 + 2 agents) per env
                actions = np.zeros((envs.num_agents, 1), dtype=np.int64).reshape(-1)
                envs.step(actions)
        finally:
            envs.close()
            for process in getattr(envs, "processes", []):  # terminated, not joined, by close()
                process.join(timeout=30)
        stats = curriculum.stats()
        assert stats["curriculum/num_completed"] == 16
        assert stats["reward/mean"] == pytest.approx(0.3)  # mean return 3 of range (0, 10)
    finally:
        curriculum.close()
    # the workers were killed while attached; joined, they left the parent the last one out
    assert not segment_path(curriculum.session_id).exists()


def test_team_reward_and_shared_done_flags_broadcast(team: Curriculum) -> None:
    class TeamReward(TeamEnv):
        def step(self, action: Any) -> Any:
            obs, _, terminated, truncated, info = super().step(action)
            return obs, 2.0, terminated, truncated, info  # one reward for the whole team

    env = CurriculumEnv(TeamReward(), team, score_range=(0.0, 20.0), stats_interval_s=0)
    env.reset()
    length = env.task.get_env_cfg()["length"]
    for _ in range(length + 2):
        *_, info = env.step(env.action_space.sample())
    # agent i is rewarded 2 per step for its length + i steps: mean return 2 * (length + 1)
    assert info[INFO_KEY]["score"] == pytest.approx(2 * (length + 1) / 20.0)
