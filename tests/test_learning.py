"""Learning tests: each agent passes a return threshold within a seeded step budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from worker_pool import PoolRuns

import gym_env
from agents.dqn.agent import DqnConfig, build_agent
from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner
from experiment.denormals import denormals_flushed
from greedy_actors import EpsilonGreedyActor, RecurrentEpsilonGreedyActor
from main_loop import FeedLearner, IterationSchedule, evaluate, run_single_thread_training
from tracker import MetricsWriter

CPU = torch.device("cpu")


def greedy_returns(env, actor, num_episodes: int) -> list[float]:
    """Plays until `num_episodes` games have finished; returns their scores."""
    tracker = evaluate(env, actor, num_steps=num_episodes * 510)  # 500 steps and a reset each
    assert len(tracker.episode_returns) >= num_episodes
    return tracker.episode_returns[:num_episodes]


def train_dqn_on(
    env_name: str, hide_velocity: bool, num_steps: int, seed: int, eval_steps: int = 0
):
    """Trains DQN for `num_steps` in iterations of 5,000 steps, each followed by `eval_steps`
    of greedy play; returns (learner, evaluation environment, each iteration's row)."""
    torch.manual_seed(seed)
    config = DqnConfig(
        n_step=3,
        # 128, not 64: with ε held at 1 through the warm-up (as DQN prescribes), batch 64
        # ended seed 0 at 250; 128 gives 500, 484 and 498 for seeds 0, 1 and 2.
        batch_size=128,
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
    rows = run_single_thread_training(
        schedule=IterationSchedule(num_steps // 5_000, 5_000, eval_steps),
        actor=actor,
        learner=learner,
        agent_steps_per_update=config.agent_steps_per_update,
        train_env=env,
        eval_env=eval_env,
        eval_actor=EpsilonGreedyActor(learner.network, 0.0, seed, CPU),
        save_checkpoint=lambda iteration, steps: None,
        writer=MetricsWriter(None, None),
    )
    return learner, eval_env, rows


def dqn_cartpole_returns(seed: int) -> dict[str, list[float]]:
    """DQN on CartPole-v1 for 25,000 steps: the mean greedy score of each iteration's
    evaluation (at least 5 games), and the scores of 20 games after training.

    Not a test any more: its 3 seeds cost the suite 3.5 minutes, and DQN's learning is tested
    on a real game (MinAtar Breakout, below). `python benchmarks/learning_spread.py --runs
    dqn_cartpole` runs it; docs/results.md has every seed and the rule it met (a mean of at
    least 250 over seeds 0-2 and their 5 evaluations)."""
    learner, eval_env, rows = train_dqn_on(
        "CartPole-v1", hide_velocity=False, num_steps=25_000, seed=seed, eval_steps=2_550
    )
    final = greedy_returns(eval_env, EpsilonGreedyActor(learner.network, 0.0, 0, CPU), 20)
    return {"per_iteration": [row["eval/episode_return"] for row in rows], "final": final}


def train_r2d2_on_hidden_velocity_cartpole(num_steps: int, seed: int):
    """Single-thread R2D2 (the same Actor and Learner the actor processes run).

    The greedy policies of seeds that fail lose the game at the edge of the track: the cart
    drifts for 140 to 350 steps before it leaves it. Seeing that coming needs a horizon of
    hundreds of steps and values propagated that far within the budget, hence R2D2's own
    γ = 0.997 (at 0.99 a loss 300 steps ahead weighs 0.05) and one update per 4 agent steps
    with a target copy every 50 updates (about 120 copies in 25,000 steps; 200 and 8 gave 15,
    and n-step targets move values only n steps per copy).
    """
    torch.manual_seed(seed)
    config = R2d2Config(
        discount=0.997,
        n_step=3,
        burn_in=10,
        sequence_length=20,
        replay_period=10,
        batch_size=32,
        replay_capacity=5_000,
        min_replay_size=200,
        learning_rate=1e-3,
        adam_eps=1e-8,
        target_update_period=50,
        # Each batch sampled right after the previous update: sampled two updates ahead (the
        # default prefetch depth, with staler priorities) seed 2 ended at 189 in CI. The
        # prefetched path gives the same batches as this one at equal depth (test_prefetch).
        prefetch_workers=0,
        prefetch_depth=0,
    )
    spec = gym_env.EnvSpec(classic_name="CartPole-v1", hide_velocity=True)
    env, actor = ActorFactory(config, spec, num_envs=4, num_actors=1)(0, seed)
    learner = build_learner(
        config, env.observation_shape, env.observation_dtype, env.num_actions, seed, CPU
    )
    run_single_thread_training(
        schedule=IterationSchedule(num_steps // 5_000, 5_000, 0),
        actor=FeedLearner(actor, learner),
        learner=learner,
        agent_steps_per_update=4,
        train_env=env,
        eval_env=None,
        eval_actor=None,
        save_checkpoint=lambda iteration, steps: None,
        writer=MetricsWriter(None, None),
    )
    return learner, spec.create(1, seed + 100)


MEMORY_BUDGET = 25_000
MEMORY_SEEDS = range(3)
# The mean greedy score over MEMORY_SEEDS that R2D2 must reach. A single seed's score is
# chaotic: across CPU code paths a seed ends anywhere from 150 to 500 (docs/results.md,
# "Learning tests across CPU code paths"). Over seeds 0-2 the lowest mean there was 289.2 (the
# test used seeds 0-3, lowest mean 302.2, until the suite dropped seed 3 for time).
MEMORY_MEAN = 250


def r2d2_memory_task_returns(seed: int) -> list[float]:
    """Greedy scores of 10 games after R2D2's training on the memory task."""
    learner, eval_env = train_r2d2_on_hidden_velocity_cartpole(MEMORY_BUDGET, seed)
    return greedy_returns(eval_env, RecurrentEpsilonGreedyActor(learner.network, 0.0, 0, CPU), 10)


def dqn_memory_task_returns(seed: int) -> list[float]:
    """Greedy scores of 10 games after feed-forward DQN's training on the memory task."""
    dqn, eval_env, _ = train_dqn_on(
        "CartPole-v1", hide_velocity=True, num_steps=MEMORY_BUDGET, seed=seed
    )
    return greedy_returns(eval_env, EpsilonGreedyActor(dqn.network, 0.0, 0, CPU), 10)


MINATAR_BUDGET = 30_000  # Frames: a MinAtar frame is one agent step.
MINATAR_SEEDS = range(3)
# Random play scores about 0.5 per game of MinAtar Breakout (the MinAtar README); each seed's
# greedy average must be at least twice that. Seeds and threshold were fixed before the first
# run. The budget was 50k frames until the suite needed time; 30k was adopted by a rule written
# before its runs (every seed at least 2.0 on three CPU code paths), which it met
# (docs/results.md, "MinAtar", has the scores).
MINATAR_BREAKOUT_MIN = 1.0


def dqn_minatar_breakout_returns(seed: int) -> list[float]:
    """DQN with the MinAtar network on MinAtar/Breakout-v1 for MINATAR_BUDGET frames (4
    environments, one update per frame, the paper's ε floor of 0.1 reached at 20k), with
    denormals flushed as run_atari does by default: scores of up to 20 greedy games (8,000
    steps) after training."""
    with denormals_flushed():
        return _dqn_minatar_breakout_returns(seed)


def _dqn_minatar_breakout_returns(seed: int) -> list[float]:
    torch.manual_seed(seed)
    config = DqnConfig(
        batch_size=32,
        replay_capacity=50_000,
        min_replay_size=1_000,
        agent_steps_per_update=1,
        target_update_period=500,
        learning_rate=2.5e-4,
        exploration_steps=20_000,
        exploration_end=0.1,
        double_q=True,
    )
    spec = gym_env.EnvSpec(classic_name="MinAtar/Breakout-v1")
    env, eval_env = spec.create(4, seed), spec.create(1, seed + 100)
    actor, learner = build_agent(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        4,
        seed,
        CPU,
        MINATAR_BUDGET,
    )
    run_single_thread_training(
        schedule=IterationSchedule(MINATAR_BUDGET // 10_000, 10_000, 0),
        actor=actor,
        learner=learner,
        agent_steps_per_update=config.agent_steps_per_update,
        train_env=env,
        eval_env=eval_env,
        eval_actor=EpsilonGreedyActor(learner.network, 0.0, seed, CPU),
        save_checkpoint=lambda iteration, steps: None,
        writer=MetricsWriter(None, None),
    )
    tracker = evaluate(eval_env, EpsilonGreedyActor(learner.network, 0.0, 0, CPU), 8_000)
    assert len(tracker.episode_returns) >= 10  # Games of a 5-point player last ~200 steps.
    return tracker.episode_returns[:20]


@pytest.mark.slow
def test_dqn_learns_minatar_breakout(learning_runs):
    """A real game on a CPU budget: DQN well above random play on every seed."""
    means = {
        seed: float(np.mean(learning_runs[("dqn_minatar", seed)].result()))
        for seed in MINATAR_SEEDS
    }
    print(f"DQN MinAtar Breakout, mean greedy score per seed: {means}")
    assert min(means.values()) >= MINATAR_BREAKOUT_MIN, means


# Every training run of this module, keyed (run, seed), with its rough seconds on one core.
RUNS = {
    "r2d2_memory": (r2d2_memory_task_returns, 150),
    "dqn_memory": (dqn_memory_task_returns, 115),
    "dqn_minatar": (dqn_minatar_breakout_returns, 170),
}
RUNS_OF_TEST = {
    "test_r2d2_learns_a_task_that_needs_memory": [("r2d2_memory", s) for s in MEMORY_SEEDS],
    "test_dqn_learns_minatar_breakout": [("dqn_minatar", s) for s in MINATAR_SEEDS],
}


def run_in_worker(run: str, seed: int) -> list[float]:
    torch.set_num_threads(1)  # Deterministic and fast for these tiny networks.
    return RUNS[run][0](seed)


POOL_RUNS = PoolRuns(RUNS_OF_TEST, lambda run: RUNS[run[0]][1], run_in_worker)


@pytest.fixture(scope="module")
def learning_runs(training_runs):
    """{(run, seed): future of its greedy scores} (the suite's pool, conftest)."""
    return training_runs[__name__]


@pytest.mark.slow
def test_r2d2_learns_a_task_that_needs_memory(learning_runs):
    """CartPole with the velocities hidden: a recurrent agent infers them from the positions
    it has seen. Feed-forward DQN stays below 150 on the same task and budget: 35 to 51 with
    seeds 0-2 on three CPU code paths (`python benchmarks/learning_spread.py --runs
    dqn_memory`; a test until the suite dropped it for time)."""
    means = {
        seed: float(np.mean(learning_runs[("r2d2_memory", seed)].result())) for seed in MEMORY_SEEDS
    }
    print(f"R2D2 memory task, mean greedy score per seed: {means}")
    assert np.mean(list(means.values())) >= MEMORY_MEAN, means
