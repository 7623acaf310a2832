"""CurriculumEnv on real Gymnasium environments: CartPole (returns far outside [0, 1]) and
FrozenLake (built from its config: maps, sizes, slipperiness), alone and in vector envs.

Env factories live at module level: AsyncVectorEnv's ``spawn`` children import them again.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import make_config

from curriculum import BucketedTaskGenerator, Curriculum, CurriculumEnv, SingleTaskGenerator
from curriculum.env import INFO_KEY
from curriculum.errors import ConfigError, ScoreError

LAKES = [
    ["SFFF", "FHFH", "FFFH", "HFFG"],
    ["SFFF", "FFFF", "FFFF", "FFFG"],
    ["SHFF", "FHFF", "FFFH", "HFFG"],
]


def cartpole_generator() -> BucketedTaskGenerator.Config:
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(env={"label": "cartpole"}),
        buckets={"gravity": [9.8, 12.0]},
    )


def lake_generator(base: dict[str, Any] | None = None, **buckets: Any) -> Any:
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env=base or {"label": "lake", "desc": LAKES[0], "is_slippery": False}
        ),
        buckets=buckets or {"desc": LAKES, "is_slippery": [True, False]},
    )


def set_gravity(env: gym.Env, cfg: dict[str, Any]) -> None:
    env.unwrapped.gravity = cfg["gravity"]


def make_cartpole(curriculum: Curriculum, **kwargs: Any) -> CurriculumEnv:
    return CurriculumEnv(
        gym.make("CartPole-v1"), curriculum, apply_task=set_gravity, stats_interval_s=0, **kwargs
    )


def build_lake(env_cfg: dict[str, Any]) -> gym.Env:
    """The factory form: a fresh FrozenLake from the task's config."""
    kwargs = {k: v for k, v in env_cfg.items() if k != "label"}
    return gym.make("FrozenLake-v1", **kwargs)


def make_lake(curriculum: Curriculum, **kwargs: Any) -> CurriculumEnv:
    return CurriculumEnv(
        curriculum=curriculum, env_factory=build_lake, stats_interval_s=0, **kwargs
    )


def play_episode(env: gym.Env, **reset_kwargs: Any) -> dict[str, Any]:
    env.reset(**reset_kwargs)
    while True:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            return info


@pytest.fixture
def cartpole(curricula: Callable[..., Curriculum]) -> Curriculum:
    return curricula(generator=cartpole_generator(), num_active_tasks=4)


# -- 1. returns outside [0, 1] are never clipped silently ---------------------------------------


def test_cartpole_returns_outside_the_score_range_raise_with_the_fix(cartpole: Curriculum) -> None:
    env = make_cartpole(cartpole)
    env.action_space.seed(0)
    with pytest.raises(ScoreError) as info:
        play_episode(env, seed=0)
    message = str(info.value)
    for fix in ("score_range=(", "score_fn", "out_of_range='clip'"):
        assert fix in message, message
    assert cartpole.stats()["curriculum/num_completed"] == 0  # nothing steered on a bad score


def test_cartpole_with_its_return_range_scores_in_between(cartpole: Curriculum) -> None:
    env = make_cartpole(cartpole, score_range=(0.0, 500.0))
    env.action_space.seed(0)
    for seed in range(5):
        info = play_episode(env, seed=seed)
        assert 0.0 < info[INFO_KEY]["score"] < 0.5  # random actions: well under 250 steps
    assert env.clipped_scores == 0
    assert cartpole.stats()["curriculum/num_completed"] == 5


def test_clipping_on_request_warns_once_per_process(
    cartpole: Curriculum, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("curriculum.env_scores._warned_clipping", False)  # a fresh process
    envs = [make_cartpole(cartpole, out_of_range="clip") for _ in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for env in envs:
            for seed in range(3):
                assert play_episode(env, seed=seed)[INFO_KEY]["score"] == 1.0
    clipped = [w for w in caught if "clipped" in str(w.message)]
    assert len(clipped) == 1, [str(w.message) for w in caught]
    assert "score_range" in str(clipped[0].message)
    assert sum(env.clipped_scores for env in envs) == 6


def test_out_of_range_score_raises_in_a_vector_env(cartpole: Curriculum) -> None:
    envs = gym.vector.SyncVectorEnv([functools.partial(make_cartpole, cartpole)] * 2)
    envs.reset(seed=0)
    with pytest.raises(ScoreError, match="score_range"):
        for _ in range(600):
            envs.step(envs.action_space.sample())
    envs.close()


def test_invalid_out_of_range_mode(cartpole: Curriculum) -> None:
    with pytest.raises(ConfigError, match=r"out_of_range.*'raise'.*'clip'"):
        make_cartpole(cartpole, out_of_range="wrap")


# -- 3. envs built from the task's config -------------------------------------------------------


def test_factory_builds_each_task_from_its_config(curricula: Callable[..., Curriculum]) -> None:
    curriculum = curricula(generator=lake_generator(), num_active_tasks=6)
    env = make_lake(curriculum)
    assert env.observation_space == gym.spaces.Discrete(16)
    assert curriculum.stats()["curriculum/num_scheduled"] == 0  # construction drew nothing
    seen = set()
    for seed in range(30):
        play_episode(env, seed=seed)
        cfg = env.task.get_env_cfg()
        lake = env.unwrapped
        assert [b"".join(row).decode() for row in lake.desc] == cfg["desc"]
        slippery = lake.P[6][0][0][0] < 1.0  # a slippery lake moves where it wants
        assert slippery == cfg["is_slippery"]
        seen.add((tuple(cfg["desc"]), cfg["is_slippery"]))
    assert len(seen) >= 4
    assert curriculum.stats()["curriculum/num_completed"] == 30
    env.close()


def test_factory_rebuilds_only_when_the_config_changes(
    curricula: Callable[..., Curriculum],
) -> None:
    built: list[dict[str, Any]] = []

    def counting_factory(env_cfg: dict[str, Any]) -> gym.Env:
        built.append(env_cfg)
        return build_lake(env_cfg)

    curriculum = curricula(generator=lake_generator(desc=[LAKES[1]]), num_active_tasks=2)
    env = CurriculumEnv(curriculum=curriculum, env_factory=counting_factory)
    for seed in range(5):
        play_episode(env, seed=seed)
    # the reference env (task 0) and at most one env per distinct config
    assert len(built) == 1 + len({str(cfg) for cfg in built[1:]}) <= 3


def test_factory_env_is_seeded_from_the_first_reset(curricula: Callable[..., Curriculum]) -> None:
    curriculum = curricula(generator=lake_generator(is_slippery=[True]), num_active_tasks=1)

    def trajectory() -> list[int]:
        env = make_lake(curriculum)
        obs, _ = env.reset(seed=7)
        states = [int(obs)]
        for _ in range(40):
            obs, _, terminated, truncated, _ = env.step(2)
            states.append(int(obs))
            if terminated or truncated:
                obs, _ = env.reset()
                states.append(int(obs))
        return states

    assert trajectory() == trajectory()


def test_a_task_that_changes_the_observation_space_is_refused(
    curricula: Callable[..., Curriculum],
) -> None:
    generator = lake_generator({"label": "lake", "map_name": "4x4"}, map_name=["4x4", "8x8"])
    curriculum = curricula(generator=generator, num_active_tasks=8)
    env = make_lake(curriculum)
    with pytest.raises(ConfigError) as info:
        for _ in range(40):
            play_episode(env)
    message = str(info.value)
    assert "observation space" in message
    assert "Discrete(16)" in message and "Discrete(64)" in message
    # the task and its label; the reference task (id 0) has the other size
    reference = build_lake(curriculum.task_for_id(0).get_env_cfg()).observation_space
    other = "4x4" if reference == gym.spaces.Discrete(64) else "8x8"
    assert re.search(rf"task \d+ \(lake\|map_name:{other}\)", message), message
    assert curriculum.stats()["curriculum/num_failures"] == 1


def test_set_task_that_changes_the_spaces_is_refused(cartpole: Curriculum) -> None:
    def widen(env: gym.Env, cfg: dict[str, Any]) -> None:
        env.unwrapped.action_space = gym.spaces.Discrete(3)

    env = CurriculumEnv(gym.make("CartPole-v1"), cartpole, apply_task=widen)
    with pytest.raises(ConfigError, match=r"action space.*Discrete\(2\).*Discrete\(3\)"):
        env.reset()


def test_apply_task_may_take_the_task_id(cartpole: Curriculum) -> None:
    seen: list[tuple[float, int]] = []

    def apply(env: gym.Env, cfg: dict[str, Any], task_id: int) -> None:
        seen.append((cfg["gravity"], task_id))
        set_gravity(env, cfg)

    env = CurriculumEnv(gym.make("CartPole-v1"), cartpole, apply_task=apply)
    env.reset()
    assert seen == [(env.task.get_env_cfg()["gravity"], env.task_id)]
    env.reset(options={"task_id": 42})
    assert seen[-1][1] == 42


def test_factory_may_take_the_task_id(curricula: Callable[..., Curriculum]) -> None:
    ids: list[int] = []

    def factory(env_cfg: dict[str, Any], task_id: int) -> gym.Env:
        ids.append(task_id)
        return build_lake(env_cfg)

    curriculum = curricula(generator=lake_generator(), num_active_tasks=4)
    env = CurriculumEnv(curriculum=curriculum, env_factory=factory)
    env.reset()
    assert ids == [0, env.task_id]


def test_factory_and_env_are_exclusive(cartpole: Curriculum) -> None:
    with pytest.raises(ConfigError, match="env_factory"):
        CurriculumEnv(gym.make("CartPole-v1"), cartpole, env_factory=build_lake)
    with pytest.raises(ConfigError, match="env_factory"):
        CurriculumEnv(curriculum=cartpole)


def test_factory_form_in_async_vector_env(shared_lake: Curriculum) -> None:
    factory = functools.partial(make_lake, shared_lake)
    envs = gym.vector.AsyncVectorEnv([factory] * 2, context="spawn")
    try:
        assert shared_lake.stats()["curriculum/num_scheduled"] == 0
        envs.reset(seed=0)
        ended = 0
        for _ in range(60):
            _, _, terminated, truncated, _ = envs.step(envs.action_space.sample())
            ended += int((terminated | truncated).sum())
    finally:
        envs.close()
    assert ended > 3
    assert shared_lake.stats()["curriculum/num_completed"] == ended


@pytest.fixture
def shared_lake(process_backend_url: str | None) -> Any:
    curriculum = Curriculum(
        make_config(
            generator=lake_generator(), num_active_tasks=6, lp_backend_url=process_backend_url
        )
    )
    yield curriculum
    curriculum.close()


# -- 4. the terminal info's task id plays the task again -----------------------------------------


def test_terminal_task_id_round_trips_into_reset_options(
    curricula: Callable[..., Curriculum],
) -> None:
    curriculum = curricula(generator=lake_generator(), num_active_tasks=6)
    envs = gym.vector.SyncVectorEnv([functools.partial(make_lake, curriculum)] * 2)
    envs.reset(seed=0)
    for _ in range(200):
        *_, infos = envs.step(envs.action_space.sample())
        if INFO_KEY in infos:
            break
    payload = infos[INFO_KEY]
    index = int(np.flatnonzero(payload["_task_id"])[0])
    task_id = payload["task_id"][index]
    assert payload["task_id"].dtype == np.int64
    single = make_lake(curriculum)
    single.reset(options={"task_id": task_id})
    assert single.task_id == int(task_id)
    single.reset(options={"task_id": float(task_id)})  # an integral float is accepted
    assert single.task_id == int(task_id)
    with pytest.raises(ConfigError, match="forced"):
        single.reset(options={"task_id": 1.5})


def test_a_parameter_with_a_default_is_not_mistaken_for_the_task_id(cartpole: Curriculum) -> None:
    seen: list[Any] = []

    def apply(env: gym.Env, cfg: dict[str, Any], strict: Any = "unset") -> None:
        seen.append(strict)

    env = CurriculumEnv(gym.make("CartPole-v1"), cartpole, apply_task=apply)
    env.reset()
    assert seen == ["unset"]
