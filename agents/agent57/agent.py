"""Agent57 (Badia et al. 2020b): NGU with two value networks and a meta-controller.

What is Agent57's own, and all that lives here:
- Two recurrent Q-networks of the same architecture, Q_e trained by transformed Retrace on r^e
  alone and Q_i on r^i alone, each with the sequence's γ_j, its own optimiser state and its own
  gradient clipping. Both losses use one target policy, ε-greedy on the combined online
  Q = Q_e + β_j·Q_i (or h(h⁻¹(Q_e) + β_j·h⁻¹(Q_i)) with --transformed_mix); actors act on it.
- A sliding-window UCB bandit per environment choosing j at each episode start, and one for the
  evaluator.
- Its defaults: the discount ladder γ0 → γ1 → γ2, trace length 160 and replay period 80, IS
  exponent 0, target update every 1,500 updates.
Everything else is NGU's and R2D2's parts, used as they are.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

from agents.common.sequence_learning import build_sequence_learner, unroll_sequences
from agents.ngu import agent as ngu
from agents.r2d2.agent import value_rescaling
from experiment.errors import ConfigError
from exploration.bandit import BanditPolicyChooser
from exploration.policies import PolicyIndexChooser, agent57_discounts
from networks.recurrent import RecurrentQNetworkPair, recurrent_network_for

COLUMNS = ngu.COLUMNS  # Agent57 stores exactly what NGU stores.


@dataclasses.dataclass(frozen=True)
class Agent57Config(ngu.NguConfig):
    """Agent57 hyperparameters: NGU's (Table 6) except where the Agent57 paper differs."""

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
    transformed_mix: bool = False
    """Combine the heads as h(h⁻¹(Q_e) + β_j·h⁻¹(Q_i)) instead of Q_e + β_j·Q_i (the paper's
    experiments use the plain sum; it reports the two perform the same)."""
    priority_from_combined_td: bool = True
    """Priorities from the TD error of the combined value, |δ_e + β_j·δ_i| (True), or from
    |δ_e| + |δ_i| (False); the paper does not say."""

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


def combined_q(
    q_pair: torch.Tensor, beta: torch.Tensor, transformed: bool, tx_pair
) -> torch.Tensor:
    """Q(x, a, j) from both heads: q_pair [2, ..., A] (extrinsic, intrinsic), beta [...] the
    β_j of each row -> [..., A]. Plain: Q_e + β_j·Q_i; transformed: h(h⁻¹(Q_e) + β_j·h⁻¹(Q_i))."""
    beta = beta.unsqueeze(-1)
    if transformed:
        return tx_pair.apply(tx_pair.apply_inv(q_pair[0]) + beta * tx_pair.apply_inv(q_pair[1]))
    return q_pair[0] + beta * q_pair[1]


def build_network(
    config: Agent57Config, observation_shape: tuple[int, ...], num_actions: int
) -> ngu.NguNetworks:
    """Agent57's one network builder: NGU's networks with a pair of Q-networks."""
    inputs = ngu.q_network_inputs(num_actions, config)
    pair = RecurrentQNetworkPair(
        recurrent_network_for(observation_shape, num_actions, **inputs),
        recurrent_network_for(observation_shape, num_actions, **inputs),
    )
    return ngu.NguNetworks(pair, *ngu.novelty_networks(config, observation_shape, num_actions))


class Actor(ngu.Actor):
    """NGU's actor acting on the combined Q of the two heads."""

    def action_values(self, network_output: torch.Tensor) -> torch.Tensor:
        betas = torch.as_tensor(self.config.betas(), dtype=torch.float32, device=self.device)
        beta = betas[torch.as_tensor(self.policies.indices, device=self.device)]
        tx = value_rescaling(self.config)
        return combined_q(network_output[:, 0], beta, self.config.transformed_mix, tx)

    def _account_episodes(self, timestep) -> None:
        """NGU's per-arm returns, and for every finished episode which arm it played: each
        row's `arms/policy_XX` is the fraction of the iteration's episodes on arm XX."""
        for env in np.flatnonzero(timestep.last):
            chosen = int(self.policies.indices[env])
            for arm in range(self.config.num_policies):
                self._statistics[f"arms/policy_{arm:02d}"].append(float(arm == chosen))
        super()._account_episodes(timestep)


class Learner(ngu.Learner):
    """NGU's learner with one Retrace loss per head: Q_e on r^e, Q_i on r^i, both with γ_j and
    the target policy ε-greedy on the combined online Q."""

    def q_param_groups(self, network: ngu.NguNetworks, config: Agent57Config) -> list[dict]:
        lr = config.learning_rate
        return [
            {"name": "extrinsic", "params": list(network.q.extrinsic.parameters()), "lr": lr},
            {"name": "intrinsic", "params": list(network.q.intrinsic.parameters()), "lr": lr},
        ]

    def own_policy_td_errors(self, batch):
        q, target_q, policy_q = self.unroll_heads(batch)
        heads = self.retrace_of_heads(
            q, target_q, policy_q, batch["reward"], batch["intrinsic_reward"], batch
        )
        stats = {
            "q_value_extrinsic": q[0].detach().mean(),
            "q_value_intrinsic": q[1].detach().mean(),
        }
        return heads, stats

    def unroll_heads(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Online and target Q of both heads [2, T_learn, B, A], and the combined online Q
        [T_learn, B, A] that the shared target policy is ε-greedy on."""
        burn_in = self.config.burn_in
        q = unroll_sequences(self.network, batch, burn_in)
        with torch.no_grad():
            target_q = unroll_sequences(self.target_network, batch, burn_in)
        beta = self.betas[batch["policy_index"][burn_in:]]
        policy_q = combined_q(q.detach(), beta, self.config.transformed_mix, self.tx_pair)
        return q, target_q, policy_q

    def retrace_of_heads(
        self, q, target_q, policy_q, extrinsic_reward, intrinsic_reward, batch
    ) -> dict[str, torch.Tensor]:
        """Each head's Retrace TD errors on its own reward alone: Q_e on r^e, Q_i on r^i."""
        return {
            "_extrinsic": self.retrace_td_errors(
                q[0], target_q[0], policy_q, extrinsic_reward, batch
            ),
            "_intrinsic": self.retrace_td_errors(
                q[1], target_q[1], policy_q, intrinsic_reward, batch
            ),
        }

    def own_priority_td(self, heads: dict[str, torch.Tensor], batch) -> torch.Tensor:
        td_e, td_i = heads["_extrinsic"], heads["_intrinsic"]
        if not self.config.priority_from_combined_td:
            return td_e.abs() + td_i.abs()
        return td_e + self.betas[batch["policy_index"][self.config.burn_in + 1 :]] * td_i


@dataclasses.dataclass(frozen=True)
class ActorFactory(ngu.ActorFactory):
    """Builds one Agent57 actor process: NGU's, with a bandit per environment."""

    config: Agent57Config

    actor_class = Actor
    network_builder = staticmethod(build_network)

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
build_learner = functools.partial(build_sequence_learner, Learner, build_network, COLUMNS)
