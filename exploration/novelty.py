"""NGU's intrinsic reward (Badia et al. 2020a): episodic novelty from a k-NN memory of
controllable-state embeddings, scaled by lifelong novelty from RND.

    r^i_t = r^episodic_t · min(max(α_t, 1), L)

- Episodic: r^episodic = 1 / (√(Σ_{k nearest} K(f(x_t), f_i)) + c), with the kernel
  K(x, y) = ε / (d²(x, y)/d_m² + ε), d² first reduced by the cluster distance ξ
  (d² ← max(d²/d_m² − ξ, 0)), and r^episodic = 0 when √(ΣK) + c exceeds the maximum
  similarity s_m. d_m² is a running mean of the squared k-NN distances.
- Lifelong: α_t = 1 + (err(x_t) − μ_e) / σ_e, err the RND prediction error, μ_e and σ_e its
  running mean and standard deviation.

Pure functions are batched over environments; `EpisodicMemory` holds one ring of embeddings
per environment, emptied at each episode start. `RunningMeanStd` keeps its statistics in
buffers, so a module that owns one (the RND networks) publishes them with its weights.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


def batch_moments(
    values: torch.Tensor, dim: int, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, mean, population variance) of `values` along `dim`, over `mask`ed entries only.

    With no masked entry the mean and variance are 0 (and merge as nothing).
    """
    if mask is None:
        count = torch.tensor(float(values.shape[dim]), dtype=values.dtype, device=values.device)
        return count, values.mean(dim), values.var(dim, unbiased=False)
    weights = mask.to(values.dtype)
    count = weights.sum(dim)
    mean = (values * weights).sum(dim) / count.clamp(min=1)
    centred = (values - mean.unsqueeze(dim)) * weights
    return count, mean, (centred**2).sum(dim) / count.clamp(min=1)


def merge_moments(
    count_a: torch.Tensor,
    mean_a: torch.Tensor,
    var_a: torch.Tensor,
    count_b: torch.Tensor,
    mean_b: torch.Tensor,
    var_b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chan et al.'s parallel merge of two sets' (count, mean, population variance).

    δ = μ_b − μ_a, n = n_a + n_b, μ = μ_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n, where
    M2 = variance·count. Broadcasts elementwise; a side with count 0 leaves the other as is.
    """
    total = count_a + count_b
    safe_total = total.clamp(min=1e-12)
    delta = mean_b - mean_a
    m2 = var_a * count_a + var_b * count_b + delta**2 * count_a * count_b / safe_total
    mean = mean_a + delta * count_b / safe_total
    var = torch.where(total > 0, m2 / safe_total, var_a)
    return total, torch.where(total > 0, mean, mean_a), var


class RunningMeanStd(nn.Module):
    """Running mean and (population) variance of a stream of batches.

    Batches merge with Chan et al.'s parallel formula: for the old (n_a, μ_a, M2_a) and a batch
    (n_b, μ_b, M2_b), δ = μ_b − μ_a, n = n_a + n_b, μ = μ_a + δ·n_b/n and
    M2 = M2_a + M2_b + δ²·n_a·n_b/n. Exact for any split of the stream, uneven batches included.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """batch: [N, *shape]; N = 0 changes nothing."""
        if batch.shape[0] == 0:
            return
        batch = batch.detach().to(self.mean.device, torch.float64)
        count, mean, var = merge_moments(
            self.count, self.mean, self.var, *batch_moments(batch, dim=0)
        )
        self.count.copy_(count)
        self.mean.copy_(mean)
        self.var.copy_(var)

    @property
    def std(self) -> torch.Tensor:
        return self.var.sqrt()


@dataclasses.dataclass(frozen=True)
class EpisodicConfig:
    """The episodic novelty's constants; defaults from NGU's Table 6."""

    num_neighbours: int = 10  # k
    kernel_epsilon: float = 1e-4  # ε of the kernel (the main text says 1e-3)
    cluster_distance: float = 0.008  # ξ
    pseudo_count_constant: float = 1e-3  # c
    max_similarity: float = 8.0  # s_m


def knn_squared_distances(
    query: torch.Tensor, memory: torch.Tensor, sizes: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared Euclidean distances from each query to its k nearest stored embeddings.

    Args:
      query: [E, D] one embedding per environment.
      memory: [E, M, D] each environment's stored embeddings; rows >= sizes[e] are unused.
      sizes: [E] int64 number of stored embeddings per environment.
      k: number of neighbours.
    Returns:
      ([E, k] squared distances, ascending; [E, k] bool, which of them exist — fewer than k
      when an environment holds fewer than k embeddings).
    """
    used = int(sizes.max()) if sizes.numel() else 0
    num_envs = query.shape[0]
    if used == 0:
        empty = torch.zeros(num_envs, k, device=query.device)
        return empty, torch.zeros(num_envs, k, dtype=torch.bool, device=query.device)
    stored = memory[:, :used]
    distances = ((stored - query.unsqueeze(1)) ** 2).sum(-1)  # [E, used]
    valid = torch.arange(used, device=query.device) < sizes.unsqueeze(1)
    distances = distances.masked_fill(~valid, float("inf"))
    nearest = torch.topk(distances, min(k, used), dim=1, largest=False).values
    if nearest.shape[1] < k:
        pad = torch.full((num_envs, k - nearest.shape[1]), float("inf"), device=query.device)
        nearest = torch.cat([nearest, pad], dim=1)
    exists = torch.isfinite(nearest)
    return nearest.masked_fill(~exists, 0.0), exists


def episodic_reward(
    squared_distances: torch.Tensor,
    exists: torch.Tensor,
    mean_squared_distance: torch.Tensor,
    config: EpisodicConfig,
) -> torch.Tensor:
    """NGU's episodic novelty r^episodic from the k-NN squared distances.

    Args:
      squared_distances: [E, k] squared distances to the k nearest neighbours.
      exists: [E, k] bool, which neighbours exist (the rest add nothing to the sum).
      mean_squared_distance: scalar or [E], d_m², the running mean of squared k-NN distances.
      config: k, ε, ξ, c and s_m.
    Returns:
      [E] float rewards; 0 where the similarity √(ΣK) + c exceeds s_m.
    """
    d_m2 = torch.as_tensor(mean_squared_distance, dtype=squared_distances.dtype)
    d_m2 = d_m2.to(squared_distances.device).clamp(min=1e-8)  # zero only before any distance
    if d_m2.ndim == 1:
        d_m2 = d_m2.unsqueeze(1)
    normalised = (squared_distances / d_m2 - config.cluster_distance).clamp(min=0.0)
    kernel = config.kernel_epsilon / (normalised + config.kernel_epsilon)
    similarity = (kernel * exists).sum(dim=1).sqrt() + config.pseudo_count_constant
    reward = 1.0 / similarity
    return torch.where(similarity > config.max_similarity, torch.zeros_like(reward), reward)


def lifelong_multiplier(
    error: torch.Tensor, error_mean: torch.Tensor, error_std: torch.Tensor
) -> torch.Tensor:
    """α = 1 + (err − μ_e)/σ_e: [E] errors -> [E] multipliers (not yet clipped)."""
    return 1.0 + (error - error_mean) / error_std.clamp(min=1e-8)


def intrinsic_reward(
    episodic: torch.Tensor, alpha: torch.Tensor, max_multiplier: float
) -> torch.Tensor:
    """r^i = r^episodic · min(max(α, 1), L): [E], [E] -> [E]."""
    return episodic * alpha.clamp(min=1.0, max=max_multiplier)


class EpisodicMemory:
    """One ring of embeddings per environment (capacity M each), emptied at episode starts,
    and one running mean of squared k-NN distances (d_m²) per environment."""

    def __init__(
        self,
        num_envs: int,
        capacity: int,
        embedding_size: int,
        config: EpisodicConfig,
        device: torch.device | None = None,
    ) -> None:
        self.config = config
        self.capacity = capacity
        self.device = device
        self.memory = torch.zeros(num_envs, capacity, embedding_size, device=device)
        self.sizes = torch.zeros(num_envs, dtype=torch.int64, device=device)
        self.next_row = torch.zeros(num_envs, dtype=torch.int64, device=device)
        # d_m² per environment: count, mean and variance of every squared k-NN distance seen.
        zeros = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.distance_count, self.distance_mean, self.distance_var = zeros, zeros, zeros

    def clear(self, envs: torch.Tensor) -> None:
        """envs: [E] bool, the environments whose episode starts now."""
        self.sizes[envs] = 0
        self.next_row[envs] = 0

    def reward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Novelty of embeddings [E, D] against each environment's memory, then stores them.

        d_m² is updated with this step's k-NN distances before it normalises them, as in the
        paper's algorithm. Returns [E] episodic rewards.
        """
        k = self.config.num_neighbours
        distances, exists = knn_squared_distances(embeddings, self.memory, self.sizes, k)
        self.distance_count, self.distance_mean, self.distance_var = merge_moments(
            self.distance_count,
            self.distance_mean,
            self.distance_var,
            *batch_moments(distances.double(), dim=1, mask=exists),
        )
        rewards = episodic_reward(distances, exists, self.distance_mean.float(), self.config)
        self._store(embeddings)
        return rewards

    def _store(self, embeddings: torch.Tensor) -> None:
        envs = torch.arange(embeddings.shape[0], device=embeddings.device)
        self.memory[envs, self.next_row] = embeddings
        self.next_row = (self.next_row + 1) % self.capacity
        self.sizes = (self.sizes + 1).clamp(max=self.capacity)

    def state_dict(self) -> dict[str, list[float]]:
        """The running d_m² statistics; the memories themselves restart with the episodes."""
        return {
            "count": self.distance_count.tolist(),
            "mean": self.distance_mean.tolist(),
            "var": self.distance_var.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        def tensor(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64, device=self.device)

        self.distance_count = tensor(state["count"])
        self.distance_mean = tensor(state["mean"])
        self.distance_var = tensor(state["var"])
