"""R2D2 (Kapturowski et al. 2019): recurrent Q-learning from prioritized sequence replay.

Actor: an LSTM Q-network stepping a batch of environments, ε-greedy with one ε per
environment, cutting each environment's stream into compressed chunks for the learner.
Learner: samples sequences, burns the LSTM in from the stored state, and learns with 5-step
double Q-learning under the value rescaling h. NGU builds on this Actor and Learner through
their hooks (`step_values`, `head_td_errors`, `auxiliary_losses`); the sequence machinery
itself is shared (`sequence_agent`, `replay`).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch

import gym_env
import value_learning
from agents.common.sequence_learning import (
    ChunkRecorder,
    SequenceAgentConfig,
    bootstrap_through_padding,
    build_sequence_learner,
    forward_fill_padding,
    largest_rewards,
    masked_mean_per_sequence,
    sequence_batch_to_device,
    unroll_sequences,
)
from agents.common.target_learner import TargetNetworkLearner, host_floats
from distributed.prefetch import BatchPrefetcher
from experiment.errors import ConfigError
from exploration.policies import actor_epsilons
from greedy_actors import RecurrentEpsilonGreedyActor
from networks.recurrent import RecurrentQNetwork, recurrent_network_for
from sequence_replay import Column, SequenceAssembler, SequenceReplay, sequence_priorities

CPU = torch.device("cpu")  # Actor processes act on the CPU.

__all__ = ["COLUMNS", "Actor", "ActorFactory", "Learner", "R2d2Config", "actor_epsilons"]

# What R2D2 stores per step beside the frame. The network reads the previous action and the
# reward INTO each observation (the previous reward).
COLUMNS = (
    Column("action", "int16", previous_as="prev_action"),
    Column("reward", "float32", at_episode_start=0.0),
    Column("discount", "float32", at_episode_start=1.0),
)


@dataclasses.dataclass(frozen=True)
class R2d2Config(SequenceAgentConfig):
    """R2D2 hyperparameters; paper values unless docs/deviations.md lists a deviation."""

    discount: float = 0.997
    """Discount γ per agent step (R2D2 paper: 0.997)."""
    n_step: int = 5
    """n of the n-step double Q-learning return (R2D2 paper: 5)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_step <= 0:
            raise ConfigError(f"n_step must be positive, got {self.n_step}")
        if not 0.0 <= self.discount <= 1.0:
            raise ConfigError(f"discount must be in [0, 1], got {self.discount}")


def value_rescaling(config: SequenceAgentConfig) -> value_learning.TxPair:
    """R2D2's h(x) = sign(x)(√(|x| + 1) − 1) + εx and its inverse, ε from the config."""
    eps = config.value_rescaling_eps
    return value_learning.TxPair(
        functools.partial(value_learning.signed_hyperbolic, eps=eps),
        functools.partial(value_learning.signed_parabolic, eps=eps),
    )


def build_network(
    config: R2d2Config, observation_shape: tuple[int, ...], num_actions: int
) -> RecurrentQNetwork:
    """R2D2's one network builder, used by actors, the learner and eval_agent alike."""
    return recurrent_network_for(
        observation_shape, num_actions, torso=config.torso, lstm_size=config.lstm_size
    )


class Actor(RecurrentEpsilonGreedyActor):
    """Recurrent ε-greedy acting on E environments, one ε each; emits chunks via `drain()`.

    With `recorder=None` it records nothing (an evaluation actor built on the same code).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        epsilons: np.ndarray | float,
        recorder: ChunkRecorder | None,
        seed: int,
        device: torch.device = CPU,
    ) -> None:
        super().__init__(network, np.asarray(epsilons, np.float64), seed, device)
        self.recorder = recorder

    def step_values(self, timestep, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Column name -> [E] values of this step, as replay stores them."""
        return {"action": actions, "reward": timestep.reward, "discount": timestep.discount}

    @torch.no_grad()
    def step(self, timestep) -> np.ndarray:
        actions = super().step(timestep)
        if self.recorder is not None:
            values = self.step_values(timestep, actions)
            self.recorder.record(timestep, values, self.consumed_state.cpu().numpy())
        return actions

    def drain(self) -> list:
        return self.recorder.drain() if self.recorder is not None else []


class Learner(TargetNetworkLearner):
    """R2D2 learner: prioritized sequence replay, burn-in, n-step double Q with rescaling.

    Subclasses change what is learned through three hooks: `head_td_errors` (the TD errors
    of each value head), `priority_td` (which errors set priorities) and `auxiliary_losses`
    (losses of other networks trained on the same batch).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        replay: SequenceReplay,
        assembler: SequenceAssembler,
        config,
        device: torch.device,
        param_groups: list[dict] | None = None,
    ) -> None:
        super().__init__(network, replay, config, device, param_groups)
        self.assembler = assembler
        self.batch_size = config.batch_size
        self._prefetcher: BatchPrefetcher | None = None
        self.tx_pair = value_rescaling(config)

    def ingest(self, chunks: list) -> int:
        return self.store(self.assemble(chunks))

    def assemble(self, chunks: list) -> list:
        """Chunks -> complete sequences. Touches only the assembler, so the parallel loop's
        intake thread runs it beside the updates."""
        return [s for chunk in chunks for s in self.assembler.add(chunk)]

    def store(self, sequences: list) -> int:
        """Adds assembled sequences to replay (the learner thread, between updates)."""
        if sequences:
            self.replay.add(sequences)
        return len(sequences)

    def ready(self) -> bool:
        return self.replay.size >= self.config.min_replay_size

    def _batches(self) -> BatchPrefetcher:
        """Started at the first update (replay is then non-empty)."""
        if self._prefetcher is None:
            self._prefetcher = BatchPrefetcher(
                self.replay,
                self.config.batch_size,
                self.config.importance_sampling_exponent,
                functools.partial(sequence_batch_to_device, device=self.device),
                num_workers=self.config.prefetch_workers,
                depth=self.config.prefetch_depth,
                decoder_factory=functools.partial(
                    self.replay.frame_decoder_for, self.config.batch_size
                ),
            )
        return self._prefetcher

    def close(self) -> None:
        """Stops the prefetch threads and their decoding processes (a new update would start
        them again)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def step(self) -> dict[str, float]:
        tensors, keys, weights = self._batches().next()
        weights = torch.as_tensor(weights, device=self.device)
        mask = tensors["mask"][self.config.burn_in + 1 :]
        heads, stats = self.head_td_errors(tensors)
        losses = {
            f"loss{suffix}": (weights * masked_mean_per_sequence(0.5 * td.square(), mask)).mean()
            for suffix, td in heads.items()
        }
        losses |= self.auxiliary_losses(tensors)
        self.apply_gradients(sum(losses.values()))
        stats |= self.last_grad_norms
        abs_td = self.priority_td(heads, tensors).detach().abs()
        priorities = sequence_priorities(
            abs_td.cpu().numpy(), mask.cpu().numpy(), self.config.priority_eta
        )
        self.replay.update_priorities(keys, priorities)
        stats["td_error_abs"] = masked_mean_per_sequence(abs_td, mask).mean()
        best = largest_rewards(tensors["reward"][self.config.burn_in + 1 :], mask)
        valid = torch.isfinite(best)
        stats["sampled_largest_reward"] = best[valid].mean() if valid.any() else torch.nan
        stats["sampled_rewarded_share"] = (best > 0).float().mean()
        return host_floats(stats | losses)

    def head_td_errors(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """({loss-name suffix: [T_learn − 1, B] TD errors}, {statistic: scalar tensor})."""
        td, q = self._n_step_td_errors(batch)
        return {"": td}, {"q_value": q.detach().mean()}

    def priority_td(self, heads: dict[str, torch.Tensor], batch) -> torch.Tensor:
        """[T_learn − 1, B] TD errors whose magnitudes set the sequences' priorities."""
        return heads[""]

    def auxiliary_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses of other networks trained on the same batch (NGU: embedding and RND)."""
        return {}

    def _n_step_td_errors(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[T_learn − 1, B] transformed n-step double-Q TD errors, and the online Q-values."""
        burn_in = self.config.burn_in
        q = unroll_sequences(self.network, batch, burn_in)
        with torch.no_grad():
            target_q = unroll_sequences(self.target_network, batch, burn_in)
        action = batch["action"][burn_in:]
        valid_t = batch["mask"][burn_in + 1 :]
        td = value_learning.transformed_n_step_q_learning(
            q_tm1=q[:-1],
            a_tm1=action[:-1],
            target_q_t=forward_fill_padding(target_q[1:], valid_t),
            a_t=forward_fill_padding(q[1:].detach().argmax(dim=-1), valid_t),
            r_t=batch["reward"][burn_in + 1 :],
            discount_t=bootstrap_through_padding(
                self.config.discount * batch["discount"][burn_in + 1 :], valid_t
            ),
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
        network = build_network(self.config, env.observation_shape, env.num_actions)
        first = actor_index * self.num_envs
        recorder = ChunkRecorder(
            first, self.num_envs, self.config.chunk_length, env.observation_shape, COLUMNS
        )
        return env, Actor(network, self.epsilons(first), recorder, seed)

    def describe(self) -> list[str]:
        """Log lines for the start of a run: what each environment of each actor plays."""
        ladder = self.epsilons(0, all_actors=True)
        return [f"ε ladder over {len(ladder)} environments: {_values(ladder)}"]

    def epsilons(self, first_env: int, all_actors: bool = False) -> np.ndarray:
        """[E] ε of environments first_env .. first_env + E − 1 on the ladder of all N·E."""
        ladder = actor_epsilons(
            self.num_actors * self.num_envs,
            self.config.exploration_base,
            self.config.exploration_alpha,
        )
        return ladder if all_actors else ladder[first_env : first_env + self.num_envs]


def _values(values: np.ndarray, limit: int = 8) -> str:
    """A short list of floats for a log line: all of them, or the first and last few."""
    shown = [f"{v:.3g}" for v in values]
    if len(shown) > limit:
        shown = [*shown[: limit // 2], "...", *shown[-limit // 2 :]]
    return ", ".join(shown)


# build_learner(config, observation_shape, observation_dtype, num_actions, seed, device)
build_learner = functools.partial(build_sequence_learner, Learner, build_network, COLUMNS)
