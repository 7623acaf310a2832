"""One episode's returns in :class:`~curriculum.CurriculumEnv`, for one agent or many.

A single-agent env returns a scalar reward and scalar ``terminated`` / ``truncated``. A
multi-agent env returns per-agent arrays (any shape, even ``(1,)``); the rule then is:

- an agent is done from the first step where its ``terminated`` or ``truncated`` is true;
- its episode return is the sum of its rewards up to and including that step (rewards an env
  reports for agents that are already done are ignored);
- the episode ends at the step where every agent is done;
- the episode's return is the mean of the agents' returns (what ``score_range`` maps and what
  ``score_fn`` receives); the per-agent returns are in :attr:`EpisodeReturns.agent_returns`.

A scalar ``terminated`` / ``truncated`` alongside per-agent rewards applies to every agent, and a
scalar reward alongside per-agent flags (a team reward) goes to every agent.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class EpisodeReturns:
    """Accumulates rewards over one episode and says when it is over."""

    __slots__ = ("agent_returns", "done", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.agent_returns: np.ndarray | None = None  # shape (agents,), after the first step
        self.done: np.ndarray | None = None

    def add(self, reward: Any, terminated: Any, truncated: Any) -> bool:
        """Record one step; True when the episode is over (every agent done).

        Raises:
            ValueError: the rewards or done flags are not numbers / bools, or their number of
                agents differs from the first step's.
        """
        self.steps += 1
        if np.ndim(reward) == 0 and np.ndim(terminated) == 0 and np.ndim(truncated) == 0:
            rewards = np.array([float(reward)])
            ends = np.array([bool(terminated) or bool(truncated)])
        else:
            rewards = np.asarray(reward, dtype=np.float64).reshape(-1)
            ends = np.logical_or(np.asarray(terminated, dtype=bool), np.asarray(truncated, bool))
            ends = ends.reshape(-1)
            try:
                rewards, ends = np.broadcast_arrays(rewards, ends)
            except ValueError:
                raise ValueError(
                    f"the env returned {rewards.size} rewards but {ends.size} done flags; "
                    "CurriculumEnv needs one of each per agent (or one for all)"
                ) from None
        if self.agent_returns is None:
            self.agent_returns = np.zeros(rewards.shape)
            self.done = np.zeros(rewards.shape, dtype=bool)
        elif rewards.shape != self.agent_returns.shape:
            raise ValueError(
                f"the env returned rewards for {len(self.agent_returns)} agents at the "
                f"episode's first step but for {len(rewards)} now; CurriculumEnv needs one "
                "reward per agent at every step"
            )
        assert self.done is not None
        playing = ~self.done
        self.agent_returns[playing] += rewards[playing]
        self.done |= ends
        return bool(self.done.all())

    @property
    def mean_return(self) -> float:
        """The mean of the agents' returns (the return, for one agent); 0 before any step."""
        return float(self.agent_returns.mean()) if self.agent_returns is not None else 0.0
