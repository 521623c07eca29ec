"""DQN's learner: the optimiser it builds, its state across a checkpoint, and the replay it
chooses for small frames."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from agents.dqn.agent import DqnConfig, build_agent
from experiment.errors import ConfigError

MINATAR_SHAPE = (4, 10, 10)


def _agent(config: DqnConfig, seed: int = 0):
    return build_agent(
        config, MINATAR_SHAPE, np.bool_, 3, 1, seed, torch.device("cpu"), total_updates=100
    )


def _fill(actor, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for t in range(steps):
        observation = rng.random((1, *MINATAR_SHAPE)) < 0.2
        reward, done = np.array([float(t % 7 == 0)]), np.array([t % 20 == 19])
        actor.replay.add(
            observation, reward, np.where(done, 0.0, 1.0), np.array([t % 20 == 0]), done, [t % 3]
        )


def test_adam_is_fused_on_cpu_and_rmsprop_is_minatars_centred_rmsprop():
    _, adam = _agent(DqnConfig(min_replay_size=32))
    assert isinstance(adam.optimizer, torch.optim.Adam)
    assert adam.optimizer.param_groups[0]["fused"] is True
    config = DqnConfig(min_replay_size=32, optimizer="rmsprop", learning_rate=2.5e-4)
    _, rmsprop = _agent(config)
    group = rmsprop.optimizer.param_groups[0]
    assert isinstance(rmsprop.optimizer, torch.optim.RMSprop)
    assert (group["lr"], group["alpha"], group["eps"], group["centered"]) == (
        2.5e-4,
        0.95,
        0.01,
        True,
    )


def test_rmsprop_step_matches_the_centred_rmsprop_formula():
    """One step from zero state: g_avg = (1-α)g, s = (1-α)g², θ -= lr·g / (√(s − g_avg²) + ε)."""
    config = DqnConfig(min_replay_size=32, batch_size=32, optimizer="rmsprop")
    actor, learner = _agent(config)
    _fill(actor, 100)
    before = [p.detach().clone() for p in learner.network.parameters()]
    torch.manual_seed(0)
    learner.step()
    alpha, eps, lr = config.rmsprop_decay, config.rmsprop_eps, config.learning_rate
    for p, old in zip(learner.network.parameters(), before, strict=True):
        state = learner.optimizer.state[p]
        g = state["grad_avg"] / (1 - alpha)  # The clipped gradient of this first step.
        variance = (1 - alpha) * g * g - ((1 - alpha) * g) ** 2
        expected = old - lr * g / (variance.sqrt() + eps)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_learner_state_round_trips_and_updates_continue_identically(optimizer: str):
    config = DqnConfig(min_replay_size=32, optimizer=optimizer)
    actor, learner = _agent(config)
    _fill(actor, 100)
    for _ in range(3):
        learner.step()
    state = copy.deepcopy(learner.state_dict())  # As a checkpoint file would: no shared tensors.
    _, resumed = _agent(config)
    resumed.load_state_dict(state)
    resumed.replay.load_state_dict(learner.replay.state_dict())
    assert resumed.optimizer.param_groups[0].get("fused") == (True if optimizer == "adam" else None)
    learner.step()
    resumed.step()
    for a, b in zip(learner.network.parameters(), resumed.network.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_optimizer_and_bad_rmsprop_settings_are_refused():
    with pytest.raises(ConfigError, match="optimizer must be one of adam, rmsprop"):
        DqnConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="rmsprop_decay"):
        DqnConfig(rmsprop_decay=1.0)
    with pytest.raises(ConfigError, match="rmsprop_eps"):
        DqnConfig(rmsprop_eps=0.0)


def test_minatar_frames_are_stored_packed_uncompressed_and_sample_back_exactly():
    _, learner = _agent(DqnConfig(min_replay_size=32))
    replay = learner.replay
    frames = np.random.default_rng(1).random((50, 1, *MINATAR_SHAPE)) < 0.3
    for t, frame in enumerate(frames):
        replay.add(frame, [0.0], [1.0], [t == 0], [False], [t % 3])
    stored = replay.state_dict()
    assert "frame_buffer" not in stored  # not snappy-compressed
    assert stored["frames"].dtype == np.uint8 and stored["frames"].shape[1:] == (50,)  # 400 bits
    batch, slots, _ = replay.sample(16)
    np.testing.assert_array_equal(batch.s_tm1, frames[slots, 0])
    np.testing.assert_array_equal(batch.s_t, frames[slots + 1, 0])
