"""Intake beside learning: agent steps/s, updates/s and the replay ratio actually reached in
the learning phase of the multi-process loop, against a baseline revision measured in the same
run (by default the commit before the intake thread).

    python benchmarks/bench_intake.py [--seconds 120] [--replay_ratio 4] [--batch_size 64]
                                      [--num_actors 2] [--num_envs 16]
                                      [--baseline_rev d496373~1] [--only current|baseline]

Each variant runs in its own Python process from its own source tree (the baseline is
extracted with `git archive`), on Pong with N actor processes and a CPU learner, for the same
number of seconds after replay is warm. Printed for each, and as current/baseline ratios:
- agent steps/s and learner updates/s;
- the replay ratio reached (learned samples / inserted samples) against --replay_ratio;
- intake against what the ratio allows: inserted samples per second × ratio / (updates/s ×
  batch); 1.0 means actors deliver everything the learner's pace allows;
- the largest lead and lag of the learner behind ratio × inserted seen at the measurement
  points, in batches;
- the same per 20 s window, to show the rate holds from the first minute on.
Run it on a quiet machine: other processes on the cores change every figure.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_child(args) -> None:
    """Measures one variant: the source tree at --root."""
    sys.path.insert(0, args.root)
    import torch

    import gym_env
    from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner
    from main_loop import ParallelTrainer

    try:
        from distributed.config import ParallelConfig
    except ImportError:  # A baseline tree from before the packages: it was in main_loop.
        from main_loop import ParallelConfig

    atari = gym_env.AtariConfig("Pong", clip_rewards=False, full_action_space=True)
    spec = gym_env.EnvSpec(atari=atari)
    config = R2d2Config(
        batch_size=args.batch_size,
        min_replay_size=args.min_replay_size,
        replay_capacity=max(5_000, 2 * args.min_replay_size),
    )
    parallel = ParallelConfig(num_actors=args.num_actors, replay_ratio=args.replay_ratio)
    env = spec.create(1, 0)
    learner = build_learner(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        0,
        torch.device("cpu"),
    )
    env.close()
    factory = ActorFactory(config, spec, args.num_envs, args.num_actors)
    trainer = ParallelTrainer(parallel, factory, learner, seed=0, log=lambda *a: None)
    slice_steps = args.num_envs * args.num_actors * 8
    limiter = trainer.limiter
    with trainer:
        warm_started = time.monotonic()
        while learner.num_updates == 0:
            trainer.run_steps(slice_steps, "warm-up")
        warm_seconds = time.monotonic() - warm_started
        points = []  # (seconds, agent steps, updates, inserted, learned)

        def point() -> tuple:
            return (
                time.monotonic(),
                trainer.progress.total_steps,
                learner.num_updates,
                limiter.inserted,
                limiter.learned,
            )

        start = point()
        points.append(start)
        lead_lag = []
        while time.monotonic() - start[0] < args.seconds:
            trainer.run_steps(slice_steps, "bench")
            points.append(point())
            lead_lag.append((limiter.learned - limiter._target()) / args.batch_size)
        threads = torch.get_num_threads()
    print(
        json.dumps(
            {
                "points": [[p[0] - start[0], *p[1:]] for p in points],
                "lead_lag": lead_lag,
                "warm_seconds": warm_seconds,
                "torch_threads_at_end": threads,
            }
        )
    )


def summarise(points: list, batch: int, ratio: float) -> dict[str, float]:
    (t0, s0, u0, i0, l0), (t1, s1, u1, i1, l1) = points[0], points[-1]
    seconds = max(t1 - t0, 1e-9)
    updates_per_s = (u1 - u0) / seconds
    inserted_per_s = (i1 - i0) / seconds
    return {
        "seconds": seconds,
        "agent_steps_per_s": (s1 - s0) / seconds,
        "updates_per_s": updates_per_s,
        "replay_ratio_reached": (l1 - l0) / (i1 - i0) if i1 > i0 else float("nan"),
        "intake_vs_allowed": inserted_per_s * ratio / (updates_per_s * batch)
        if updates_per_s > 0
        else float("nan"),
    }


def windows(points: list, width: float) -> list[list]:
    """Consecutive measurement points grouped into windows of about `width` seconds."""
    groups, current = [], [points[0]]
    for p in points[1:]:
        current.append(p)
        if p[0] - current[0][0] >= width:
            groups.append(current)
            current = [p]
    if len(current) > 1:
        groups.append(current)
    return groups


def run_variant(name: str, root: pathlib.Path, args) -> dict:
    command = [
        sys.executable,
        str(pathlib.Path(__file__).resolve()),
        "--child",
        f"--root={root}",
        *(
            f"--{k}={getattr(args, k)}"
            for k in (
                "seconds",
                "replay_ratio",
                "batch_size",
                "num_actors",
                "num_envs",
                "min_replay_size",
            )
        ),
    ]
    print(f"running {name} from {root} ...", flush=True)
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(name: str, data: dict, args) -> dict[str, float]:
    summary = summarise(data["points"], args.batch_size, args.replay_ratio)
    lead_lag = data["lead_lag"] or [float("nan")]
    print(
        f"{name}: warm-up {data['warm_seconds']:.0f} s, then {summary['seconds']:.0f} s of "
        f"learning; torch threads at the end {data['torch_threads_at_end']}"
    )
    print(f"  agent steps/s          : {summary['agent_steps_per_s']:8.1f}")
    print(f"  learner updates/s      : {summary['updates_per_s']:8.3f}")
    print(
        f"  replay ratio reached   : {summary['replay_ratio_reached']:8.2f} "
        f"(asked {args.replay_ratio})"
    )
    print(f"  intake / ratio allows  : {summary['intake_vs_allowed']:8.2f}")
    print(
        f"  learner ahead (+) / behind (-) the ratio, batches: max {max(lead_lag):+.1f}, "
        f"min {min(lead_lag):+.1f}"
    )
    for group in windows(data["points"], 20.0):
        w = summarise(group, args.batch_size, args.replay_ratio)
        print(
            f"    {group[0][0]:5.0f}-{group[-1][0]:4.0f} s: {w['agent_steps_per_s']:7.1f} steps/s, "
            f"{w['updates_per_s']:6.3f} updates/s, ratio {w['replay_ratio_reached']:5.2f}"
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="Learning-phase seconds.")
    parser.add_argument("--replay_ratio", type=float, default=4.0)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_actors", type=int, default=2)
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--min_replay_size", type=int, default=256, help="Sequences.")
    parser.add_argument(
        "--baseline_rev",
        default="d496373~1",
        help="Git revision of the baseline (default: the commit before the intake thread).",
    )
    parser.add_argument("--only", choices=["current", "baseline"], default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", default=str(REPO), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    print(
        f"Pong, {args.num_actors} actors x {args.num_envs} envs, CPU learner, batch "
        f"{args.batch_size} x 120 steps, replay ratio {args.replay_ratio}, {args.seconds:.0f} s "
        "of learning each"
    )
    summaries = {}
    with tempfile.TemporaryDirectory(prefix="bench_intake_") as temp:
        if args.only != "current":
            baseline = pathlib.Path(temp) / "baseline"
            baseline.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.baseline_rev], cwd=REPO, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
            summaries["baseline"] = report(
                f"baseline ({args.baseline_rev})", run_variant("baseline", baseline, args), args
            )
        if args.only != "baseline":
            summaries["current"] = report(
                "current (working tree)", run_variant("current", REPO, args), args
            )
    if len(summaries) == 2:
        print("current / baseline:")
        for key in ("agent_steps_per_s", "updates_per_s", "replay_ratio_reached"):
            ratio = summaries["current"][key] / summaries["baseline"][key]
            print(f"  {key:22s}: {ratio:6.2f}")


if __name__ == "__main__":
    main()
