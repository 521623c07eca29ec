"""The R2D2 network: torso -> LSTM -> dueling head, fed the previous action and reward.

Everything is time-major: observations [T, B, ...] -> Q-values [T, B, A]. NGU and Agent57
reuse this network with extra per-step inputs (intrinsic reward, policy one-hot) through
`extra_input_size`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from networks.value import MlpTorso, NatureConvTorso, QHead


class LstmState(NamedTuple):
    """Recurrent state, each [B, H] (one layer)."""

    hidden: torch.Tensor
    cell: torch.Tensor


class RecurrentQNetwork(nn.Module):
    """Q(o_t, a_{t-1}, r_{t-1}, extra_t, state) with an LSTM between torso and head."""

    def __init__(
        self,
        torso: nn.Module,
        num_actions: int,
        lstm_size: int,
        head_hidden: int,
        extra_input_size: int = 0,
    ) -> None:
        super().__init__()
        self.torso = torso
        self.num_actions = num_actions
        self.lstm_size = lstm_size
        self.lstm = nn.LSTM(torso.output_size + num_actions + 1 + extra_input_size, lstm_size)
        self.head = QHead(lstm_size, num_actions, head_hidden, dueling=True)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> LstmState:
        zeros = torch.zeros(batch_size, self.lstm_size, device=device)
        return LstmState(zeros, zeros.clone())

    def forward(
        self,
        observation: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        state: LstmState,
        extra: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LstmState]:
        """observation [T, B, ...], prev_action [T, B] long, prev_reward [T, B], extra [T, B, K]
        -> (Q-values [T, B, A], state after the last step)."""
        time, batch = prev_action.shape
        features = self.torso(observation.flatten(0, 1)).view(time, batch, -1)
        inputs = [
            features,
            F.one_hot(prev_action.long(), self.num_actions).float(),
            prev_reward.float().unsqueeze(-1),
        ]
        if extra is not None:
            inputs.append(extra.float())
        lstm_in = torch.cat(inputs, dim=-1)
        h, c = state
        output, (h_n, c_n) = self.lstm(lstm_in, (h.unsqueeze(0), c.unsqueeze(0)))
        return self.head(output), LstmState(h_n.squeeze(0), c_n.squeeze(0))


def r2d2_atari_network(
    frame_stack: int, num_actions: int, extra_input_size: int = 0
) -> RecurrentQNetwork:
    """Kapturowski et al. (2019): Nature conv torso, LSTM 512, dueling head with 512 hidden."""
    return RecurrentQNetwork(NatureConvTorso(frame_stack), num_actions, 512, 512, extra_input_size)


def r2d2_mlp_network(
    observation_size: int, num_actions: int, lstm_size: int = 64, extra_input_size: int = 0
) -> RecurrentQNetwork:
    """A small recurrent network for classic-control tasks (fast tests)."""
    torso = MlpTorso(observation_size, lstm_size)
    return RecurrentQNetwork(torso, num_actions, lstm_size, lstm_size, extra_input_size)


def recurrent_network_for(
    observation_shape: tuple[int, ...], num_actions: int, extra_input_size: int = 0
) -> RecurrentQNetwork:
    if len(observation_shape) == 3:
        return r2d2_atari_network(observation_shape[0], num_actions, extra_input_size)
    return r2d2_mlp_network(observation_shape[-1], num_actions, extra_input_size=extra_input_size)
