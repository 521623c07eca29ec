"""R2D2 throughput: acting, learning, and the whole multi-process system.

    python benchmarks/bench_r2d2.py acting  [--num_envs 16] [--seconds 10]
    python benchmarks/bench_r2d2.py learner [--batch_size 16] [--updates 5] [--device cpu]
    python benchmarks/bench_r2d2.py system  [--num_actors 2] [--seconds 60]

acting:  agent steps/s of one actor process (E environments, batched LSTM inference, chunk
         compression) against the two limits measured alone in the same run: environment
         stepping only, and batched inference only. Target: >= 0.85 of the combined limit
         1 / (1/env + 1/inference).
learner: updates/s of Learner.step() (replay sampling, decompression, host-to-device copy,
         burn-in, loss, backward, Adam, priority update) against the bare forward-backward of
         the same batch already on the device. Target: >= 0.9.
system:  agent steps/s and learner updates/s of the full loop with N actor processes.
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
from agents.r2d2.agent import (
    ActorFactory,
    R2d2Config,
    build_learner,
    sequence_batch_to_device,
)
from main_loop import ParallelConfig, ParallelTrainer

ATARI = gym_env.AtariConfig("Pong", clip_rewards=False, full_action_space=True)


def timed_rate(step_fn, units_per_call: int, seconds: float) -> float:
    step_fn()  # Warm-up (allocations, first-call overheads).
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step_fn()
        calls += 1
    return calls * units_per_call / (time.perf_counter() - start)


def bench_acting(args) -> None:
    torch.set_num_threads(1)  # As in an actor process.
    config = R2d2Config()
    factory = ActorFactory(config, gym_env.EnvSpec(atari=ATARI), args.num_envs, num_actors=1)
    env, actor = factory(0, seed=0)
    rng = np.random.default_rng(0)
    timestep = env.reset()

    def env_only() -> None:
        env.step(rng.integers(0, env.num_actions, size=env.num_envs))

    observation = torch.as_tensor(timestep.observation).unsqueeze(0)
    prev_action = torch.zeros(1, env.num_envs, dtype=torch.long)
    reward = torch.zeros(1, env.num_envs)
    state = actor.network.initial_state(env.num_envs)

    def inference_only() -> None:
        with torch.no_grad():
            actor.network(observation, prev_action, reward, state)

    def acting() -> None:
        nonlocal timestep
        timestep = env.step(actor.step(timestep))
        actor.drain()

    env_rate = timed_rate(env_only, env.num_envs, args.seconds)
    inference_rate = timed_rate(inference_only, env.num_envs, args.seconds)
    actor.reset()
    timestep = env.reset()
    acting_rate = timed_rate(acting, env.num_envs, args.seconds)
    limit = 1.0 / (1.0 / env_rate + 1.0 / inference_rate)
    print(f"acting: Pong, {env.num_envs} envs in one process, 1 torch thread, 1 ALE thread")
    print(f"  environment only     : {env_rate:8.0f} agent steps/s")
    print(f"  batched inference    : {inference_rate:8.0f} agent steps/s")
    print(f"  combined limit       : {limit:8.0f} agent steps/s")
    print(
        f"  actor (env+inference+chunks): {acting_rate:8.0f} agent steps/s "
        f"= {acting_rate / limit:.2f} of the limit (target >= 0.85)"
    )
    env.close()


def fill_replay(learner, num_envs: int, num_sequences: int) -> None:
    factory = ActorFactory(learner.config, gym_env.EnvSpec(atari=ATARI), num_envs, num_actors=1)
    env, actor = factory(0, seed=1)
    timestep = env.reset()
    while learner.replay.size < num_sequences:
        timestep = env.step(actor.step(timestep))
        learner.ingest(actor.drain())
    env.close()


def bench_learner(args) -> None:
    device = torch.device(args.device)
    config = R2d2Config(batch_size=args.batch_size, min_replay_size=args.batch_size)
    env = gym_env.create_atari_environment(ATARI, 1, seed=0)
    learner = build_learner(
        config, env.observation_shape, env.observation_dtype, env.num_actions, 0, device
    )
    env.close()
    fill_replay(learner, num_envs=8, num_sequences=max(4 * args.batch_size, 64))
    batch, _, weights = learner.replay.sample(config.batch_size, 0.6)
    tensors = sequence_batch_to_device(batch, device)
    weights_t = torch.as_tensor(weights, device=device)

    def bare_forward_backward() -> None:
        td, _ = learner._td_errors(tensors)
        loss = (weights_t * (0.5 * td.square()).mean(0)).mean()
        learner.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def full_step() -> None:
        learner.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    bare = timed_rate(bare_forward_backward, 1, args.seconds)
    full = timed_rate(full_step, 1, args.seconds)
    print(
        f"learner: batch {config.batch_size} x {config.burn_in}+{config.sequence_length} "
        f"steps on {device}, torch threads {torch.get_num_threads()}"
    )
    print(f"  bare forward-backward : {bare:7.2f} updates/s")
    print(
        f"  Learner.step()        : {full:7.2f} updates/s = {full / bare:.2f} of bare "
        "(target >= 0.9)"
    )


def bench_system(args) -> None:
    device = torch.device(args.device)
    config = R2d2Config(
        batch_size=args.batch_size, min_replay_size=args.batch_size * 4, replay_capacity=5_000
    )
    parallel = ParallelConfig(num_actors=args.num_actors, replay_ratio=args.replay_ratio)
    env = gym_env.create_atari_environment(ATARI, 1, seed=0)
    learner = build_learner(
        config, env.observation_shape, env.observation_dtype, env.num_actions, 0, device
    )
    env.close()
    factory = ActorFactory(config, gym_env.EnvSpec(atari=ATARI), args.num_envs, args.num_actors)
    trainer = ParallelTrainer(parallel, factory, learner, seed=0, log=lambda *a: None)
    with trainer:
        trainer.run_steps(args.num_envs * args.num_actors * 100, "warm-up")
        steps0, updates0, start = trainer.progress.total_steps, learner.num_updates, time.time()
        while time.time() - start < args.seconds:
            trainer.run_steps(args.num_envs * args.num_actors * 40, "bench")
        seconds = time.time() - start
    steps = trainer.progress.total_steps - steps0
    updates = learner.num_updates - updates0
    print(
        f"system: {args.num_actors} actors x {args.num_envs} envs, learner on {device}, "
        f"batch {config.batch_size}, replay ratio {args.replay_ratio}"
    )
    print(f"  agent steps/s   : {steps / seconds:8.0f}")
    print(f"  learner updates/s: {updates / seconds:8.2f}")
    print(f"  (ran {seconds:.0f} s: {steps} agent steps, {updates} updates)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["acting", "learner", "system"])
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--num_actors", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--replay_ratio", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    {"acting": bench_acting, "learner": bench_learner, "system": bench_system}[args.what](args)


if __name__ == "__main__":
    main()
