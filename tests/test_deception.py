"""Deceptive tasks: the exploitative policy keeps the far reward that exploration finds.

toy_envs.DECEPTIVE_TASKS put a distractor worth 0.1 next to the start (it ends the game) and the
goal, worth 1, 11 to 16 steps away. An agent trains for BUDGET agent steps in ITERATIONS
iterations; after each, its exploitative policy (NGU and Agent57: j = 0, the policy a user
evaluates and records; R2D2: its greedy policy) plays EVAL_GAMES games at ε = EVAL_EPSILON. It
"holds the far reward" in an evaluation whose mean return is at least HOLDS (more than half of
the games on the goal) and "keeps" it when it holds it in each of the last 3 evaluations.

Two tests, on the detour, the family's task that deceives R2D2 (R2D2 with the same budget and
settings stays at the distractor; benchmarks/learning_spread.py, run `r2d2_detour`; that half
is not run here, for the suite's time). Each asserts issue 16's rule itself: at least KEEPS of
seeds 0-4 keep the far reward. Both use the settings that keep what exploration finds
(KEEPING: the time limit is part of the task, `--time_limit_is_terminal`, discounts matched to
the 22-step horizon, the evaluated weights averaged over about the last 200 updates, and no
intrinsic reward on the step that ends a game; NGU also β = 0.003). Each setting joined by a
rule fixed before its runs.

docs/results.md ("Deceptive tasks") has every seed of these runs on three CPU code paths
(runs `ngu_detour` and `agent57_detour`; without the averaged evaluation `*_detour_online`),
every configuration tried, the family and four detours declared after it
(toy_envs.DECEPTIVE_DETOURS), and held-out seeds. The whole family, every agent and
ablations: `python benchmarks/deceptive_sweep.py`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import gymnasium as gym
import pytest
import torch
from test_exploration import COMMON
from worker_pool import PoolRuns

import gym_env
import toy_envs  # noqa: F401  (registers the tasks)
from agents.agent57 import agent as agent57
from agents.ngu import agent as ngu
from agents.r2d2 import agent as r2d2
from greedy_actors import RecurrentEpsilonGreedyActor
from main_loop import FeedLearner, IterationSchedule, run_single_thread_training
from tracker import MetricsWriter

CPU = torch.device("cpu")
MODULES = {"ngu": ngu, "agent57": agent57, "r2d2": r2d2}
NUM_ENVS = 8
BUDGET = 24_000  # agent steps over all environments
ITERATIONS = 6
EVAL_GAMES, EVAL_EPSILON = 10, 0.01
HOLDS = 0.5
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


LAST = 3  # "keeps" = holds the far reward in each of the last LAST evaluations


def held_at_the_end(evaluations: list[float], last: int = LAST) -> int:
    """How many of a run's last `last` evaluations hold the far reward."""
    return sum(value >= HOLDS for value in evaluations[-last:])


@dataclasses.dataclass
class DeceptiveResult:
    """One run: the mean evaluation return after each iteration, and what its learner saw."""

    evaluations: list[float]
    learner: dict[str, list[float]]

    def holds_at_the_end(self, last: int = LAST) -> bool:
        return held_at_the_end(self.evaluations, last) == last


def deceptive_run(
    agent: str,
    task: str,
    seed: int,
    config_overrides=None,
    time_limit_is_terminal: bool = False,
    iterations: int = ITERATIONS,
) -> DeceptiveResult:
    """Trains `agent` on toy_envs:`task` for `iterations` of BUDGET / ITERATIONS steps in one
    process (one torch thread); evaluates its exploitative policy after every iteration.
    `time_limit_is_terminal`: the task's horizon ends a game like a game over when learning
    (gym_env.EnvSpec)."""
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
    eval_env = spec.create(1, seed + 1_000)
    eval_actor = exploitative_actor(agent, learner.evaluation_network, config, seed + 2_000)
    horizon = gym.make(f"toy_envs:{task}").unwrapped.horizon
    rows = run_single_thread_training(
        schedule=IterationSchedule(iterations, BUDGET // ITERATIONS, EVAL_GAMES * (horizon + 1)),
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


# The settings that keep the far reward: the task's time limit ends a game when learning, and
# every discount matched to the 22-step horizon (a no-op costs (1 - γ) of the value, 5 % here,
# which the value network resolves; at γ0 = 0.9999 it is 0.01 %). The evaluated weights are an
# average over about the last 200 updates: a single snapshot of j = 0 loops to the time limit
# in about one evaluation in five between snapshots that reach the goal (cause 5).
# docs/results.md ("Deceptive tasks") has R2D2 with the same settings too.
TIME_LIMIT_IS_TERMINAL = True
AVERAGED = {"evaluation_average_decay": 0.995}
KEEPING = {
    # Agent57's intrinsic Q-network learns at once the novelty paid on the step onto the
    # distractor, the largest of a game (the episodic memory holds one state then), and every
    # arm with β above 0.01 follows it there; with no r^i on a game-ending step it finds the
    # detour's goal (cause 8 in docs/results.md, "Deceptive tasks").
    "agent57": {
        "gamma_0": 0.95,
        "gamma_max": 0.95,
        "gamma_min": 0.9,
        "exploit_all_sequences": True,
        "intrinsic_reward_at_game_over": False,
    }
    | AVERAGED,
    # NGU's one network learns every j's values together, and j = 0's follow the exploratory
    # policies' scale, which β·r^i sets: r^i is about 30 per step on these short tasks (every
    # state is new to the episodic memory), so at the paper's β = 0.3 the mixed reward is
    # almost all intrinsic and j = 0's values sit near 3 where no return above 1 exists. At
    # β = 0.003 they stay on the extrinsic scale while β·r^i (about 0.09 a step) still pays
    # more than the distractor. β was chosen between 0.03 and 0.003 on the whole family by a
    # rule fixed beforehand (docs/results.md, "NGU's β on short tasks"). Cause 8 holds for NGU
    # too: with r^i paid on the step onto the distractor, its explorers end their games there
    # and find a 16-step detour late (docs/results.md, "NGU without r^i on a game-ending step").
    "ngu": {
        "gamma_max": 0.95,
        "gamma_min": 0.9,
        "exploit_all_sequences": True,
        "intrinsic_beta": 0.003,
        "intrinsic_reward_at_game_over": False,
    }
    | AVERAGED,
    "r2d2": {"discount": 0.95} | AVERAGED,
}
KEEPS = 4  # issue 16's rule: seeds (of 5) holding the far reward in each of the last 3 evaluations
SEEDS = range(5)
TASK = "DeceptiveDetour-v0"  # the family's task that deceives R2D2 (module docstring)

RUNS_OF_TEST = {
    f"test_{agent}_keeps_the_detours_far_reward": [(agent, TASK, seed) for seed in SEEDS]
    for agent in ("ngu", "agent57")
}
SECONDS_PER_RUN = {"agent57": 150, "ngu": 110}


def keeping_run(agent: str, task: str, seed: int, **changes) -> DeceptiveResult:
    """`agent`'s run on `task` with its KEEPING settings, and `changes` to them."""
    return deceptive_run(agent, task, seed, KEEPING[agent] | changes, TIME_LIMIT_IS_TERMINAL)


POOL_RUNS = PoolRuns(RUNS_OF_TEST, lambda run: SECONDS_PER_RUN[run[0]], keeping_run)


@pytest.fixture(scope="module")
def deceptive_runs(training_runs):
    """{(agent, task, seed): future of its DeceptiveResult} (the suite's pool, conftest)."""
    return training_runs[__name__]


def assert_most_seeds_keep(runs, test: str) -> None:
    """Issue 16's rule over `test`'s runs; prints every seed's evaluations."""
    results = {run[2]: runs[run].result() for run in RUNS_OF_TEST[test]}
    evaluations = {seed: result.evaluations for seed, result in results.items()}
    keeping = sum(result.holds_at_the_end() for result in results.values())
    print(f"{test}: evaluations per seed {evaluations}; {keeping} of {len(results)} seeds keep")
    assert keeping >= KEEPS, evaluations


@pytest.mark.slow
def test_ngu_keeps_the_detours_far_reward(deceptive_runs):
    assert_most_seeds_keep(deceptive_runs, "test_ngu_keeps_the_detours_far_reward")


@pytest.mark.slow
def test_agent57_keeps_the_detours_far_reward(deceptive_runs):
    assert_most_seeds_keep(deceptive_runs, "test_agent57_keeps_the_detours_far_reward")
