"""Feed-forward Q-networks: the Nature DQN conv net and an MLP for classic control."""

from __future__ import annotations

import torch
from torch import nn


class NatureConvTorso(nn.Module):
    """Mnih et al. (2015) torso: uint8 frames [B, C, 84, 84] -> features [B, 3136].

    The input stays uint8 until it reaches the network so that replay, queues and host-to-device
    copies move a quarter of the bytes; scaling to [0, 1] happens here (`input_scale`; RND
    feeds inputs it already normalised, with scale 1).
    """

    def __init__(self, in_channels: int, input_scale: float = 1.0 / 255.0) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.output_size = 64 * 7 * 7

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(frames.float() * self.input_scale)


class MlpTorso(nn.Module):
    """Two hidden ReLU layers for low-dimensional observations [B, D] -> [B, hidden]."""

    def __init__(self, input_size: int, hidden_size: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
        )
        self.output_size = hidden_size

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.layers(observation.float())


class QHead(nn.Module):
    """Features [B, F] -> Q-values [B, A]; dueling (Wang et al. 2016) or a plain linear head."""

    def __init__(self, input_size: int, num_actions: int, hidden_size: int, dueling: bool) -> None:
        super().__init__()
        self.dueling = dueling
        self.advantage = nn.Sequential(
            nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, num_actions)
        )
        if dueling:
            self.value = nn.Sequential(
                nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1)
            )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        advantage = self.advantage(features)
        if not self.dueling:
            return advantage
        # Subtracting the mean advantage makes V and A identifiable (Wang et al. eq. 9).
        return self.value(features) + advantage - advantage.mean(dim=-1, keepdim=True)


class QNetwork(nn.Module):
    """A torso followed by a Q head: observations [B, ...] -> Q-values [B, A]."""

    def __init__(self, torso: nn.Module, num_actions: int, hidden_size: int, dueling: bool) -> None:
        super().__init__()
        self.torso = torso
        self.head = QHead(torso.output_size, num_actions, hidden_size, dueling)
        self.num_actions = num_actions

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(observation))


def nature_dqn_network(
    observation_shape: tuple[int, ...], num_actions: int, dueling: bool = False
) -> QNetwork:
    """The Nature DQN: conv torso, fc 512, one output per action. Input [B, stack, 84, 84] uint8."""
    return QNetwork(NatureConvTorso(observation_shape[0]), num_actions, 512, dueling)


def mlp_q_network(
    observation_shape: tuple[int, ...], num_actions: int, dueling: bool = False, hidden: int = 128
) -> QNetwork:
    """An MLP Q-network for classic control. Input [B, D] float."""
    return QNetwork(MlpTorso(observation_shape[-1], hidden), num_actions, hidden, dueling)


def q_network_for(
    observation_shape: tuple[int, ...], num_actions: int, dueling: bool = False
) -> QNetwork:
    """Picks the conv net for image observations [C, H, W] and the MLP for vectors [D]."""
    if len(observation_shape) == 3:
        return nature_dqn_network(observation_shape, num_actions, dueling)
    return mlp_q_network(observation_shape, num_actions, dueling)
