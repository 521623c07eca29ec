"""Single-thread DQN training loop throughput on CPU, against the bare environment.

    python benchmarks/bench_dqn_loop.py [--steps 2000] [--torch_threads 0]

Prints agent steps/s of (a) the environment alone with random actions, (b) the DQN actor
acting and writing replay without learning, (c) the full loop with one learner update every
4 agent steps (Nature DQN), all in the same run, and the ratios to (a).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import gym_env
from agents.dqn.agent import DqnConfig, build_agent
from main_loop import EnvRunner, UpdateScheduler
from tracker import EpisodeTracker


class RandomActor:
    def __init__(self, num_actions: int) -> None:
        self.rng = np.random.default_rng(0)
        self.num_actions = num_actions

    def reset(self) -> None:
        pass

    def step(self, timestep) -> np.ndarray:
        return self.rng.integers(0, self.num_actions, size=len(timestep.first))


def steps_per_second(runner: EnvRunner, actor, num_steps: int, after_step=None) -> float:
    tracker = EpisodeTracker(runner.env.num_envs)
    start = time.perf_counter()
    runner.run(actor, num_steps, tracker, after_step)
    return num_steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--torch_threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    config = DqnConfig(replay_capacity=100_000, min_replay_size=1_000)
    env = gym_env.create_atari_environment(gym_env.AtariConfig(args.game), 1, seed=0)
    actor, learner = build_agent(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        1,
        0,
        torch.device("cpu"),
        total_updates=10**6,
    )
    runner = EnvRunner(env)
    env_only = steps_per_second(runner, RandomActor(env.num_actions), args.steps)
    acting = steps_per_second(runner, actor, max(args.steps, config.min_replay_size))
    scheduler = UpdateScheduler(config.agent_steps_per_update)

    def learn(new_steps: int) -> None:
        for _ in range(scheduler.updates_due(new_steps, learner.ready())):
            learner.step()

    training = steps_per_second(runner, actor, args.steps, learn)
    print(f"game={args.game} steps={args.steps} torch_threads={torch.get_num_threads()}")
    print(f"(a) environment alone, random actions : {env_only:8.0f} agent steps/s")
    print(
        f"(b) DQN acting + replay, no learning   : {acting:8.0f} agent steps/s  "
        f"({acting / env_only:.2f} of (a))"
    )
    print(
        f"(c) DQN training loop, update every 4  : {training:8.0f} agent steps/s  "
        f"({training / env_only:.2f} of (a)); {training / 4:.1f} updates/s"
    )


if __name__ == "__main__":
    main()
