"""DQN on MinAtar at one update per frame: the training loop's frames/s against the combined
limit of its parts, and against a baseline commit, side by side in one run.

    python benchmarks/bench_small_network.py [--baseline 1fa4f64] [--num_envs 1 4] [--torso mlp]
    python benchmarks/bench_small_network.py --baseline noflush   # what --flush_denormals gives

On a network this small the time goes to per-step overhead, not arithmetic, so this measures
three things:

1. The parts, each timed alone in this tree, with E environments: one step of the E
   environments (random actions), one batched forward pass of the Q-network on E observations
   (no gradient), and one learner update (replay sample of 32, forward, backward, Adam),
   with denormals flushed as in run_atari (--flush_denormals). The
   combined limit is 1 / (t_env / E + t_forward / E + t_update) frames/s: what a loop that
   spends nothing outside these parts would reach at one update per frame.
2. The loop: `python -m agents.dqn.run_atari` itself, in a subprocess with one torch thread,
   with the MinAtar paper's settings (batch 32, replay 100k, one update per frame, target every
   1,000 updates); frames/s is the run's own `train/steps_per_second` of its last iteration
   (every step of it is after the replay warm-up, so every frame pays for one update).
3. The same command in the baseline commit's tree (exported with `git archive`), alternating
   with this tree's, `--repeats` times each; or, with `--baseline noflush`, in this tree with
   `--noflush_denormals` (IEEE arithmetic), which measures what flushing denormals gives.

A MinAtar frame is one agent step (MinAtar has no frame skip).
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gym_env  # noqa: E402
from agents.dqn.agent import DqnConfig, build_agent  # noqa: E402
from experiment import denormals  # noqa: E402

PAPER_FLAGS = (
    "--agent_steps_per_update=1",
    "--batch_size=32",
    "--replay_capacity=100000",
    "--target_update_period=1000",
    "--exploration_steps=100000",
    "--num_eval_steps=0",
    "--num_iterations=2",
)


def seconds_per_call(fn, calls: int, warmup: int = 50) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def time_parts(game: str, num_envs: int, calls: int, torso: str) -> dict[str, float]:
    """Seconds of one environment step (E envs), one batched forward (E), one update."""
    env = gym_env.create_gymnasium_environment(f"MinAtar/{game}-v1", num_envs, seed=0)
    config = DqnConfig(
        replay_capacity=100_000, min_replay_size=1_000, agent_steps_per_update=1, torso=torso
    )
    actor, learner = build_agent(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        num_envs,
        0,
        torch.device("cpu"),
        total_updates=10**6,
    )
    rng = np.random.default_rng(0)
    timestep = env.reset()
    while learner.replay.size < config.min_replay_size:  # Real frames for the sampler.
        timestep = env.step(actor.step(timestep))

    def env_step() -> None:
        env.step(rng.integers(0, env.num_actions, num_envs))

    observation = torch.as_tensor(timestep.observation)

    @torch.no_grad()
    def forward() -> None:
        learner.network(observation)

    parts = {
        "env": seconds_per_call(env_step, calls),
        "forward": seconds_per_call(forward, calls),
        "update": seconds_per_call(learner.step, calls),
    }
    env.close()
    return parts


def loop_frames_per_second(
    tree: pathlib.Path, game: str, num_envs: int, steps: int, torso: str, *extra_flags: str
) -> float:
    """The last iteration's train/steps_per_second of run_atari in `tree`."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "agents.dqn.run_atari",
            f"--environment_name=MinAtar/{game}-v1",
            f"--num_envs={num_envs}",
            f"--torso={torso}",
            *extra_flags,
            f"--num_train_steps={steps}",
            "--min_replay_size=1000",
            *PAPER_FLAGS,
            f"--checkpoint_dir={out}/checkpoints",
            f"--tensorboard_dir={out}/tensorboard",
            f"--results_csv_path={out}/results.csv",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
        subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True)
        with open(f"{out}/results.csv") as f:
            rows = list(csv.DictReader(f))
        return float(rows[-1]["train/steps_per_second"])


def export_tree(ref: str, into: str) -> pathlib.Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return pathlib.Path(into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", default="Breakout", help="MinAtar game")
    parser.add_argument(
        "--baseline",
        default="1fa4f64",
        help="commit to compare against, or noflush: this tree with --noflush_denormals",
    )
    parser.add_argument("--num_envs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=4000, help="agent steps per iteration")
    parser.add_argument("--calls", type=int, default=1000, help="calls per timed part")
    parser.add_argument("--repeats", type=int, default=2, help="loop runs per tree")
    parser.add_argument(
        "--torso",
        default="minatar",
        help="minatar (the paper's conv 16 + fc 128) or mlp (2 x 128 on the flattened planes)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    denormals.flush_denormals(True)  # The parts as run_atari runs them (--flush_denormals).
    print(
        f"MinAtar/{args.game}-v1, {args.torso} torso, one update per frame, 1 torch thread, "
        f"baseline {args.baseline}"
    )
    with tempfile.TemporaryDirectory() as baseline_dir:
        if args.baseline == "noflush":
            baseline, baseline_flags = ROOT, ("--noflush_denormals",)
        else:
            baseline, baseline_flags = export_tree(args.baseline, baseline_dir), ()
        for num_envs in args.num_envs:
            parts = time_parts(args.game, num_envs, args.calls, args.torso)
            per_frame = parts["env"] / num_envs + parts["forward"] / num_envs + parts["update"]
            limit = 1.0 / per_frame
            loops: dict[str, list[float]] = {"this tree": [], "baseline": []}
            for _ in range(args.repeats):
                for name, tree, flags in (
                    ("this tree", ROOT, ()),
                    ("baseline", baseline, baseline_flags),
                ):
                    fps = loop_frames_per_second(
                        tree, args.game, num_envs, args.steps, args.torso, *flags
                    )
                    loops[name].append(fps)
            ours, theirs = statistics.mean(loops["this tree"]), statistics.mean(loops["baseline"])
            print(
                f"\nE={num_envs}: env step {parts['env'] * 1e6:.0f} us, forward "
                f"{parts['forward'] * 1e6:.0f} us, update {parts['update'] * 1e6:.0f} us"
                f" -> combined limit {limit:.0f} frames/s"
            )
            print(
                f"  loop, this tree: {ours:.0f} frames/s ({_runs(loops['this tree'])}) = "
                f"{ours / limit:.2f} of the limit"
            )
            print(
                f"  loop, baseline : {theirs:.0f} frames/s ({_runs(loops['baseline'])}); "
                f"this tree / baseline = {ours / theirs:.2f}x"
            )


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
