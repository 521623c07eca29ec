"""The learning and exploration tests' training runs under several CPU code paths.

    python benchmarks/learning_spread.py [--settings native,avx2,default] [--out FILE]
        [--runs r2d2_memory,dqn_cartpole,...] [--seeds r2d2_memory=0-4,...]

A learning run is deterministic on one machine but chaotic: the last digits of a conv, an LSTM
or a matmul differ between CPU instruction sets and BLAS paths, and training amplifies them.
Another machine therefore ends a seed elsewhere. This script simulates other machines on this
one by forcing torch, oneDNN and MKL onto other code paths (each setting is a set of
environment variables, applied to a fresh process before torch is imported), runs the tests'
own training functions with each, and prints every seed's result per setting, so that a test's
rule can be chosen from the spread rather than from one machine's numbers.

Each setting's runs share a pool of two worker processes (this machine's two cores). Results
are appended to --out as JSON lines, one per run, and printed as a table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Each setting: the environment that sends torch (ATen's vector kernels), oneDNN (conv, LSTM)
# and MKL (matmul) down another path. Checked on an AVX512 machine: each changes the bits of a
# conv, an LSTM and a matmul or softmax against `native`.
SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_CBWR": "COMPATIBLE",
    },
}

# run name -> (test module, function, fixed leading arguments, default seeds, rough seconds).
RUNS: dict[str, tuple[str, str, tuple, list[int], float]] = {
    "r2d2_memory": ("test_learning", "r2d2_memory_task_returns", (), [0, 1, 2, 3, 4], 150),
    "dqn_cartpole": ("test_learning", "dqn_cartpole_returns", (), [0, 1, 2], 120),
    "dqn_memory": ("test_learning", "dqn_memory_task_returns", (), [0, 1, 2], 115),
    "dqn_minatar": ("test_learning", "dqn_minatar_breakout_returns", (), [0, 1, 2], 170),
    "ngu_deadly": (
        "test_exploration",
        "goal_episodes",
        ("ngu", "toy_envs:SparseGridRoomDeadly-v0"),
        list(range(8)),
        45,
    ),
    # NGU in the deadly room with its default policy assignment (drawn per episode), where the
    # test fixes it (App. A): how much the assignment matters there.
    "ngu_deadly_drawn": (
        "learning_spread",
        "ngu_goal_episodes_with_drawn_policies",
        (),
        list(range(8)),
        45,
    ),
    "r2d2_deadly": (
        "test_exploration",
        "goal_episodes",
        ("r2d2", "toy_envs:SparseGridRoomDeadly-v0"),
        list(range(8)),
        30,
    ),
    "agent57_open": (
        "test_exploration",
        "goal_episodes",
        ("agent57", "toy_envs:SparseGridRoom-v0"),
        [0, 1, 2],
        70,
    ),
    # test_deception's runs, each agent with its keeping settings: NGU, Agent57 and R2D2 on the
    # detour, NGU on the corridor, and Agent57 on the corridor as its test had it before it
    # moved to the detour (with the intrinsic reward of a game-ending step). The result is the
    # evaluation after each iteration; the headline, how many of the last 3 hold the goal.
    "agent57_corridor": (
        "learning_spread",
        "keeping_evaluations_with_game_over_reward",
        ("agent57", "DeceptiveCorridor-v0"),
        [0, 1, 2, 3, 4],
        150,
    ),
    "ngu_corridor": (
        "learning_spread",
        "keeping_evaluations",
        ("ngu", "DeceptiveCorridor-v0"),
        [0, 1, 2, 3, 4],
        90,
    ),
    "ngu_detour": (
        "learning_spread",
        "keeping_evaluations",
        ("ngu", "DeceptiveDetour-v0"),
        [0, 1, 2, 3, 4],
        80,
    ),
    "agent57_detour": (
        "learning_spread",
        "keeping_evaluations",
        ("agent57", "DeceptiveDetour-v0"),
        [0, 1, 2, 3, 4],
        170,
    ),
    "r2d2_detour": (
        "learning_spread",
        "keeping_evaluations",
        ("r2d2", "DeceptiveDetour-v0"),
        [0, 1, 2, 3, 4],
        60,
    ),
    # The same runs evaluating the online weights instead of their average (docs/results.md,
    # "Deceptive tasks", cause 5); every other keeping setting as it is now.
    **{
        f"{agent}_detour_online": (
            "learning_spread",
            "keeping_evaluations_online",
            (agent, "DeceptiveDetour-v0"),
            [0, 1, 2, 3, 4],
            seconds,
        )
        for agent, seconds in (("ngu", 80), ("agent57", 170), ("r2d2", 60))
    },
}


def keeping_evaluations(agent: str, task: str, seed: int) -> list[float]:
    """test_deception's run of `agent` on `task` with its keeping settings: the exploitative
    policy's evaluation after each iteration."""
    import test_deception

    return test_deception.keeping_run(agent, task, seed).evaluations


def keeping_evaluations_online(agent: str, task: str, seed: int) -> list[float]:
    """keeping_evaluations with the online weights evaluated, not their average."""
    import test_deception

    return test_deception.keeping_run(agent, task, seed, evaluation_average_decay=0.0).evaluations


def keeping_evaluations_with_game_over_reward(agent: str, task: str, seed: int) -> list[float]:
    """keeping_evaluations with the papers' intrinsic reward on a game-ending step."""
    import test_deception

    changes = {"intrinsic_reward_at_game_over": True}
    return test_deception.keeping_run(agent, task, seed, **changes).evaluations


def ngu_goal_episodes_with_drawn_policies(seed: int) -> tuple[int, int]:
    """test_exploration's NGU deadly-room run, with j drawn per episode (NGU's default)."""
    import dataclasses

    import test_exploration

    fixed = test_exploration.CONFIGS["ngu"]
    test_exploration.CONFIGS["ngu"] = lambda: dataclasses.replace(
        fixed(), draw_policy_per_episode=True
    )
    return test_exploration.goal_episodes("ngu", test_exploration.DEADLY_ROOM, seed)


def code_path_digest() -> dict[str, str]:
    """Short hashes of a conv, an LSTM and a matmul: equal digests, equal code paths."""
    import hashlib

    import torch

    torch.manual_seed(0)

    def digest(t) -> str:
        return hashlib.sha1(t.detach().contiguous().numpy().tobytes()).hexdigest()[:8]

    x = torch.randn(8, 4, 20, 20)
    m = torch.randn(65, 129)
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "conv": digest(torch.nn.Conv2d(4, 8, 3)(x)),
        "lstm": digest(torch.nn.LSTM(16, 32)(torch.randn(5, 3, 16))[0]),
        "matmul": digest(m @ m.T),
        "softmax": digest(torch.softmax(torch.randn(50, 77), -1)),
    }


def run_one(run: str, seed: int):
    import importlib

    import torch

    torch.set_num_threads(1)
    sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
    module, function, leading, _, _ = RUNS[run]
    return getattr(importlib.import_module(module), function)(*leading, seed)


def summarise(run: str, result) -> float:
    """A run's headline: the mean greedy score (learning runs) or the goal games."""
    if "goal_episodes" in RUNS[run][1]:
        return float(result[0])
    if RUNS[run][1].startswith("keeping_evaluations"):
        import test_deception

        return float(test_deception.held_at_the_end(result))
    final = result["final"] if isinstance(result, dict) else result
    return float(sum(final) / len(final))


def worker_main(setting: str, runs: list[tuple[str, int]], out: pathlib.Path) -> None:
    """Runs in a process whose environment already holds the setting's variables."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    digest = code_path_digest()
    print(f"[{setting}] code paths: {digest}", flush=True)
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        started = time.time()
        futures = {pool.submit(run_one, run, seed): (run, seed) for run, seed in runs}
        for future in as_completed(futures):
            run, seed = futures[future]
            result = future.result()
            row = {
                "setting": setting,
                "digest": digest,
                "run": run,
                "seed": seed,
                "headline": summarise(run, result),
                "result": result,
                "elapsed_s": round(time.time() - started),
            }
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[{setting}] {run} seed {seed}: {row['headline']:.1f}", flush=True)


def parse_seeds(text: str) -> dict[str, list[int]]:
    seeds = {}
    for item in filter(None, text.split(",")):
        run, _, spec = item.partition("=")
        low, _, high = spec.partition("-")
        seeds[run] = list(range(int(low), int(high or low) + 1))
    return seeds


def print_table(out: pathlib.Path, markdown: bool = False) -> None:
    """Every (run, setting) with its seeds' headlines; --markdown: one Markdown table per run."""
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    table: dict[tuple[str, str], dict[int, float]] = {}
    for row in rows:
        table.setdefault((row["run"], row["setting"]), {})[row["seed"]] = row["headline"]
    if not markdown:
        for (run, setting), by_seed in sorted(table.items()):
            cells = ", ".join(f"{seed}: {by_seed[seed]:g}" for seed in sorted(by_seed))
            print(f"{run:14s} {setting:8s} {cells}")
        return
    for run in sorted({run for run, _ in table}):
        settings = [s for s in SETTINGS if (run, s) in table]
        seeds = sorted({seed for s in settings for seed in table[(run, s)]})
        print(f"\n{run}\n\n| setting | " + " | ".join(f"seed {s}" for s in seeds) + " |")
        print("|---" * (len(seeds) + 1) + "|")
        for setting in settings:
            by_seed = table[(run, setting)]
            cells = [f"{by_seed[s]:g}" if s in by_seed else "–" for s in seeds]
            print(f"| {setting} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help="settings to run")
    parser.add_argument("--runs", default=",".join(RUNS), help="runs to make")
    parser.add_argument("--seeds", default="", help="override seeds, e.g. r2d2_memory=0-4")
    parser.add_argument("--out", default="learning_spread.jsonl", help="JSON lines to append")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--table_only", action="store_true", help="print the table of --out")
    parser.add_argument("--markdown", action="store_true", help="print it as Markdown tables")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    if args.table_only:
        print_table(out, args.markdown)
        return
    names = [name for name in args.runs.split(",") if name]
    unknown = [name for name in names if name not in RUNS]
    if unknown or any(s not in SETTINGS for s in args.settings.split(",")):
        parser.error(f"unknown run or setting in {args.runs!r} / {args.settings!r}")
    seeds = {name: RUNS[name][3] for name in names} | parse_seeds(args.seeds)
    runs = [(name, seed) for name in names for seed in seeds[name]]
    runs.sort(key=lambda run: -RUNS[run[0]][4])  # longest first: neither core idles at the end
    if args.worker:
        worker_main(args.worker, runs, out)
        return
    for setting in args.settings.split(","):
        env = os.environ | SETTINGS[setting]
        command = [sys.executable, __file__, "--worker", setting, "--out", str(out)]
        command += ["--runs", ",".join(names), "--seeds", args.seeds]
        subprocess.run(command, env=env, check=True)
    print_table(out)


if __name__ == "__main__":
    main()
