"""Hard exploration: in a 15x15 room whose only reward is in the far corner (toy_envs'
SparseGridRoom-v0: a random walk reaches it in about 9 of a million 56-step episodes), NGU and
Agent57 find the reward within a fixed, seeded budget of agent steps, and R2D2 with the same
budget and the same sequence and learner settings does not, for each of three seeds. Finding
the reward means at least FOUND games reaching the goal: undirected exploration may stumble on
it once by luck, but does not come back to it.

The agents run in one process (the single-thread loop with the agents' own actors and
learners), so that each seed is reproducible. Margins measured when this test was written are
in the README."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

import gym_env
import toy_envs  # noqa: F401  (registers SparseGridRoom-v0)
from agents.agent57 import agent as agent57
from agents.ngu import agent as ngu
from agents.r2d2 import agent as r2d2
from main_loop import FeedLearner, IterationSchedule, run_single_thread_training
from tracker import MetricsWriter

MODULES = {"ngu": ngu, "agent57": agent57, "r2d2": r2d2}
BUDGET = 10_000  # agent steps: 8 environments, 4 iterations of 2,500
# "Finds the reward": at least this many games reach the goal (learned, not one lucky walk).
FOUND = 5
SEEDS = [0, 1, 2]
COMMON = dict(
    burn_in=5,
    sequence_length=20,
    replay_period=10,
    batch_size=32,
    replay_capacity=5_000,
    min_replay_size=100,
    learning_rate=1e-3,
    adam_eps=1e-8,
    target_update_period=200,
)


def goal_episodes(agent: str, config, seed: int) -> tuple[int, int]:
    """Trains `agent` on the room for BUDGET steps; returns (games that reached the goal,
    games). Runs in a worker process: one torch thread, its own seeds."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    module = MODULES[agent]
    spec = gym_env.EnvSpec(classic_name="toy_envs:SparseGridRoom-v0")
    env, actor = module.ActorFactory(config, spec, num_envs=8, num_actors=1)(0, seed)
    learner = module.build_learner(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        seed,
        torch.device("cpu"),
    )
    actor.network = learner.network  # In-process: act with the learner's weights directly.
    if hasattr(actor, "embeddings"):
        actor.embeddings.embedding = learner.network.embedding
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
    # The only reward is the goal's +1, so a game's return is 1 exactly when it got there.
    reached = sum(round(r["train/episode_return"] * r["train/num_episodes"]) for r in rows)
    return reached, sum(int(r["train/num_episodes"]) for r in rows)


def every_seed(agent: str, config) -> dict[int, tuple[int, int]]:
    """{seed: (goal games, games)} for SEEDS, two seeds at a time on the machine's 2 cores."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        results = pool.map(goal_episodes, [agent] * len(SEEDS), [config] * len(SEEDS), SEEDS)
        found = dict(zip(SEEDS, results, strict=True))
    print(f"{agent}: {found}")
    return found


@pytest.mark.slow
def test_ngu_finds_the_sparse_reward_with_every_seed():
    config = ngu.NguConfig(**COMMON, num_policies=8, episodic_memory_capacity=1_000)
    found = every_seed("ngu", config)
    assert all(reached >= FOUND for reached, _ in found.values()), found


@pytest.mark.slow
def test_agent57_finds_the_sparse_reward_with_every_seed():
    config = agent57.Agent57Config(
        **COMMON, num_policies=16, episodic_memory_capacity=1_000, bandit_window=40
    )
    found = every_seed("agent57", config)
    assert all(reached >= FOUND for reached, _ in found.values()), found


@pytest.mark.slow
def test_r2d2_with_the_same_budget_does_not_with_any_seed():
    config = r2d2.R2d2Config(**COMMON, discount=0.99, n_step=5)
    found = every_seed("r2d2", config)
    assert all(games > 50 and reached < FOUND for reached, games in found.values()), found
