"""NGU (Badia et al. 2020a): R2D2 with a family of N policies, each exploring with its own
intrinsic-reward scale β_j and discount γ_j, trained by transformed Retrace.

Actor: R2D2's recurrent actor, also computing r^i while acting (episodic k-NN novelty of the
controllable-state embedding, scaled by RND's lifelong novelty), feeding the policy index j
and the previous intrinsic reward to the network, and storing r^i, j and the behaviour
probability μ with each step. Learner: R2D2's learner with Retrace on r^e + β_j·r^i and γ_j,
and, on the same batch, the embedding's inverse-dynamics loss and RND's predictor loss.

Only what is NGU's own lives here; the sequence machinery is shared (`sequence_agent`,
`replay`), the intrinsic-reward formulas are in `intrinsic`, the ladders in `exploration`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections import defaultdict
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import value_learning
from agents.common.sequence_learning import (
    ChunkRecorder,
    SequenceAgentConfig,
    build_sequence_learner,
    final_valid_rows,
    unroll_sequences,
)
from agents.r2d2 import agent as r2d2
from experiment.errors import ConfigError, require_positive
from exploration.novelty import EpisodicConfig, EpisodicMemory, intrinsic_reward
from exploration.policies import PolicyIndexChooser, epsilon_greedy_policy, ngu_betas, ngu_discounts
from networks.intrinsic import EmbeddingNetwork, RndNetworks
from networks.recurrent import RecurrentQNetworkPair, recurrent_network_for
from sequence_replay import Column

CPU = r2d2.CPU

# NGU's Atari settings (Table 8), which Agent57 keeps: one frame (no stacking, set by the run
# scripts), the full action set, raw rewards, a lost life is not an episode end, evaluation
# ε 0.01; actors fetch parameters every 100 steps (Table 6).
RUN_DEFAULTS = {
    "clip_rewards": False,
    "full_action_space": True,
    "num_envs": 16,
    "eval_epsilon": 0.01,
}
PARALLEL_DEFAULTS = {"actor_update_interval": 100}

# NGU stores, beside R2D2's columns, the intrinsic reward INTO each observation (fed back to
# the network like the extrinsic one), the policy index j and μ(a_t), Retrace's denominator.
COLUMNS = (
    *r2d2.COLUMNS,
    Column("intrinsic_reward", "float32", at_episode_start=0.0),
    Column("policy_index", "int16"),
    Column("behaviour_prob", "float32"),
)


@dataclasses.dataclass(frozen=True)
class NguConfig(SequenceAgentConfig):
    """NGU hyperparameters (the paper's Table 6) unless docs/deviations.md lists a deviation."""

    # What a checkpoint written before these settings existed was trained with.
    added_settings: ClassVar[dict[str, Any]] = {
        "separate_value_networks": False,
        "transformed_mix": False,
        "priority_from_combined_td": True,
        "intrinsic_reward_at_game_over": True,
    }

    adam_eps: float = 1e-4
    """Adam's ε for every NGU loss (NGU Table 6: 1e-4)."""
    target_update_period: int = 1_500
    """Learner updates between copies of the online Q-network into the target (NGU: 1,500)."""
    num_policies: int = 32
    """N, the number of policies (β_j, γ_j) the actors explore with (NGU: 32)."""
    intrinsic_beta: float = 0.3
    """β, the largest intrinsic-reward scale: β_{N−1} = β, β_0 = 0, a sigmoid between (NGU:
    0.3)."""
    gamma_max: float = 0.997
    """γ_0, the discount of the exploitative policy j = 0 (NGU: 0.997). Agent57 reads it as its
    γ1."""
    gamma_min: float = 0.99
    """γ_{N−1}, the discount of the most exploratory policy (NGU: 0.99). Agent57 reads it as its
    γ2."""
    retrace_lambda: float = 0.95
    """λ of the Retrace traces c = λ·min(1, π/μ) (NGU: 0.95)."""
    target_epsilon: float = 0.01
    """ε of the Retrace target policy, ε-greedy on the online Q (NGU: 0.01)."""
    draw_policy_per_episode: bool = True
    """True: each environment draws its policy j uniformly from 0..N-1 at every episode start
    (how the Agent57 paper describes NGU), so every j runs, and with every ε of the ladder, at
    any number of environments. False: environment g always plays j = g mod N (NGU App. A);
    with fewer environments than policies the high-β policies then never run, and with N
    environments each j only ever has one ε (j = 0 the ladder's largest)."""
    separate_value_networks: bool = False
    """True: two Q-networks of the same architecture, Q_e trained on r^e alone and Q_i on r^i
    alone, both with γ_j, combined as Q_e + β_j·Q_i to act and for the target policy (Agent57's
    remedy for a shared network whose scale is set by the intrinsic reward, and its
    default). False: one network on r^e + β_j·r^i (the NGU paper)."""
    transformed_mix: bool = False
    """With separate_value_networks: combine the networks as h(h⁻¹(Q_e) + β_j·h⁻¹(Q_i))
    instead of Q_e + β_j·Q_i (Agent57's experiments use the plain sum; it reports the two
    perform the same)."""
    priority_from_combined_td: bool = True
    """With separate_value_networks: priorities from the TD error of the combined value,
    |δ_e + β_j·δ_i| (True), or from |δ_e| + |δ_i| (False); the Agent57 paper does not say."""
    exploit_all_sequences: bool = False
    """True: besides each sequence's own policy j, the exploitative policy j = 0 also learns
    from every sequence of the other policies (Retrace, off-policy, with the actors'
    behaviour probabilities), and those TD errors count in the sequence's priority. The NGU
    paper trains each sequence with its own j only, which leaves j = 0 1/N of the data.
    Off by default: it has not yet been shown to keep the far reward (docs/known-gaps.md),
    and it costs a second unroll of the Q-network per batch."""
    embedding_size: int = 32
    """Size of the controllable-state embedding f used by episodic novelty (NGU: 32)."""
    episodic_memory_capacity: int = 30_000
    """Embeddings each environment's episodic memory holds, a ring emptied at every episode
    start (NGU: 30,000)."""
    num_neighbours: int = 10
    """k, the nearest neighbours of the episodic novelty (NGU: 10)."""
    kernel_epsilon: float = 1e-4
    """ε of the kernel K = ε/(d²/d_m² + ε) (NGU Table 6: 1e-4; the main text says 1e-3)."""
    cluster_distance: float = 0.008
    """ξ: normalised squared distances below it count as the same state (NGU: 0.008)."""
    pseudo_count_constant: float = 1e-3
    """c in r^episodic = 1/(√ΣK + c) (NGU: 0.001)."""
    max_similarity: float = 8.0
    """s_m: the episodic reward is 0 when √ΣK + c exceeds it (NGU: 8)."""
    max_lifelong_multiplier: float = 5.0
    """L: RND's multiplier α is clipped to [1, L] (NGU: 5)."""
    intrinsic_reward_at_game_over: bool = True
    """True (NGU, Agent57): the observation that ends a game pays its novelty as the last
    step's r^i. False: a step that ends the game (discount 0) pays no r^i, so an explorer
    gains nothing by ending a game on a novel cell, e.g. a distractor next to the start,
    whose arrival pays the episode's largest r^i while the memory is nearly empty
    (docs/results.md, "Deceptive tasks", cause 8)."""
    intrinsic_learning_rate: float = 5e-4
    """Adam learning rate of the embedding (inverse dynamics) and RND predictor (NGU: 5e-4)."""
    action_prediction_l2: float = 1e-5
    """L2 weight decay of the embedding and inverse-dynamics network (NGU: 1e-5)."""
    intrinsic_train_steps: int = 5
    """The embedding and RND predictor train on the last this-many transitions of each sampled
    sequence (NGU: 5)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "intrinsic_learning_rate")
        if self.num_policies < 1:
            raise ConfigError(f"num_policies must be at least 1, got {self.num_policies}")
        if not 0.0 <= self.gamma_min <= self.gamma_max < 1.0:
            raise ConfigError(
                f"need 0 <= gamma_min <= gamma_max < 1, got {self.gamma_min}, {self.gamma_max}"
            )
        if not 0.0 <= self.retrace_lambda <= 1.0:
            raise ConfigError(f"retrace_lambda must be in [0, 1], got {self.retrace_lambda}")
        if not 0.0 <= self.target_epsilon <= 1.0:
            raise ConfigError(f"target_epsilon must be in [0, 1], got {self.target_epsilon}")
        if self.max_lifelong_multiplier < 1.0:
            raise ConfigError("max_lifelong_multiplier (L) must be at least 1")
        for name in ("embedding_size", "episodic_memory_capacity", "num_neighbours"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 1 <= self.intrinsic_train_steps < self.sequence_length:
            raise ConfigError("intrinsic_train_steps must be in [1, sequence_length)")

    @property
    def episodic(self) -> EpisodicConfig:
        return EpisodicConfig(
            num_neighbours=self.num_neighbours,
            kernel_epsilon=self.kernel_epsilon,
            cluster_distance=self.cluster_distance,
            pseudo_count_constant=self.pseudo_count_constant,
            max_similarity=self.max_similarity,
        )

    def betas(self) -> np.ndarray:
        """[N] β_j."""
        return ngu_betas(self.num_policies, self.intrinsic_beta)

    def discounts(self) -> np.ndarray:
        """[N] γ_j (Agent57 overrides this with its own ladder)."""
        return ngu_discounts(self.num_policies, self.gamma_max, self.gamma_min)


class NguNetworks(nn.Module):
    """Everything NGU's actors need, published together: the Q-network (`q`), the embedding
    and the RND networks with their statistics. Acts as its Q-network for the recurrent
    actors and learners (inputs, state, forward)."""

    def __init__(self, q: nn.Module, embedding: EmbeddingNetwork, rnd: RndNetworks) -> None:
        super().__init__()
        self.q = q
        self.embedding = embedding
        self.rnd = rnd

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.q.input_names

    @property
    def state_size(self) -> int:
        return self.q.state_size

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        return self.q.initial_state(batch_size, device)

    def forward(self, inputs, state: torch.Tensor):
        return self.q(inputs, state)


def q_network_inputs(num_actions: int, config: NguConfig) -> dict:
    """recurrent_network_for's arguments besides the observation shape and actions: NGU's
    inputs (one-hots of the previous action and of j, the previous extrinsic and intrinsic
    rewards), and the torso and LSTM size of `config`."""
    return {
        "one_hot_inputs": (("prev_action", num_actions), ("policy_index", config.num_policies)),
        "scalar_inputs": ("reward", "intrinsic_reward"),
        "torso": config.torso,
        "lstm_size": config.lstm_size,
    }


def build_network(
    config: NguConfig, observation_shape: tuple[int, ...], num_actions: int
) -> NguNetworks:
    """NGU's one network builder, used by actors, the learner and eval_agent alike: one
    Q-network, or with separate_value_networks a pair (extrinsic, intrinsic)."""
    inputs = q_network_inputs(num_actions, config)
    if config.separate_value_networks:
        q = RecurrentQNetworkPair(
            recurrent_network_for(observation_shape, num_actions, **inputs),
            recurrent_network_for(observation_shape, num_actions, **inputs),
        )
    else:
        q = recurrent_network_for(observation_shape, num_actions, **inputs)
    return NguNetworks(q, *novelty_networks(config, observation_shape, num_actions))


def combined_q(
    q_pair: torch.Tensor, beta: torch.Tensor, transformed: bool, tx_pair
) -> torch.Tensor:
    """Q(x, a, j) of separate networks: q_pair [2, ..., A] (extrinsic, intrinsic), beta [...]
    the β_j of each row -> [..., A]. Plain: Q_e + β_j·Q_i; transformed:
    h(h⁻¹(Q_e) + β_j·h⁻¹(Q_i))."""
    beta = beta.unsqueeze(-1)
    if transformed:
        return tx_pair.apply(tx_pair.apply_inv(q_pair[0]) + beta * tx_pair.apply_inv(q_pair[1]))
    return q_pair[0] + beta * q_pair[1]


def novelty_networks(
    config: NguConfig, observation_shape: tuple[int, ...], num_actions: int
) -> tuple[EmbeddingNetwork, RndNetworks]:
    """NGU's embedding and RND networks (Agent57's too), with the Q-network's torso."""
    return (
        EmbeddingNetwork(observation_shape, num_actions, config.embedding_size, torso=config.torso),
        RndNetworks(observation_shape, torso=config.torso),
    )


class EpisodeEmbeddings:
    """The embedding each environment uses, fixed for the whole episode (NGU refreshes the
    actors' embedding once per episode, so one episode's memory is never a mix of two).

    New weights become a snapshot that environments adopt as their next episode starts; a
    snapshot no environment uses any more is dropped. Environments sharing a snapshot are
    embedded in one batch.
    """

    def __init__(self, embedding: nn.Module, num_envs: int) -> None:
        self.embedding = embedding  # the actor's live copy, which weight pulls overwrite
        # The first snapshot is taken when the first episodes start, not here: an actor is
        # built with a fresh network and pulls the learner's weights afterwards (an evaluation
        # process, a restarted or resumed actor), and a snapshot taken now would give its
        # first episodes the untrained embedding.
        self.snapshots: dict[int, nn.Module] = {}
        self.latest = 0
        self.env_snapshot = np.zeros(num_envs, dtype=np.int64)

    def weights_updated(self) -> None:
        self.latest += 1

    def start_episodes(self, first: np.ndarray) -> None:
        if not first.any():
            return
        if self.latest not in self.snapshots:
            self.snapshots[self.latest] = copy.deepcopy(self.embedding)
        self.env_snapshot[first] = self.latest
        for version in set(self.snapshots) - set(self.env_snapshot.tolist()):
            del self.snapshots[version]

    @torch.no_grad()
    def __call__(self, observation: torch.Tensor) -> torch.Tensor:
        """[E, ...] -> [E, D], each environment through its episode's snapshot."""
        versions = np.unique(self.env_snapshot)
        if len(versions) == 1:
            return self.snapshots[int(versions[0])](observation)
        out = torch.empty(
            observation.shape[0], self.embedding.embedding_size, device=observation.device
        )
        for version in versions:
            envs = torch.as_tensor(np.flatnonzero(self.env_snapshot == version)).to(out.device)
            out[envs] = self.snapshots[int(version)](observation[envs])
        return out


class Actor(r2d2.Actor):
    """NGU's actor: R2D2's, plus the intrinsic reward, the policy index and μ of each step.

    `recorder=None` gives an evaluation actor (nothing recorded; a fixed policy index).
    """

    def __init__(
        self,
        network: NguNetworks,
        epsilons: np.ndarray | float,
        recorder: ChunkRecorder | None,
        seed: int,
        config: NguConfig,
        policies: PolicyIndexChooser,
        device: torch.device = CPU,
    ) -> None:
        super().__init__(network, epsilons, recorder, seed, device)
        num_envs = len(policies.indices)
        self.config = config
        self.policies = policies
        # What acting on separate networks' combined Q needs, built once, not at every step.
        self.betas = torch.as_tensor(config.betas(), dtype=torch.float32, device=device)
        self.tx_pair = r2d2.value_rescaling(config)
        self.memory = EpisodicMemory(
            num_envs,
            config.episodic_memory_capacity,
            config.embedding_size,
            config.episodic,
            device,
        )
        self.embeddings = EpisodeEmbeddings(network.embedding, num_envs)
        self.intrinsic = np.zeros(num_envs, dtype=np.float32)
        self.returns = np.zeros(num_envs)  # extrinsic, of the episodes in progress
        self._statistics: dict[str, list[float]] = defaultdict(list)

    def weights_updated(self) -> None:
        self.embeddings.weights_updated()

    def action_values(self, network_output: torch.Tensor) -> torch.Tensor:
        if not self.config.separate_value_networks:
            return super().action_values(network_output)
        beta = self.betas[torch.as_tensor(self.policies.indices, device=self.device)]
        return combined_q(network_output[:, 0], beta, self.config.transformed_mix, self.tx_pair)

    def extra_inputs(self, timestep) -> dict[str, torch.Tensor]:
        first = np.asarray(timestep.first)
        self._account_episodes(timestep)
        self.policies.on_episode_start(first)
        self.intrinsic = self._intrinsic_rewards(timestep.observation, first)
        if not self.config.intrinsic_reward_at_game_over:
            game_over = np.asarray(timestep.last) & (np.asarray(timestep.discount) == 0.0)
            self.intrinsic[game_over] = 0.0
        return {
            "policy_index": torch.as_tensor(self.policies.indices, device=self.device),
            "intrinsic_reward": torch.as_tensor(self.intrinsic, device=self.device),
        }

    def step_values(self, timestep, actions: np.ndarray) -> dict[str, np.ndarray]:
        return super().step_values(timestep, actions) | {
            "intrinsic_reward": self.intrinsic,
            "policy_index": self.policies.indices,
            "behaviour_prob": self.last_probabilities,
        }

    def _account_episodes(self, timestep) -> None:
        """Extrinsic returns per policy index: the bandit's rewards and the logged returns."""
        first, last = np.asarray(timestep.first), np.asarray(timestep.last)
        self.returns[first] = 0.0
        self.returns[~first] += timestep.raw_reward[~first]
        for env in np.flatnonzero(last):
            j = int(self.policies.indices[env])
            self._statistics[f"policy_{j:02d}/episode_return"].append(float(self.returns[env]))
        self.policies.on_episode_end(last, self.returns)

    @torch.no_grad()
    def _intrinsic_rewards(self, observation: np.ndarray, first: np.ndarray) -> np.ndarray:
        """[E] r^i of the current observations (0 at an episode's first step, where nothing
        leads into the observation; its embedding still enters the fresh memory)."""
        observation = torch.as_tensor(observation, device=self.device)
        self.embeddings.start_episodes(first)
        self.memory.clear(torch.as_tensor(first, device=self.device))
        episodic = self.memory.reward(self.embeddings(observation))
        rnd = self.network.rnd
        alpha = rnd.multiplier(rnd.error(observation))
        reward = intrinsic_reward(episodic, alpha, self.config.max_lifelong_multiplier)
        reward, episodic, alpha = (x.cpu().numpy() for x in (reward, episodic, alpha))
        reward[first] = 0.0
        mid = ~first
        if mid.any():
            self._statistics["intrinsic/reward"].append(float(reward[mid].mean()))
            self._statistics["intrinsic/episodic"].append(float(episodic[mid].mean()))
            self._statistics["intrinsic/lifelong_alpha"].append(float(alpha[mid].mean()))
        return reward.astype(np.float32)

    def drain_statistics(self) -> dict[str, list[float]]:
        """Scalars since the last call: per-policy returns and per-step intrinsic parts, the
        latter averaged here so that a message carries a handful of numbers."""
        stats = {}
        for key, values in self._statistics.items():
            per_step = key.startswith("intrinsic/")
            stats[key] = [float(np.mean(values))] if per_step else list(values)
        self._statistics = defaultdict(list)
        return stats

    def state_dict(self) -> dict:
        return {"memory": self.memory.state_dict(), "policies": self.policies.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.memory.load_state_dict(state["memory"])
        self.policies.load_state_dict(state["policies"])


EXPLOIT = "_exploit"  # Suffix of the losses of j = 0 on the other policies' sequences.


class Learner(r2d2.Learner):
    """R2D2's learner with NGU's loss: transformed Retrace (λ) on r^e + β_j·r^i with γ_j, the
    target policy ε-greedy (`target_epsilon`) on the online Q; plus the embedding's
    inverse-dynamics loss and RND's distillation loss on the last steps of each sequence."""

    def __init__(self, network: NguNetworks, replay, assembler, config: NguConfig, device):
        groups = [
            *self.q_param_groups(network, config),
            {
                "name": "embedding",
                "params": list(network.embedding.parameters()),
                "lr": config.intrinsic_learning_rate,
                "weight_decay": config.action_prediction_l2,
            },
            {
                "name": "rnd",
                "params": list(network.rnd.predictor.parameters()),
                "lr": config.intrinsic_learning_rate,
            },
        ]
        super().__init__(network, replay, assembler, config, device, groups)
        self.betas = torch.as_tensor(config.betas(), dtype=torch.float32, device=device)
        self.gammas = torch.as_tensor(config.discounts(), dtype=torch.float32, device=device)

    def q_param_groups(self, network: NguNetworks, config: NguConfig) -> list[dict]:
        """The optimiser groups of the value network(s): each separate network has its own
        group, so its own gradient clipping."""
        lr = config.learning_rate
        if not config.separate_value_networks:
            return [{"name": "q", "params": list(network.q.parameters()), "lr": lr}]
        return [
            {"name": "extrinsic", "params": list(network.q.extrinsic.parameters()), "lr": lr},
            {"name": "intrinsic", "params": list(network.q.intrinsic.parameters()), "lr": lr},
        ]

    def head_td_errors(self, batch):
        """Each sequence's TD errors under its own policy j and, with exploit_all_sequences,
        under j = 0 as well (suffix EXPLOIT; zero on sequences that j = 0 played itself, which
        the first set already covers)."""
        heads, stats = self.own_policy_td_errors(batch)
        if self.config.exploit_all_sequences:
            relabelled = {**batch, "policy_index": torch.zeros_like(batch["policy_index"])}
            exploit, _ = self.own_policy_td_errors(relabelled)
            others = batch["policy_index"][self.config.burn_in + 1 :] != 0
            heads |= {name + EXPLOIT: td * others for name, td in exploit.items()}
        return heads, stats

    def own_policy_td_errors(self, batch):
        """({loss suffix: [T_learn − 1, B] TD errors}, statistics) of the sequences under the
        policy index `batch["policy_index"]` says."""
        if self.config.separate_value_networks:
            return self.separate_td_errors(batch)
        q = unroll_sequences(self.network, batch, self.config.burn_in)
        with torch.no_grad():
            target_q = unroll_sequences(self.target_network, batch, self.config.burn_in)
        td = self.retrace_td_errors(q, target_q, q.detach(), self.mixed_reward(batch), batch)
        return {"": td}, {"q_value": q.detach().mean()}

    def separate_td_errors(self, batch):
        """Separate networks: Q_e's Retrace on r^e alone and Q_i's on r^i alone."""
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
        """Separate networks: online and target Q of both [2, T_learn, B, A], and the combined
        online Q [T_learn, B, A] that their one target policy is ε-greedy on."""
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
        """Each network's Retrace TD errors on its own reward alone, both with γ_j."""
        return {
            "_extrinsic": self.retrace_td_errors(
                q[0], target_q[0], policy_q, extrinsic_reward, batch
            ),
            "_intrinsic": self.retrace_td_errors(
                q[1], target_q[1], policy_q, intrinsic_reward, batch
            ),
        }

    def priority_td(self, heads: dict[str, torch.Tensor], batch) -> torch.Tensor:
        """The own policy's TD errors, plus j = 0's where it learns from the sequence too: a
        sequence from which the exploitative policy still has much to learn (a far reward an
        exploratory policy found) is replayed more."""
        own = {name: td for name, td in heads.items() if not name.endswith(EXPLOIT)}
        exploit = [td for name, td in heads.items() if name.endswith(EXPLOIT)]
        priority = self.own_priority_td(own, batch)
        if not exploit:
            return priority
        return priority.abs() + sum(td.abs() for td in exploit)

    def own_priority_td(self, heads: dict[str, torch.Tensor], batch) -> torch.Tensor:
        if not self.config.separate_value_networks:
            return heads[""]
        td_e, td_i = heads["_extrinsic"], heads["_intrinsic"]
        if not self.config.priority_from_combined_td:
            return td_e.abs() + td_i.abs()
        return td_e + self.betas[batch["policy_index"][self.config.burn_in + 1 :]] * td_i

    def mixed_reward(self, batch) -> torch.Tensor:
        """[T, B] r^e + β_j·r^i."""
        beta = self.betas[batch["policy_index"]]
        return batch["reward"] + beta * batch["intrinsic_reward"]

    def retrace_td_errors(
        self,
        q: torch.Tensor,
        target_q: torch.Tensor,
        policy_q: torch.Tensor,
        reward: torch.Tensor,
        batch,
    ) -> torch.Tensor:
        """[T_learn − 1, B] transformed Retrace TD errors of one value head.

        q, target_q: [T_learn, B, A] online and target Q of the head; policy_q: [T_learn, B, A]
        the online Q the target policy is ε-greedy on; reward: [T, B] the head's reward.
        The trace at an episode's final step is cut (its action never reaches the
        environment), so a truncated episode bootstraps from E_π Q of its final observation.
        """
        burn_in = self.config.burn_in
        action = batch["action"][burn_in:]
        valid_t = batch["mask"][burn_in + 1 :]
        gamma = self.gammas[batch["policy_index"][burn_in + 1 :]]
        mu = batch["behaviour_prob"][burn_in + 1 :]
        return value_learning.transformed_retrace(
            q_tm1=q[:-1],
            q_t=target_q[1:],
            a_tm1=action[:-1],
            a_t=action[1:],
            r_t=reward[burn_in + 1 :],
            discount_t=gamma * batch["discount"][burn_in + 1 :],
            pi_t=epsilon_greedy_policy(policy_q[1:], self.config.target_epsilon),
            mu_t=torch.where(final_valid_rows(valid_t), torch.inf, mu),
            lambda_=self.config.retrace_lambda,
            tx_pair=self.tx_pair,
        )

    def auxiliary_losses(self, batch) -> dict[str, torch.Tensor]:
        observation, next_observation, action = last_transitions(
            batch, self.config.burn_in, self.config.intrinsic_train_steps
        )
        logits = self.network.embedding.action_logits(observation, next_observation)
        rnd = self.network.rnd
        # Normalise with statistics that include this batch, and standardise the actors'
        # errors with the errors the predictor makes before this update.
        rnd.observation_stats.update(rnd.frame(next_observation))
        error = rnd.error(next_observation)
        rnd.error_stats.update(error.detach())
        return {
            "loss_embedding": F.cross_entropy(logits, action),
            "loss_rnd": error.mean(),
        }


def last_transitions(
    batch, burn_in: int, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The last `count` transitions (x_t, x_{t+1}, a_t) of each item's learning window.

    batch: observation [T, B, ...], action [T, B], mask [T, B]. Returns observations [M, ...],
    next observations [M, ...] and actions [M], M ≤ count·B (fewer for short items).
    """
    mask = batch["mask"]
    time = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1)
    last_row = torch.where(mask, time, torch.zeros_like(time)).max(dim=0).values  # [B]
    rows = last_row.unsqueeze(0) - torch.arange(count, 0, -1, device=mask.device).unsqueeze(1)
    cols = torch.arange(mask.shape[1], device=mask.device).expand_as(rows)
    keep = rows >= burn_in
    rows, cols = rows[keep], cols[keep]
    observation = batch["observation"]
    return observation[rows, cols], observation[rows + 1, cols], batch["action"][rows, cols]


@dataclasses.dataclass(frozen=True)
class ActorFactory(r2d2.ActorFactory):
    """Builds one NGU actor process: environments, networks, policy indices and actor."""

    config: NguConfig

    actor_class = Actor  # Agent57 changes the actor and the network, nothing else.
    network_builder = staticmethod(build_network)

    def __call__(self, actor_index: int, seed: int):
        env = self.env_spec.create(self.num_envs, seed, num_threads=1)
        network = self.network_builder(self.config, env.observation_shape, env.num_actions)
        first = actor_index * self.num_envs
        recorder = ChunkRecorder(
            first, self.num_envs, self.config.chunk_length, env.observation_shape, COLUMNS
        )
        policies = self.policy_chooser(first, seed)
        actor = self.actor_class(
            network, self.epsilons(first), recorder, seed, self.config, policies
        )
        return env, actor

    def describe(self) -> list[str]:
        lines = super().describe()
        num_envs, num_policies = self.num_actors * self.num_envs, self.config.num_policies
        if self.config.draw_policy_per_episode:
            return [*lines, f"policy j drawn per episode from 0..{num_policies - 1} in each env"]
        ladder = self.epsilons(0, all_actors=True)
        pairs = [f"env {g}: j={g % num_policies} ε={ladder[g]:.3g}" for g in range(num_envs)]
        lines.append("fixed policies (--nodraw_policy_per_episode): " + "; ".join(pairs[:16]))
        if num_envs < num_policies:
            lines.append(
                f"WARNING: {num_envs} environments for {num_policies} fixed policies: only "
                f"j = 0..{num_envs - 1} (β up to {self.config.betas()[num_envs - 1]:.3g}) ever "
                "run; pass --draw_policy_per_episode to run every policy"
            )
        return lines

    def policy_chooser(self, first_env: int, seed: int) -> PolicyIndexChooser:
        mode = "per_episode" if self.config.draw_policy_per_episode else "fixed"
        return PolicyIndexChooser(
            mode, self.config.num_policies, first_env, self.num_envs, seed + 1
        )


def evaluation_actor(
    network: NguNetworks,
    config: NguConfig,
    epsilon: float,
    policy_index: int,
    seed: int,
    device: torch.device = CPU,
    num_envs: int = 1,
) -> Actor:
    """A greedy-ish actor that records nothing and plays policy `policy_index` (0: the
    exploitative policy, β = 0)."""
    policies = fixed_policy(config, policy_index, seed, num_envs)
    return Actor(network, epsilon, None, seed, config, policies, device)


def fixed_policy(
    config: NguConfig, policy_index: int, seed: int, num_envs: int = 1
) -> PolicyIndexChooser:
    """Every environment plays `policy_index`, checked to be one of the N."""
    if not 0 <= policy_index < config.num_policies:
        raise ConfigError(f"policy_index must be in [0, {config.num_policies}), got {policy_index}")
    policies = PolicyIndexChooser("fixed", config.num_policies, policy_index, num_envs, seed)
    policies.indices[:] = policy_index
    return policies


# build_learner(config, observation_shape, observation_dtype, num_actions, seed, device)
build_learner = functools.partial(build_sequence_learner, Learner, build_network, COLUMNS)
