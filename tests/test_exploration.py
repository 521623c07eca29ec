"""Hard exploration: agents train for a fixed, seeded budget of agent steps in a room whose only
reward is far from the start, and we count the games that reach it.

NGU against R2D2: `SparseGridRoomDeadly-v0`, the 15 x 15 room (goal in the far corner, 28 steps
away, games cut at 56) whose walls kill: a move into one ends the game. A random walk reaches
the goal in 1.4 of a million games, and an ε-greedy learner dies at the first bump, so it never
slides along the walls into the corner (which is how R2D2 found the open room's goal with 2
seeds of 10). NGU's novelty-seeking policies learn to stop bumping, because a game that ends
takes their intrinsic rewards with it, and then sweep the room. "Reaches the reward" is at
least one game ending on the goal: chance would give NGU's few hundred games about 0.001.
The test runs NGU with seeds 0-5 and asks it to reach the goal with at least 4 of them, and
R2D2 with seeds 0-2, of which at most 1 may reach it.
NGU plays App. A's fixed policies here (`draw_policy_per_episode=False`): environment j plays
policy j with the j-th ε of the ladder, so the most exploratory policies act with the smallest
ε, and an ε-random move into a deadly wall is what ends their sweeps. Drawing j per episode
(the default) gives them the ladder's large ε too; docs/results.md has both, per seed and per
CPU code path ("Learning tests across CPU code paths").

Agent57 in the open 15 x 15 room `SparseGridRoom-v0` (a random walk: 9 in a million games) is
no longer a test, to keep the suite within its time: its exploration is tested on the
deceptive detour (tests/test_deception.py), and `python benchmarks/learning_spread.py --runs
agent57_open` runs this room's seeds with `goal_episodes` below (results in docs/results.md).

The agents run in the single-thread loop with their own actors and learners (reproducible per
seed on one machine), all the tests' runs in the suite's pool of two worker processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from worker_pool import PoolRuns

import gym_env
import toy_envs  # noqa: F401  (registers the rooms)
from agents.agent57 import agent as agent57
from agents.ngu import agent as ngu
from agents.r2d2 import agent as r2d2
from main_loop import FeedLearner, IterationSchedule, run_single_thread_training
from tracker import MetricsWriter

MODULES = {"ngu": ngu, "agent57": agent57, "r2d2": r2d2}
DEADLY_ROOM = "toy_envs:SparseGridRoomDeadly-v0"
BUDGET = 10_000  # agent steps: 8 environments, 4 iterations of 2,500
# Deadly room: NGU reaches the goal (one game or more) with at least NGU_REACHES of these
# seeds, and R2D2 with at most R2D2_REACHES. Across three CPU code paths NGU reached it with 5,
# 5 and 6 of seeds 0-5 and R2D2 with none (docs/results.md). The rule was 5 of seeds 0-7 until
# the suite dropped seeds 6 and 7 for time; 4 of 6 was chosen from that spread, after it.
DEADLY_SEEDS = list(range(6))
NGU_REACHES = 4
# R2D2, the control that shows the room is hard for ε-greedy exploration: seeds 0-2 (0 of 8
# seeds reached the goal on each of the three paths; 1 of 8 on another machine).
R2D2_SEEDS = list(range(3))
R2D2_REACHES = 1
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
    "ngu": lambda: ngu.NguConfig(
        **COMMON, num_policies=8, episodic_memory_capacity=1_000, draw_policy_per_episode=False
    ),
    "r2d2": lambda: r2d2.R2d2Config(**COMMON, discount=0.99, n_step=5),
    "agent57": lambda: agent57.Agent57Config(
        **COMMON, num_policies=16, episodic_memory_capacity=1_000, bandit_window=40
    ),
}


def goal_episodes(agent: str, room: str, seed: int) -> tuple[int, int]:
    """Trains `agent` in `room` for BUDGET steps; returns (games that reached the goal,
    games). Runs in a worker process: one torch thread, its own seeds."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    module, config = MODULES[agent], CONFIGS[agent]()
    spec = gym_env.EnvSpec(classic_name=room)
    env, actor = module.ActorFactory(config, spec, num_envs=8, num_actors=1)(0, seed)
    env = GoalCounter(env)
    learner = module.build_learner(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        seed,
        torch.device("cpu"),
    )
    rows = run_single_thread_training(
        schedule=IterationSchedule(BUDGET // 2_500, 2_500, 0),
        actor=FeedLearner(actor, learner),
        learner=learner,
        agent_steps_per_update=8,
        train_env=env,
        eval_env=None,
        eval_actor=None,
        save_checkpoint=lambda iteration, steps: None,
        writer=MetricsWriter(None, None),
    )
    env.close()
    learner.close()
    return env.goals, sum(int(r["train/num_episodes"]) for r in rows)


class GoalCounter:
    """The environment batch, counting the games that end on the goal's +1."""

    def __init__(self, env) -> None:
        self.env = env
        self.goals = 0

    def step(self, actions):
        timestep = self.env.step(actions)
        self.goals += int(np.sum(timestep.last & (timestep.raw_reward >= 1.0)))
        return timestep

    def __getattr__(self, name: str):
        return getattr(self.env, name)


# The runs of each test (agent, room, seed), and an agent's seconds per run, for the order.
RUNS_OF_TEST = {
    "test_ngu_reaches_the_deadly_rooms_reward_with_most_seeds": [
        ("ngu", DEADLY_ROOM, seed) for seed in DEADLY_SEEDS
    ],
    "test_r2d2_with_the_same_budget_hardly_ever_reaches_it": [
        ("r2d2", DEADLY_ROOM, seed) for seed in R2D2_SEEDS
    ],
}
SECONDS_PER_RUN = {"ngu": 45, "r2d2": 30}


POOL_RUNS = PoolRuns(RUNS_OF_TEST, lambda run: SECONDS_PER_RUN[run[0]], goal_episodes)


@pytest.fixture(scope="module")
def exploration_runs(training_runs):
    """{(agent, room, seed): future of (goal games, games)} (the suite's pool, conftest)."""
    return training_runs[__name__]


def results(runs, test: str) -> dict[int, tuple[int, int]]:
    """{seed: (goal games, games)} of `test`'s runs."""
    found = {seed: runs[(agent, room, seed)].result() for agent, room, seed in RUNS_OF_TEST[test]}
    print(f"{test}: {found}")
    return found


@pytest.mark.slow
def test_ngu_reaches_the_deadly_rooms_reward_with_most_seeds(exploration_runs):
    found = results(exploration_runs, "test_ngu_reaches_the_deadly_rooms_reward_with_most_seeds")
    assert sum(reached >= 1 for reached, _ in found.values()) >= NGU_REACHES, found


@pytest.mark.slow
def test_r2d2_with_the_same_budget_hardly_ever_reaches_it(exploration_runs):
    found = results(exploration_runs, "test_r2d2_with_the_same_budget_hardly_ever_reaches_it")
    assert all(games > 100 for _, games in found.values()), found  # it did play, and die
    assert sum(reached >= 1 for reached, _ in found.values()) <= R2D2_REACHES, found
