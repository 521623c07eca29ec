"""Deceptive tasks: does the exploitative policy keep the far reward that exploration finds?

    python benchmarks/deceptive_sweep.py [--agents ngu agent57 r2d2] [--tasks ...]
        [--seeds 0 1 2 3 4] [--set exploit_all_sequences=True] [--jobs 2]

Each task of toy_envs.DECEPTIVE_TASKS puts a distractor worth 0.1 next to the start (it ends
the game) and the goal, worth 1, 11 to 16 steps away. An agent trains for BUDGET agent steps
in ITERATIONS iterations; after each, its exploitative policy (NGU and Agent57: j = 0, the
policy a user evaluates and records; R2D2: its greedy policy) plays EVAL_GAMES games at ε =
EVAL_EPSILON. The policy "holds the far reward" in an evaluation whose mean return is at least
HOLDS (more than half of the games on the goal; the distractor gives 0.1).

Issue 16's goal: NGU and Agent57 hold the far reward in each of the last 3 evaluations with at
least 4 of 5 seeds, and R2D2 with the same budget does not. Tasks, budget, seeds and thresholds
were fixed before any agent ran on them; what the first runs showed is in docs/results.md
("Deceptive tasks"). Prints each run's evaluations and what its learner saw.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import pathlib
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

import gymnasium as gym
import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_exploration import COMMON  # noqa: E402  (the exploration tests' settings)

import gym_env  # noqa: E402
import toy_envs  # noqa: E402
from agents.agent57 import agent as agent57  # noqa: E402
from agents.ngu import agent as ngu  # noqa: E402
from agents.r2d2 import agent as r2d2  # noqa: E402
from greedy_actors import RecurrentEpsilonGreedyActor  # noqa: E402
from main_loop import FeedLearner, IterationSchedule, run_single_thread_training  # noqa: E402
from tracker import MetricsWriter  # noqa: E402

CPU = torch.device("cpu")
MODULES = {"ngu": ngu, "agent57": agent57, "r2d2": r2d2}
NUM_ENVS = 8
BUDGET = 24_000  # agent steps over all environments
ITERATIONS = 6
EVAL_GAMES, EVAL_EPSILON = 10, 0.01
HOLDS = 0.5
SEEDS = range(5)
CONFIGS = {
    "ngu": lambda: ngu.NguConfig(**COMMON, num_policies=8, episodic_memory_capacity=1_000),
    "r2d2": lambda: r2d2.R2d2Config(**COMMON, discount=0.99, n_step=5),
    "agent57": lambda: agent57.Agent57Config(
        **COMMON, num_policies=16, episodic_memory_capacity=1_000, bandit_window=40
    ),
}


def exploitative_actor(agent: str, network, config, seed: int):
    """The policy a user evaluates: j = 0 for NGU and Agent57, R2D2's greedy one."""
    if agent == "ngu":
        return ngu.evaluation_actor(network, config, EVAL_EPSILON, 0, seed)
    if agent == "agent57":
        return agent57.evaluation_actor(network, config, EVAL_EPSILON, seed, policy_index=0)
    return RecurrentEpsilonGreedyActor(network, EVAL_EPSILON, seed, CPU)


class FreshWeights:
    """An evaluation actor that takes the learner's newest weights at every evaluation: NGU's
    actors snapshot their embedding per episode and re-snapshot only when told of new weights
    (the evaluation process does this after each weight pull)."""

    def __init__(self, actor) -> None:
        self.actor = actor

    def reset(self) -> None:
        if hasattr(self.actor, "weights_updated"):
            self.actor.weights_updated()
        self.actor.reset()

    def step(self, timestep):
        return self.actor.step(timestep)


@dataclasses.dataclass
class DeceptiveResult:
    """One run: the mean evaluation return after each iteration, and what its learner saw."""

    evaluations: list[float]
    learner: dict[str, list[float]]

    def holds_at_the_end(self, last: int = 3) -> bool:
        return all(value >= HOLDS for value in self.evaluations[-last:])


def deceptive_run(
    agent: str,
    task: str,
    seed: int,
    config_overrides=None,
    time_limit_is_terminal: bool = False,
) -> DeceptiveResult:
    """Trains `agent` on toy_envs:`task` for BUDGET steps in one process (one torch thread);
    evaluates its exploitative policy after every iteration. `time_limit_is_terminal`: the
    task's horizon ends a game like a game over when learning (gym_env.EnvSpec)."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    module = MODULES[agent]
    config = dataclasses.replace(CONFIGS[agent](), **(config_overrides or {}))
    spec = gym_env.EnvSpec(
        classic_name=f"toy_envs:{task}", time_limit_is_terminal=time_limit_is_terminal
    )
    env, actor = module.ActorFactory(config, spec, num_envs=NUM_ENVS, num_actors=1)(0, seed)
    learner = module.build_learner(
        config, env.observation_shape, env.observation_dtype, env.num_actions, seed, CPU
    )
    actor.network = learner.network  # In-process: act with the learner's weights directly.
    if hasattr(actor, "embeddings"):
        actor.embeddings.embedding = learner.network.embedding
    eval_env = spec.create(1, seed + 1_000)
    eval_actor = exploitative_actor(agent, learner.network, config, seed + 2_000)
    horizon = gym.make(f"toy_envs:{task}").unwrapped.horizon
    rows = run_single_thread_training(
        schedule=IterationSchedule(ITERATIONS, BUDGET // ITERATIONS, EVAL_GAMES * (horizon + 1)),
        actor=FeedLearner(actor, learner),
        learner=learner,
        agent_steps_per_update=NUM_ENVS,
        train_env=env,
        eval_env=eval_env,
        eval_actor=FreshWeights(eval_actor),
        save_checkpoint=lambda iteration, steps: None,
        writer=MetricsWriter(None, None),
    )
    env.close()
    eval_env.close()
    learner.close()
    history: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            if key.startswith(("learner/", "intrinsic/", "train/", "eval/", "policy_", "arms/")):
                history[key].append(float(value))
    return DeceptiveResult([float(r["eval/episode_return"]) for r in rows], dict(history))


def _run_and_report(job: tuple[str, str, int, dict, bool]) -> str:
    agent, task, seed, overrides, time_limit_is_terminal = job
    started = time.monotonic()
    result = deceptive_run(agent, task, seed, overrides, time_limit_is_terminal)
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
    parser.add_argument("--tasks", nargs="+", default=sorted(toy_envs.DECEPTIVE_TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        help="config overrides for every agent, e.g. exploit_all_sequences=True gamma_0=0.99",
    )
    parser.add_argument(
        "--time_limit_is_terminal",
        action="store_true",
        help="the task's horizon ends a game like a game over when learning (no bootstrap)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    args = parser.parse_args()
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    jobs = [
        (a, t, s, overrides, args.time_limit_is_terminal)
        for t in args.tasks
        for a in args.agents
        for s in args.seeds
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        for report in pool.map(_run_and_report, jobs):
            print(report, flush=True)


if __name__ == "__main__":
    main()
