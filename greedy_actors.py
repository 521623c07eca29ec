"""Evaluation actors: (nearly) greedy policies that load a network and never learn.

`GreedyActorBase` is what every agent's evaluation actor builds on: it turns a batched
`TimeStep` into Q-values through `q_values()` and picks actions ε-greedily. Recurrent agents
override `reset()`/`q_values()` to carry their state.
"""

from __future__ import annotations

import abc

import numpy as np
import torch

from exploration.policies import epsilon_greedy_with_probability


def epsilon_greedy_actions(
    q_values: torch.Tensor, epsilon: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """ε-greedy over a batch: q_values [E, A], epsilon scalar or [E] -> [E] int64 actions."""
    return epsilon_greedy_with_probability(q_values, epsilon, rng)[0]


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
    """Recurrent network (R2D2 family): carries the packed recurrent state [E, S] and the
    previous action per environment, and clears them when an environment starts a new game.

    The network reads named inputs (`network.input_names`): the observation, the previous
    action, the reward into the observation, and whatever `extra_inputs` adds (NGU: policy
    index and intrinsic reward). `last_probabilities` is the behaviour probability μ of each
    action the latest `step` chose.
    """

    def __init__(self, network, epsilon: float | np.ndarray, seed: int, device: torch.device):
        super().__init__(epsilon, seed, device)
        self.network = network
        self.state: torch.Tensor | None = None
        self.consumed_state: torch.Tensor | None = None  # The state fed at the latest step.
        self.prev_action: torch.Tensor | None = None
        self.last_probabilities: np.ndarray | None = None

    def reset(self) -> None:
        self.state = None
        self.prev_action = None

    def extra_inputs(self, timestep) -> dict[str, torch.Tensor]:
        """Per-step inputs [E] beyond observation, previous action and reward; NGU adds some."""
        return {}

    def action_values(self, network_output: torch.Tensor) -> torch.Tensor:
        """The network's output [1, E, ...] -> Q-values [E, A] to act on (Agent57 mixes two)."""
        return network_output[0]

    def q_values(self, timestep) -> torch.Tensor:
        num_envs = len(timestep.first)
        if self.state is None:
            self.state = self.network.initial_state(num_envs, self.device)
            self.prev_action = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        keep = torch.as_tensor(~timestep.first, device=self.device)
        self.state = self.state * keep.unsqueeze(-1)
        self.prev_action = self.prev_action * keep
        inputs = {
            "observation": torch.as_tensor(timestep.observation, device=self.device),
            "prev_action": self.prev_action,
            "reward": torch.as_tensor(timestep.reward, device=self.device),
            **self.extra_inputs(timestep),
        }
        self.consumed_state = self.state
        output, self.state = self.network(
            {k: v.unsqueeze(0) for k, v in inputs.items()}, self.state
        )
        return self.action_values(output)

    @torch.no_grad()
    def step(self, timestep) -> np.ndarray:
        actions, self.last_probabilities = epsilon_greedy_with_probability(
            self.q_values(timestep), self.epsilon, self.rng
        )
        self.prev_action = torch.as_tensor(actions, device=self.device)
        return actions
