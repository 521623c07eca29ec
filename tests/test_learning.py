"""Learning tests: each agent passes a return threshold within a seeded step budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gym_env
from agents.dqn.agent import DqnConfig, build_agent
from greedy_actors import EpsilonGreedyActor
from main_loop import IterationSchedule, evaluate, run_single_thread_training
from tracker import MetricsWriter

CPU = torch.device("cpu")


def greedy_returns(env, actor, num_episodes: int) -> list[float]:
    """Plays until `num_episodes` games have finished; returns their scores."""
    tracker = evaluate(env, actor, num_steps=num_episodes * 510)  # 500 steps and a reset each
    assert len(tracker.episode_returns) >= num_episodes
    return tracker.episode_returns[:num_episodes]


def train_dqn_on(env_name: str, hide_velocity: bool, num_steps: int, seed: int):
    torch.manual_seed(seed)
    config = DqnConfig(
        n_step=3,
        batch_size=64,
        replay_capacity=50_000,
        min_replay_size=1_000,
        agent_steps_per_update=1,
        target_update_period=500,
        learning_rate=5e-4,
        adam_eps=1e-8,
        exploration_steps=10_000,
        exploration_end=0.02,
        double_q=True,
    )
    env = gym_env.create_classic_environment(env_name, 1, seed, hide_velocity=hide_velocity)
    eval_env = gym_env.create_classic_environment(
        env_name, 1, seed + 100, hide_velocity=hide_velocity
    )
    actor, learner = build_agent(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        1,
        seed,
        CPU,
        num_steps,
    )
    run_single_thread_training(
        schedule=IterationSchedule(num_steps // 5_000, 5_000, 0),
        actor=actor,
        learner=learner,
        agent_steps_per_update=config.agent_steps_per_update,
        train_env=env,
        eval_env=eval_env,
        eval_actor=EpsilonGreedyActor(learner.network, 0.0, seed, CPU),
        save_checkpoint=lambda iteration, steps: None,
        writer=MetricsWriter(None, None),
    )
    return learner, eval_env


@pytest.fixture(autouse=True)
def single_thread_torch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Deterministic and fast for these tiny networks.
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_dqn_learns_cartpole():
    learner, eval_env = train_dqn_on("CartPole-v1", hide_velocity=False, num_steps=25_000, seed=0)
    actor = EpsilonGreedyActor(learner.network, 0.0, 0, CPU)
    returns = greedy_returns(eval_env, actor, num_episodes=20)
    assert np.mean(returns) >= 475, returns
