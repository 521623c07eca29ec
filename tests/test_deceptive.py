"""Deceptive tasks: NGU and Agent57 keep the far reward that their exploration finds.

Each task of toy_envs.DECEPTIVE_TASKS puts a distractor worth 0.1 next to the start (it ends
the game) and the goal, worth 1, 11 to 16 steps away. An agent trains for BUDGET agent steps
in ITERATIONS iterations; after each, its exploitative policy (NGU and Agent57: j = 0, the
policy a user evaluates and records; R2D2: its greedy policy) plays EVAL_GAMES games at ε =
EVAL_EPSILON. The policy "holds the far reward" in an evaluation whose mean return is at least
HOLDS (more than half of the games on the goal; the distractor gives 0.1).

The suite runs one task, DeceptiveCorridor-v0, on seeds 0-4: NGU and Agent57 must hold the far
reward in each of the last 3 evaluations with at least 4 of the 5 seeds, and R2D2 with the same
budget must not (at most 1 seed). `python benchmarks/deceptive_sweep.py` runs the whole family
(docs/results.md has every seed). Tasks, budget, seeds and thresholds were fixed before any
agent ran on them.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import gymnasium as gym
import numpy as np
import pytest
import torch
from worker_pool import runs_of_selected_tests

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
SEEDS = range(5)
SUITE_TASK = "DeceptiveCorridor-v0"
KEEPERS_AT_LEAST, R2D2_AT_MOST = 4, 1
COMMON = dict(
    burn_in=5,
    sequence_length=20,
    replay_period=10,
    batch_size=32,
    replay_capacity=5_000,
    min_replay_size=100,
    learning_rate=1e-3,
    adam_eps=1e-8,
    target_update_period=50,
)
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


def deceptive_run(agent: str, task: str, seed: int, config_overrides=None) -> DeceptiveResult:
    """Trains `agent` on toy_envs:`task` for BUDGET steps in one process (one torch thread);
    evaluates its exploitative policy after every iteration."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    module = MODULES[agent]
    config = dataclasses.replace(CONFIGS[agent](), **(config_overrides or {}))
    spec = gym_env.EnvSpec(classic_name=f"toy_envs:{task}")
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
            if key.startswith(("learner/", "intrinsic/", "train/", "policy_")):
                history[key].append(float(value))
    return DeceptiveResult([float(r["eval/episode_return"]) for r in rows], dict(history))


RUNS_OF_TEST = {
    "test_ngu_keeps_the_far_reward": [("ngu", SUITE_TASK, s) for s in SEEDS],
    "test_agent57_keeps_the_far_reward": [("agent57", SUITE_TASK, s) for s in SEEDS],
    "test_r2d2_stays_at_the_distractor": [("r2d2", SUITE_TASK, s) for s in SEEDS],
}
SECONDS_PER_RUN = {"agent57": 200, "ngu": 150, "r2d2": 60}


@pytest.fixture(scope="module")
def deceptive_runs(request):
    yield from runs_of_selected_tests(
        request, RUNS_OF_TEST, lambda run: SECONDS_PER_RUN[run[0]], deceptive_run
    )


def _results(runs, test: str) -> dict[int, DeceptiveResult]:
    results = {seed: runs[(agent, task, seed)].result() for agent, task, seed in RUNS_OF_TEST[test]}
    for seed, result in results.items():
        print(f"{test} seed {seed}: evaluations {np.round(result.evaluations, 2).tolist()}")
    return results


def _assert_keepers(runs, test: str) -> None:
    results = _results(runs, test)
    keepers = [seed for seed, result in results.items() if result.holds_at_the_end()]
    assert len(keepers) >= KEEPERS_AT_LEAST, {s: r.evaluations for s, r in results.items()}


@pytest.mark.slow
def test_ngu_keeps_the_far_reward(deceptive_runs):
    _assert_keepers(deceptive_runs, "test_ngu_keeps_the_far_reward")


@pytest.mark.slow
def test_agent57_keeps_the_far_reward(deceptive_runs):
    _assert_keepers(deceptive_runs, "test_agent57_keeps_the_far_reward")


@pytest.mark.slow
def test_r2d2_stays_at_the_distractor(deceptive_runs):
    results = _results(deceptive_runs, "test_r2d2_stays_at_the_distractor")
    keepers = [seed for seed, result in results.items() if result.holds_at_the_end()]
    assert len(keepers) <= R2D2_AT_MOST, {s: r.evaluations for s, r in results.items()}
