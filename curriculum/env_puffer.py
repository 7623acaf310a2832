"""A multi-agent :class:`~curriculum.CurriculumEnv` as a native PufferLib env.

PufferLib vectorises single-agent Gymnasium envs (``GymnasiumPufferEnv``), PettingZoo envs and
native ``PufferEnv`` s, which hold one row per agent and reset themselves. A Gymnasium-style
multi-agent env (``step`` returns per-agent arrays, spaces with a leading agent axis) fits none
of the first two; :class:`CurriculumPufferEnv` makes it a native one:

- ``num_agents`` is the length of the observation space's first axis; the per-agent spaces are
  that space without its first axis and, for actions, ``Discrete(n)`` for a
  ``MultiDiscrete([n] * agents)`` (else the action space without its first axis);
- each step writes the agents' rows; when the episode is over (every agent done, the rule of
  :mod:`curriculum.env_episode`), the env is reset at once, which draws the next task, and the
  step returns the new episode's first observations with that step's rewards and done flags;
- the terminal info (``info["curriculum"]``) is returned as a one-dict list, as PufferLib wants.

A PufferLib creator builds it from a picklable CurriculumEnv factory::

    def make_puffer_team(curriculum, buf=None, seed=0):
        return CurriculumPufferEnv(functools.partial(make_team_env, curriculum), buf=buf,
                                   seed=seed)

    envs = pufferlib.vector.make(make_puffer_team, env_args=[curriculum], num_envs=4, ...)

Needs ``pufferlib-core`` (the ``puffer`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

try:
    import pufferlib
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "curriculum.env_puffer needs PufferLib: pip install 'curriculum-pool[puffer]'"
    ) from exc

from curriculum.env import INFO_KEY, CurriculumEnv
from curriculum.errors import ConfigError


def _per_agent_spaces(env: gym.Env) -> tuple[int, gym.Space[Any], gym.Space[Any]]:
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) < 1:
        raise ConfigError(
            f"CurriculumPufferEnv needs a Box observation space with a leading agent axis, "
            f"got {obs}"
        )
    agents = obs.shape[0]
    single_obs = gym.spaces.Box(obs.low[0], obs.high[0], dtype=obs.dtype)
    if isinstance(act, gym.spaces.MultiDiscrete) and act.nvec.shape == (agents,):
        if len(set(act.nvec.tolist())) != 1:
            raise ConfigError(f"the agents' action spaces differ: {act}")
        single_act: gym.Space[Any] = gym.spaces.Discrete(int(act.nvec[0]))
    elif isinstance(act, gym.spaces.Box) and act.shape[:1] == (agents,):
        single_act = gym.spaces.Box(act.low[0], act.high[0], dtype=act.dtype)
    else:
        raise ConfigError(
            f"CurriculumPufferEnv needs a MultiDiscrete([n] * {agents}) or a Box action space "
            f"with a leading axis of {agents} agents, got {act}"
        )
    return agents, single_obs, single_act


class CurriculumPufferEnv(pufferlib.PufferEnv):
    """Runs a multi-agent CurriculumEnv as a native PufferLib env (see the module docstring)."""

    def __init__(
        self,
        env_creator: Callable[..., CurriculumEnv],
        env_args: tuple[Any, ...] = (),
        env_kwargs: dict[str, Any] | None = None,
        buf: Any = None,
        seed: int = 0,
    ) -> None:
        """Build the CurriculumEnv with ``env_creator(*env_args, **env_kwargs)``.

        Raises:
            ConfigError: the env is not a CurriculumEnv or its spaces have no agent axis.
        """
        self.env = env_creator(*env_args, **(env_kwargs or {}))
        if not isinstance(self.env, CurriculumEnv):
            raise ConfigError(
                f"CurriculumPufferEnv needs a CurriculumEnv, got {type(self.env).__name__}"
            )
        self.num_agents, self.single_observation_space, self.single_action_space = (
            _per_agent_spaces(self.env)
        )
        super().__init__(buf)
        self._seed = seed

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Reset the env (drawing a task) and write the agents' first observations."""
        obs, _ = self.env.reset(seed=self._seed if seed is None else seed)
        self.observations[:] = obs
        self.rewards[:] = 0
        self.terminals[:] = False
        self.truncations[:] = False
        self.masks[:] = True
        return self.observations, []

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, list[dict[str, Any]]]:
        """Step every agent; reset (drawing the next task) when the episode is over."""
        obs, rewards, terminated, truncated, info = self.env.step(np.asarray(actions))
        self.rewards[:] = rewards
        self.terminals[:] = terminated
        self.truncations[:] = truncated
        infos = [{INFO_KEY: info[INFO_KEY]}] if INFO_KEY in info else []
        if self.env.episode_over:
            obs, _ = self.env.reset()
        self.observations[:] = obs
        return self.observations, self.rewards, self.terminals, self.truncations, infos

    def close(self) -> None:
        """Close the env (writing its buffered outcomes); the curriculum stays open."""
        self.env.close()
