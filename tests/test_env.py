"""CurriculumEnv: one task per episode, one outcome per finished episode, in vector envs too.

The toy env is deterministic: an episode lasts ``length`` steps (from the task's config), pays
reward 1 per step, and (unless told otherwise) puts ``info["score"] = 1 - difficulty`` into the
terminal info; tasks of difficulty 0.8 end by truncation, the others by termination. Env
factories live at module level: ``spawn`` children import them again.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import make_config, unique_session

from backends.layout import stored_label
from backends.shared_memory import segment_path
from curriculum import (
    BucketedTaskGenerator,
    Curriculum,
    CurriculumConfig,
    CurriculumEnv,
    CurriculumStage,
    CurriculumTask,
    SingleTaskGenerator,
    Span,
    StagedCurriculum,
    StagedCurriculumConfig,
)
from curriculum.env import INFO_KEY, INFO_KEYS
from curriculum.env_info import terminal_info
from curriculum.errors import ConfigError, ScoreError

NEXT_STEP = gym.vector.AutoresetMode.NEXT_STEP
SAME_STEP = gym.vector.AutoresetMode.SAME_STEP


def toy_generator(lengths: Any = None) -> BucketedTaskGenerator.Config:
    """Labels like ``toy|length:3|difficulty:0.5``."""
    return BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": "toy", "length": 1, "difficulty": 0.0}
        ),
        buckets={"length": lengths or Span(1, 4), "difficulty": [0.2, 0.5, 0.8]},
    )


class ToyEnv(gym.Env):
    """Episodes of ``cfg["length"]`` steps, reward 1 per step, score ``1 - difficulty``."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, emit_score: bool = True) -> None:
        self.emit_score = emit_score
        self.cfg: dict[str, Any] | None = None
        self.t = 0
        self.resets = 0
        self.last_options: dict[str, Any] | None = None

    def set_task(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        assert self.cfg is not None, "reset before set_task"
        self.t = 0
        self.resets += 1
        self.last_options = options
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self.cfg is not None
        self.t += 1
        done = self.t >= self.cfg["length"]
        truncating = self.cfg["difficulty"] == 0.8
        info: dict[str, Any] = {"t": self.t}
        if done and self.emit_score:
            info["score"] = 1.0 - self.cfg["difficulty"]
        return (
            np.zeros(1, dtype=np.float32),
            1.0,
            done and not truncating,
            done and truncating,
            info,
        )


class SetEnvCfgEnv(ToyEnv):
    """Configured through ``set_env_cfg`` instead of ``set_task``."""

    set_task = None  # type: ignore[assignment]

    def set_env_cfg(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg


class PlainEnv(ToyEnv):
    """Has no method to apply a task."""

    set_task = None  # type: ignore[assignment]


def make_toy_env(
    curriculum: Curriculum, stats_interval_s: float = 0.0, **kwargs: Any
) -> CurriculumEnv:
    """The picklable factory of the docs: ``functools.partial(make_toy_env, curriculum)``."""
    return CurriculumEnv(ToyEnv(), curriculum, stats_interval_s=stats_interval_s, **kwargs)


def make_puffer_env(curriculum: Curriculum, buf: Any = None, seed: int = 0) -> Any:
    """A PufferLib creator: called as ``creator(*args, buf=..., seed=...)``."""
    import pufferlib.emulation

    return pufferlib.emulation.GymnasiumPufferEnv(
        env_creator=functools.partial(make_toy_env, curriculum), buf=buf, seed=seed
    )


@pytest.fixture
def toy_curricula(curricula: Callable[..., Curriculum]) -> Callable[..., Curriculum]:
    """``curricula`` (every backend) with the toy generator by default."""

    def build(**fields: Any) -> Curriculum:
        fields.setdefault("generator", toy_generator())
        fields.setdefault("num_active_tasks", 8)
        return curricula(**fields)

    return build


def play(env: CurriculumEnv, steps: int) -> tuple[int, int]:
    """Step ``env`` (resetting after each episode); ``(episodes ended, resets)``."""
    env.reset(seed=0)
    ended, resets = 0, 1
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            ended += 1
            if i < steps - 1:
                env.reset()
                resets += 1
    return ended, resets


def check_terminal_info(payload: dict[str, Any]) -> None:
    assert tuple(payload) == INFO_KEYS
    assert type(payload["task_id"]) is np.int64, payload
    assert all(type(v) is float for k, v in payload.items() if k != "task_id"), payload


# -- one outcome per finished episode -----------------------------------------------------------


def test_one_outcome_per_finished_episode(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula()
    env = make_toy_env(curriculum)
    ended, resets = play(env, 41)
    assert env.reported_episodes == ended
    # one more step: it may end the running episode (reported once), continue it, or come
    # after the end without a reset (passed through): at most one more report, only at an end
    _, _, terminated, truncated, _ = env.step(0)
    extra = env.reported_episodes - ended
    assert extra == 0 or (extra == 1 and (terminated or truncated))
    stats = curriculum.stats()
    assert ended > 5
    assert stats["curriculum/num_completed"] == ended + extra
    assert stats["curriculum/num_scheduled"] == resets
    env.close()


def test_unfinished_episode_reports_nothing(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula(generator=toy_generator(lengths=[5]))
    env = make_toy_env(curriculum)
    env.reset()
    for _ in range(4):
        _, _, terminated, truncated, info = env.step(0)
        assert not (terminated or truncated)
        assert INFO_KEY not in info
    assert curriculum.stats()["curriculum/num_completed"] == 0
    assert env.reported_episodes == 0


def test_step_after_the_end_does_not_report_twice(
    toy_curricula: Callable[..., Curriculum],
) -> None:
    curriculum = toy_curricula(generator=toy_generator(lengths=[2]))
    env = make_toy_env(curriculum)
    env.reset()
    env.step(0)
    *_, info = env.step(0)
    assert INFO_KEY in info
    for _ in range(3):
        *_, info = env.step(0)
        assert INFO_KEY not in info
    assert curriculum.stats()["curriculum/num_completed"] == 1
    assert env.reported_episodes == 1


def test_info_only_on_terminal_steps_and_numeric(
    toy_curricula: Callable[..., Curriculum],
) -> None:
    curriculum = toy_curricula()
    env = make_toy_env(curriculum)
    _, reset_info = env.reset(seed=3)
    assert INFO_KEY not in reset_info
    episodes = 0
    while episodes < 6:
        _, _, terminated, truncated, info = env.step(1)
        if not (terminated or truncated):
            assert INFO_KEY not in info
            continue
        episodes += 1
        payload = info[INFO_KEY]
        check_terminal_info(payload)
        assert payload["task_id"] == env.task_id
        assert payload["score"] == pytest.approx(1.0 - env.unwrapped.cfg["difficulty"])
        assert payload["stage"] == 0.0
        label = env.task.get_label()
        stats = curriculum.stats()  # stats_interval_s=0: the figures are current
        assert payload["label_completions"] == stats[f"label/{label}/completions"] >= 1.0
        assert payload["label_samples"] == stats[f"label/{label}/samples"] >= 1.0
        for figure in ("evictions", "failures", "mean_reward", "success_rate", "mean_lp"):
            assert payload[f"label_{figure}"] == stats[f"label/{label}/{figure}"], figure
        _, reset_info = env.reset()
        assert INFO_KEY not in reset_info


# -- construction is free, close leaves the curriculum open -------------------------------------


def test_construction_touches_no_pool(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula()
    envs = [make_toy_env(curriculum) for _ in range(3)]
    for env in envs:
        env.close()
    stats = curriculum.stats()
    assert stats["curriculum/num_created"] == 0
    assert stats["curriculum/num_scheduled"] == 0
    assert stats["curriculum/num_active_tasks"] == 0
    with pytest.raises(gym.error.ResetNeeded):
        make_toy_env(curriculum).step(0)


def test_close_keeps_the_curriculum_open(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula(write_batch_size=1000)
    env = make_toy_env(curriculum)
    ended, _ = play(env, 10)
    env.close()
    curriculum.get_task()  # still usable
    assert curriculum.stats()["curriculum/num_completed"] == ended


def test_factory_pickles() -> None:
    curriculum = Curriculum(make_config(generator=toy_generator(), num_active_tasks=8))
    try:
        factory = pickle.loads(pickle.dumps(functools.partial(make_toy_env, curriculum)))
        env = factory()
        env.reset()
        assert env.task_id is not None
        env.close()
        factory.args[0].close()
        assert curriculum.stats()["curriculum/num_scheduled"] == 1
    finally:
        curriculum.close()


# -- applying tasks -----------------------------------------------------------------------------


def test_set_env_cfg_and_apply_task(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula()
    env = CurriculumEnv(SetEnvCfgEnv(), curriculum)
    env.reset()
    assert env.unwrapped.cfg == env.task.get_env_cfg()

    applied: list[Any] = []

    def apply(inner: gym.Env, cfg: Any) -> None:
        applied.append(cfg)
        inner.unwrapped.cfg = cfg

    env = CurriculumEnv(gym.wrappers.TimeLimit(PlainEnv(), 50), curriculum, apply_task=apply)
    env.reset()
    assert applied == [env.task.get_env_cfg()]


def test_env_without_a_task_method_is_refused() -> None:
    curriculum = Curriculum(make_config(generator=toy_generator(), num_active_tasks=8))
    try:
        with pytest.raises(ConfigError, match=r"PlainEnv.*set_task"):
            CurriculumEnv(gym.wrappers.TimeLimit(PlainEnv(), 10), curriculum)
        assert curriculum.stats()["curriculum/num_created"] == 0
    finally:
        curriculum.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"score_range": (1.0, 1.0)}, {"score_range": (0.0, math.inf)}, {"max_task_attempts": 0}],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    curriculum = Curriculum(make_config(generator=toy_generator(), num_active_tasks=8))
    try:
        with pytest.raises(ConfigError):
            CurriculumEnv(ToyEnv(), curriculum, **kwargs)
    finally:
        curriculum.close()


def test_failing_config_is_reported_and_another_task_tried(
    toy_curricula: Callable[..., Curriculum],
) -> None:
    curriculum = toy_curricula()
    tried: list[dict[str, Any]] = []

    def apply(inner: gym.Env, cfg: dict[str, Any]) -> None:
        tried.append(cfg)
        if len(tried) <= 2:
            raise ValueError("cannot build this map")
        inner.unwrapped.set_task(cfg)

    env = CurriculumEnv(ToyEnv(), curriculum, apply_task=apply, max_task_attempts=3)
    env.reset()
    assert len(tried) == 3
    assert env.unwrapped.cfg == env.task.get_env_cfg() == tried[-1]
    assert env.task_failures == 2
    stats = curriculum.stats()
    assert stats["curriculum/num_failures"] == 2
    assert stats["curriculum/num_scheduled"] == 3


def test_repeated_failures_raise_a_clear_error(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula()

    def apply(inner: gym.Env, cfg: dict[str, Any]) -> None:
        raise RuntimeError("broken map")

    env = CurriculumEnv(ToyEnv(), curriculum, apply_task=apply, max_task_attempts=3)
    with pytest.raises(
        ConfigError, match=r"3 task\(s\).*last: task \d+: RuntimeError: broken"
    ) as info:
        env.reset()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert env.task_failures == 3
    stats = curriculum.stats()
    assert stats["curriculum/num_failures"] == 3
    assert stats["curriculum/num_scheduled"] == 3
    with pytest.raises(gym.error.ResetNeeded):  # the failed reset left no episode to step
        env.step(0)


def test_config_that_fails_to_build_is_reported(
    toy_curricula: Callable[..., Curriculum], monkeypatch: pytest.MonkeyPatch
) -> None:
    curriculum = toy_curricula()
    build = CurriculumTask.get_env_cfg
    failed: list[int] = []

    def get_env_cfg(task: CurriculumTask) -> Any:
        if not failed:
            failed.append(task.task_id)
            raise KeyError("difficulty")
        return build(task)

    monkeypatch.setattr(CurriculumTask, "get_env_cfg", get_env_cfg)
    env = make_toy_env(curriculum)
    env.reset()
    assert env.task_failures == 1
    assert env.unwrapped.cfg == build(env.task)
    assert curriculum.stats()["curriculum/num_failures"] == 1


# -- forced tasks -------------------------------------------------------------------------------


def test_options_task_id_plays_that_task(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula()
    generated = curriculum.config.task_generator.create().generate(12345)
    env = make_toy_env(curriculum)
    env.reset(seed=1, options={"task_id": 12345, "other": 7})
    assert env.unwrapped.cfg == generated.env_cfg
    assert env.unwrapped.last_options == {"other": 7}
    assert env.task_id == 12345 and env.task is None
    while True:
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    payload = info[INFO_KEY]
    check_terminal_info(payload)
    assert payload["task_id"] == 12345
    assert payload["score"] == pytest.approx(1.0 - generated.env_cfg["difficulty"])
    stats = curriculum.stats()
    assert stats["curriculum/num_scheduled"] == 0  # evaluation: neither drawn nor reported
    assert stats["curriculum/num_completed"] == 0
    env.reset()  # the next reset draws from the curriculum again
    assert env.task is not None
    assert curriculum.stats()["curriculum/num_scheduled"] == 1


def test_invalid_forced_task_id(toy_curricula: Callable[..., Curriculum]) -> None:
    env = make_toy_env(toy_curricula())
    with pytest.raises(ConfigError, match="forced"):
        env.reset(options={"task_id": -1})
    with pytest.raises(ConfigError, match=r"options\['stage'\] applies to a StagedCurriculum"):
        env.reset(options={"task_id": 7, "stage": 0})


def test_a_forced_task_of_an_earlier_stage_plays_in_that_stage(backend_url) -> None:
    """After the switch, replaying a task id from an earlier episode's info plays that task
    (in its own stage's generator), with or without ``options["stage"]``."""
    stages = [
        CurriculumStage(
            name=name,
            curriculum=CurriculumConfig(
                task_generator=toy_generator(lengths), num_active_tasks=4, write_batch_size=1
            ),
        )
        for name, lengths in (("short", [1]), ("long", [3]))
    ]
    config = StagedCurriculumConfig(
        stages=stages,
        transition_criteria="time",
        time_threshold_steps=4,
        session_id=unique_session("replay"),
        backend_url=backend_url,
    )

    def to_the_end(env: CurriculumEnv) -> dict[str, Any]:
        while True:
            _, _, terminated, truncated, info = env.step(0)
            if terminated or truncated:
                return info[INFO_KEY]

    with StagedCurriculum(config) as curriculum:
        env = CurriculumEnv(ToyEnv(), curriculum, stats_interval_s=0.0)
        first = finish_episode(env)[INFO_KEY]
        assert first["stage"] == 0.0
        played = dict(env.unwrapped.cfg)
        for _ in range(4):
            finish_episode(env)
        assert curriculum.stage == 1
        stage_zero = curriculum.stage_curriculum(0).stats()
        for options in ({"stage": 0, "other": 1}, {"other": 1}):
            env.reset(options={"task_id": first["task_id"], **options})
            assert env.unwrapped.cfg == played and env.unwrapped.last_options == {"other": 1}
            info = to_the_end(env)
            assert info["stage"] == 0.0
            # the label figures of the episode's own stage, not of the current one
            key = f"label/{curriculum.task_for_id(first['task_id'], stage=0).get_label()}/"
            assert info["label_completions"] == stage_zero[key + "completions"] > 0
        curriculum.destroy()


# -- scores -------------------------------------------------------------------------------------


def finish_episode(env: CurriculumEnv) -> dict[str, Any]:
    env.reset()
    while True:
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            return info


@pytest.mark.parametrize("bad", [math.nan, math.inf, "high"])
def test_bad_score_raises(toy_curricula: Callable[..., Curriculum], bad: Any) -> None:
    curriculum = toy_curricula()
    env = make_toy_env(curriculum, score_fn=lambda info, ret: bad)
    with pytest.raises(ScoreError):
        finish_episode(env)
    *_, info = env.step(0)  # the episode is over: nothing more is reported
    assert INFO_KEY not in info
    assert curriculum.stats()["curriculum/num_completed"] == 0


def test_nan_in_info_score_raises(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula()

    class NanScore(gym.Wrapper):
        def step(self, action: Any) -> Any:
            obs, reward, terminated, truncated, info = self.env.step(action)
            if "score" in info:
                info["score"] = math.nan
            return obs, reward, terminated, truncated, info

    env = CurriculumEnv(NanScore(ToyEnv()), curriculum)
    with pytest.raises(ScoreError, match="not finite"):
        finish_episode(env)


def test_out_of_range_scores_are_clipped_and_counted_on_request(
    toy_curricula: Callable[..., Curriculum], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("curriculum.env_scores._warned_clipping", False)  # a fresh process
    curriculum = toy_curricula()
    scores = iter([1.5, -0.25, 0.5])
    env = make_toy_env(curriculum, score_fn=lambda info, ret: next(scores), out_of_range="clip")
    with pytest.warns(RuntimeWarning, match="clipped the score 1.5") as said:
        assert [finish_episode(env)[INFO_KEY]["score"] for _ in range(3)] == [1.0, 0.0, 0.5]
    assert len(said) == 1  # once per process
    assert env.clipped_scores == 2
    stats = curriculum.stats()
    assert stats["curriculum/num_completed"] == 3
    assert stats["reward/mean"] == pytest.approx(0.5)


def test_score_from_the_return(toy_curricula: Callable[..., Curriculum]) -> None:
    curriculum = toy_curricula(generator=toy_generator(lengths=[3]))
    env = CurriculumEnv(ToyEnv(emit_score=False), curriculum, score_range=(-1.0, 7.0))
    assert finish_episode(env)[INFO_KEY]["score"] == pytest.approx(0.5)  # return 3
    env = CurriculumEnv(
        ToyEnv(emit_score=False), curriculum, score_range=(0.0, 2.0), out_of_range="clip"
    )
    with warnings.catch_warnings():  # warned once per process: maybe here, maybe before
        warnings.simplefilter("ignore", RuntimeWarning)
        assert finish_episode(env)[INFO_KEY]["score"] == 1.0  # return 3, clipped
    assert env.clipped_scores == 1
    env = CurriculumEnv(ToyEnv(), curriculum, score_fn=lambda info, ret: ret / 10)
    assert finish_episode(env)[INFO_KEY]["score"] == pytest.approx(0.3)


# -- vector envs --------------------------------------------------------------------------------


def run_vector(envs: Any, steps: int, mode: gym.vector.AutoresetMode) -> tuple[int, int]:
    """Step a vector env; ``(episodes ended, sub-env resets)``, checking the terminal infos."""
    envs.reset(seed=0)
    resets = envs.num_envs
    pending = np.zeros(envs.num_envs, dtype=bool)  # NEXT_STEP: resets at the next step
    ended = 0
    for _ in range(steps):
        resets += int(pending.sum())
        _, _, terminated, truncated, infos = envs.step(envs.action_space.sample())
        done = terminated | truncated
        ended += int(done.sum())
        terminal = infos.get("final_info", {}) if mode == SAME_STEP else infos
        mask = terminal.get(f"_{INFO_KEY}", np.zeros(envs.num_envs, dtype=bool))
        assert np.array_equal(mask, done)
        if done.any():
            payload = terminal[INFO_KEY]
            assert set(payload) == {*INFO_KEYS, *(f"_{k}" for k in INFO_KEYS)}
            assert payload["task_id"].dtype == np.int64
            assert all(payload[k].dtype == np.float64 for k in INFO_KEYS[1:])
        if mode == SAME_STEP:
            resets += int(done.sum())
        else:
            pending = done
    return ended, resets


@pytest.mark.parametrize("mode", [NEXT_STEP, SAME_STEP], ids=["next_step", "same_step"])
def test_sync_vector_env(
    toy_curricula: Callable[..., Curriculum], mode: gym.vector.AutoresetMode
) -> None:
    curriculum = toy_curricula()
    factory = functools.partial(make_toy_env, curriculum)
    envs = gym.vector.SyncVectorEnv([factory] * 3, autoreset_mode=mode)
    ended, resets = run_vector(envs, 40, mode)
    stats = curriculum.stats()
    assert ended > 10
    assert stats["curriculum/num_completed"] == ended
    assert stats["curriculum/num_scheduled"] == resets
    envs.close()
    curriculum.get_task()  # closing the vector env left the curriculum open


@pytest.fixture
def shared_curriculum(process_backend_url: str | None) -> Iterator[Curriculum]:
    curriculum = Curriculum(
        make_config(
            generator=toy_generator(), num_active_tasks=8, lp_backend_url=process_backend_url
        )
    )
    yield curriculum
    curriculum.close()


def test_async_vector_env_shares_one_pool(shared_curriculum: Curriculum) -> None:
    # Stats refreshed rarely: the workers' outcomes stay buffered until their envs close.
    factory = functools.partial(make_toy_env, shared_curriculum, stats_interval_s=600.0)
    envs = gym.vector.AsyncVectorEnv([factory] * 2, context="spawn")
    try:
        # The parent's throwaway env (to read the spaces) has come and gone: nothing counted.
        assert shared_curriculum.stats()["curriculum/num_scheduled"] == 0
        ended, resets = run_vector(envs, 30, NEXT_STEP)
        sub_resets = sum(envs.get_attr("resets"))  # ToyEnv's own count, via the wrappers
    finally:
        envs.close()  # workers close their envs (which flush their outcomes) and exit
    stats = shared_curriculum.stats()
    assert ended > 5
    assert stats["curriculum/num_completed"] == ended
    assert stats["curriculum/num_scheduled"] == resets == sub_resets


def _import_pufferlib_vector() -> Any:
    try:
        import pufferlib.vector
    except ImportError:
        if os.environ.get("CI"):  # the test extra installs it: on CI this test must run
            pytest.fail("pufferlib-core is not installed (pip install -e '.[test]')")
        pytest.skip("pufferlib is an optional extra (pip install -e '.[puffer]')")
    return pufferlib.vector


@pytest.mark.parametrize("backend", ["Serial", "Multiprocessing"])
def test_pufferlib_vectorisation(backend: str) -> None:
    vector = _import_pufferlib_vector()
    # PufferLib's Multiprocessing workers are terminated without closing their envs: outcomes
    # must be written at once there (see curriculum/env.py)
    curriculum = Curriculum(
        make_config(generator=toy_generator(), num_active_tasks=8, write_batch_size=1)
    )
    try:
        workers = {"num_workers": 2} if backend == "Multiprocessing" else {}
        envs = vector.make(
            make_puffer_env,
            env_args=[curriculum],
            num_envs=2,
            backend=getattr(vector, backend),
            **workers,
        )
        # The driver env (and any other env built only to read the spaces) counted nothing.
        assert curriculum.stats()["curriculum/num_scheduled"] == 0
        try:
            envs.reset(seed=0)
            ended = 0
            for _ in range(30):
                actions = np.zeros(envs.num_agents, dtype=np.int64)
                _, _, terminals, truncations, _ = envs.step(actions)
                ended += int((np.asarray(terminals) | np.asarray(truncations)).sum())
        finally:
            envs.close()
            for process in getattr(envs, "processes", []):  # terminated, not joined, by close()
                process.join(timeout=30)
        assert ended > 5
        assert curriculum.stats()["curriculum/num_completed"] == ended
    finally:
        curriculum.close()
    # the workers were killed while attached; joined, they left the parent the last one out
    assert not segment_path(curriculum.session_id).exists()


def test_a_label_too_long_for_the_pool_is_warned_and_its_figures_still_found(
    toy_curricula: Callable[..., Curriculum], caplog: pytest.LogCaptureFixture
) -> None:
    """A label over 128 bytes is stored shortened: one warning names both forms, the info's
    label figures are those of the stored name (not 0), and its tasks count in no slice."""
    long_label = "arena_" + "x" * 130
    generator = BucketedTaskGenerator.Config(
        child_generator_config=SingleTaskGenerator.Config(
            env={"label": long_label, "length": 1, "difficulty": 0.2}
        ),
        buckets={"length": [1, 2]},
    )
    curriculum = toy_curricula(generator=generator, num_active_tasks=4, write_batch_size=1)
    env = make_toy_env(curriculum)
    with caplog.at_level(logging.WARNING, logger="curriculum"):
        infos = [finish_episode(env)[INFO_KEY] for _ in range(12)]
    warned = [r.getMessage() for r in caplog.records if "longer than the 128" in r.getMessage()]
    assert len(warned) == 1 and long_label in warned[0]
    stored = stored_label(env.task.get_label())
    assert stored != env.task.get_label()
    stats = curriculum.stats()
    assert infos[-1]["label_completions"] > 0
    assert stats[f"label/{stored}/completions"] >= infos[-1]["label_completions"]
    assert not [k for k in stats if k.startswith("slice/")]


def test_label_averages_of_a_label_the_stats_do_not_know_are_nan(
    toy_curricula: Callable[..., Curriculum],
) -> None:
    """A label the cached stats do not hold yet (created since they were taken) has nothing to
    average: its three averages are NaN (they read 0.0, a measured value), its counts 0."""
    curriculum = toy_curricula()
    info = terminal_info(curriculum, 600.0, 7, 1.0, 0, "a label created since")
    check_terminal_info(info)
    for figure in ("mean_reward", "success_rate", "mean_lp"):
        assert math.isnan(info[f"label_{figure}"]), figure
    for figure in ("completions", "samples", "evictions", "failures"):
        assert info[f"label_{figure}"] == 0.0, figure
