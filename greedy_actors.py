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
