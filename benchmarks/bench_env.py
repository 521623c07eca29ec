"""Throughput of the Atari environment stack, in agent steps per second.

Measures, in one run:
  (a) raw ALE: one ``ale_py.ALEInterface``, frame skip done by calling ``act`` 4 times, no
      preprocessing (the baseline);
  (b) ``gym_env.create_atari_environment`` with E envs (C++ AtariVectorEnv + our TimeStep
      adapter);
  (c) the raw ``ale_py.AtariVectorEnv`` with the same settings, without our adapter;
and prints the ratios (b)/(c) (adapter overhead) and (b)/(a) (gain over the naive loop).

Usage: python benchmarks/bench_env.py --game Pong --num_envs 8 --steps 2400
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gym_env


def bench_raw_ale(rom_id: str, steps: int, frame_skip: int, seed: int) -> float:
    """Agent steps/s of one ALEInterface, frame skip by repeated act(), no preprocessing."""
    import ale_py

    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(ale_py.roms.get_rom_path(rom_id))
    action_set = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, len(action_set), size=steps)
    ale.reset_game()
    start = time.perf_counter()
    for t in range(steps):
        action = action_set[actions[t]]
        for _ in range(frame_skip):
            ale.act(action)
        if ale.game_over():
            ale.reset_game()
    return steps / (time.perf_counter() - start)


def bench_adapter(
    config: gym_env.AtariConfig, num_envs: int, steps: int, seed: int, num_threads: int
) -> float:
    """Agent steps/s (summed over envs) of create_atari_environment."""
    with gym_env.create_atari_environment(config, num_envs, seed, num_threads=num_threads) as env:
        rng = np.random.default_rng(seed)
        actions = rng.integers(0, env.num_actions, size=(steps, num_envs))
        env.reset()
        start = time.perf_counter()
        for t in range(steps):
            env.step(actions[t])
        elapsed = time.perf_counter() - start
    return steps * num_envs / elapsed


def bench_vector_env(
    config: gym_env.AtariConfig, num_envs: int, steps: int, seed: int, num_threads: int
) -> float:
    """Agent steps/s (summed over envs) of ale_py.AtariVectorEnv alone, same settings."""
    import ale_py

    env = ale_py.AtariVectorEnv(
        gym_env.validate_atari_game(config.game),
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=config.max_episode_frames,
        repeat_action_probability=config.sticky_action_probability,
        full_action_space=config.full_action_space,
        autoreset_mode="NextStep",
        img_height=config.screen_size,
        img_width=config.screen_size,
        stack_num=config.frame_stack,
        frameskip=config.frame_skip,
        noop_max=config.noop_max,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=config.fire_reset,
    )
    try:
        rng = np.random.default_rng(seed)
        actions = rng.integers(0, env.single_action_space.n, size=(steps, num_envs))
        env.reset(seed=seed)
        start = time.perf_counter()
        for t in range(steps):
            env.step(actions[t])
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return steps * num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", default="Pong", help="CamelCase Atari game name")
    parser.add_argument("--num_envs", type=int, default=8)
    parser.add_argument(
        "--steps",
        type=int,
        default=2400,
        help="batched steps for (b) and (c), split over the rounds; (a) runs 4x that",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument(
        "--num_threads", type=int, default=0, help="0: one per CPU core, at most num_envs"
    )
    args = parser.parse_args()

    config = gym_env.AtariConfig(args.game)
    rom_id = gym_env.validate_atari_game(args.game)
    # Resolve once so (b) and (c) run with the same thread count.
    threads = gym_env._resolve_num_threads(args.num_threads, args.num_envs)

    # Warm up (ROM load, thread start-up) outside the timed parts.
    bench_vector_env(config, args.num_envs, 20, args.seed, threads)

    # Interleave the measurements over several rounds and keep each one's best round, so
    # that a burst of load from other processes does not bias one of them.
    per_round = max(1, args.steps // args.rounds)
    a = b = c = 0.0
    for _ in range(args.rounds):
        a = max(a, bench_raw_ale(rom_id, 4 * per_round, config.frame_skip, args.seed))
        b = max(b, bench_adapter(config, args.num_envs, per_round, args.seed, threads))
        c = max(c, bench_vector_env(config, args.num_envs, per_round, args.seed, threads))

    print(
        f"game={args.game} num_envs={args.num_envs} steps={args.steps} rounds={args.rounds} "
        f"threads={threads} cpus={os.cpu_count()}"
    )
    print(f"(a) raw ALEInterface, 1 env, act x{config.frame_skip}: {a:10.0f} agent steps/s")
    print(f"(b) create_atari_environment, {args.num_envs} envs:   {b:10.0f} agent steps/s")
    print(f"(c) raw AtariVectorEnv, {args.num_envs} envs:         {c:10.0f} agent steps/s")
    print(f"(b)/(c) = {b / c:.3f}   (adapter overhead)")
    print(f"(b)/(a) = {b / a:.3f}   (vs the naive single-env loop)")


if __name__ == "__main__":
    main()
