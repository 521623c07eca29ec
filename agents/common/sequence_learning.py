"""What every recurrent agent (R2D2, NGU, Agent57) shares: the sequence replay built from the
agent's declared columns, the actor-side chunk recorder, the transfer of a batch to the
learner's device, the burn-in unroll, and the bootstrap at an episode's truncated end.

Agents declare what a step holds as `replay.Column`s and what their network reads as its
`input_names`; everything here loops over those declarations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from agents.common.target_learner import check_evaluation_average_decay
from environments.observations import frame_layout
from experiment.errors import ConfigError, require_positive
from networks.value import check_torso_name
from sequence_replay import ChunkBuilder, Column, SequenceAssembler, SequenceBatch, SequenceReplay


@dataclasses.dataclass(frozen=True)
class SequenceAgentConfig:
    """What every recurrent agent's config holds: sequences, replay, optimiser and the actors'
    ε ladder. Defaults are R2D2's (Kapturowski et al. 2019); NGU and Agent57 override some."""

    burn_in: int = 40
    """Steps at the start of each replayed sequence that only rebuild the LSTM state from the
    stored one, without loss (R2D2 paper: 40)."""
    sequence_length: int = 80
    """Steps of each replayed sequence that the loss covers, after the burn-in (R2D2 paper: 80)."""
    replay_period: int = 40  # Adjacent sequences overlap by sequence_length - replay_period.
    """Steps between the starts of an environment's consecutive sequences, which thus overlap by
    sequence_length − replay_period (R2D2 paper: 40)."""
    batch_size: int = 64
    """Sequences per learner update (R2D2 paper: 64)."""
    replay_capacity: int = 20_000  # Sequences. Paper: 100k (4M observations).
    """Sequences replay holds; the oldest are overwritten (R2D2 paper: 100,000, about 4M
    observations; smaller here to fit one machine, see docs/deviations.md)."""
    min_replay_size: int = 2_000  # Sequences.
    """Sequences in replay before the first learner update (a choice for one machine; see
    docs/deviations.md)."""
    learning_rate: float = 1e-4
    """Adam learning rate (R2D2 paper: 1e-4)."""
    adam_eps: float = 1e-3
    """Adam's ε, added to the root of the second-moment estimate (R2D2 paper: 1e-3)."""
    max_grad_norm: float = 40.0
    """Gradients are scaled down to this global L2 norm before each update (Agent57's 40; the
    R2D2 paper states no clipping)."""
    target_update_period: int = 2_500
    """Learner updates between copies of the online network into the target network (R2D2 paper:
    2,500)."""
    priority_exponent: float = 0.9
    """α: sequences are sampled with probability ∝ priority^α (R2D2 paper: 0.9)."""
    priority_eta: float = 0.9
    """η of a sequence's priority from its TD errors δ: η·max|δ| + (1 − η)·mean|δ| (R2D2 paper:
    0.9)."""
    importance_sampling_exponent: float = 0.6
    """β of the importance-sampling weights that correct prioritised sampling (R2D2 paper: 0.6)."""
    value_rescaling_eps: float = 1e-3
    """ε of the value rescaling h(x) = sign(x)(√(|x| + 1) − 1) + εx applied to the targets (R2D2
    paper: 1e-3)."""
    exploration_base: float = 0.4
    """Base of the actors' ε ladder: environment i of all N explores with ε_i = base^(1 +
    alpha·i/(N − 1)) (R2D2 and Ape-X: 0.4)."""
    exploration_alpha: float = 7.0
    """Exponent alpha of the actors' ε ladder ε_i = base^(1 + alpha·i/(N − 1)) over all N
    environments (R2D2 and Ape-X: 7)."""
    prefetch_workers: int = 2
    """Threads that make replay batches ahead of the learner, each with its own process that
    decodes the snappy frames (0: everything in the learner thread). Not in the papers: it
    only changes speed, never which batches are drawn."""
    prefetch_depth: int = 2
    """Batches sampled ahead of the learner, so their priorities are this many updates old (0:
    sample each batch right after the previous update's priorities, fully synchronous)."""
    torso: str = "auto"
    """auto | nature | minatar | mlp: the network's torso. auto picks by observation: Nature
    conv (Mnih et al. 2015) for images of 36x36 or more (Atari's 84x84 stacks), MinAtar's conv
    (Young & Tian 2019) for smaller multi-channel ones ([C, 10, 10]), an MLP for vectors. NGU's
    embedding and RND networks use the same torso. A torso that cannot take the observation
    stops the run at start."""
    lstm_size: int = 0
    """Units of the LSTM between torso and head; 0: the torso's default, 512 for Nature (R2D2
    paper: 512), 128 for MinAtar, 64 for the MLP."""
    evaluation_average_decay: float = 0.0
    """0 (the papers): the evaluation process and eval_agent play the online weights. d in
    (0, 1): they play an exponential moving average of them, avg = d·avg + (1 − d)·online after
    every learner update (about the last 1/(1 − d) updates), so that one evaluation does not
    hang on the noise of one weight snapshot (docs/results.md, "Deceptive tasks", cause 5).
    Training actors act with the online weights either way. See docs/deviations.md."""

    @property
    def chunk_length(self) -> int:
        """Actors cut streams into chunks this long; sequences are whole chunks."""
        return math.gcd(self.burn_in, self.replay_period, self.sequence_length)

    def __post_init__(self) -> None:
        require_positive(
            self,
            *("sequence_length", "replay_period", "batch_size", "replay_capacity"),
            *("learning_rate", "adam_eps", "max_grad_norm"),
        )
        if self.burn_in < 0:
            raise ConfigError(f"burn_in must be non-negative, got {self.burn_in}")
        if self.burn_in > self.replay_period:
            raise ConfigError(
                f"burn_in ({self.burn_in}) must not exceed replay_period ({self.replay_period}): "
                "a sequence's burn-in is then either empty or whole"
            )
        if self.replay_period > self.sequence_length:
            raise ConfigError("replay_period must not exceed sequence_length (steps would be lost)")
        if self.prefetch_workers < 0 or self.prefetch_depth < 0:
            raise ConfigError("prefetch_workers and prefetch_depth must be non-negative")
        check_torso_name(self.torso)
        check_evaluation_average_decay(self.evaluation_average_decay)
        if self.lstm_size < 0:
            raise ConfigError(f"lstm_size must be >= 0 (0: the torso's own), got {self.lstm_size}")
        if not self.batch_size <= self.min_replay_size <= self.replay_capacity:
            raise ConfigError(
                "need batch_size <= min_replay_size <= replay_capacity, got "
                f"{self.batch_size}, {self.min_replay_size}, {self.replay_capacity}"
            )


def make_sequence_replay(
    config: SequenceAgentConfig,
    observation_shape: tuple[int, ...],
    observation_dtype: np.dtype,
    seed: int,
    columns: Sequence[Column],
) -> SequenceReplay:
    """One frame per step (environments.observations.frame_layout): an image stack's newest
    2-D frame, or the whole observation (a vector, a MinAtar [C, H, W]); all but vectors
    compressed."""
    layout = frame_layout(observation_shape)
    return SequenceReplay(
        capacity=config.replay_capacity,
        burn_in=config.burn_in,
        sequence_length=config.sequence_length,
        frame_shape=layout.frame_shape,
        frame_dtype=observation_dtype,
        frame_stack=layout.frame_stack,
        compress=not layout.is_vector,
        priority_exponent=config.priority_exponent,
        seed=seed,
        columns=columns,
        stack_axis=layout.stack_axis,  # images keep [stack, H, W], one frame too
    )


def build_sequence_learner(
    learner_class: type,
    build_network,
    columns: Sequence[Column],
    config: SequenceAgentConfig,
    observation_shape: tuple[int, ...],
    observation_dtype: np.dtype,
    num_actions: int,
    seed: int,
    device: torch.device,
):
    """A recurrent agent's learner: its network (by the agent's one builder) on `device`, a
    sequence replay of its columns, and the chunk assembler. Agents bind the first three
    arguments (functools.partial) to get their build_learner."""
    network = build_network(config, observation_shape, num_actions).to(device)
    replay = make_sequence_replay(config, observation_shape, observation_dtype, seed, columns)
    return learner_class(network, replay, make_assembler(config, observation_shape), config, device)


def make_assembler(
    config: SequenceAgentConfig, observation_shape: tuple[int, ...]
) -> SequenceAssembler:
    return SequenceAssembler(
        burn_in=config.burn_in,
        sequence_length=config.sequence_length,
        period=config.replay_period,
        frame_stack=frame_layout(observation_shape).frame_stack,
    )


class ChunkRecorder:
    """Actor side: one `ChunkBuilder` per environment, fed a batch of steps at a time."""

    def __init__(
        self,
        first_stream: int,
        num_envs: int,
        chunk_length: int,
        observation_shape: tuple[int, ...],
        columns: Sequence[Column],
    ) -> None:
        layout = frame_layout(observation_shape)
        self.stack_axis = layout.stack_axis  # Else the whole observation is the step's frame.
        self.builders = [
            ChunkBuilder(first_stream + e, chunk_length, not layout.is_vector, columns)
            for e in range(num_envs)
        ]
        self.names = [c.name for c in columns]
        self._outbox: list = []

    def record(
        self, timestep, values: Mapping[str, np.ndarray], states: torch.Tensor | np.ndarray
    ) -> None:
        """timestep: the batch just acted on; values: column name -> [E] this step's values;
        states: [E, S] the packed recurrent states the network consumed at this step."""
        frames = timestep.observation[:, -1] if self.stack_axis else timestep.observation
        states = np.asarray(states)
        columns = [np.asarray(values[name]) for name in self.names]
        for e, builder in enumerate(self.builders):
            chunk = builder.append(
                frames[e],
                {name: column[e] for name, column in zip(self.names, columns, strict=True)},
                bool(timestep.first[e]),
                bool(timestep.last[e]),
                states[e],
            )
            if chunk is not None:
                self._outbox.append(chunk)

    def drain(self) -> list:
        chunks, self._outbox = self._outbox, []
        return chunks


def sequence_batch_to_device(batch: SequenceBatch, device: torch.device) -> dict[str, torch.Tensor]:
    """Numpy sequence batch -> tensors on `device`: observation, every column, mask,
    has_burn_in [B] and start_state [B, S]. To a GPU through pinned memory, without blocking
    (the copies are queued on the stream the learner's kernels follow)."""
    cuda = torch.device(device).type == "cuda"

    def move(array: np.ndarray) -> torch.Tensor:
        tensor = torch.as_tensor(array)
        if cuda:
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=cuda)

    if batch.observation is None:  # Compact: stack on the device from distinct frames.
        observation = move(batch.frames)[move(batch.frame_index)]
    else:
        observation = move(batch.observation)
    return {
        "observation": observation,
        **{name: move(values) for name, values in batch.columns.items()},
        "mask": move(batch.mask),
        "has_burn_in": move(batch.burn_in_length > 0),
        "start_state": move(batch.start_state),
    }


def unroll_sequences(
    network: torch.nn.Module, batch: Mapping[str, torch.Tensor], burn_in: int
) -> torch.Tensor:
    """The network's output over the learning rows [T − burn_in, ...], after a gradient-free
    burn-in from each item's stored state.

    Items without a burn-in (sequences at an episode's start) keep their stored state, which
    the padding of their burn-in window must not disturb.
    """
    inputs = {name: batch[name] for name in network.input_names}
    state = batch["start_state"]
    if burn_in > 0:
        with torch.no_grad():
            _, burned = network({k: v[:burn_in] for k, v in inputs.items()}, state)
        state = torch.where(batch["has_burn_in"].unsqueeze(-1), burned, state)
    output, _ = network({k: v[burn_in:] for k, v in inputs.items()}, state)
    return output


def masked_mean_per_sequence(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[T, B] values, [T, B] bool mask -> [B] mean over valid steps (0 where none)."""
    mask = mask.float()
    return (values * mask).sum(0) / mask.sum(0).clamp(min=1.0)


def largest_rewards(reward: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[T, B] rewards, [T, B] bool mask -> [B] the largest reward of each sequence's valid
    steps (-inf where none). Logged as what replay still holds: on a deceptive task, whether
    the sampled sequences still reach the far reward or only the distractor."""
    return torch.where(mask, reward, torch.full_like(reward, -torch.inf)).amax(dim=0)


def final_valid_rows(mask: torch.Tensor) -> torch.Tensor:
    """[T, B] bool mask -> [T, B] bool: the last valid row of each item that ends before the
    batch does (its episode ended there). Items valid up to the last row have none."""
    following = torch.zeros_like(mask)
    following[:-1] = mask[1:]
    ends = mask & ~following
    ends[-1] = False
    return ends


def forward_fill_padding(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Copies each item's last valid row into the padding rows after it.

    values: [T, B, ...]; mask: [T, B] bool, valid rows (padding comes after them).
    Returns [T, B, ...]; rows before an item's first valid row are left as they are.
    """
    time = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)
    last_valid = torch.where(mask, time, torch.full_like(time, -1)).cummax(dim=0).values
    source = last_valid.clamp(min=0)
    index = source.view(*source.shape, *([1] * (values.ndim - 2))).expand_as(values)
    filled = values.gather(0, index)
    use = (last_valid >= 0) & ~mask
    return torch.where(use.view(*use.shape, *([1] * (values.ndim - 2))), filled, values)


def bootstrap_through_padding(discount_t: torch.Tensor, valid_t: torch.Tensor) -> torch.Tensor:
    """Discounts [T, B] (γ already applied) with every padding row set to exactly 1.

    Padding after an item's last valid row would cut its returns with a zero discount, so a
    sequence ending on a time-limit truncation would never bootstrap from its final
    observation. With discount 1 in the padding, and the bootstrap values forward-filled into
    it (`forward_fill_padding`; padding rewards are already 0), the padding passes the final
    observation's value through unchanged, as at the end of a full-length window. After a
    game over the final discount is 0, so nothing changes there.
    """
    return torch.where(valid_t, discount_t, torch.ones_like(discount_t))
