"""Agent57's meta-controller: a sliding-window UCB bandit over the policies j, and the policy
chooser that asks it which j each episode plays."""

from __future__ import annotations

import collections

import numpy as np

from experiment.errors import ConfigError
from exploration.policies import PolicyIndexChooser


class SlidingWindowUcb:
    """Agent57's meta-controller: a sliding-window UCB bandit over N arms (the policies j).

    Its reward for an arm is the undiscounted extrinsic return of the episode played with it.
    Only the last `window` episodes count: an episode that fell out of the window has no
    effect on counts or means. Choice: an arm not pulled within the window first (the lowest
    such index); else with probability ε a uniform arm; else argmax of
    mean_k + β·√(1 / count_k) over the window.
    """

    def __init__(self, num_arms: int, window: int, epsilon: float, beta: float, seed: int) -> None:
        if num_arms < 1 or window < 1:
            raise ConfigError(f"need num_arms >= 1 and window >= 1, got {num_arms}, {window}")
        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"bandit epsilon must be in [0, 1], got {epsilon}")
        self.num_arms = num_arms
        self.window = window
        self.epsilon = epsilon
        self.beta = beta
        self.rng = np.random.default_rng(seed)
        self.arms: collections.deque[int] = collections.deque(maxlen=window)
        self.rewards: collections.deque[float] = collections.deque(maxlen=window)

    def update(self, arm: int, reward: float) -> None:
        self.arms.append(int(arm))
        self.rewards.append(float(reward))

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """([N] pulls, [N] mean reward) within the window (mean 0 where never pulled)."""
        arms = np.fromiter(self.arms, dtype=np.int64, count=len(self.arms))
        rewards = np.fromiter(self.rewards, dtype=np.float64, count=len(self.rewards))
        counts = np.bincount(arms, minlength=self.num_arms)
        sums = np.bincount(arms, weights=rewards, minlength=self.num_arms)
        return counts, sums / np.maximum(counts, 1)

    def choose(self) -> int:
        counts, means = self.statistics()
        unpulled = np.flatnonzero(counts == 0)
        if unpulled.size:
            return int(unpulled[0])
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.num_arms))
        return int(np.argmax(means + self.beta * np.sqrt(1.0 / counts)))

    def best_arm(self) -> int:
        """The arm with the highest mean within the window (the lowest index if none pulled)."""
        counts, means = self.statistics()
        return int(np.argmax(np.where(counts > 0, means, -np.inf))) if counts.any() else 0

    def state_dict(self) -> dict:
        return {
            "arms": list(self.arms),
            "rewards": list(self.rewards),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.arms.clear()
        self.rewards.clear()
        for arm, reward in zip(state["arms"], state["rewards"], strict=True):
            self.update(arm, reward)
        self.rng.bit_generator.state = state["rng"]


class BanditPolicyChooser(PolicyIndexChooser):
    """One sliding-window UCB bandit per environment picks its policy at each episode start
    and is rewarded with the episode's extrinsic return (Agent57)."""

    def __init__(
        self,
        num_policies: int,
        num_envs: int,
        window: int,
        epsilon: float,
        beta: float,
        seed: int,
    ) -> None:
        super().__init__("fixed", num_policies, 0, num_envs, seed)
        self.bandits = [
            SlidingWindowUcb(num_policies, window, epsilon, beta, seed * 1_000 + e)
            for e in range(num_envs)
        ]
        self.indices = np.array([b.choose() for b in self.bandits], dtype=np.int64)

    def on_episode_end(self, last: np.ndarray, episode_returns: np.ndarray) -> None:
        for env in np.flatnonzero(last):
            self.bandits[env].update(int(self.indices[env]), float(episode_returns[env]))

    def on_episode_start(self, first: np.ndarray) -> np.ndarray:
        for env in np.flatnonzero(first):
            self.indices[env] = self.bandits[env].choose()
        return self.indices

    def state_dict(self) -> dict:
        return super().state_dict() | {"bandits": [b.state_dict() for b in self.bandits]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for bandit, saved in zip(self.bandits, state["bandits"], strict=True):
            bandit.load_state_dict(saved)
