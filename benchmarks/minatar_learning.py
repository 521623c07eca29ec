"""Learning runs on MinAtar: every configuration, game and seed through the agents' own
run_atari, a few at a time, resumable; then `python -m report` over the results.

    python benchmarks/minatar_learning.py --out runs/minatar [--jobs 1] [--only dqn-paper]
        [--games Asterix Freeway] [--seeds 0]
    python -m report runs/minatar/checkpoints --out docs/figures/minatar

Each run is `python -m agents.<agent>.run_atari --environment_name=MinAtar/<Game>-v1` with the
flags below and `--run_label=<variant>`, one torch thread, 500k frames (a MinAtar frame is one
agent step) in 20 iterations of 25k, each followed by 5,000 evaluation steps at ε = 0.05. A run
already finished is skipped; a run cut short resumes from its last checkpoint. The order of the
queue is the order in which results are wanted: it was fixed before any run.

Variants:
- dqn-paper: the MinAtar paper's DQN (Young & Tian 2019, examples/dqn.py): centred RMSProp
  (lr 2.5e-4, decay 0.95, eps 0.01), no gradient clipping (a bound of 1e9), Huber loss, batch
  32, replay 100k, target copy every 1,000 updates, one update per frame, 5,000 random frames,
  then ε from 1 to 0.1 over 100k frames, γ 0.99, one environment, rewards unclipped.
- dqn-library: the library's defaults (Adam lr 1e-4, eps 1.5e-4, gradient norm 10, 4
  environments) with double Q, on the paper's MinAtar scale (the replay, ε schedule, target
  period, batch and update rate above).
- r2d2-minatar, ngu-minatar, agent57-minatar: each agent's own defaults (its losses,
  discounts, ε ladder, Adam, and NGU's and Agent57's policies and intrinsic rewards), with
  DQN's MinAtar scale carried over to sequences: 1 actor process of 16 environments,
  sequences of 40 steps after a burn-in of 20, a new one every 20 steps, batch 32; replay of
  5,000 sequences (100k frames, as DQN's) that starts learning at 250 (5,000 frames);
  replay ratio 16, so that 32 transitions are learned per frame, as DQN's one batch of 32 per
  frame; a target copy every 250 updates (10k frames); no prefetch processes (one core per
  run); evaluation at ε = 0.05 like DQN's. These settings were fixed before any such run.
- ngu-beta0.003: ngu-minatar with β = 0.003 instead of the paper's 0.3, the value chosen on
  the deceptive tasks (docs/results.md, "NGU's β on short tasks"), not tuned here: whether
  the scale of β·r^i (r^i is 40-110 per step on MinAtar, `intrinsic/reward`) is what holds
  NGU back. Appended to the queue after the others.
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parents[1]
GAMES = ("Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders")
SEEDS = (0, 1, 2)
ITERATIONS, TRAIN_STEPS, EVAL_STEPS = 20, 25_000, 5_000

MINATAR_SCALE = (
    "--agent_steps_per_update=1",
    "--batch_size=32",
    "--replay_capacity=100000",
    "--target_update_period=1000",
    "--min_replay_size=5000",
    "--exploration_start=1.0",
    "--exploration_end=0.1",
    "--exploration_steps=100000",
    "--discount=0.99",
)
SEQUENCE_SCALE = (
    "--num_actors=1",
    "--num_envs=16",
    "--burn_in=20",
    "--sequence_length=40",
    "--replay_period=20",
    "--batch_size=32",
    "--replay_capacity=5000",
    "--min_replay_size=250",
    "--replay_ratio=16",
    "--target_update_period=250",
    "--prefetch_workers=0",
    "--eval_epsilon=0.05",
)
# name -> (agent, its flags); the run label is the name's part after the agent.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dqn-paper": (
        "dqn",
        (
            *MINATAR_SCALE,
            "--num_envs=1",
            "--optimizer=rmsprop",
            "--learning_rate=2.5e-4",
            "--rmsprop_decay=0.95",
            "--rmsprop_eps=0.01",
            "--max_grad_norm=1e9",
            "--noclip_rewards",
        ),
    ),
    "dqn-library": ("dqn", (*MINATAR_SCALE, "--double_q")),
    "r2d2-minatar": ("r2d2", SEQUENCE_SCALE),
    "ngu-minatar": ("ngu", SEQUENCE_SCALE),
    "agent57-minatar": ("agent57", SEQUENCE_SCALE),
    "ngu-beta0.003": ("ngu", (*SEQUENCE_SCALE, "--intrinsic_beta=0.003")),
}
DQN_VARIANTS = ("dqn-paper", "dqn-library")
RECURRENT_VARIANTS = ("r2d2-minatar", "ngu-minatar", "agent57-minatar")
ABLATIONS = ("ngu-beta0.003",)


def queue(
    only: set[str] | None, games: set[str] | None = None, seeds: set[int] | None = None
) -> list[tuple[str, str, int]]:
    """(variant, game, seed) in the order fixed before any run: Breakout first for every DQN
    variant, then the other games; then the recurrent agents, Breakout first (the recurrent
    variants were appended after the DQN runs had started); then the ablations. `only`,
    `games` and `seeds` keep a subset, in that order."""
    order = [(v, "Breakout", s) for v in DQN_VARIANTS for s in SEEDS]
    order += [(v, g, s) for v in DQN_VARIANTS for g in GAMES[1:] for s in SEEDS]
    order += [(v, "Breakout", s) for s in SEEDS for v in RECURRENT_VARIANTS]
    order += [(v, g, s) for g in GAMES[1:] for s in SEEDS for v in RECURRENT_VARIANTS]
    order += [(v, g, s) for v in ABLATIONS for g in GAMES for s in SEEDS]
    return [
        (v, g, s)
        for v, g, s in order
        if (only is None or v in only)
        and (games is None or g in games)
        and (seeds is None or s in seeds)
    ]


def finished(results_csv: pathlib.Path) -> bool:
    if not results_csv.exists():
        return False
    with open(results_csv) as f:
        rows = list(csv.DictReader(f))
    return bool(rows) and int(rows[-1]["iteration"]) >= ITERATIONS


def run_one(out: pathlib.Path, variant: str, game: str, seed: int) -> str:
    agent, flags = VARIANTS[variant]
    label = variant.removeprefix(f"{agent}-")
    name = f"{variant}/{game}/seed_{seed}"
    run_dir = out / "checkpoints" / variant / "MinAtar" / f"{game}-v1" / f"seed_{seed}"
    results = out / "results" / f"{variant}_{game}_seed{seed}.csv"
    if finished(results):
        return f"{name}: already finished"
    command = [
        sys.executable,
        "-m",
        f"agents.{agent}.run_atari",
        f"--environment_name=MinAtar/{game}-v1",
        f"--seed={seed}",
        f"--run_label={label}",
        f"--num_iterations={ITERATIONS}",
        f"--num_train_steps={TRAIN_STEPS}",
        f"--num_eval_steps={EVAL_STEPS}",
        *flags,
        f"--checkpoint_dir={out / 'checkpoints'}",
        f"--tensorboard_dir={out / 'tensorboard'}",
        f"--results_csv_path={results}",
    ]
    if run_dir.exists() and any(run_dir.iterdir()):
        command.append("--resume")
    log = out / "logs" / f"{variant}_{game}_seed{seed}.log"
    started = time.monotonic()
    with open(log, "a") as f:
        code = subprocess.call(
            command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=f, stderr=f
        )
    minutes = (time.monotonic() - started) / 60
    return f"{name}: exit {code} after {minutes:.1f} min (log {log})"


TABLE_FRAMES = (100_000, 250_000, 500_000)


def _cell(by_step: dict[int, float], frames: int) -> str:
    """The evaluation at `frames`: the first row at or past it within one iteration (the
    multi-process agents end an iteration a few steps past its mark, e.g. at 100,048)."""
    steps = [step for step in by_step if frames <= step < frames + TRAIN_STEPS]
    return f"{by_step[min(steps)]:.2f}" if steps else "not reached"


def score_table(results_dir: pathlib.Path) -> str:
    """Markdown: the evaluation return of every run in `results_dir` at TABLE_FRAMES (a MinAtar
    frame is one agent step), "not reached" where a run has not got there yet."""
    lines = [
        "| variant | game | seed | 100k | 250k | 500k (final) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for path in sorted(results_dir.glob("*.csv")):
        variant, game, seed = path.stem.rsplit("_", 2)
        with open(path) as f:
            by_step = {int(r["step"]): float(r["eval/episode_return"]) for r in csv.DictReader(f)}
        cells = [_cell(by_step, n) for n in TABLE_FRAMES]
        lines.append(f"| {variant} | {game} | {seed.removeprefix('seed')} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "runs" / "minatar")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one core each)")
    parser.add_argument(
        "--only", nargs="*", choices=VARIANTS, help="variants to run (default: all)"
    )
    parser.add_argument("--games", nargs="*", choices=GAMES, help="games to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, help="seeds to run (default: 0 1 2)")
    parser.add_argument("--list", action="store_true", help="print the queue and stop")
    parser.add_argument(
        "--table", action="store_true", help="print the score table of --out's runs and stop"
    )
    args = parser.parse_args()
    if args.table:
        print(score_table(args.out.resolve() / "results"))
        return
    jobs = queue(
        set(args.only) if args.only else None,
        set(args.games) if args.games else None,
        set(args.seeds) if args.seeds is not None else None,
    )
    if args.list:
        print("\n".join(f"{v} {g} seed {s}" for v, g, s in jobs))
        return
    out = args.out.resolve()
    for sub in ("checkpoints", "tensorboard", "results", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(out, *job), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
