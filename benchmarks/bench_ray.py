"""The Ray backend against the process backend: agent steps/s and learner updates/s of the same
agent, configuration and actors in the same run, and the cost of one chunk message through
Ray (its size and its latency).

    python benchmarks/bench_ray.py [--agent r2d2|ngu|agent57] [--environment_name Pong]
                                   [--seconds 60] [--repeats 1] [--num_actors 2]
                                   [--num_envs 16] [--batch_size 64] [--replay_ratio 1]
                                   [--ray_cpus_per_actor 1] [--only process|ray|message]

Each measurement runs in its own Python process: the backends alternate (process, ray,
process, ray, ... for --repeats rounds) so that a change in the machine's load hits both.
Each trains from scratch with a CPU learner and measures --seconds after replay is warm.
The Ray runs start a local Ray instance (loopback only) and stop it. Printed: per backend the
mean agent steps/s and updates/s over its rounds, and ray / process for both (target >= 0.9).

The message cost: one real message (an actor's first chunks, compressed as actors send them)
pickled as the Ray backend sends it; its latency is the median time for the driver to fetch
it from a Ray actor holding it (ray.get of a call that returns it), next to an empty call's.
Run it on a quiet machine: other processes on the cores change every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
AGENT_MODULES = {
    "r2d2": "agents.r2d2.agent",
    "ngu": "agents.ngu.agent",
    "agent57": "agents.agent57.agent",
}
CONFIG_CLASSES = {"r2d2": "R2d2Config", "ngu": "NguConfig", "agent57": "Agent57Config"}


def build_parts(args):
    """(actor factory, learner, parallel config) for the agent, as the run scripts build them."""
    import importlib

    import torch

    import gym_env
    from distributed.config import ParallelConfig

    agent = importlib.import_module(AGENT_MODULES[args.agent])
    # As the run scripts: NGU and Agent57 see one frame, R2D2 a stack.
    stack = {"frame_stack": 1} if args.agent != "r2d2" else {}
    if gym_env.is_atari_game(args.environment_name):
        atari = gym_env.AtariConfig(
            args.environment_name, clip_rewards=False, full_action_space=True, **stack
        )
        spec = gym_env.EnvSpec(atari=atari)
    else:
        spec = gym_env.EnvSpec(classic_name=args.environment_name, **stack)
    config = getattr(agent, CONFIG_CLASSES[args.agent])(
        batch_size=args.batch_size,
        min_replay_size=args.min_replay_size,
        replay_capacity=max(5_000, 2 * args.min_replay_size),
    )
    parallel = ParallelConfig(num_actors=args.num_actors, replay_ratio=args.replay_ratio)
    with spec.create(1, 0) as env:
        shape, dtype, actions = env.observation_shape, env.observation_dtype, env.num_actions
    learner = agent.build_learner(config, shape, dtype, actions, 0, torch.device("cpu"))
    factory = agent.ActorFactory(config, spec, args.num_envs, args.num_actors)
    return factory, learner, parallel


def measure_backend(args) -> dict:
    """Trains with one backend; agent steps and updates over --seconds after warm-up."""
    from distributed.actors import process_pool
    from main_loop import ParallelTrainer

    factory, learner, parallel = build_parts(args)
    pool_factory = process_pool
    if args.backend == "ray":
        from distributed import ray_backend

        pool_factory = ray_backend.ray_pool_factory("", args.ray_cpus_per_actor)
    trainer = ParallelTrainer(
        parallel, factory, learner, seed=0, log=lambda *a: None, pool_factory=pool_factory
    )
    slice_steps = args.num_envs * args.num_actors * 8
    with trainer:
        warm_started = time.monotonic()
        while learner.num_updates == 0:
            trainer.run_steps(slice_steps, "warm-up")
        warm_seconds = time.monotonic() - warm_started
        started = time.monotonic()
        steps0, updates0 = trainer.progress.total_steps, learner.num_updates
        while time.monotonic() - started < args.seconds:
            trainer.run_steps(slice_steps, "bench")
        seconds = time.monotonic() - started
        steps, updates = trainer.progress.total_steps - steps0, learner.num_updates - updates0
    return {
        "warm_seconds": warm_seconds,
        "seconds": seconds,
        "agent_steps_per_s": steps / seconds,
        "updates_per_s": updates / seconds,
    }


def one_message(args):
    """An actor's first message, built by the shared actor loop in this process."""
    import torch

    from distributed.actors import run_actor_loop

    torch.set_num_threads(1)
    factory, _, _ = build_parts(args)
    messages = []

    def keep_first(message) -> bool:
        messages.append(message)
        return False  # Stops the loop.

    run_actor_loop(0, 0, factory, 400, None, lambda network, version: 0, keep_first, lambda: False)
    return messages[0]


class _Holder:
    """A Ray actor that holds one pickled message and returns it on every call."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def take(self) -> bytes:
        return self.data

    def ping(self) -> bytes:
        return b""


def measure_message(args) -> dict:
    """Size of one pickled message, and the time to fetch it from a Ray actor."""
    from distributed import ray_backend

    message = one_message(args)
    data = pickle.dumps([message], protocol=pickle.HIGHEST_PROTOCOL)
    session = ray_backend.RaySession("", num_actors=1, cpus_per_actor=0.0).open()
    ray = session.ray
    try:
        holder = ray.remote(num_cpus=0)(_Holder).remote(data)
        ray.get(holder.ping.remote())

        def median_ms(fetch, count: int = 100) -> float:
            times = []
            for _ in range(count):
                started = time.perf_counter()
                fetch()
                times.append(time.perf_counter() - started)
            return 1000 * statistics.median(times)

        return {
            "payloads": len(message.payloads),
            "agent_steps": message.num_steps,
            "bytes": len(data),
            # As the driver receives it: fetched, then unpickled.
            "latency_ms": median_ms(lambda: pickle.loads(ray.get(holder.take.remote()))),
            "empty_call_ms": median_ms(lambda: ray.get(holder.ping.remote())),
        }
    finally:
        session.close()


def run_child(args) -> dict:
    command = [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        "--child",
        *(f"--{k}={v}" for k, v in vars(args).items() if k not in ("child", "only", "repeats")),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{args.backend} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def mean_of(runs: list[dict], key: str) -> float:
    return statistics.fmean(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=sorted(AGENT_MODULES), default="r2d2")
    parser.add_argument("--environment_name", default="Pong")
    parser.add_argument("--seconds", type=float, default=60.0, help="Measured seconds per run.")
    parser.add_argument("--repeats", type=int, default=1, help="Rounds of (process, ray).")
    parser.add_argument("--num_actors", type=int, default=2)
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--min_replay_size", type=int, default=256, help="Sequences.")
    parser.add_argument("--replay_ratio", type=float, default=1.0)
    parser.add_argument("--ray_cpus_per_actor", type=float, default=1.0)
    parser.add_argument("--only", choices=["process", "ray", "message"], default=None)
    parser.add_argument("--backend", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        measure = measure_message if args.backend == "message" else measure_backend
        print(json.dumps(measure(args)))
        return
    print(
        f"{args.agent.upper()} on {args.environment_name}: {args.num_actors} actors x "
        f"{args.num_envs} envs, CPU learner, batch {args.batch_size}, replay ratio "
        f"{args.replay_ratio}, {args.seconds:.0f} s measured per run, {args.repeats} round(s)"
    )
    backends = [b for b in ("process", "ray") if args.only in (None, b)]
    runs: dict[str, list[dict]] = {b: [] for b in backends}
    for round_index in range(args.repeats):
        for backend in backends:
            args.backend = backend
            result = run_child(args)
            runs[backend].append(result)
            print(
                f"  round {round_index + 1} {backend:7s}: {result['agent_steps_per_s']:8.1f} "
                f"agent steps/s, {result['updates_per_s']:7.3f} updates/s "
                f"(warm-up {result['warm_seconds']:.0f} s)",
                flush=True,
            )
    for backend, results in runs.items():
        print(
            f"{backend:7s} mean: {mean_of(results, 'agent_steps_per_s'):8.1f} agent steps/s, "
            f"{mean_of(results, 'updates_per_s'):7.3f} updates/s"
        )
    if len(runs) == 2:
        for key in ("agent_steps_per_s", "updates_per_s"):
            ratio = mean_of(runs["ray"], key) / mean_of(runs["process"], key)
            print(f"ray / process {key:18s}: {ratio:5.2f} (target >= 0.9)")
    if args.only in (None, "message"):
        args.backend = "message"
        cost = run_child(args)
        print(
            f"one message through Ray: {cost['bytes'] / 1024:.1f} KiB pickled "
            f"({cost['payloads']} chunks, {cost['agent_steps']} agent steps), fetched in "
            f"{cost['latency_ms']:.2f} ms median (an empty call: {cost['empty_call_ms']:.2f} ms)"
        )


if __name__ == "__main__":
    main()
