"""How :class:`~curriculum.CurriculumEnv` puts a task's config into its env.

Two forms:

- **Apply in place**: ``apply_task(env, env_cfg)`` if given (``env`` is the wrapped env), else
  the method ``set_task(env_cfg)`` or ``set_env_cfg(env_cfg)`` of ``env.unwrapped``.
- **Factory**: ``env_factory(env_cfg)`` builds the env from the task's config. The wrapper builds
  its first env at construction from the config of the reference task (id 0, the same one
  ``invariant_fields`` compare against; stage 0 of a staged curriculum): that env fixes the
  observation and action spaces. At each reset it builds a new env when the task's config
  differs from the config the current env was built from (the old env is closed), else keeps
  the current one. A rebuilt env's first reset gets a seed drawn from the seed of the wrapper's
  first seeded ``reset`` (so a seeded run stays reproducible), else none.

Each callable may take the task id: one that has a parameter named ``task_id`` gets it as that
keyword, ``apply_task(env, env_cfg, task_id)``, ``set_task(env_cfg, task_id)``,
``env_factory(env_cfg, task_id)`` (a factory that takes the id is called again whenever the id
changes). Callables without that parameter are called as before, without the id.

Every task must keep the spaces: after a task is applied (or its env built) the env's
observation and action spaces are compared with the spaces at construction, and a difference
raises :class:`~curriculum.errors.ConfigError` naming the task, its label and both spaces
(vector envs and policies are built for one pair of spaces).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from curriculum.errors import ConfigError

_METHOD_NAMES = ("set_task", "set_env_cfg")


class TaskSpaceError(ConfigError):
    """A task changes the env's observation or action space (another task would not help)."""


def takes_task_id(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` has a parameter named ``task_id`` (it then gets the id as that keyword)."""
    try:
        parameter = inspect.signature(fn).parameters.get("task_id")
    except (TypeError, ValueError):  # builtins without a signature: the form without the id
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def resolve_apply(env: gym.Env, apply_task: Callable[..., Any] | None) -> Callable[[Any, int], Any]:
    """``apply(env_cfg, task_id)`` for the in-place form.

    Raises:
        ConfigError: ``apply_task`` is not callable, or is None and the env has neither method.
    """
    if apply_task is not None:
        if not callable(apply_task):
            raise ConfigError(f"apply_task must be callable, got {type(apply_task).__name__}")
        if takes_task_id(apply_task):
            return lambda env_cfg, task_id: apply_task(env, env_cfg, task_id=task_id)
        return lambda env_cfg, task_id: apply_task(env, env_cfg)
    base = env.unwrapped
    for name in _METHOD_NAMES:
        method = getattr(base, name, None)
        if callable(method):
            if takes_task_id(method):
                return lambda env_cfg, task_id, method=method: method(env_cfg, task_id=task_id)
            return lambda env_cfg, task_id, method=method: method(env_cfg)
    raise ConfigError(
        f"cannot apply a task to env {type(base).__module__}.{type(base).__qualname__}"
        + (f" (wrapped as {type(env).__name__})" if env is not base else "")
        + ": it has no set_task(env_cfg) or set_env_cfg(env_cfg) method; "
        "pass apply_task=(env, env_cfg) -> None, or env_factory=(env_cfg) -> env, to "
        "CurriculumEnv"
    )


class EnvFactory:
    """Builds envs from task configs, rebuilding only when the config (or the id) changed."""

    __slots__ = ("_factory", "_seeds", "_takes_id", "built_from")

    def __init__(self, factory: Callable[..., Any]) -> None:
        if not callable(factory):
            raise ConfigError(f"env_factory must be callable, got {type(factory).__name__}")
        self._factory = factory
        self._takes_id = takes_task_id(factory)
        self._seeds: np.random.Generator | None = None
        self.built_from: tuple[Any, int] | None = None  # (env_cfg, task_id) of the current env

    def build(self, env_cfg: Any, task_id: int) -> gym.Env:
        """A new env for this config (raises what the factory raises)."""
        env = self._factory(env_cfg, task_id=task_id) if self._takes_id else self._factory(env_cfg)
        if not isinstance(env, gym.Env):
            raise ConfigError(f"env_factory returned a {type(env).__name__}, not a gymnasium.Env")
        self.built_from = (env_cfg, task_id)
        return env

    def needs_rebuild(self, env_cfg: Any, task_id: int) -> bool:
        """Whether the current env was built from another config (or another id)."""
        if self.built_from is None:
            return True
        cfg, built_id = self.built_from
        return cfg != env_cfg or (self._takes_id and built_id != task_id)

    def seed_from(self, seed: int | None) -> None:
        """Remember the seed of a seeded reset: rebuilt envs draw their first seed from it."""
        if seed is not None:
            self._seeds = np.random.default_rng(seed)

    def next_seed(self) -> int | None:
        """The first seed of a rebuilt env (None before any seeded reset)."""
        return None if self._seeds is None else int(self._seeds.integers(2**31 - 1))


def reference_env_cfg(curriculum: Any) -> Any:
    """The env config of the reference task (id 0; stage 0 of a staged curriculum)."""
    from curriculum.staged import StagedCurriculum

    if isinstance(curriculum, StagedCurriculum):
        return curriculum.task_for_id(0, stage=0).get_env_cfg()
    return curriculum.task_for_id(0).get_env_cfg()


def check_spaces(
    expected: tuple[gym.Space[Any], gym.Space[Any]],
    env: gym.Env,
    task_id: int,
    label: str,
) -> None:
    """Raise ConfigError when ``env``'s spaces differ from ``expected`` (observation, action)."""
    for name, want, got in (
        ("observation", expected[0], env.observation_space),
        ("action", expected[1], env.action_space),
    ):
        if got != want:
            raise TaskSpaceError(
                f"task {task_id} ({label}) changes the env's {name} space: {want} at "
                f"construction, {got} with this task's config. Every task must keep the "
                f"observation and action spaces (vector envs and policies are built for one "
                f"pair); keep the fields that size them out of the buckets, or pin them with "
                f"invariant_fields"
            )
