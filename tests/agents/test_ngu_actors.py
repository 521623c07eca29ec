"""NGU's and Agent57's actors compute intrinsic rewards with the learner's published embedding
from their very first episode.

Every actor outside the learner (the evaluation process; an actor process when it starts, is
restarted, or resumes a run) is built on a fresh, untrained network and only then pulls the
learner's weights. The embedding that its first episodes use must be the pulled one, not the
fresh one: the Q-network reads the previous intrinsic reward, and training actors store it.
"""

from __future__ import annotations

import functools
import threading

import pytest
import torch

import gym_env
import toy_envs  # noqa: F401  (registers the rooms)
from agents.agent57 import agent as agent57
from agents.ngu import agent as ngu
from distributed.actors import run_actor_loop
from distributed.evaluation_process import EvalActorFactory, EvalRequest, _evaluate
from distributed.shared_weights import SharedWeights

SPEC = gym_env.EnvSpec(classic_name="toy_envs:SparseGridRoom-v0")
SHORT_GAMES = gym_env.EnvSpec(classic_name="toy_envs:SparseGridRoomDeadly-v0")  # Walls end games.
SMALL = dict(
    burn_in=2,
    sequence_length=8,
    replay_period=4,
    episodic_memory_capacity=100,
)
AGENTS = {
    "ngu": (ngu, lambda: ngu.NguConfig(**SMALL, num_policies=4)),
    "agent57": (agent57, lambda: agent57.Agent57Config(**SMALL, num_policies=10)),
}
# The evaluation actor each run_atari.py gives its evaluation process.
EVALUATION_ACTORS = {
    "ngu": functools.partial(ngu.evaluation_actor, policy_index=0),
    "agent57": agent57.evaluation_actor,  # Its evaluator bandit picks the arm.
}


def published_network(module, config):
    """The learner's network, its embedding moved far from any fresh initialisation."""
    with SPEC.create(1, 0) as env:
        torch.manual_seed(123)
        network = module.build_network(config, env.observation_shape, env.num_actions)
    with torch.no_grad():
        for parameter in network.embedding.parameters():
            parameter.add_(1.0)
    return network


def embedding_of_first_episode(actor) -> torch.nn.Module:
    """The embedding snapshot environment 0 used in its first episode."""
    embeddings = actor.embeddings
    return embeddings.snapshots[int(embeddings.env_snapshot[0])]


def assert_same_weights(used: torch.nn.Module, published: torch.nn.Module) -> None:
    published_state = published.state_dict()
    for name, value in used.state_dict().items():
        assert torch.equal(value, published_state[name]), f"embedding {name} is not the learner's"


@pytest.mark.parametrize("agent", AGENTS)
def test_the_evaluation_process_plays_with_the_published_embedding(agent):
    module, make_config = AGENTS[agent]
    config = make_config()
    learner_network = published_network(module, config)
    weights = SharedWeights(learner_network)
    version = weights.publish(learner_network)
    factory = EvalActorFactory(
        SPEC,
        functools.partial(module.build_network, config),
        functools.partial(EVALUATION_ACTORS[agent], config=config, epsilon=0.0),
    )
    built = []

    def capturing_factory(seed: int):
        env, actor = factory(seed)
        built.append(actor)
        return env, actor

    request = EvalRequest(iteration=1, version=version, num_steps=20, seed=0)
    _evaluate(request, capturing_factory, weights, threading.Event())
    assert_same_weights(embedding_of_first_episode(built[0]), learner_network.embedding)


@pytest.mark.parametrize("resumed", [False, True], ids=["started", "restarted_or_resumed"])
@pytest.mark.parametrize("agent", AGENTS)
def test_an_actor_process_plays_its_first_episode_with_the_published_embedding(agent, resumed):
    module, make_config = AGENTS[agent]
    config = make_config()
    learner_network = published_network(module, config)
    weights = SharedWeights(learner_network)
    weights.publish(learner_network)
    factory = module.ActorFactory(config, SPEC, num_envs=2, num_actors=1)
    initial_state = None
    if resumed:  # The state its predecessor (or the checkpoint) reported.
        _, predecessor = factory(0, seed=5)
        initial_state = predecessor.state_dict()
    built = []

    def capturing_factory(actor_index: int, seed: int):
        env, actor = factory(actor_index, seed)
        built.append(actor)
        return env, actor

    run_actor_loop(
        actor_index=0,
        seed=1,
        actor_factory=capturing_factory,
        update_interval=1_000,
        initial_state=initial_state,
        pull_weights=weights.pull,
        send=lambda message: False,  # Stop after the first message.
        stopped=lambda: False,
    )
    assert_same_weights(embedding_of_first_episode(built[0]), learner_network.embedding)


def policies_played(config, num_envs: int, num_episodes: int) -> set[int]:
    """The policy indices of the first `num_episodes` finished games of one actor process."""
    factory = ngu.ActorFactory(config, SHORT_GAMES, num_envs=num_envs, num_actors=1)
    network = published_network(ngu, config)
    weights = SharedWeights(network)
    weights.publish(network)
    played: list[int] = []

    def send(message) -> bool:
        for key, returns in (message.statistics or {}).items():
            if key.startswith("policy_"):
                played.extend([int(key.split("/")[0][len("policy_") :])] * len(returns))
        return len(played) < num_episodes

    run_actor_loop(0, 1, factory, 1_000, None, weights.pull, send, stopped=lambda: False)
    return set(played)


def test_one_actor_with_four_environments_runs_high_beta_policies_by_default():
    """With N = 32 policies and 4 environments, fixed j = g mod N would only ever run
    j = 0..3, whose β is 0 to 1e-4: NGU would quietly be R2D2."""
    config = ngu.NguConfig(**SMALL)  # Default N = 32 and policy assignment.
    played = policies_played(config, num_envs=4, num_episodes=24)
    assert max(played) >= 8 and len(played) >= 10, sorted(played)


def test_fixed_policies_with_too_few_environments_say_so_at_start():
    config = ngu.NguConfig(**SMALL, draw_policy_per_episode=False)
    assert policies_played(config, num_envs=4, num_episodes=8) == {0, 1, 2, 3}
    lines = ngu.ActorFactory(config, SPEC, num_envs=4, num_actors=1).describe()
    warning = [line for line in lines if line.startswith("WARNING")]
    assert len(warning) == 1 and "only j = 0..3" in warning[0], lines
    drawn = ngu.ActorFactory(ngu.NguConfig(**SMALL), SPEC, num_envs=4, num_actors=1).describe()
    assert not any(line.startswith("WARNING") for line in drawn), drawn
    assert any("drawn per episode" in line for line in drawn), drawn


def intrinsic_rewards_at_game_overs(config, steps: int = 300) -> tuple[list[float], list[float]]:
    """One actor with its published network plays the deadly room (a wall ends the game):
    the r^i it records at game-over steps, and at the other steps after a game's first."""
    env, actor = ngu.ActorFactory(config, SHORT_GAMES, num_envs=4, num_actors=1)(0, seed=3)
    actor.network.load_state_dict(published_network(ngu, config).state_dict())
    actor.weights_updated()
    at_game_over: list[float] = []
    elsewhere: list[float] = []
    timestep = env.reset()
    for _ in range(steps):
        actions = actor.step(timestep)
        game_over = timestep.last & (timestep.discount == 0)
        at_game_over.extend(actor.intrinsic[game_over].tolist())
        elsewhere.extend(actor.intrinsic[~game_over & ~timestep.first].tolist())
        timestep = env.step(actions)
    env.close()
    return at_game_over, elsewhere


@pytest.mark.parametrize("paid", [True, False])
def test_intrinsic_reward_at_game_over_is_paid_only_when_asked(paid):
    config = ngu.NguConfig(**SMALL, num_policies=4, intrinsic_reward_at_game_over=paid)
    at_game_over, elsewhere = intrinsic_rewards_at_game_overs(config)
    assert len(at_game_over) >= 10 and min(elsewhere) > 0.0, (len(at_game_over), elsewhere)
    if paid:
        assert min(at_game_over) > 0.0, at_game_over
    else:
        assert max(at_game_over) == 0.0, at_game_over
