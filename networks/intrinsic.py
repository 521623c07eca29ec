"""NGU's novelty networks: the controllable-state embedding with its inverse-dynamics head,
and the RND target and predictor with the input and error statistics actors and learner share.

Both pick a Nature conv torso for images [C, 84, 84] and an MLP for vectors [D].
"""

from __future__ import annotations

import torch
from torch import nn

from exploration.novelty import RunningMeanStd, lifelong_multiplier
from networks.value import MlpTorso, NatureConvTorso


def _torso(observation_shape: tuple[int, ...], input_scale: float = 1.0 / 255.0) -> nn.Module:
    if len(observation_shape) == 3:
        return NatureConvTorso(observation_shape[0], input_scale)
    return MlpTorso(observation_shape[-1], 64)


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
    ) -> None:
        super().__init__()
        self.torso = _torso(observation_shape)
        self.embed = nn.Linear(self.torso.output_size, embedding_size)
        self.inverse_dynamics = nn.Sequential(
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
    """Random network distillation (Burda et al. 2019) on one frame (the newest of a stack).

    err(x) = ‖ĝ(x) − g(x)‖², g a fixed random target and ĝ the trained predictor, both torso ->
    FC `output_size` (128). The input is normalised by running per-element mean and std and
    clipped to ±5; α's error mean and std are running too. All statistics are buffers, so the
    learner's copy reaches the actors with the weights and everyone uses the same ones.
    """

    def __init__(self, observation_shape: tuple[int, ...], output_size: int = 128) -> None:
        super().__init__()
        self.is_image = len(observation_shape) == 3
        input_shape = (1, *observation_shape[1:]) if self.is_image else tuple(observation_shape)
        self.target = self._network(input_shape, output_size).requires_grad_(False)
        self.predictor = self._network(input_shape, output_size)
        self.observation_stats = RunningMeanStd(input_shape)
        self.error_stats = RunningMeanStd(())

    @staticmethod
    def _network(input_shape: tuple[int, ...], output_size: int) -> nn.Module:
        torso = _torso(input_shape, input_scale=1.0)  # inputs arrive normalised
        return nn.Sequential(torso, nn.Linear(torso.output_size, output_size))

    def frame(self, observation: torch.Tensor) -> torch.Tensor:
        """[B, *observation_shape] -> [B, *input_shape] float: the newest frame of a stack."""
        return (observation[:, -1:] if self.is_image else observation).float()

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
