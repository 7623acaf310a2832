"""PPO on MiniGrid DoorKey through a shared curriculum pool: learning progress vs uniform.

A single-file PPO in the style of CleanRL (torch, CPU), playing the task family of
``minigrid_tasks.py`` (DoorKey rooms of sizes 5 to 8, plus impossible rooms without a key)
through ``CurriculumEnv`` in a Gymnasium ``AsyncVectorEnv``: every worker process draws its tasks
from, and reports its episodes to, one pool (in /dev/shm, or in Redis with ``--backend-url``).

    pip install -e '.[examples]'      # torch (CPU), minigrid, matplotlib
    python examples/ppo_minigrid.py --smoke                 # a few thousand steps, < 1 minute
    python examples/ppo_minigrid.py --algorithm lp --total-steps 300000 --seed 1
    python examples/ppo_minigrid.py --algorithm uniform --total-steps 300000 --seed 1

Writes ``episodes.csv`` (one row per episode), ``curves.png`` (success by task and sampling share
by task over env steps) and ``summary.json`` (figures of the run) into ``--output-dir``.
``examples/summarize_runs.py`` compares several runs.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from episode_log import plot_curves, write_csv
from minigrid_tasks import ALGORITHMS, EpisodeCollector, all_labels, curriculum_config, env_factory
from summarize_runs import run_summary
from torch import nn
from torch.distributions.categorical import Categorical

SMOKE_STEPS = 4096


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (the PPO hyper-parameters follow the MiniGrid PPO baselines)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algorithm", choices=ALGORITHMS, default="lp")
    p.add_argument("--backend-url", default=None, help="redis://... (default: /dev/shm pool)")
    p.add_argument("--total-steps", type=int, default=300_000, help="env steps, all envs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--num-active-tasks", type=int, default=24, help="the pool's slots")
    p.add_argument("--smoke", action="store_true", help=f"{SMOKE_STEPS} steps: a quick check")
    p.add_argument("--output-dir", default=None, help="default runs/ppo_minigrid/ALGO-seedN")
    p.add_argument("--vector-context", default="forkserver", choices=["forkserver", "spawn"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--num-steps", type=int, default=128, help="rollout length per env")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--update-epochs", type=int, default=4)
    p.add_argument("--clip-coef", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--log-every", type=int, default=10, help="iterations between progress lines")
    args = p.parse_args(argv)
    if args.smoke:
        args.total_steps = SMOKE_STEPS
    if args.output_dir is None:
        args.output_dir = f"runs/ppo_minigrid/{args.algorithm}-seed{args.seed}"
    return args


class Agent(nn.Module):
    """Actor-critic over the 7x7x3 egocentric view (the MiniGrid baselines' small CNN)."""

    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 2),
            nn.ReLU(),
            nn.Conv2d(32, 64, 2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.actor = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, num_actions))
        self.critic = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def _embed(self, obs: torch.Tensor) -> torch.Tensor:
        return self.features(obs.permute(0, 3, 1, 2))

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self._embed(obs)).squeeze(-1)

    def get_action_and_value(
        self, obs: torch.Tensor, action: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self._embed(obs)
        dist = Categorical(logits=self.actor(hidden))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.critic(hidden).squeeze(-1)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train one run; write its CSV, PNG and summary; return the summary."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    curriculum = curriculum_config(
        args.algorithm, args.seed, args.backend_url, args.num_active_tasks
    ).make()
    envs = gym.vector.AsyncVectorEnv(
        [env_factory(curriculum)] * args.num_envs,
        context=args.vector_context,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    collector = EpisodeCollector(lambda task_id: curriculum.task_for_id(task_id).get_label())
    try:
        agent = Agent(int(envs.single_action_space.n))
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-8)
        n, e = args.num_steps, args.num_envs
        batch_size = n * e
        minibatch_size = batch_size // args.num_minibatches
        iterations = max(args.total_steps // batch_size, 1)
        obs_shape = envs.single_observation_space.shape
        obs = torch.zeros((n, e, *obs_shape))
        actions = torch.zeros((n, e), dtype=torch.long)
        logprobs, rewards, dones, values = (torch.zeros((n, e)) for _ in range(4))

        start = time.perf_counter()
        global_step = 0
        next_obs_np, infos = envs.reset(seed=args.seed)
        collector.add(infos, global_step)
        next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32)
        next_done = torch.zeros(e)
        for iteration in range(1, iterations + 1):
            frac = 1.0 - (iteration - 1.0) / iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate
            for step in range(n):
                global_step += e
                obs[step], dones[step] = next_obs, next_done
                with torch.no_grad():
                    action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step], actions[step], logprobs[step] = value, action, logprob
                next_obs_np, reward, terminated, truncated, infos = envs.step(action.numpy())
                rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
                next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32)
                next_done = torch.as_tensor(
                    np.logical_or(terminated, truncated), dtype=torch.float32
                )
                collector.add(infos, global_step)

            with torch.no_grad():  # generalised advantage estimation
                next_value = agent.get_value(next_obs)
                advantages = torch.zeros_like(rewards)
                last = torch.zeros(e)
                for t in reversed(range(n)):
                    not_done = 1.0 - (next_done if t == n - 1 else dones[t + 1])
                    following = next_value if t == n - 1 else values[t + 1]
                    delta = rewards[t] + args.gamma * following * not_done - values[t]
                    last = delta + args.gamma * args.gae_lambda * not_done * last
                    advantages[t] = last
                returns = advantages + values

            b_obs = obs.reshape((-1, *obs_shape))
            b_actions, b_logprobs = actions.reshape(-1), logprobs.reshape(-1)
            b_adv, b_returns, b_values = (x.reshape(-1) for x in (advantages, returns, values))
            for _ in range(args.update_epochs):
                order = torch.randperm(batch_size)
                for lo in range(0, batch_size, minibatch_size):
                    mb = order[lo : lo + minibatch_size]
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                        b_obs[mb], b_actions[mb]
                    )
                    ratio = (newlogprob - b_logprobs[mb]).exp()
                    adv = b_adv[mb]
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                    pg_loss = torch.max(
                        -adv * ratio,
                        -adv * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef),
                    ).mean()
                    clipped_value = b_values[mb] + torch.clamp(
                        newvalue - b_values[mb], -args.clip_coef, args.clip_coef
                    )
                    v_loss = (
                        0.5
                        * torch.max(
                            (newvalue - b_returns[mb]) ** 2, (clipped_value - b_returns[mb]) ** 2
                        ).mean()
                    )
                    loss = pg_loss - args.ent_coef * entropy.mean() + args.vf_coef * v_loss
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()

            if iteration % args.log_every == 0 or iteration == iterations:
                sps = global_step / (time.perf_counter() - start)
                print(
                    f"step {global_step:>8} sps {sps:6.0f} episodes {len(collector.episodes):>6} "
                    f"| {collector.recent_success()}",
                    flush=True,
                )
        wall_s = time.perf_counter() - start
    finally:
        envs.close()
        curriculum.close()

    summary = run_summary(
        args.algorithm,
        args.seed,
        args.num_envs,
        "redis" if args.backend_url else "shm",
        collector.episodes,
        global_step,
        wall_s,
        collector.overhead_s,
    )
    write_csv(out / "episodes.csv", collector.episodes)
    plot_curves(
        {args.algorithm: [collector.episodes]},
        all_labels(),
        global_step,
        out / "curves.png",
        title=f"PPO on MiniGrid DoorKey, {args.algorithm}, seed {args.seed}",
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the envs and the pool are closed (the pool is removed).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    summary = train(args)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.output_dir}/episodes.csv, curves.png, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
