"""Recurrent Q-networks: torso -> LSTM -> dueling head (R2D2, NGU), and a pair of them
(Agent57's extrinsic and intrinsic heads).

Everything is time-major. A network takes a mapping of named inputs, each [T, B, ...], and a
recurrent state, and returns Q-values [T, B, A] with the state after the last step. The state
is ONE flat float tensor [B, S] that the network packs and unpacks itself, so replay, actors
and learners carry it without knowing whether it is one LSTM or two.

Which inputs a network reads is declared when it is built: the observation, plus one-hot
inputs (R2D2: the previous action; NGU adds the policy index j) and scalar inputs (R2D2: the
reward into the observation, i.e. the previous reward; NGU adds the previous intrinsic reward).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from networks.value import DEFAULT_LSTM_SIZES, QHead, choose_torso, make_torso

# R2D2's inputs beyond the observation: the previous action (one-hot) and previous reward.
R2D2_SCALAR_INPUTS = ("reward",)


class RecurrentQNetwork(nn.Module):
    """Q(o_t, one-hots_t, scalars_t, state) with one LSTM between torso and dueling head."""

    def __init__(
        self,
        torso: nn.Module,
        num_actions: int,
        lstm_size: int,
        head_hidden: int,
        one_hot_inputs: Sequence[tuple[str, int]] | None = None,
        scalar_inputs: Sequence[str] = R2D2_SCALAR_INPUTS,
    ) -> None:
        """one_hot_inputs: (input name, number of classes) pairs; default the previous action.
        scalar_inputs: names of [T, B] float inputs concatenated as they are."""
        super().__init__()
        self.torso = torso
        self.num_actions = num_actions
        self.lstm_size = lstm_size
        self.one_hot_inputs = tuple(one_hot_inputs or (("prev_action", num_actions),))
        self.scalar_inputs = tuple(scalar_inputs)
        width = torso.output_size + sum(n for _, n in self.one_hot_inputs) + len(scalar_inputs)
        self.lstm = nn.LSTM(width, lstm_size)
        self.head = QHead(lstm_size, num_actions, head_hidden, dueling=True)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Every input the network reads, besides the state."""
        return ("observation", *(n for n, _ in self.one_hot_inputs), *self.scalar_inputs)

    @property
    def state_size(self) -> int:
        """S of the packed state [B, S]: the LSTM's hidden and cell vectors."""
        return 2 * self.lstm_size

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch_size, self.state_size, device=device)

    def forward(
        self, inputs: Mapping[str, torch.Tensor], state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs: name -> [T, B, ...]; state [B, S] -> (Q-values [T, B, A], state [B, S])."""
        observation = inputs["observation"]
        time, batch = observation.shape[:2]
        features = [self.torso(observation.flatten(0, 1)).view(time, batch, -1)]
        for name, classes in self.one_hot_inputs:
            features.append(F.one_hot(inputs[name].long(), classes).float())
        for name in self.scalar_inputs:
            features.append(inputs[name].float().unsqueeze(-1))
        hidden, cell = state.unsqueeze(0).chunk(2, dim=-1)
        output, (h_n, c_n) = self.lstm(
            torch.cat(features, dim=-1), (hidden.contiguous(), cell.contiguous())
        )
        return self.head(output), torch.cat([h_n, c_n], dim=-1).squeeze(0)


class RecurrentQNetworkPair(nn.Module):
    """Two recurrent Q-networks of the same architecture (Agent57's extrinsic and intrinsic).

    The packed state is [extrinsic state, intrinsic state]; the output stacks both heads'
    Q-values on a new leading axis: [2, T, B, A] (index 0 extrinsic, 1 intrinsic).
    """

    def __init__(self, extrinsic: RecurrentQNetwork, intrinsic: RecurrentQNetwork) -> None:
        super().__init__()
        self.extrinsic = extrinsic
        self.intrinsic = intrinsic
        self.num_actions = extrinsic.num_actions

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.extrinsic.input_names

    @property
    def state_size(self) -> int:
        return self.extrinsic.state_size + self.intrinsic.state_size

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch_size, self.state_size, device=device)

    def forward(
        self, inputs: Mapping[str, torch.Tensor], state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state_e, state_i = state.split([self.extrinsic.state_size, self.intrinsic.state_size], -1)
        q_e, next_e = self.extrinsic(inputs, state_e)
        q_i, next_i = self.intrinsic(inputs, state_i)
        return torch.stack([q_e, q_i]), torch.cat([next_e, next_i], dim=-1)


def recurrent_network_for(
    observation_shape: tuple[int, ...],
    num_actions: int,
    one_hot_inputs: Sequence[tuple[str, int]] | None = None,
    scalar_inputs: Sequence[str] = R2D2_SCALAR_INPUTS,
    torso: str = "auto",
    lstm_size: int = 0,
) -> RecurrentQNetwork:
    """R2D2's network (Kapturowski et al. 2019): torso, LSTM, dueling head with as many hidden
    units as the LSTM. For Atari stacks [4, 84, 84] the Nature conv torso and LSTM 512 (the
    paper's); for small multi-channel grids [C, 10, 10] MinAtar's torso (conv 16, fc 128) and
    LSTM 128; for vectors [D] a small MLP (2 x 64) and LSTM 64, for classic control and fast
    tests. `torso` overrides the choice (networks.value.choose_torso); `lstm_size` > 0 the
    LSTM's size."""
    kind = choose_torso(torso, observation_shape)
    size = lstm_size or DEFAULT_LSTM_SIZES[kind]
    return RecurrentQNetwork(
        make_torso(kind, observation_shape, mlp_hidden=64),
        num_actions,
        size,
        size,
        one_hot_inputs,
        scalar_inputs,
    )
