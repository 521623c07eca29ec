"""Exploration policies: ε ladders, NGU's and Agent57's (β_j, γ_j) policy families, ε-greedy
with the behaviour probability of the taken action, and how each environment picks its policy
index.

Pure functions take and return numpy arrays; shapes are in the docstrings.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from experiment.errors import ConfigError


def actor_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """ε_i = base^(1 + alpha·i/(N−1)) for i = 0..N−1 (Ape-X / R2D2); N = 1 gives `base`.

    Returns [N] float64.
    """
    if num_actors == 1:
        return np.array([base])
    i = np.arange(num_actors)
    return base ** (1.0 + alpha * i / (num_actors - 1))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def ngu_betas(num_policies: int, beta: float) -> np.ndarray:
    """NGU's intrinsic-reward scales (Badia et al. 2020a, App. A): [N] float64.

    β_0 = 0, β_{N−1} = β, and β_j = β·σ(10·(2j − (N − 2)) / (N − 2)) in between.
    """
    _check_num_policies(num_policies, minimum=1)
    betas = np.zeros(num_policies)
    if num_policies == 1:
        return betas
    j = np.arange(1, num_policies - 1)
    if num_policies > 2:
        betas[1:-1] = beta * _sigmoid(10.0 * (2 * j - (num_policies - 2)) / (num_policies - 2))
    betas[-1] = beta
    return betas


def ngu_discounts(num_policies: int, gamma_max: float, gamma_min: float) -> np.ndarray:
    """NGU's discount ladder (App. A): [N] float64, from γ_max at j = 0 to γ_min at j = N − 1.

    γ_j = 1 − exp(((N − 1 − j)·log(1 − γ_max) + j·log(1 − γ_min)) / (N − 1)).
    """
    _check_num_policies(num_policies, minimum=1)
    if num_policies == 1:
        return np.array([gamma_max])
    j = np.arange(num_policies)
    n = num_policies - 1
    return 1.0 - np.exp(((n - j) * math.log(1 - gamma_max) + j * math.log(1 - gamma_min)) / n)


def agent57_discounts(
    num_policies: int, gamma_0: float = 0.9999, gamma_1: float = 0.997, gamma_2: float = 0.99
) -> np.ndarray:
    """Agent57's discount ladder (Badia et al. 2020b, App. B): [N] float64, N >= 9.

    γ_0 = γ0; γ_j = γ1 + (γ0 − γ1)·σ(10·(2j − 6)/6) for j = 1..6; γ_7 = γ1;
    γ_j = 1 − exp(((N − 9)·log(1 − γ1) + (j − 8)·log(1 − γ2)) / (N − 9)) for j = 8..N−1.
    """
    _check_num_policies(num_policies, minimum=10)
    gammas = np.empty(num_policies)
    gammas[0] = gamma_0
    j = np.arange(1, 7)
    gammas[1:7] = gamma_1 + (gamma_0 - gamma_1) * _sigmoid(10.0 * (2 * j - 6) / 6)
    gammas[7] = gamma_1
    j = np.arange(8, num_policies)
    n = num_policies - 9
    gammas[8:] = 1.0 - np.exp(
        ((n - (j - 8)) * math.log(1 - gamma_1) + (j - 8) * math.log(1 - gamma_2)) / n
    )
    return gammas


def _check_num_policies(num_policies: int, minimum: int) -> None:
    if num_policies < minimum:
        raise ConfigError(f"num_policies must be at least {minimum}, got {num_policies}")


def epsilon_greedy_with_probability(
    q_values: torch.Tensor, epsilon: float | np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """ε-greedy over a batch, with the behaviour probability μ of each action taken.

    μ(a) = (1 − ε)·[a = greedy] + ε/|A|: the random branch can pick the greedy action too,
    so the greedy action has probability 1 − ε + ε/|A|, never just ε/|A|.

    Args:
      q_values: [E, A] action values.
      epsilon: scalar or [E] per-environment exploration rates.
      rng: the generator for the exploration draws.
    Returns:
      ([E] int64 actions, [E] float32 probabilities of those actions).
    """
    num_envs, num_actions = q_values.shape
    greedy = q_values.argmax(dim=-1).cpu().numpy()
    epsilon = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (num_envs,))
    explore = rng.random(num_envs) < epsilon
    random_actions = rng.integers(0, num_actions, size=num_envs)
    actions = np.where(explore, random_actions, greedy).astype(np.int64)
    probability = epsilon / num_actions + (1.0 - epsilon) * (actions == greedy)
    return actions, probability.astype(np.float32)


def epsilon_greedy_policy(q_values: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The ε-greedy distribution [..., A] over q_values [..., A] (ties go to the first max)."""
    num_actions = q_values.shape[-1]
    greedy = torch.nn.functional.one_hot(q_values.argmax(dim=-1), num_actions).to(q_values.dtype)
    return (1.0 - epsilon) * greedy + epsilon / num_actions


class PolicyIndexChooser:
    """Which of the N policies each of an actor's environments plays.

    fixed: environment g of all N·E plays j = g mod N for its whole life (NGU App. A).
    per_episode: each environment draws j uniformly at every episode start (the Agent57 paper's
    description of NGU).
    """

    MODES = ("fixed", "per_episode")

    def __init__(
        self, mode: str, num_policies: int, first_env: int, num_envs: int, seed: int
    ) -> None:
        if mode not in self.MODES:
            raise ConfigError(f"policy assignment must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.num_policies = num_policies
        self.rng = np.random.default_rng(seed)
        self.indices = (first_env + np.arange(num_envs)) % num_policies

    def on_episode_end(self, last: np.ndarray, episode_returns: np.ndarray) -> None:
        """last: [E] bool, environments whose episode ended at this step; episode_returns: [E]
        their undiscounted extrinsic returns (a bandit's reward; unused here)."""

    def on_episode_start(self, first: np.ndarray) -> np.ndarray:
        """first: [E] bool, environments starting an episode now. Returns [E] int64 policy
        indices for this step."""
        if self.mode == "per_episode" and first.any():
            self.indices[first] = self.rng.integers(0, self.num_policies, int(first.sum()))
        return self.indices

    def state_dict(self) -> dict[str, list[int]]:
        return {"indices": self.indices.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.indices[:] = np.asarray(state["indices"], dtype=np.int64)
