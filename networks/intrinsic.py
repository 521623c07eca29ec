"""NGU's novelty networks: the controllable-state embedding with its inverse-dynamics head,
and the RND target and predictor with the input and error statistics actors and learner share.

Both take the agent's torso choice (networks.value.choose_torso): by default a Nature conv
torso for Atari-sized images, MinAtar's torso for small multi-channel grids [C, 10, 10] and an
MLP for vectors [D].
"""

from __future__ import annotations

import torch
from torch import nn

from environments.observations import frame_layout
from exploration.novelty import RunningMeanStd, lifelong_multiplier
from networks.value import LayerStack, choose_torso, make_torso


def _torso(
    observation_shape: tuple[int, ...], torso: str, input_scale: float = 1.0 / 255.0
) -> nn.Module:
    kind = choose_torso(torso, observation_shape)
    return make_torso(kind, observation_shape, mlp_hidden=64, input_scale=input_scale)


class EmbeddingNetwork(nn.Module):
    """f(x): torso -> FC `embedding_size` (32 in NGU), trained by inverse dynamics: from
    (f(x_t), f(x_{t+1})) an MLP (FC 128, ReLU, FC |A|) predicts the action a_t, so f keeps
    what the agent controls and ignores what it does not."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        num_actions: int,
        embedding_size: int = 32,
        hidden_size: int = 128,
        torso: str = "auto",
    ) -> None:
        super().__init__()
        self.torso = _torso(observation_shape, torso)
        self.embed = nn.Linear(self.torso.output_size, embedding_size)
        self.inverse_dynamics = LayerStack(
            nn.Linear(2 * embedding_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, num_actions),
        )
        self.embedding_size = embedding_size

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        """observation [B, ...] -> embedding [B, embedding_size]."""
        return self.embed(self.torso(observation))

    def action_logits(self, observation: torch.Tensor, next_observation: torch.Tensor):
        """[B, ...], [B, ...] -> [B, A] logits of the action taken between them."""
        both = torch.cat([self(observation), self(next_observation)], dim=-1)
        return self.inverse_dynamics(both)


class RndNetworks(nn.Module):
    """Random network distillation (Burda et al. 2019) on one frame: the newest of a stack
    ([1, 84, 84] of an Atari stack), or the whole observation when it has no stack (a vector, a
    MinAtar [C, 10, 10]), as environments.observations.frame_layout reads the shape.

    err(x) = ‖ĝ(x) − g(x)‖², g a fixed random target and ĝ the trained predictor, both torso ->
    FC `output_size` (128). The input is normalised by running per-element mean and std and
    clipped to ±5; α's error mean and std are running too. All statistics are buffers, so the
    learner's copy reaches the actors with the weights and everyone uses the same ones.
    """

    def __init__(
        self, observation_shape: tuple[int, ...], output_size: int = 128, torso: str = "auto"
    ) -> None:
        super().__init__()
        layout = frame_layout(observation_shape)
        self.stack_axis = layout.stack_axis
        frame = layout.frame_shape
        # A 2-D frame gets a channel axis of 1; vectors and multi-channel frames have theirs.
        self.input_shape = (1, *frame) if len(frame) == 2 else frame
        self.target = self._network(self.input_shape, output_size, torso).requires_grad_(False)
        self.predictor = self._network(self.input_shape, output_size, torso)
        self.observation_stats = RunningMeanStd(self.input_shape)
        self.error_stats = RunningMeanStd(())

    @staticmethod
    def _network(input_shape: tuple[int, ...], output_size: int, torso: str) -> nn.Module:
        torso = _torso(input_shape, torso, input_scale=1.0)  # inputs arrive normalised
        return LayerStack(torso, nn.Linear(torso.output_size, output_size))

    def frame(self, observation: torch.Tensor) -> torch.Tensor:
        """[B, *observation_shape] -> [B, *input_shape] float: the newest frame of a stack, or
        the whole observation."""
        newest = observation[:, -1] if self.stack_axis else observation
        return newest.reshape(newest.shape[0], *self.input_shape).float()

    def normalise(self, frame: torch.Tensor) -> torch.Tensor:
        mean = self.observation_stats.mean.to(frame.dtype)
        std = self.observation_stats.std.to(frame.dtype).clamp(min=1e-6)
        return ((frame - mean) / std).clamp(-5.0, 5.0)

    def error(self, observation: torch.Tensor) -> torch.Tensor:
        """[B, ...] observations -> [B] prediction errors (differentiable in the predictor)."""
        normalised = self.normalise(self.frame(observation))
        with torch.no_grad():
            target = self.target(normalised)
        return (self.predictor(normalised) - target).square().sum(dim=-1)

    def multiplier(self, error: torch.Tensor) -> torch.Tensor:
        """α = 1 + (err − μ_e)/σ_e: [B] -> [B]; 1 (neutral) until the learner has seen errors."""
        if float(self.error_stats.count) == 0:
            return torch.ones_like(error)
        mean = self.error_stats.mean.to(error.dtype)
        return lifelong_multiplier(error, mean, self.error_stats.std.to(error.dtype))
