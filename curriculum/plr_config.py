"""The configuration of Prioritized Level Replay (the algorithm: prioritized_replay.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from curriculum.algorithm_config import PoolAlgorithmConfig

ScoreFunction = Literal["learnability", "progress", "score_variance", "priority"]


class PrioritizedLevelReplayConfig(PoolAlgorithmConfig):
    """Prioritized Level Replay (Jiang, Grefenstette, Rocktäschel 2021) on the shared pool.

    Every draw is an *explore* draw with probability ``1 - replay_prob``: it plays a task the
    pool has no score for yet (an *unseen* task: no outcome, or no priority with
    ``score_function="priority"``), and when the view holds none, it evicts the lowest-scoring
    seen task (one with at least ``min_presentations_for_eviction`` outcomes) and plays the new
    task created in its slot; so the share of episodes on unseen tasks is ``1 - replay_prob``
    (once the pool is full), and new tasks enter only as fast as exploration asks for them.
    Otherwise (a *replay* draw) it samples a seen task with ``P = (1 - rho) P_S + rho P_C``:
    ``P_S`` rank prioritisation of the tasks' scores, ``h = (1 / rank) ** (1 / temperature)``
    (tied scores share the best rank among them), ``P_C`` proportional to staleness (the pool's
    ``num_scheduled`` now minus its value right after the write that carried the task's latest
    sample). While no task is seen, every draw explores; while none is unseen and none can be
    evicted, every draw replays.

    Attributes:
        score_function: A task's PLR score. ``"learnability"``: ``p (1 - p)`` with ``p`` the
            task's performance EMA (mean score, rate ``ema_timescale`` 0.2): highest for tasks
            solved half of the time. ``"progress"``: ``|fast - slow|``, the two EMAs of the
            normalised score (as learning progress, without reweighting). ``"score_variance"``:
            the variance of the score (its EMA of ``s**2`` minus the square of its EMA of
            ``s``, rate 0.1). ``"priority"``: the priority reported with outcomes
            (``update_task_performance(..., priority=x)``), e.g. the episode's mean absolute
            GAE (PLR's value loss) or a regret estimate, folded at ``score_ema_alpha``.
        temperature: ``beta`` of rank prioritisation; smaller concentrates replay on the
            top-ranked tasks. Default 0.1, the paper's value for Procgen.
        staleness_coef: ``rho``, the share of replay given by staleness, so that every seen
            task's score is refreshed now and then. Default 0.1, the paper's Procgen value
            (0.3 is common with few levels).
        replay_prob: Probability that a draw replays a seen task; ``1 - replay_prob`` is the
            share of episodes on unseen (new) tasks. Default 0.5, as in Robust PLR.
        min_presentations_for_eviction: Outcomes a task needs before it may be evicted. Default
            1, as in PLR (a new level is kept only if its first score beats the lowest one).
            Larger values judge tasks on more episodes, but an explore draw that finds no
            unseen task and no evictable one replays instead: with a small pool and a
            concentrated replay (small ``temperature``) the explore share then falls below
            ``1 - replay_prob`` (``plr/num_evictable`` shows it).
        score_ema_alpha: Rate at which a task's reported priorities are folded into its
            priority: PLR keeps the newest score, which is 1.0 (the default).
    """

    type: Literal["prioritized_level_replay"] = "prioritized_level_replay"
    score_function: ScoreFunction = "learnability"
    temperature: float = Field(default=0.1, gt=0.0, le=100.0, allow_inf_nan=False)
    staleness_coef: float = Field(default=0.1, ge=0.0, le=1.0)
    replay_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    min_presentations_for_eviction: int = Field(default=1, ge=1)
    score_ema_alpha: float = Field(default=1.0, gt=0.0, le=1.0)

    def uses_priorities(self) -> bool:
        """Whether scores come from the priorities reported with outcomes."""
        return self.score_function == "priority"
