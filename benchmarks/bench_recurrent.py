"""Throughput and memory of the recurrent agents (R2D2, NGU, Agent57) on Pong, and what
flushing denormals gives their learners on MinAtar.

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
         with benchmarks/minatar_learning.py's sequence settings, environments and replay
         ratio: the learner first trains with IEEE arithmetic for --warmup_updates (acting
         in-process with its newest weights, where the runs' actors pull them every few
         hundred steps), then its and its replay's state are copied, and updates/s from that
         copy are timed with and without flushing, alternating which goes first, --repeats
         times each. Also prints the share of each optimiser group's state that is denormal.
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
from distributed.intake import RateLimiter
from experiment import denormals
from main_loop import FeedLearner, ParallelTrainer

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


def minatar_settings(agent: str) -> tuple[object, int, float]:
    """The agent's config with benchmarks/minatar_learning.py's sequence settings (those of
    its flags that are config fields), and that benchmark's environments per actor and
    replay ratio."""
    from minatar_learning import SEQUENCE_SCALE

    flags = dict(flag.removeprefix("--").split("=") for flag in SEQUENCE_SCALE)
    config_cls = getattr(agent_module(agent), CONFIGS[agent])
    defaults = config_cls()
    names = {field.name for field in dataclasses.fields(config_cls)}
    overrides = {}
    for name, value in flags.items():
        if name in names:
            default = getattr(defaults, name)
            if isinstance(default, bool):  # bool("False") is True.
                raise ValueError(f"a bool flag needs parsing here: --{name}={value}")
            overrides[name] = type(default)(value)
    return config_cls(**overrides), int(flags["num_envs"]), float(flags["replay_ratio"])


def denormal_shares(learner) -> dict[str, float]:
    """Per optimiser group: the share of its floating-point state entries that are denormal."""
    tiny = torch.finfo(torch.float32).tiny
    shares = {}
    for name, group in zip(learner.group_names, learner.optimizer.param_groups, strict=True):
        denormal = total = 0
        for parameter in group["params"]:
            for value in learner.optimizer.state.get(parameter, {}).values():
                if torch.is_tensor(value) and value.is_floating_point() and value.dim() > 0:
                    magnitude = value.abs()
                    denormal += int(((magnitude > 0) & (magnitude < tiny)).sum())
                    total += value.numel()
        shares[name or "network"] = denormal / max(total, 1)
    return shares


def train_in_process(env, actor, learner, num_updates: int, replay_ratio: float) -> None:
    """Acts with the learner's own network and learns at `replay_ratio` (sequences learned
    per sequence stored, counted from when replay is ready, as the parallel loop's rate
    limiter does) until `num_updates` updates. Unlike the runs' actors, which pull weights
    every few hundred steps, this one acts with the newest weights."""
    feed = FeedLearner(actor, learner)  # Acts with the learner's networks, told of each update.
    limiter = RateLimiter(replay_ratio, learner.batch_size)
    feed.reset()
    timestep = env.reset()
    while learner.num_updates < num_updates:
        stored = feed.stored
        timestep = env.step(feed.step(timestep))
        limiter.add_inserted(feed.stored - stored)
        limiter.observe_ready(learner.ready())
        while limiter.may_learn() and learner.num_updates < num_updates:
            learner.step()
            limiter.add_learned(learner.batch_size)


def timed_updates(learner, snapshot, flush: bool, updates: int) -> float:
    """Updates/s from `snapshot` (learner and replay state) in the given arithmetic mode."""
    denormals.flush_denormals(False)  # The copy itself in IEEE, whatever ran before.
    learner.close()  # Drops batches sampled before the load.
    learner.load_state_dict(copy.deepcopy(snapshot["learner"]))
    learner.replay.load_state_dict(copy.deepcopy(snapshot["replay"]))
    denormals.flush_denormals(flush)
    learner.step()  # Untimed: the first batch after a load is sampled synchronously.
    start = time.perf_counter()
    for _ in range(updates):
        learner.step()
    return updates / (time.perf_counter() - start)


def bench_flush(args) -> None:
    # One torch thread, as in the runs' learner; it is also what lets the per-thread flush
    # switch below cover every operation of an update.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = agent_module(args.agent)
    config, num_envs, replay_ratio = minatar_settings(args.agent)
    if config.prefetch_workers:
        raise SystemExit("flush: prefetch threads would keep the mode they started in")
    if not denormals.flush_denormals(True):
        raise SystemExit("flush: this CPU cannot flush denormals")
    denormals.flush_denormals(False)
    spec = gym_env.EnvSpec(classic_name="MinAtar/Breakout-v1")
    env, actor = module.ActorFactory(config, spec, num_envs, num_actors=1)(0, seed=0)
    shape, dtype, num_actions = env.observation_shape, env.observation_dtype, env.num_actions
    learner = module.build_learner(config, shape, dtype, num_actions, 0, torch.device("cpu"))
    start = time.perf_counter()
    train_in_process(env, actor, learner, args.warmup_updates, replay_ratio)
    warmup_seconds = time.perf_counter() - start
    env.close()
    print(f"warm-up done in {warmup_seconds:.0f} s; timing", flush=True)
    learner.close()
    snapshot = {
        "learner": copy.deepcopy(learner.state_dict()),
        "replay": copy.deepcopy(learner.replay.state_dict()),
    }
    shares = denormal_shares(learner)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)  # No mode always first.
        for flush in order:
            rates[flush].append(timed_updates(learner, snapshot, flush, args.updates))
    denormals.flush_denormals(False)
    learner.close()
    medians = {flag: float(np.median(rates[flag])) for flag in (False, True)}
    print(
        f"flush ({args.agent}): MinAtar Breakout, {num_envs} envs, replay ratio {replay_ratio:g}, "
        f"batch {config.batch_size} x {config.burn_in}+{config.sequence_length} steps, 1 torch "
        f"thread; state after {args.warmup_updates} IEEE updates ({warmup_seconds:.0f} s)"
    )
    print(
        "  denormal share of the optimiser's state per group: "
        + ", ".join(f"{name} {share:.2%}" for name, share in shares.items())
    )
    for name, flag in (("IEEE", False), ("flushed", True)):
        blocks = ", ".join(f"{rate:.2f}" for rate in rates[flag])
        print(f"  {name:8s}: {medians[flag]:6.2f} updates/s (blocks: {blocks})")
    ratio = medians[True] / medians[False]
    print(f"  flushed / IEEE: {ratio:.2f}x (medians of {args.repeats} blocks each)")


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
    parser.add_argument("--repeats", type=int, default=4, help="flush: timed blocks per mode")
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
