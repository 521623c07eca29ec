"""Evaluation beside training: learner idle time per iteration because of evaluation, against a
baseline revision measured in the same run (by default the commit before the evaluation
process, where the learner evaluated in its own thread between iterations).

    python benchmarks/bench_eval_overlap.py [--num_iterations 3] [--num_train_steps 2000]
                                            [--num_eval_steps 1000] [--baseline_rev d496373~1]

Pong, R2D2, N actor processes, CPU learner. Printed per iteration: the seconds the learner
could not learn because of evaluation (baseline: the whole evaluation; current: the wait for
the previous iteration's evaluation, `learner/eval_wait_seconds`), the evaluation's own
duration, and, for the whole run, learner updates/s. Run it on a quiet machine.
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
    sys.path.insert(0, args.root)
    import functools

    import torch

    import gym_env
    import main_loop
    from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner
    from tracker import MetricsWriter

    atari = gym_env.AtariConfig("Pong", clip_rewards=False, full_action_space=True)
    spec = gym_env.EnvSpec(atari=atari)
    config = R2d2Config(
        batch_size=args.batch_size, min_replay_size=2 * args.batch_size, replay_capacity=5_000
    )
    try:
        from distributed.config import ParallelConfig
    except ImportError:  # A baseline tree from before the packages: it was in main_loop.
        ParallelConfig = main_loop.ParallelConfig
    parallel = ParallelConfig(num_actors=args.num_actors, replay_ratio=1.0)
    env = spec.create(1, 0)
    shape, dtype, actions = env.observation_shape, env.observation_dtype, env.num_actions
    env.close()
    cpu = torch.device("cpu")
    learner = build_learner(config, shape, dtype, actions, 0, cpu)
    factory = ActorFactory(config, spec, args.num_envs, args.num_actors)
    trainer = main_loop.ParallelTrainer(parallel, factory, learner, seed=0, log=lambda *a: None)
    schedule = main_loop.IterationSchedule(
        args.num_iterations, args.num_train_steps, args.num_eval_steps
    )
    started = time.monotonic()
    if args.variant == "baseline":
        from greedy_actors import RecurrentEpsilonGreedyActor

        eval_seconds = []
        evaluate = main_loop.evaluate

        def timed_evaluate(*a, **k):
            t = time.monotonic()
            result = evaluate(*a, **k)
            eval_seconds.append(time.monotonic() - t)
            return result

        main_loop.evaluate = timed_evaluate
        eval_env = spec.create(1, 1)
        main_loop.run_parallel_training(
            schedule=schedule,
            trainer=trainer,
            eval_env=eval_env,
            eval_actor=RecurrentEpsilonGreedyActor(learner.network, 0.001, 1, cpu),
            save_checkpoint=lambda *a: None,
            writer=MetricsWriter(None, None),
        )
        idle, durations = eval_seconds, eval_seconds
    else:
        from agents.r2d2.agent import build_network
        from distributed.evaluation_process import (
            EvalActorFactory,
            EvalWorker,
            OverlappedEvaluation,
        )
        from greedy_actors import RecurrentEpsilonGreedyActor

        eval_factory = EvalActorFactory(
            spec,
            functools.partial(build_network, config),
            functools.partial(RecurrentEpsilonGreedyActor, epsilon=0.001, device=cpu),
        )
        evaluation = OverlappedEvaluation(
            EvalWorker(eval_factory, learner.network),
            MetricsWriter(None, None),
            seed=1,
            num_eval_steps=args.num_eval_steps,
            log=lambda *a: None,
        )
        rows = main_loop.run_parallel_training(
            schedule=schedule,
            trainer=trainer,
            evaluation=evaluation,
            save_checkpoint=lambda *a: None,
        )
        # The wait at the end of iteration k is for evaluation k − 1; the last evaluation
        # runs after training, when the learner has nothing left to learn.
        idle = [row["learner/eval_wait_seconds"] for row in rows]
        durations = [row["eval/seconds"] for row in rows]
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "idle": idle,
                "eval_seconds": durations,
                "updates_per_s": learner.num_updates / seconds,
                "seconds": seconds,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_iterations", type=int, default=3)
    parser.add_argument("--num_train_steps", type=int, default=2_000)
    parser.add_argument("--num_eval_steps", type=int, default=1_000)
    parser.add_argument("--num_actors", type=int, default=2)
    parser.add_argument("--num_envs", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--baseline_rev", default="d496373~1")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="current", help=argparse.SUPPRESS)
    parser.add_argument("--root", default=str(REPO), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    print(
        f"Pong R2D2, {args.num_actors} actors x {args.num_envs} envs, CPU learner, batch "
        f"{args.batch_size}; {args.num_iterations} iterations of {args.num_train_steps} training "
        f"and {args.num_eval_steps} evaluation steps"
    )
    passed = [
        f"--{k}={getattr(args, k)}"
        for k in (
            "num_iterations",
            "num_train_steps",
            "num_eval_steps",
            "num_actors",
            "num_envs",
            "batch_size",
        )
    ]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as temp:
        baseline = pathlib.Path(temp) / "baseline"
        baseline.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline_rev], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
        for variant, root in (("baseline", baseline), ("current", REPO)):
            command = [
                sys.executable,
                str(pathlib.Path(__file__).resolve()),
                "--child",
                f"--variant={variant}",
                f"--root={root}",
                *passed,
            ]
            print(f"running {variant} ...", flush=True)
            done = subprocess.run(command, cwd=root, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    for variant, label in (("baseline", f"baseline ({args.baseline_rev})"), ("current", "current")):
        r = results[variant]
        idle = ", ".join(f"{s:.1f}" for s in r["idle"])
        evals = ", ".join(f"{s:.1f}" for s in r["eval_seconds"])
        print(f"{label}:")
        print(f"  learner idle for evaluation per iteration, s: {idle}")
        print(f"  evaluation durations, s                     : {evals}")
        print(f"  learner updates/s over the run              : {r['updates_per_s']:.3f}")
    before, after = sum(results["baseline"]["idle"]), sum(results["current"]["idle"])
    print(f"total learner idle for evaluation: {after:.1f} s against {before:.1f} s")


if __name__ == "__main__":
    main()
