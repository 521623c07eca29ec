"""What every value-based learner shares: online and target networks, Adam, clipped
gradient steps, the periodic target copy, the optional average of the weights that the run
evaluates, and the checkpointable state of all of them."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from experiment.checkpoint import load_module_state
from experiment.errors import ConfigError, NonFiniteLossError


class TargetNetworkLearner:
    """Online network + frozen target copy, updated by `apply_gradients(loss)`.

    `config` is the agent's config dataclass; it must have learning_rate, adam_eps,
    max_grad_norm and target_update_period.

    `param_groups` (optional) splits the trained parameters into named groups, each with its
    own learning rate and weight decay (dicts with "name", "params", "lr" and optionally
    "weight_decay"), and each clipped to `max_grad_norm` on its own: NGU trains its
    embedding and RND predictor beside the Q-network, and Agent57 clips its two heads
    separately. Adam's moments are per parameter, so separate groups are separate optimisers.
    By default one group holds every parameter of `network` at config.learning_rate.

    `evaluation_network` is what the run evaluates and eval_agent plays: `network` itself, or,
    when config.evaluation_average_decay d > 0, an exponential moving average of its weights,
    θ̄ ← d·θ̄ + (1 − d)·θ after every update (buffers copied as they are). Training actors
    always act with `network`.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        replay,
        config,
        device: torch.device,
        param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        self.network = network
        self.target_network = copy.deepcopy(network).requires_grad_(False)
        self.replay = replay
        self.config = config
        self.device = device
        groups = param_groups or [
            {"name": "", "params": list(network.parameters()), "lr": config.learning_rate}
        ]
        self._group_settings = [(g["lr"], g.get("weight_decay", 0.0)) for g in groups]
        self.group_names = [g["name"] for g in groups]
        self.optimizer = _make_optimizer(
            [{k: v for k, v in g.items() if k != "name"} for g in groups], config, network
        )
        self.last_grad_norms: dict[str, float] = {}
        self.last_fetched: list[float] = []
        self.last_loss = math.nan
        self.max_grad_norm = config.max_grad_norm
        self.target_update_period = config.target_update_period
        self.num_updates = 0
        self.evaluation_decay = float(getattr(config, "evaluation_average_decay", 0.0))
        self.evaluation_network = network
        if self.evaluation_decay > 0.0:
            self.evaluation_network = copy.deepcopy(network).requires_grad_(False)
        # Listed once: loading a checkpoint copies into these tensors, never replaces them.
        self._averaged_parameters = list(self.evaluation_network.parameters())
        self._online_parameters = list(network.parameters())
        self._buffer_pairs = list(
            zip(self.evaluation_network.buffers(), network.buffers(), strict=True)
        )

    @torch.no_grad()
    def _average_evaluation_weights(self) -> None:
        """θ̄ ← d·θ̄ + (1 − d)·θ: one fused op over every parameter, not a loop of small ones."""
        weight = 1.0 - self.evaluation_decay
        torch._foreach_lerp_(self._averaged_parameters, self._online_parameters, weight)
        for average, online in self._buffer_pairs:
            average.copy_(online)

    def apply_gradients(self, loss: torch.Tensor, fetch: Sequence[torch.Tensor] = ()) -> float:
        """One clipped Adam step on `loss`; copies the target every period. Returns the
        gradient norm before clipping.

        `fetch` (scalar tensors, for statistics) comes to the host in the same copy as the loss
        and the norms; their values are left in `last_fetched`, and the loss's in `last_loss`.

        Raises NonFiniteLossError, before the step changes any weight, when the loss or the
        gradient norm is NaN or infinite: Adam would spread a single NaN to every weight.
        """
        update = self.num_updates + 1
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [
            [p.grad for p in group["params"] if p.grad is not None]
            for group in self.optimizer.param_groups
        ]
        norms = [_total_norm(group_grads) for group_grads in grads]
        # One device-to-host copy for the checks, the clipping decision and the statistics: a
        # small network's update is short enough that each extra synchronisation shows.
        loss_value, *values = torch.stack([loss.detach(), *norms, *fetch]).tolist()
        norm_values, self.last_fetched = values[: len(norms)], values[len(norms) :]
        self.last_loss = loss_value
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError("loss", loss_value, update)
        grad_norm = math.sqrt(sum(n * n for n in norm_values))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError("gradient norm", grad_norm, update)
        groups = self.optimizer.param_groups
        for group, norm, norm_value in zip(groups, norms, norm_values, strict=True):
            # clip_grad_norm_'s scaling, max / (norm + 1e-6) capped at 1, skipped on the host
            # when it is 1: most updates of a small network then run no clipping op at all.
            if norm_value + 1e-6 > self.max_grad_norm:
                torch.nn.utils.clip_grads_with_norm_(group["params"], self.max_grad_norm, norm)
        step_optimizer(self.optimizer)
        self.num_updates += 1
        if self.evaluation_network is not self.network:
            self._average_evaluation_weights()
        if self.num_updates % self.target_update_period == 0:
            self.target_network.load_state_dict(self.network.state_dict())
        self.last_grad_norms = {
            f"grad_norm{'_' + name if name else ''}": norm
            for name, norm in zip(self.group_names, norm_values, strict=True)
        }
        return norm_values[0]

    def state_dict(self) -> dict[str, Any]:
        state = {
            "network": self.network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self.num_updates,
        }
        if self.evaluation_network is not self.network:
            state["evaluation_network"] = self.evaluation_network.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_module_state(self.network, state["network"], "network")
        load_module_state(self.target_network, state["target_network"], "target network")
        if self.evaluation_network is not self.network:
            # A checkpoint saved without the average (the setting turned on at a resume, with
            # --allow_config_change) starts it from the online weights.
            averaged = state.get("evaluation_network", state["network"])
            load_module_state(self.evaluation_network, averaged, "evaluation network")
        self.optimizer.load_state_dict(state["optimizer"])
        # The saved optimiser state carries the saved learning rate and eps; a resume that
        # changes them on purpose (--allow_config_change) must get the new values.
        for group, (lr, weight_decay) in zip(
            self.optimizer.param_groups, self._group_settings, strict=True
        ):
            group["lr"] = lr
            group["weight_decay"] = weight_decay
            group["eps"] = _optimizer_eps(self.config)
            if isinstance(self.optimizer, torch.optim.Adam):  # Old checkpoints say None.
                group["fused"] = _can_fuse(self.network)
        self.num_updates = int(state["num_updates"])


OPTIMIZERS = ("adam", "rmsprop")


def host_floats(values: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """{name: float} of scalar tensors and numbers, in their order. The tensors come to the host
    in one copy (a float32 value is exact in float64), not one synchronisation each."""
    tensors = {name: v for name, v in values.items() if isinstance(v, torch.Tensor)}
    fetched = {}
    if tensors:
        scalars = [v.detach().reshape(()).to(torch.float64) for v in tensors.values()]
        fetched = dict(zip(tensors, torch.stack(scalars).tolist(), strict=True))
    return {name: fetched[name] if name in fetched else float(v) for name, v in values.items()}


def step_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step(). A fused Adam whose state exists takes the step torch's own ends in (one
    foreach add to the step counts, one fused kernel per group), without the per-step Python
    work around it (profiling hooks, per-parameter state checks, grouping by device and dtype),
    which on a MinAtar-sized network took as long as the kernel (docs/results.md). The result
    is bitwise torch's (tests/agents/test_target_learner.py). Anything else, the first step
    that creates the state included, goes through optimizer.step()."""
    if not isinstance(optimizer, torch.optim.Adam):
        optimizer.step()
        return
    steps = []
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        states = [optimizer.state.get(p) for p in params]
        if not (_plain_fused_adam(group) and all(states) and _one_cpu_float32(params)):
            optimizer.step()
            return
        steps.append((group, params, states))
    for group, params, states in steps:
        if not params:
            continue
        counts = [state["step"] for state in states]
        torch._foreach_add_(counts, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [],
            counts,
            amsgrad=False,
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """torch.nn.utils.get_total_norm(grads), bitwise: the same foreach norm and norm of the
    norms, without its grouping by device and dtype when every gradient shares one (the
    grouping's Python work is a few percent of a small network's update)."""
    if not grads or not _one_device_and_dtype(grads):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)


def _one_device_and_dtype(tensors: Sequence[torch.Tensor]) -> bool:
    device, dtype = tensors[0].device, tensors[0].dtype
    return all(t.device == device and t.dtype == dtype for t in tensors)


def _plain_fused_adam(group: Mapping[str, Any]) -> bool:
    """Adam's options that the lean step covers: fused, no AMSGrad, maximise, capture,
    differentiation or decoupled weight decay, and hyperparameters that are numbers, not
    tensors."""
    return (
        group["fused"] is True
        and not any(group.get(option) for option in _OPTIONS_THE_LEAN_STEP_LACKS)
        and not any(
            isinstance(value, torch.Tensor)
            for value in (group["lr"], group["eps"], group["weight_decay"], *group["betas"])
        )
    )


_OPTIONS_THE_LEAN_STEP_LACKS = (
    "amsgrad",
    "maximize",
    "capturable",
    "differentiable",
    "decoupled_weight_decay",
)


def _one_cpu_float32(params: Sequence[torch.Tensor]) -> bool:
    return all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)


def check_evaluation_average_decay(decay: float) -> None:
    """Raises ConfigError unless 0 <= decay < 1 (0: evaluate the online weights)."""
    if not 0.0 <= decay < 1.0:
        raise ConfigError(f"evaluation_average_decay must be in [0, 1), got {decay}")


def check_optimizer_name(name: str) -> None:
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def _make_optimizer(groups: list[dict[str, Any]], config, network) -> torch.optim.Optimizer:
    """Adam by default; the centred RMSProp of the MinAtar paper when config.optimizer says so
    (only DQN's config has that field)."""
    if getattr(config, "optimizer", "adam") == "rmsprop":
        return torch.optim.RMSprop(
            groups,
            lr=config.learning_rate,
            alpha=config.rmsprop_decay,
            eps=config.rmsprop_eps,
            centered=True,
            foreach=True,  # torch has no fused RMSProp on CPU.
        )
    return torch.optim.Adam(
        groups, lr=config.learning_rate, eps=config.adam_eps, fused=_can_fuse(network)
    )


def _optimizer_eps(config) -> float:
    if getattr(config, "optimizer", "adam") == "rmsprop":
        return config.rmsprop_eps
    return config.adam_eps


def _can_fuse(network: torch.nn.Module) -> bool:
    """Whether Adam can take its fused step: one kernel over every parameter instead of a
    Python loop of small ops per tensor, which dominates an update of a small network (see
    docs/results.md, "Small networks"). Fused Adam takes float parameters on CPU or CUDA."""
    return all(
        p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in network.parameters()
    )
