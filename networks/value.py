"""Feed-forward Q-networks and the torsos every network shares: the Nature DQN conv net for
Atari-sized images, MinAtar's small conv net for multi-channel grids, an MLP for vectors.

Which torso an observation gets (`choose_torso`): ``auto`` reads the shape, as
environments.observations.frame_layout does: images (3-D or 4-D) whose H and W are 36 or more
get the Nature torso, smaller ones the MinAtar torso, vectors the MLP; ``nature``, ``minatar`` and
``mlp`` force one (the MLP takes any shape, flattened), and a torso that cannot take the
observation is a one-line ConfigError.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from environments.observations import LARGE_IMAGE_SIZE
from experiment.errors import ConfigError

TORSOS = ("auto", "nature", "minatar", "mlp")
# LSTM units of the recurrent agents when lstm_size is 0: R2D2's 512 after the Nature torso, the
# MinAtar torso's own width, and a small one for the MLP (classic control, fast tests).
DEFAULT_LSTM_SIZES = {"nature": 512, "minatar": 128, "mlp": 64}
_MINATAR_KERNEL = 3


class LayerStack(nn.Sequential):
    """nn.Sequential that runs its layers' `forward` directly, not through nn.Module.__call__:
    on a MinAtar-sized network the call machinery of each small layer (hook and tracing checks)
    costs as much as its arithmetic (docs/results.md, "Speed and memory"). Hooks registered on
    the inner layers are therefore not run; hooks on the stack itself are. Parameter names are
    nn.Sequential's, so checkpoints are the same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer.forward(x)
        return x


def _as_channels(frames: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] as it is; a stack [B, S, C, H, W] -> [B, S·C, H, W]."""
    return frames.reshape(frames.shape[0], -1, *frames.shape[-2:])


class NatureConvTorso(nn.Module):
    """Mnih et al. (2015) torso: frames [B, C, 84, 84] -> features [B, 3136] (other sizes of at
    least 36 x 36 give other feature sizes; a stack [B, S, C, H, W] counts S·C channels).

    The input stays uint8 until it reaches the network so that replay, queues and host-to-device
    copies move a quarter of the bytes; scaling to [0, 1] happens here (`input_scale`; RND
    feeds inputs it already normalised, with scale 1). Bool inputs are already 0/1: not scaled.
    """

    def __init__(
        self, in_channels: int, input_scale: float = 1.0 / 255.0, image_size: tuple = (84, 84)
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.layers = LayerStack(
            nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        height, width = (((size - 8) // 4 + 1 - 4) // 2 + 1 - 2 for size in image_size)
        self.output_size = 64 * height * width

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames = _as_channels(frames)
        scale = 1.0 if frames.dtype == torch.bool else self.input_scale
        return self.layers(frames.float() * scale)


class MinAtarTorso(nn.Module):
    """Young & Tian (2019)'s MinAtar network body: object planes [B, C, H, W] (bool or uint8,
    0/1; a stack [B, S, C, H, W] counts S·C channels) -> features [B, 128]: conv 16 filters 3 x 3
    stride 1 without padding, ReLU, flatten, fc 128, ReLU. The planes enter as they are, as
    floats, without the 1/255 of camera images."""

    def __init__(self, in_channels: int, height: int, width: int, hidden_size: int = 128) -> None:
        super().__init__()
        conv_cells = (height - _MINATAR_KERNEL + 1) * (width - _MINATAR_KERNEL + 1)
        self.layers = LayerStack(
            nn.Conv2d(in_channels, 16, kernel_size=_MINATAR_KERNEL, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * conv_cells, hidden_size),
            nn.ReLU(),
        )
        self.output_size = hidden_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.layers(_as_channels(frames).float())


class MlpTorso(nn.Module):
    """Two hidden ReLU layers for low-dimensional observations [B, D] -> [B, hidden] (any other
    shape [B, ...] is flattened first)."""

    def __init__(self, input_size: int, hidden_size: int = 128) -> None:
        super().__init__()
        self.layers = LayerStack(
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
        )
        self.output_size = hidden_size

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.layers(observation.flatten(1).float())


def check_torso_name(torso: str) -> None:
    """Raises ConfigError unless `torso` is one of TORSOS (for the configs' validation)."""
    if torso not in TORSOS:
        raise ConfigError(f"torso must be one of {', '.join(TORSOS)}, got {torso!r}")


def choose_torso(torso: str, observation_shape: tuple[int, ...]) -> str:
    """The torso ("nature", "minatar" or "mlp") for observations of `observation_shape`:
    `torso` itself, or for "auto" the one the shape calls for (module docstring). Raises
    ConfigError (one line) when the torso cannot take such observations."""
    check_torso_name(torso)
    shape = tuple(int(d) for d in observation_shape)
    is_image = len(shape) >= 3
    smallest = min(shape[-2:]) if is_image else 0
    if torso == "auto":
        if not is_image:
            return "mlp"
        return "nature" if smallest >= LARGE_IMAGE_SIZE else "minatar"
    if torso == "nature" and smallest < LARGE_IMAGE_SIZE:
        raise ConfigError(
            f"--torso=nature needs image observations of at least {LARGE_IMAGE_SIZE}x"
            f"{LARGE_IMAGE_SIZE}, got observation shape {shape}; use --torso=auto"
        )
    if torso == "minatar" and smallest < _MINATAR_KERNEL:
        raise ConfigError(
            f"--torso=minatar needs image observations [C, H, W] of at least {_MINATAR_KERNEL}x"
            f"{_MINATAR_KERNEL}, got observation shape {shape}; use --torso=auto"
        )
    return torso


def make_torso(
    kind: str,
    observation_shape: tuple[int, ...],
    mlp_hidden: int = 128,
    input_scale: float = 1.0 / 255.0,
) -> nn.Module:
    """The torso `kind` (as choose_torso returns it) for observations [B, *observation_shape].
    `input_scale` is the Nature torso's (1/255 for camera images); `mlp_hidden` the MLP's width."""
    shape = tuple(int(d) for d in observation_shape)
    if kind == "mlp":
        return MlpTorso(math.prod(shape), mlp_hidden)
    channels = math.prod(shape[:-2])
    if kind == "nature":
        return NatureConvTorso(channels, input_scale, shape[-2:])
    if kind == "minatar":
        return MinAtarTorso(channels, *shape[-2:])
    raise ValueError(f"unknown torso {kind!r}")


def _value_stream(input_size: int, hidden_size: int, outputs: int) -> nn.Module:
    """A hidden ReLU layer then a linear output layer; just the linear layer if hidden_size is 0."""
    if hidden_size == 0:
        return nn.Linear(input_size, outputs)
    return LayerStack(
        nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, outputs)
    )


class QHead(nn.Module):
    """Features [B, F] -> Q-values [B, A]; dueling (Wang et al. 2016) or a plain head. Each
    stream has one hidden ReLU layer of `hidden_size` units, or none when it is 0 (the MinAtar
    network: its torso already ends in fc 128)."""

    def __init__(self, input_size: int, num_actions: int, hidden_size: int, dueling: bool) -> None:
        super().__init__()
        self.dueling = dueling
        self.advantage = _value_stream(input_size, hidden_size, num_actions)
        if dueling:
            self.value = _value_stream(input_size, hidden_size, 1)

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


# Hidden units of the Q head after each torso: the Nature DQN's fc 512; none after MinAtar's
# torso, whose fc 128 is the paper's only hidden layer (conv16 -> fc128 -> A); 128 for the MLP.
_HEAD_HIDDEN = {"nature": 512, "minatar": 0, "mlp": 128}


def q_network_for(
    observation_shape: tuple[int, ...],
    num_actions: int,
    dueling: bool = False,
    torso: str = "auto",
) -> QNetwork:
    """The feed-forward Q-network for observations [B, *observation_shape]: the Nature DQN
    (conv torso, fc 512, one output per action) for Atari stacks [4, 84, 84] uint8, MinAtar's
    (conv 16, fc 128, one output per action) for small multi-channel grids, an MLP (2 x 128,
    then fc 128) for vectors; `torso` overrides the choice (see choose_torso)."""
    kind = choose_torso(torso, observation_shape)
    return QNetwork(make_torso(kind, observation_shape), num_actions, _HEAD_HIDDEN[kind], dueling)
