"""Deceptive tasks: does the exploitative policy keep the far reward that exploration finds?

    python benchmarks/deceptive_sweep.py [--agents ngu agent57 r2d2] [--tasks ...]
        [--seeds 0 1 2 3 4] [--set exploit_all_sequences=True] [--jobs 2]

        [--time_limit_is_terminal] [--keeping] [--iterations 6]

The runs are tests/test_deception.py's (its docstring has the tasks, budget, evaluation and
what "holds" and "keeps" mean), for any agent, task, seed and setting. The tasks are the family
(toy_envs.DECEPTIVE_TASKS) and the four detours declared after it (DECEPTIVE_DETOURS);
`--keeping` runs each agent with the suite's settings.

Issue 16's goal: NGU and Agent57 hold the far reward in each of the last 3 evaluations with at
least 4 of 5 seeds, and R2D2 with the same budget does not. Tasks, budget, seeds and thresholds
were fixed before any agent ran on them; what the first runs showed is in docs/results.md
("Deceptive tasks"). Prints each run's evaluations and what its learner saw.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_deception import (  # noqa: E402  (the test's runs, any agent and task)
    BUDGET,
    ITERATIONS,
    KEEPING,
    deceptive_run,
)
from worker_pool import orphan_free_pool  # noqa: E402  (workers die with the sweep)

import toy_envs  # noqa: E402

SEEDS = range(5)


def _run_and_report(job: tuple[str, str, int, dict, bool, int]) -> str:
    agent, task, seed, overrides, time_limit_is_terminal, iterations = job
    started = time.monotonic()
    result = deceptive_run(agent, task, seed, overrides, time_limit_is_terminal, iterations)
    settings = {**overrides, **({"time_limit_is_terminal": True} if time_limit_is_terminal else {})}
    lines = [
        f"{agent} {task} seed {seed}{' ' + str(settings) if settings else ''}: evaluations "
        f"{np.round(result.evaluations, 2).tolist()} -> "
        f"{'holds' if result.holds_at_the_end() else 'does not hold'} the far reward "
        f"({time.monotonic() - started:.0f} s)"
    ]
    for key in DIAGNOSTICS:
        if key in result.learner:
            lines.append(f"    {key}: {np.round(result.learner[key], 3).tolist()}")
    return "\n".join(lines)


DIAGNOSTICS = (
    "eval/episode_length",
    "train/episode_return",
    "train/episode_length",
    "learner/sampled_rewarded_share",
    "learner/sampled_largest_reward",
    "learner/q_value",
    "learner/q_value_extrinsic",
)


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", nargs="+", default=["ngu", "agent57", "r2d2"])
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=sorted(toy_envs.DECEPTIVE_TASKS) + sorted(toy_envs.DECEPTIVE_DETOURS),
        help="task ids: the family and its declared detours by default",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        help="config overrides for every agent, e.g. exploit_all_sequences=True gamma_0=0.99",
    )
    parser.add_argument(
        "--keeping",
        action="store_true",
        help="each agent with its settings that keep the far reward (tests/test_deception.py's "
        "KEEPING; implies --time_limit_is_terminal); --set changes them",
    )
    parser.add_argument(
        "--time_limit_is_terminal",
        action="store_true",
        help="the task's horizon ends a game like a game over when learning (no bootstrap)",
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=ITERATIONS,
        help=f"iterations of {BUDGET // ITERATIONS:,} agent steps, each followed by an "
        f"evaluation (the family's budget is {ITERATIONS}; a longer one is a new experiment)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    args = parser.parse_args()
    if args.iterations < 3:
        parser.error(
            f"--iterations must be at least 3 (the rule reads the last 3), got {args.iterations}"
        )
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}

    def settings(agent: str) -> dict:
        return (KEEPING[agent] if args.keeping else {}) | overrides

    jobs = [
        (a, t, s, settings(a), args.time_limit_is_terminal or args.keeping, args.iterations)
        for t in args.tasks
        for a in args.agents
        for s in args.seeds
    ]
    with orphan_free_pool(args.jobs) as pool:
        for report in pool.map(_run_and_report, jobs):
            print(report, flush=True)


if __name__ == "__main__":
    main()
