"""Evaluation actors: (nearly) greedy policies that load a network and never learn.

`GreedyActorBase` is what every agent's evaluation actor builds on: it turns a batched
`TimeStep` into Q-values through `q_values()` and picks actions ε-greedily. Recurrent agents
override `reset()`/`q_values()` to carry their state.
"""

from __future__ import annotations

import abc

import numpy as np
import torch


def epsilon_greedy_actions(
    q_values: torch.Tensor, epsilon: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """ε-greedy over a batch.

    Args:
      q_values: [E, A] action values.
      epsilon: scalar or [E] per-environment exploration rates.
      rng: the generator for the exploration draws.
    Returns:
      [E] int64 actions.
    """
    num_envs, num_actions = q_values.shape
    greedy = q_values.argmax(dim=-1).cpu().numpy()
    explore = rng.random(num_envs) < epsilon
    random_actions = rng.integers(0, num_actions, size=num_envs)
    return np.where(explore, random_actions, greedy).astype(np.int64)


class GreedyActorBase(abc.ABC):
    """ε-greedy acting on a batch of environments with any network that gives Q-values."""

    def __init__(self, epsilon: float, seed: int, device: torch.device) -> None:
        self.epsilon = epsilon
        self.device = device
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Called before a new batch of episodes; feed-forward actors keep no state."""
        return None

    @abc.abstractmethod
    def q_values(self, timestep) -> torch.Tensor:
        """[E, A] Q-values for the batch of observations in `timestep`."""

    @torch.no_grad()
    def step(self, timestep) -> np.ndarray:
        return epsilon_greedy_actions(self.q_values(timestep), self.epsilon, self.rng)


class EpsilonGreedyActor(GreedyActorBase):
    """Feed-forward network, fixed small ε (DQN evaluation)."""

    def __init__(
        self, network: torch.nn.Module, epsilon: float, seed: int, device: torch.device
    ) -> None:
        super().__init__(epsilon, seed, device)
        self.network = network

    def q_values(self, timestep) -> torch.Tensor:
        observation = torch.as_tensor(timestep.observation, device=self.device)
        return self.network(observation)


class RecurrentEpsilonGreedyActor(GreedyActorBase):
    """Recurrent network (R2D2 family): carries the LSTM state, previous action and reward
    per environment, and clears them when an environment starts a new game."""

    def __init__(self, network, epsilon: float, seed: int, device: torch.device) -> None:
        super().__init__(epsilon, seed, device)
        self.network = network
        self.state = None
        self.consumed_state = None  # The state fed to the network at the latest step.
        self.prev_action: torch.Tensor | None = None

    def reset(self) -> None:
        self.state = None
        self.prev_action = None

    def extra_inputs(self, timestep) -> torch.Tensor | None:
        """Per-step inputs beyond (observation, previous action, reward); NGU adds some."""
        return None

    def q_values(self, timestep) -> torch.Tensor:
        num_envs = len(timestep.first)
        if self.state is None:
            self.state = self.network.initial_state(num_envs, self.device)
            self.prev_action = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        keep = torch.as_tensor(~timestep.first, device=self.device)
        self.state = type(self.state)(*(s * keep.unsqueeze(-1) for s in self.state))
        self.prev_action = self.prev_action * keep
        observation = torch.as_tensor(timestep.observation, device=self.device).unsqueeze(0)
        reward = torch.as_tensor(timestep.reward, device=self.device).unsqueeze(0)
        extra = self.extra_inputs(timestep)
        self.consumed_state = self.state
        q, self.state = self.network(
            observation, self.prev_action.unsqueeze(0), reward, self.state, extra
        )
        return q[0]

    @torch.no_grad()
    def step(self, timestep) -> np.ndarray:
        actions = super().step(timestep)
        self.prev_action = torch.as_tensor(actions, device=self.device)
        return actions
