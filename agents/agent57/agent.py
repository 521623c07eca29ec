"""Agent57 (Badia et al. 2020b): NGU with two value networks and a meta-controller.

What is Agent57's own, and all that lives here:
- A sliding-window UCB bandit per environment choosing j at each episode start, and one for the
  evaluator.
- Its defaults: two value networks (NGU's --separate_value_networks: Q_e trained by transformed
  Retrace on r^e alone and Q_i on r^i alone, combined as Q_e + β_j·Q_i), the discount ladder
  γ0 → γ1 → γ2, trace length 160 and replay period 80, IS exponent 0.
Everything else is NGU's and R2D2's parts, used as they are.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import numpy as np
import torch

from agents.common.sequence_learning import build_sequence_learner
from agents.ngu import agent as ngu
from experiment.errors import ConfigError
from exploration.bandit import BanditPolicyChooser
from exploration.policies import PolicyIndexChooser, agent57_discounts

COLUMNS = ngu.COLUMNS  # Agent57 stores exactly what NGU stores.


@dataclasses.dataclass(frozen=True)
class Agent57Config(ngu.NguConfig):
    """Agent57 hyperparameters: NGU's (Table 6) except where the Agent57 paper differs."""

    added_settings: ClassVar[dict[str, Any]] = {
        **ngu.NguConfig.added_settings,
        "separate_value_networks": True,  # Agent57 has always had two networks.
    }

    separate_value_networks: bool = True
    """Two value networks, Q_e on r^e and Q_i on r^i, combined as Q_e + β_j·Q_i (Agent57's
    separate parameterisation). False: NGU's one network on r^e + β_j·r^i, the paper's
    ablation."""
    sequence_length: int = 160
    """Steps of each replayed sequence that the loss covers, after the burn-in (Agent57: trace
    length 160)."""
    replay_period: int = 80
    """Steps between the starts of consecutive sequences, which overlap by 80 (Agent57: 80)."""
    importance_sampling_exponent: float = 0.0
    """β of the importance-sampling weights (Agent57: 0, no correction)."""
    gamma_0: float = 0.9999
    """γ0, the discount of the exploitative policy j = 0 (Agent57: 0.9999); gamma_max is γ1
    (0.997, of j = 7) and gamma_min γ2 (0.99, of j = N − 1). γ0 may be below γ1 (the paper's
    is above): a short-sighted j = 0 beside far-sighted exploratory policies, j = 1..6 in
    between."""
    bandit_window: int = 160
    """Episodes each actor environment's bandit remembers (Agent57's text: 160; its Table G.3
    prints 90)."""
    bandit_epsilon: float = 0.5
    """Probability that an actor environment's bandit picks a uniform arm (Agent57: 0.5)."""
    bandit_beta: float = 1.0
    """β of the bandits' UCB bonus β·√(1/count) (Agent57 Table G.3: 1)."""
    eval_bandit_window: int = 3_600
    """Episodes the evaluator's bandit remembers (Agent57: 3,600)."""
    eval_bandit_epsilon: float = 0.01
    """Probability that the evaluator's bandit picks a uniform arm (Agent57: 0.01)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_policies < 10:
            raise ConfigError(f"Agent57's ladder needs num_policies >= 10, got {self.num_policies}")
        if not 0.0 <= self.gamma_0 < 1.0:
            raise ConfigError(f"need 0 <= gamma_0 < 1, got {self.gamma_0}")
        for name in ("bandit_window", "eval_bandit_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    def discounts(self) -> np.ndarray:
        return agent57_discounts(self.num_policies, self.gamma_0, self.gamma_max, self.gamma_min)


class Actor(ngu.Actor):
    """NGU's actor, also counting the arms its bandits play."""

    def _account_episodes(self, timestep) -> None:
        """NGU's per-arm returns, and for every finished episode which arm it played: each
        row's `arms/policy_XX` is the fraction of the iteration's episodes on arm XX."""
        for env in np.flatnonzero(timestep.last):
            chosen = int(self.policies.indices[env])
            for arm in range(self.config.num_policies):
                self._statistics[f"arms/policy_{arm:02d}"].append(float(arm == chosen))
        super()._account_episodes(timestep)


@dataclasses.dataclass(frozen=True)
class ActorFactory(ngu.ActorFactory):
    """Builds one Agent57 actor process: NGU's, with a bandit per environment."""

    config: Agent57Config

    actor_class = Actor

    def describe(self) -> list[str]:
        # R2D2's ε ladder line, not NGU's lines on fixed or drawn j: a bandit chooses j here.
        ladder = super(ngu.ActorFactory, self).describe()
        return [*ladder, "policy j of each episode chosen by each environment's bandit"]

    def policy_chooser(self, first_env: int, seed: int) -> PolicyIndexChooser:
        config = self.config
        return BanditPolicyChooser(
            config.num_policies,
            self.num_envs,
            config.bandit_window,
            config.bandit_epsilon,
            config.bandit_beta,
            seed + 1,
        )


def evaluation_actor(
    network: ngu.NguNetworks,
    config: Agent57Config,
    epsilon: float,
    seed: int,
    policy_index: int | None = None,
    device: torch.device = ngu.CPU,
) -> Actor:
    """The evaluator: its own bandit (τ = eval_bandit_window, ε = eval_bandit_epsilon) picks
    the arm of each game, unless `policy_index` fixes it."""
    if policy_index is not None:
        policies = ngu.fixed_policy(config, policy_index, seed)
    else:
        policies = BanditPolicyChooser(
            config.num_policies,
            1,
            config.eval_bandit_window,
            config.eval_bandit_epsilon,
            config.bandit_beta,
            seed,
        )
    return Actor(network, epsilon, None, seed, config, policies, device)


# build_learner(config, observation_shape, observation_dtype, num_actions, seed, device)
build_learner = functools.partial(build_sequence_learner, ngu.Learner, ngu.build_network, COLUMNS)
build_network = ngu.build_network
