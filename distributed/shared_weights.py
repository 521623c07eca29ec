"""The learner's weights in shared memory, which actor processes read without a lock."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class SharedWeights:
    """The learner's acting state (parameters AND buffers, e.g. normalisation statistics) in
    shared memory, published with a version counter.

    Every floating tensor of `module.state_dict()` is flattened into one shared buffer per
    dtype, so float64 statistics keep their precision. Seqlock protocol: the learner makes the
    version odd, copies, then makes it even. A reader copies only when the version is even and
    changed, and keeps the copy only if the version did not move during the copy.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.keys = shared_keys(network)
        state = network.state_dict()
        self.buffers: dict[str, torch.Tensor] = {}
        for dtype, keys in group_by_dtype(state, self.keys).items():
            flat = torch.cat([state[k].detach().reshape(-1).cpu() for k in keys])
            self.buffers[dtype] = flat.clone().share_memory_()
        self.version = torch.zeros(1, dtype=torch.int64).share_memory_()

    def publish(self, network: torch.nn.Module) -> int:
        state = network.state_dict()
        version = int(self.version[0])
        self.version[0] = version + 1
        for dtype, keys in group_by_dtype(state, self.keys).items():
            flat = torch.cat([state[k].detach().reshape(-1) for k in keys])
            self.buffers[dtype].copy_(flat)
        self.version[0] = version + 2
        return version + 2

    def pull(self, network: torch.nn.Module, known_version: int) -> int:
        """Copies newer weights into `network`; returns the version it now holds."""
        for _ in range(3):
            before = int(self.version[0])
            if before == known_version or before % 2 == 1:
                return known_version
            copies = {dtype: buffer.clone() for dtype, buffer in self.buffers.items()}
            if int(self.version[0]) == before:
                load_flat(network, copies, self.keys)
                return before
        return known_version


def shared_keys(module: torch.nn.Module) -> list[str]:
    """The state_dict entries worth sharing: every floating tensor (not integer counters)."""
    return [k for k, v in module.state_dict().items() if torch.is_floating_point(v)]


def group_by_dtype(state: Mapping[str, torch.Tensor], keys: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(str(state[key].dtype), []).append(key)
    return groups


@torch.no_grad()
def load_flat(module: torch.nn.Module, flats: Mapping[str, torch.Tensor], keys: list[str]) -> None:
    state = module.state_dict()  # tensors that share storage with the module
    offsets = dict.fromkeys(flats, 0)
    for key in keys:
        target = state[key]
        dtype = str(target.dtype)
        size = target.numel()
        target.copy_(flats[dtype][offsets[dtype] : offsets[dtype] + size].view_as(target))
        offsets[dtype] += size
