"""Throughput and memory of the recurrent agents (R2D2, NGU, Agent57) on Pong.

    python benchmarks/bench_recurrent.py acting  --agent ngu [--num_envs 16] [--seconds 10]
    python benchmarks/bench_recurrent.py replay  --agent ngu [--num_sequences 400]
    python benchmarks/bench_recurrent.py learner --agent ngu [--batch_size 16] [--device cpu]
    python benchmarks/bench_recurrent.py system  --agent r2d2 [--num_actors 2] [--seconds 60]
    python benchmarks/bench_recurrent.py flush   --agent r2d2 [--warmup_updates 6000]

acting:  agent steps/s of one actor process (E environments, batched inference, for NGU and
         Agent57 the embedding, RND and k-NN episodic novelty, chunk compression) against the
         limit of its parts, each measured alone in the same run: environment stepping, all
         batched inference (Q, embedding, RND) and the k-NN lookups. Target: >= 0.85 of
         1 / Σ (1 / rate of each part).
replay:  bytes per stored agent step of the agent's sequence replay filled from Pong, with its
         own columns and trace length. Target: <= 800 (a raw 84x84 frame is 7,056).
learner: updates/s of Learner.step() (sampling, decoding, host-to-device copy, burn-in, every
         loss, backward, optimiser, priorities) against the bare forward-backward of the same
         losses on a batch already on the device. Target: >= 0.9.
system:  agent steps/s and learner updates/s of the whole loop with N actor processes.
flush:   what --flush_denormals gives a recurrent learner later in a run, on MinAtar Breakout
         with benchmarks/minatar_learning.py's sequence settings: the learner first trains
         with IEEE arithmetic for --warmup_updates (acting in-process with its own network at
         replay ratio 16, as those runs do), then its state is copied, and updates/s from that
         copy are timed with and without flushing, alternating, --repeats times each. Also
         prints the share of the optimiser's moments that are denormal at the copy.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import gym_env
from agents.common.sequence_learning import sequence_batch_to_device
from distributed.config import ParallelConfig
from experiment import denormals
from main_loop import ParallelTrainer

CONFIGS = {"r2d2": "R2d2Config", "ngu": "NguConfig", "agent57": "Agent57Config"}


def agent_module(name: str):
    return importlib.import_module(f"agents.{name}.agent")


def atari(agent: str) -> gym_env.AtariConfig:
    """The agent's own Pong: NGU and Agent57 see one frame, R2D2 a stack of 4."""
    stack = 4 if agent == "r2d2" else 1
    return gym_env.AtariConfig(
        "Pong", frame_stack=stack, clip_rewards=False, full_action_space=True
    )


def make_config(agent: str, **overrides):
    module = agent_module(agent)
    return getattr(module, CONFIGS[agent])(**overrides)


def timed_rate(step_fn, units_per_call: int, seconds: float) -> float:
    step_fn()  # Warm-up (allocations, first-call overheads).
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step_fn()
        calls += 1
    return calls * units_per_call / (time.perf_counter() - start)


def bench_acting(args) -> None:
    torch.set_num_threads(1)  # As in an actor process.
    module = agent_module(args.agent)
    config = make_config(args.agent)
    spec = gym_env.EnvSpec(atari=atari(args.agent))
    env, actor = module.ActorFactory(config, spec, args.num_envs, num_actors=1)(0, seed=0)
    rng = np.random.default_rng(0)
    timestep = env.reset()
    parts = {"environment only": (lambda: env.step(rng.integers(0, env.num_actions, env.num_envs)))}
    observation = torch.as_tensor(timestep.observation)
    inputs = {
        "observation": observation,
        "prev_action": torch.zeros(env.num_envs, dtype=torch.long),
        "reward": torch.zeros(env.num_envs),
        "policy_index": torch.zeros(env.num_envs, dtype=torch.long),
        "intrinsic_reward": torch.zeros(env.num_envs),
    }
    inputs = {k: v.unsqueeze(0) for k, v in inputs.items() if k in actor.network.input_names}
    state = actor.network.initial_state(env.num_envs)
    network = actor.network

    @torch.no_grad()
    def inference() -> None:
        network(inputs, state)
        if hasattr(network, "embedding"):
            network.embedding(observation)
            network.rnd.error(observation)

    parts["batched inference"] = inference
    if hasattr(actor, "memory"):
        parts["k-NN episodic novelty"] = knn_part(actor, env.num_envs, args.memory_fill)

    rates = {name: timed_rate(fn, env.num_envs, args.seconds) for name, fn in parts.items()}

    def acting() -> None:
        nonlocal timestep
        timestep = env.step(actor.step(timestep))
        actor.drain()

    actor.reset()
    timestep = env.reset()
    acting_rate = timed_rate(acting, env.num_envs, args.seconds)
    limit = 1.0 / sum(1.0 / r for r in rates.values())
    print(f"acting ({args.agent}): Pong, {env.num_envs} envs in one process, 1 torch thread")
    for name, rate in rates.items():
        print(f"  {name:24s}: {rate:8.0f} agent steps/s")
    print(f"  {'combined limit':24s}: {limit:8.0f} agent steps/s")
    print(
        f"  actor (everything)      : {acting_rate:8.0f} agent steps/s "
        f"= {acting_rate / limit:.2f} of the limit (target >= 0.85)"
    )
    env.close()


def knn_part(actor, num_envs: int, fill: int):
    """The episodic memory's k-NN reward alone, on a memory holding `fill` embeddings per
    environment (a mid-episode load), with fresh random embeddings each call."""
    from exploration.novelty import EpisodicMemory

    config = actor.config
    memory = EpisodicMemory(
        num_envs, config.episodic_memory_capacity, config.embedding_size, config.episodic
    )
    memory.memory[:, :fill] = torch.randn(num_envs, fill, config.embedding_size)
    memory.sizes[:] = fill
    memory.next_row[:] = fill

    def lookup() -> None:
        memory.reward(torch.randn(num_envs, config.embedding_size))
        memory.sizes[:] = fill  # keep the load constant
        memory.next_row[:] = fill

    return lookup


def filled_learner(agent: str, config, device: torch.device, num_sequences: int, num_envs=8):
    module = agent_module(agent)
    spec = gym_env.EnvSpec(atari=atari(agent))
    with spec.create(1, seed=0) as probe:
        shape, dtype, num_actions = (
            probe.observation_shape,
            probe.observation_dtype,
            probe.num_actions,
        )
    learner = module.build_learner(config, shape, dtype, num_actions, 0, device)
    env, actor = module.ActorFactory(config, spec, num_envs, num_actors=1)(0, seed=1)
    timestep = env.reset()
    while learner.replay.size < num_sequences:
        timestep = env.step(actor.step(timestep))
        learner.ingest(actor.drain())
    env.close()
    return learner


def bench_replay(args) -> None:
    # A replay exactly as large as what it holds, so its fixed-size index (ring and sum tree)
    # weighs per step what it does at full capacity.
    size = args.num_sequences
    config = make_config(args.agent, replay_capacity=size, min_replay_size=min(size, 64))
    learner = filled_learner(args.agent, config, torch.device("cpu"), args.num_sequences, 16)
    replay = learner.replay
    parts = replay.memory_breakdown()
    print(
        f"replay ({args.agent}): {replay.size} sequences of {config.burn_in}+"
        f"{config.sequence_length} steps every {config.replay_period}, columns "
        f"{[c.name for c in replay.columns]}"
    )
    print(f"  stored agent steps : {replay.num_stored_steps()}")
    for name, size in parts.items():
        print(f"  {name:18s} : {size / replay.num_stored_steps():8.1f} bytes/step")
    print(
        f"  total              : {replay.bytes_per_stored_step():8.1f} bytes per stored step "
        "(target <= 800; a raw frame is 7,056)"
    )


def bench_learner(args) -> None:
    device = torch.device(args.device)
    config = make_config(args.agent, batch_size=args.batch_size, min_replay_size=args.batch_size)
    learner = filled_learner(args.agent, config, device, max(4 * args.batch_size, 64))
    batch, _, weights = learner.replay.sample(config.batch_size, 0.6, compact=True)
    tensors = sequence_batch_to_device(batch, device)
    weights_t = torch.as_tensor(weights, device=device)
    mask = tensors["mask"][config.burn_in + 1 :]

    def bare_forward_backward() -> None:
        heads, _ = learner.head_td_errors(tensors)
        loss = sum((weights_t * (0.5 * td.square() * mask).mean(0)).mean() for td in heads.values())
        loss = loss + sum(learner.auxiliary_losses(tensors).values())
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
        f"learner ({args.agent}): batch {config.batch_size} x {config.burn_in}+"
        f"{config.sequence_length} steps on {device}, torch threads {torch.get_num_threads()}"
    )
    print(f"  bare forward-backward : {bare:7.2f} updates/s")
    print(
        f"  Learner.step()        : {full:7.2f} updates/s = {full / bare:.2f} of bare "
        "(target >= 0.9)"
    )


def bench_system(args) -> None:
    device = torch.device(args.device)
    config = make_config(
        args.agent,
        batch_size=args.batch_size,
        min_replay_size=args.batch_size * 4,
        replay_capacity=5_000,
    )
    module = agent_module(args.agent)
    parallel = ParallelConfig(num_actors=args.num_actors, replay_ratio=args.replay_ratio)
    spec = gym_env.EnvSpec(atari=atari(args.agent))
    learner = filled_learner(args.agent, config, device, 0)
    factory = module.ActorFactory(config, spec, args.num_envs, args.num_actors)
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
        f"system ({args.agent}): {args.num_actors} actors x {args.num_envs} envs, learner on "
        f"{device}, batch {config.batch_size}, replay ratio {args.replay_ratio}"
    )
    print(f"  agent steps/s    : {steps / seconds:8.0f}")
    print(f"  learner updates/s: {updates / seconds:8.2f}")
    print(f"  (ran {seconds:.0f} s: {steps} agent steps, {updates} updates)")


def minatar_config(agent: str):
    """The agent's config with benchmarks/minatar_learning.py's sequence settings (those of
    its flags that are config fields)."""
    from minatar_learning import SEQUENCE_SCALE

    config_cls = getattr(agent_module(agent), CONFIGS[agent])
    fields = {field.name: field for field in dataclasses.fields(config_cls)}
    overrides = {}
    for flag in SEQUENCE_SCALE:
        name, value = flag.removeprefix("--").split("=")
        if name in fields:
            overrides[name] = type(getattr(config_cls(), name))(value)
    return config_cls(**overrides)


def denormal_share(optimizer: torch.optim.Optimizer) -> float:
    """Share of the optimiser's floating-point state entries that are denormal."""
    tiny = torch.finfo(torch.float32).tiny
    denormal = total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.is_floating_point() and value.dim() > 0:
                magnitude = value.abs()
                denormal += int(((magnitude > 0) & (magnitude < tiny)).sum())
                total += value.numel()
    return denormal / max(total, 1)


def train_in_process(config, env, actor, learner, num_updates: int, ratio: int):
    """Acts with the learner's own network and learns each stored sequence `ratio` times on
    average, as the MinAtar runs do, until `num_updates` updates."""
    actor.network = learner.network
    if hasattr(actor, "embeddings"):
        actor.embeddings.embedding = learner.network.embedding
    timestep, inserted = env.reset(), 0
    while learner.num_updates < num_updates:
        timestep = env.step(actor.step(timestep))
        inserted += learner.ingest(actor.drain())
        while learner.ready() and (learner.num_updates + 1) * config.batch_size <= ratio * inserted:
            learner.step()


def bench_flush(args) -> None:
    torch.set_num_threads(1)  # As in the MinAtar runs' learner (one core per run).
    module = agent_module(args.agent)
    config = minatar_config(args.agent)
    spec = gym_env.EnvSpec(classic_name="MinAtar/Breakout-v1")
    env, actor = module.ActorFactory(config, spec, args.num_envs, num_actors=1)(0, seed=0)
    learner = module.build_learner(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        0,
        torch.device("cpu"),
    )
    denormals.flush_denormals(False)
    start = time.perf_counter()
    train_in_process(config, env, actor, learner, args.warmup_updates, 16)
    warmup_seconds = time.perf_counter() - start
    env.close()
    print(f"warm-up done in {warmup_seconds:.0f} s; timing", flush=True)
    snapshot = copy.deepcopy(learner.state_dict())
    share = denormal_share(learner.optimizer)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for flush in (False, True):
            learner.load_state_dict(copy.deepcopy(snapshot))
            denormals.flush_denormals(flush)
            learner.step()  # Not timed: the first update after a load.
            start = time.perf_counter()
            for _ in range(args.updates):
                learner.step()
            rates[flush].append(args.updates / (time.perf_counter() - start))
    denormals.flush_denormals(False)
    learner.close()
    ieee, flushed = (float(np.median(rates[flag])) for flag in (False, True))
    print(
        f"flush ({args.agent}): MinAtar Breakout, batch {config.batch_size} x "
        f"{config.burn_in}+{config.sequence_length} steps, 1 torch thread; state after "
        f"{args.warmup_updates} IEEE updates ({warmup_seconds:.0f} s with acting)"
    )
    print(f"  denormal share of the optimiser's moments: {share:.4%}")
    print(f"  IEEE      : {ieee:6.2f} updates/s (each block: {rates[False]})")
    print(f"  flushed   : {flushed:6.2f} updates/s (each block: {rates[True]})")
    print(f"  flushed / IEEE: {flushed / ieee:.2f}x (medians of {args.repeats} blocks each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["acting", "replay", "learner", "system", "flush"])
    parser.add_argument("--agent", choices=sorted(CONFIGS), default="r2d2")
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--num_actors", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_sequences", type=int, default=400)
    parser.add_argument("--memory_fill", type=int, default=1_000, help="k-NN memory load")
    parser.add_argument("--replay_ratio", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--warmup_updates", type=int, default=6_000, help="flush: IEEE updates first"
    )
    parser.add_argument("--updates", type=int, default=200, help="flush: updates per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="flush: timed blocks per mode")
    args = parser.parse_args()
    benches = {
        "acting": bench_acting,
        "replay": bench_replay,
        "learner": bench_learner,
        "system": bench_system,
        "flush": bench_flush,
    }
    benches[args.what](args)


if __name__ == "__main__":
    main()
