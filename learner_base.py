"""What every value-based learner shares: online and target networks, Adam, clipped
gradient steps, the periodic target copy, and the checkpointable state of all of them."""

from __future__ import annotations

import copy
from typing import Any

import torch

from checkpoint import load_module_state


class TargetNetworkLearner:
    """Online network + frozen target copy, updated by `apply_gradients(loss)`.

    `config` is the agent's config dataclass; it must have learning_rate, adam_eps,
    max_grad_norm and target_update_period.
    """

    def __init__(self, network: torch.nn.Module, replay, config, device: torch.device) -> None:
        self.network = network
        self.target_network = copy.deepcopy(network).requires_grad_(False)
        self.replay = replay
        self.config = config
        self.device = device
        self.optimizer = torch.optim.Adam(
            network.parameters(), lr=config.learning_rate, eps=config.adam_eps
        )
        self.max_grad_norm = config.max_grad_norm
        self.target_update_period = config.target_update_period
        self.num_updates = 0

    def apply_gradients(self, loss: torch.Tensor) -> float:
        """One clipped Adam step on `loss`; copies the target every period. Returns the
        gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.num_updates += 1
        if self.num_updates % self.target_update_period == 0:
            self.target_network.load_state_dict(self.network.state_dict())
        return grad_norm.item()

    def state_dict(self) -> dict[str, Any]:
        return {
            "network": self.network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_module_state(self.network, state["network"], "network")
        load_module_state(self.target_network, state["target_network"], "target network")
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
