"""R2D2 (Kapturowski et al. 2019): recurrent Q-learning from prioritized sequence replay.

Actor: an LSTM Q-network stepping a batch of environments, ε-greedy with one ε per
environment, cutting each environment's stream into compressed chunks for the learner.
Learner: samples sequences, burns the LSTM in from the stored state, and learns with 5-step
double Q-learning under the value rescaling h. NGU and Agent57 reuse `unroll_sequences`,
`sequence_batch_to_device` and the chunk/sequence machinery.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

import gym_env
import value_learning
from errors import ConfigError
from greedy_actors import RecurrentEpsilonGreedyActor
from learner_base import TargetNetworkLearner
from networks.recurrent import LstmState, RecurrentQNetwork, recurrent_network_for
from replay import (
    ChunkBuilder,
    SequenceAssembler,
    SequenceBatch,
    SequenceReplay,
    sequence_priorities,
)


@dataclasses.dataclass(frozen=True)
class R2d2Config:
    """R2D2 hyperparameters; paper values unless the README lists a deviation."""

    discount: float = 0.997
    n_step: int = 5
    burn_in: int = 40
    sequence_length: int = 80
    replay_period: int = 40  # Adjacent sequences overlap by sequence_length - replay_period.
    batch_size: int = 64
    replay_capacity: int = 20_000  # Sequences. Paper: 100k (4M observations); see README.
    min_replay_size: int = 2_000  # Sequences.
    learning_rate: float = 1e-4
    adam_eps: float = 1e-3
    max_grad_norm: float = 40.0
    target_update_period: int = 2_500
    priority_exponent: float = 0.9
    priority_eta: float = 0.9
    importance_sampling_exponent: float = 0.6
    value_rescaling_eps: float = 1e-3
    exploration_base: float = 0.4
    exploration_alpha: float = 7.0

    @property
    def chunk_length(self) -> int:
        """Actors cut streams into chunks this long; sequences are whole chunks."""
        return math.gcd(self.burn_in, self.replay_period, self.sequence_length)

    def __post_init__(self) -> None:
        for name in ("n_step", "sequence_length", "replay_period", "batch_size", "replay_capacity"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.burn_in < 0:
            raise ConfigError(f"burn_in must be non-negative, got {self.burn_in}")
        if self.burn_in > self.replay_period:
            raise ConfigError(
                f"burn_in ({self.burn_in}) must not exceed replay_period ({self.replay_period}): "
                "a sequence's burn-in is then either empty or whole"
            )
        if self.replay_period > self.sequence_length:
            raise ConfigError("replay_period must not exceed sequence_length (steps would be lost)")
        if not self.batch_size <= self.min_replay_size <= self.replay_capacity:
            raise ConfigError(
                "need batch_size <= min_replay_size <= replay_capacity, got "
                f"{self.batch_size}, {self.min_replay_size}, {self.replay_capacity}"
            )
        if not 0.0 <= self.discount <= 1.0:
            raise ConfigError(f"discount must be in [0, 1], got {self.discount}")


def actor_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """ε_i = base^(1 + alpha·i/(N−1)) for i = 0..N−1 (Ape-X / R2D2); N = 1 gives `base`."""
    if num_actors == 1:
        return np.array([base])
    i = np.arange(num_actors)
    return base ** (1.0 + alpha * i / (num_actors - 1))


def make_sequence_replay(
    config: R2d2Config,
    observation_shape: tuple[int, ...],
    observation_dtype: np.dtype,
    seed: int,
) -> SequenceReplay:
    is_image = len(observation_shape) == 3
    return SequenceReplay(
        capacity=config.replay_capacity,
        burn_in=config.burn_in,
        sequence_length=config.sequence_length,
        frame_shape=observation_shape[1:] if is_image else observation_shape,
        frame_dtype=observation_dtype,
        frame_stack=observation_shape[0] if is_image else 1,
        compress=is_image,
        priority_exponent=config.priority_exponent,
        seed=seed,
    )


def make_assembler(config: R2d2Config, observation_shape: tuple[int, ...]) -> SequenceAssembler:
    is_image = len(observation_shape) == 3
    return SequenceAssembler(
        burn_in=config.burn_in,
        sequence_length=config.sequence_length,
        period=config.replay_period,
        frame_stack=observation_shape[0] if is_image else 1,
    )


class Actor(RecurrentEpsilonGreedyActor):
    """Recurrent ε-greedy acting on E environments, one ε each; emits chunks via `drain()`."""

    def __init__(
        self,
        network: RecurrentQNetwork,
        epsilons: np.ndarray,
        chunk_length: int,
        first_stream: int,
        compress: bool,
        seed: int,
    ) -> None:
        super().__init__(network, np.asarray(epsilons, np.float64), seed, torch.device("cpu"))
        self.builders = [
            ChunkBuilder(first_stream + e, chunk_length, compress) for e in range(len(epsilons))
        ]
        self._outbox: list = []

    @torch.no_grad()
    def step(self, timestep) -> np.ndarray:
        actions = super().step(timestep)
        states = torch.stack(list(self.consumed_state), dim=1).numpy()  # [E, 2, H]
        frames = timestep.observation[:, -1] if timestep.observation.ndim == 4 else None
        for e, builder in enumerate(self.builders):
            chunk = builder.append(
                frames[e] if frames is not None else timestep.observation[e],
                int(actions[e]),
                float(timestep.reward[e]),
                float(timestep.discount[e]),
                bool(timestep.first[e]),
                bool(timestep.last[e]),
                states[e],
            )
            if chunk is not None:
                self._outbox.append(chunk)
        return actions

    def drain(self) -> list:
        chunks, self._outbox = self._outbox, []
        return chunks


def sequence_batch_to_device(batch: SequenceBatch, device: torch.device) -> dict[str, torch.Tensor]:
    """Numpy sequence batch -> tensors on `device`."""
    if batch.observation is None:  # Compact: stack on the device from distinct frames.
        frames = torch.as_tensor(batch.frames).to(device)
        observation = frames[torch.as_tensor(batch.frame_index).to(device)]
    else:
        observation = torch.as_tensor(batch.observation).to(device)
    return {
        "observation": observation,
        "action": torch.as_tensor(batch.action).to(device),
        "prev_action": torch.as_tensor(batch.prev_action).to(device),
        "reward": torch.as_tensor(batch.reward).to(device),
        "discount": torch.as_tensor(batch.discount).to(device),
        "mask": torch.as_tensor(batch.mask).to(device),
        "has_burn_in": torch.as_tensor(batch.burn_in_length > 0).to(device),
        "start_state": torch.as_tensor(batch.start_state).to(device),
    }


def unroll_sequences(
    network: RecurrentQNetwork,
    batch: dict[str, torch.Tensor],
    burn_in: int,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """Q-values [T_learn, B, A] over the learning part, after a gradient-free burn-in.

    Items without a burn-in (sequences at an episode's start) keep their stored state, which
    the padding of their burn-in window must not disturb.
    """
    stored = LstmState(batch["start_state"][:, 0], batch["start_state"][:, 1])
    state = stored
    if burn_in > 0:
        with torch.no_grad():
            _, burned = network(
                batch["observation"][:burn_in],
                batch["prev_action"][:burn_in],
                batch["reward"][:burn_in],
                stored,
                None if extra is None else extra[:burn_in],
            )
        keep = batch["has_burn_in"].unsqueeze(-1)
        state = LstmState(
            torch.where(keep, burned.hidden, stored.hidden),
            torch.where(keep, burned.cell, stored.cell),
        )
    q, _ = network(
        batch["observation"][burn_in:],
        batch["prev_action"][burn_in:],
        batch["reward"][burn_in:],
        state,
        None if extra is None else extra[burn_in:],
    )
    return q


def masked_mean_per_sequence(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[T, B] values, [T, B] bool mask -> [B] mean over valid steps (0 where none)."""
    mask = mask.float()
    return (values * mask).sum(0) / mask.sum(0).clamp(min=1.0)


class Learner(TargetNetworkLearner):
    """R2D2 learner: prioritized sequence replay, burn-in, n-step double Q with rescaling."""

    def __init__(
        self,
        network: RecurrentQNetwork,
        replay: SequenceReplay,
        assembler: SequenceAssembler,
        config: R2d2Config,
        device: torch.device,
    ) -> None:
        super().__init__(network, replay, config, device)
        self.assembler = assembler
        self.batch_size = config.batch_size
        eps = config.value_rescaling_eps
        self.tx_pair = value_learning.TxPair(
            lambda x: value_learning.signed_hyperbolic(x, eps),
            lambda x: value_learning.signed_parabolic(x, eps),
        )

    def ingest(self, chunks: list) -> int:
        sequences = [s for chunk in chunks for s in self.assembler.add(chunk)]
        if sequences:
            self.replay.add(sequences)
        return len(sequences)

    def ready(self) -> bool:
        return self.replay.size >= self.config.min_replay_size

    def step(self) -> dict[str, float]:
        batch, slots, weights = self.replay.sample(
            self.config.batch_size, self.config.importance_sampling_exponent, compact=True
        )
        tensors = sequence_batch_to_device(batch, self.device)
        td, q_learn = self._td_errors(tensors)
        mask = tensors["mask"][self.config.burn_in + 1 :]
        per_sequence = masked_mean_per_sequence(0.5 * td.square(), mask)
        loss = (torch.as_tensor(weights, device=self.device) * per_sequence).mean()
        grad_norm = self.apply_gradients(loss)
        priorities = sequence_priorities(
            td.detach().abs().cpu().numpy(), mask.cpu().numpy(), self.config.priority_eta
        )
        self.replay.update_priorities(slots, priorities)
        return {
            "loss": loss.item(),
            "q_value": q_learn.mean().item(),
            "td_error_abs": masked_mean_per_sequence(td.abs(), mask).mean().item(),
            "grad_norm": grad_norm,
        }

    def _td_errors(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """[T_learn − 1, B] transformed n-step double-Q TD errors, and the online Q-values."""
        burn_in = self.config.burn_in
        q = unroll_sequences(self.network, batch, burn_in)
        with torch.no_grad():
            target_q = unroll_sequences(self.target_network, batch, burn_in)
        action = batch["action"][burn_in:]
        td = value_learning.transformed_n_step_q_learning(
            q_tm1=q[:-1],
            a_tm1=action[:-1],
            target_q_t=target_q[1:],
            a_t=q[1:].detach().argmax(dim=-1),
            r_t=batch["reward"][burn_in + 1 :],
            discount_t=self.config.discount * batch["discount"][burn_in + 1 :],
            n=self.config.n_step,
            tx_pair=self.tx_pair,
        )
        return td, q


@dataclasses.dataclass(frozen=True)
class ActorFactory:
    """Builds one actor process's environments and actor (picklable for spawn).

    Each environment is one "actor" of the paper's ε ladder: actor process i owns the ε of
    environments i·E .. i·E + E − 1 of the N·E.
    """

    config: R2d2Config
    env_spec: gym_env.EnvSpec
    num_envs: int
    num_actors: int

    def __call__(self, actor_index: int, seed: int):
        env = self.env_spec.create(self.num_envs, seed, num_threads=1)
        network = recurrent_network_for(env.observation_shape, env.num_actions)
        ladder = actor_epsilons(
            self.num_actors * self.num_envs,
            self.config.exploration_base,
            self.config.exploration_alpha,
        )
        first = actor_index * self.num_envs
        actor = Actor(
            network,
            ladder[first : first + self.num_envs],
            self.config.chunk_length,
            first_stream=first,
            compress=len(env.observation_shape) == 3,
            seed=seed,
        )
        return env, actor


def build_learner(
    config: R2d2Config,
    observation_shape: tuple[int, ...],
    observation_dtype: np.dtype,
    num_actions: int,
    seed: int,
    device: torch.device,
) -> Learner:
    network = recurrent_network_for(observation_shape, num_actions).to(device)
    replay = make_sequence_replay(config, observation_shape, observation_dtype, seed)
    assembler = make_assembler(config, observation_shape)
    return Learner(network, replay, assembler, config, device)
