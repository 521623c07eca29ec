"""NGU's formulas against values computed independently of the implementation: the (β_j, γ_j)
ladders, the episodic reward (brute-force k-NN), running statistics (numpy), α and its clip,
μ of the taken action, and the bootstrap at a truncated episode end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import value_learning
from agents.common.sequence_learning import (
    bootstrap_through_padding,
    final_valid_rows,
    forward_fill_padding,
    largest_rewards,
)
from exploration.novelty import (
    EpisodicConfig,
    EpisodicMemory,
    RunningMeanStd,
    episodic_reward,
    intrinsic_reward,
    knn_squared_distances,
    lifelong_multiplier,
)
from exploration.policies import (
    PolicyIndexChooser,
    epsilon_greedy_policy,
    epsilon_greedy_with_probability,
    ngu_betas,
    ngu_discounts,
)

# --------------------------------------------------------------------------------------------
# Ladders (NGU App. A), by the paper's formulas written out per j
# --------------------------------------------------------------------------------------------


def paper_beta(j: int, n: int = 32, beta: float = 0.3) -> float:
    if j == 0:
        return 0.0
    if j == n - 1:
        return beta
    x = 10.0 * (2 * j - (n - 2)) / (n - 2)
    return beta / (1.0 + math.exp(-x))


def paper_gamma(j: int, n: int = 32, gamma_max: float = 0.997, gamma_min: float = 0.99) -> float:
    return 1.0 - math.exp(
        ((n - 1 - j) * math.log(1 - gamma_max) + j * math.log(1 - gamma_min)) / (n - 1)
    )


@pytest.mark.parametrize("j", [0, 1, 16, 31])
def test_ngu_ladders_match_the_paper(j):
    assert ngu_betas(32, 0.3)[j] == pytest.approx(paper_beta(j), abs=1e-12)
    assert ngu_discounts(32, 0.997, 0.99)[j] == pytest.approx(paper_gamma(j), abs=1e-12)


def test_ngu_ladder_end_points_and_values_by_hand():
    betas, gammas = ngu_betas(32, 0.3), ngu_discounts(32, 0.997, 0.99)
    assert betas[0] == 0.0 and betas[31] == 0.3
    # j = 1: σ(10·(2 − 30)/30) = σ(−28/3) = 1/(1 + e^(28/3)) ≈ 8.8418e−5, times 0.3.
    assert betas[1] == pytest.approx(0.3 * 8.8418e-5, rel=1e-4)
    assert betas[16] == pytest.approx(0.3 / (1 + math.exp(-2 / 3)), rel=1e-12)
    assert gammas[0] == pytest.approx(0.997) and gammas[31] == pytest.approx(0.99)
    assert np.all(np.diff(gammas) < 0) and np.all(np.diff(betas) >= 0)


# --------------------------------------------------------------------------------------------
# Episodic novelty against a brute-force loop
# --------------------------------------------------------------------------------------------


def brute_force_episodic(query, stored, d_m2, k, eps, c, xi, s_m) -> float:
    distances = sorted(float(np.sum((query - m) ** 2)) for m in stored)[:k]
    kernel_sum = 0.0
    for d in distances:
        normalised = max(d / d_m2 - xi, 0.0)
        kernel_sum += eps / (normalised + eps)
    similarity = math.sqrt(kernel_sum) + c
    return 0.0 if similarity > s_m else 1.0 / similarity


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_episodic_reward_matches_a_brute_force_knn_loop(scale):
    rng = np.random.default_rng(0)
    num_envs, capacity, dim = 5, 40, 8
    sizes = np.array([40, 23, 10, 3, 0])  # full, partial, exactly k, fewer than k, empty
    memory = np.zeros((num_envs, capacity, dim), np.float32)
    for e in range(num_envs):
        memory[e, : sizes[e]] = rng.normal(size=(sizes[e], dim)) * scale
    query = (rng.normal(size=(num_envs, dim)) * scale).astype(np.float32)
    config = EpisodicConfig(
        num_neighbours=10,
        kernel_epsilon=1e-3,
        cluster_distance=0.008,
        pseudo_count_constant=1e-3,
        max_similarity=2.0,
    )
    d_m2 = np.array([1.3, 0.7, 2.0, 0.5, 1.0]) * scale**2
    distances, exists = knn_squared_distances(
        torch.tensor(query), torch.tensor(memory), torch.tensor(sizes), 10
    )
    rewards = episodic_reward(distances, exists, torch.tensor(d_m2), config).numpy()
    for e in range(num_envs):
        expected = brute_force_episodic(
            query[e], memory[e, : sizes[e]], d_m2[e], 10, 1e-3, 1e-3, 0.008, 2.0
        )
        assert rewards[e] == pytest.approx(expected, rel=1e-4, abs=1e-7), e
    # Exact neighbours fall inside ξ: K = 1 each, √10 + c > s_m = 2: cut to zero.
    same = torch.tensor(memory[:1, :1]).expand(1, 10, dim).contiguous()
    d, ex = knn_squared_distances(torch.tensor(memory[:1, 0]), same, torch.tensor([10]), 10)
    assert episodic_reward(d, ex, torch.tensor([1.0]), config).item() == 0.0


def test_episodic_memory_is_emptied_at_episode_start_and_is_a_ring():
    config = EpisodicConfig(num_neighbours=2, max_similarity=100.0)
    memory = EpisodicMemory(num_envs=2, capacity=3, embedding_size=1, config=config)
    for value in (1.0, 2.0, 3.0, 4.0):
        memory.reward(torch.tensor([[value], [value]]))
    # A ring of 3: the oldest (1.0) was overwritten by 4.0.
    assert sorted(memory.memory[0, :3, 0].tolist()) == [2.0, 3.0, 4.0]
    memory.clear(torch.tensor([True, False]))
    assert memory.sizes.tolist() == [0, 3]
    reward = memory.reward(torch.tensor([[9.0], [9.0]]))
    # Env 0's memory is empty: no neighbours, similarity c: reward 1/c.
    assert reward[0].item() == pytest.approx(1.0 / config.pseudo_count_constant)
    assert memory.sizes.tolist() == [1, 3]


def test_d_m2_is_the_running_mean_of_squared_knn_distances():
    config = EpisodicConfig(num_neighbours=2, max_similarity=100.0)
    memory = EpisodicMemory(num_envs=1, capacity=10, embedding_size=1, config=config)
    seen = []
    stored = []
    for value in (0.0, 1.0, 3.0, 7.0):
        if stored:
            seen += sorted((value - s) ** 2 for s in stored)[:2]
        memory.reward(torch.tensor([[value]]))
        stored.append(value)
    assert memory.distance_mean.item() == pytest.approx(np.mean(seen))


# --------------------------------------------------------------------------------------------
# Running statistics, α, combination
# --------------------------------------------------------------------------------------------


def test_running_mean_std_equals_numpy_on_uneven_batches():
    rng = np.random.default_rng(1)
    data = rng.normal(3.0, 2.0, size=(1000, 4)) * np.array([1.0, 10.0, 0.1, 1e3])
    stats = RunningMeanStd((4,))
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=30, replace=False))
    for batch in np.split(data, cuts):
        stats.update(torch.tensor(batch))
    np.testing.assert_allclose(stats.mean.numpy(), data.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats.var.numpy(), data.var(axis=0), rtol=1e-10)
    assert stats.count.item() == 1000
    stats.update(torch.zeros(0, 4))  # an empty batch changes nothing
    np.testing.assert_allclose(stats.mean.numpy(), data.mean(axis=0), rtol=1e-10)


def test_lifelong_multiplier_and_its_clip_to_one_and_l():
    error = torch.tensor([0.5, 1.0, 2.0, 9.0])
    alpha = lifelong_multiplier(error, torch.tensor(1.0), torch.tensor(2.0))
    np.testing.assert_allclose(alpha.numpy(), [0.75, 1.0, 1.5, 5.0])  # 1 + (err − 1)/2
    episodic = torch.tensor([2.0, 2.0, 2.0, 2.0])
    reward = intrinsic_reward(episodic, torch.tensor([0.75, 1.0, 1.5, 7.0]), max_multiplier=5.0)
    np.testing.assert_allclose(reward.numpy(), [2.0, 2.0, 3.0, 10.0])  # min(max(α, 1), 5)


# --------------------------------------------------------------------------------------------
# ε-greedy with the behaviour probability μ
# --------------------------------------------------------------------------------------------


class _ScriptedRng:
    """Draws fixed in advance: random() for the explore test, integers() for the action."""

    def __init__(self, uniforms, actions) -> None:
        self.uniforms, self.actions = np.asarray(uniforms), np.asarray(actions)

    def random(self, size):
        return self.uniforms[:size]

    def integers(self, low, high, size):
        return self.actions[:size]


def test_mu_on_both_branches_of_epsilon_greedy():
    q = torch.tensor([[0.0, 5.0, 1.0, 2.0]] * 3)  # greedy action 1, |A| = 4, ε = 0.4
    # env 0 exploits; env 1 explores and draws the greedy action; env 2 explores to action 3.
    rng = _ScriptedRng([0.9, 0.1, 0.2], [0, 1, 3])
    actions, mu = epsilon_greedy_with_probability(q, 0.4, rng)
    assert actions.tolist() == [1, 1, 3]
    greedy_mu = 1 - 0.4 + 0.4 / 4
    np.testing.assert_allclose(mu, [greedy_mu, greedy_mu, 0.4 / 4], rtol=1e-6)


def test_mu_matches_empirical_frequencies():
    q = torch.tensor([[0.0, 5.0, 1.0]]).expand(20_000, 3)
    actions, mu = epsilon_greedy_with_probability(q, 0.3, np.random.default_rng(0))
    for action in range(3):
        frequency = np.mean(actions == action)
        assert frequency == pytest.approx(mu[actions == action][0], abs=0.01)


def test_target_policy_is_the_epsilon_greedy_distribution():
    pi = epsilon_greedy_policy(torch.tensor([[1.0, 3.0, 2.0]]), 0.01)
    np.testing.assert_allclose(pi.numpy(), [[0.01 / 3, 0.99 + 0.01 / 3, 0.01 / 3]], rtol=1e-6)


def test_policy_index_fixed_or_drawn_per_episode():
    fixed = PolicyIndexChooser("fixed", num_policies=4, first_env=6, num_envs=3, seed=0)
    assert fixed.indices.tolist() == [2, 3, 0]  # (6, 7, 8) mod 4
    fixed.on_episode_start(np.array([True, True, True]))
    assert fixed.indices.tolist() == [2, 3, 0]
    drawn = PolicyIndexChooser("per_episode", num_policies=32, first_env=0, num_envs=2, seed=0)
    counts = np.zeros(32)
    for _ in range(3200):
        before = drawn.indices.copy()
        drawn.on_episode_start(np.array([True, False]))
        assert drawn.indices[1] == before[1]  # only environments starting an episode draw
        counts[drawn.indices[0]] += 1
    assert counts.min() > 50  # uniform over the 32 (expected 100 each)


# --------------------------------------------------------------------------------------------
# The bootstrap at a truncated episode end (sequences padded after it)
# --------------------------------------------------------------------------------------------


def test_n_step_return_bootstraps_from_the_final_observation_of_a_truncation():
    # Position k holds the step into x_{k+1}: reward r_t[k], value v_t[k] = V(x_{k+1}).
    # x_3 (position 2) is the final observation of a truncated episode; positions 3, 4 are
    # padding. 5-step returns reach into the padding and must stop at V(x_3) = 30.
    gamma = 0.9
    r_t = torch.tensor([[1.0], [2.0], [0.5], [0.0], [0.0]])
    v_t = torch.tensor([[10.0], [20.0], [30.0], [-99.0], [-99.0]])  # padding values: garbage
    valid_t = torch.tensor([[True], [True], [True], [False], [False]])
    discount_t = gamma * torch.tensor([[1.0], [1.0], [1.0], [0.0], [0.0]])
    discount_t = bootstrap_through_padding(discount_t, valid_t)
    v_t = forward_fill_padding(v_t, valid_t)
    returns = value_learning.n_step_bootstrapped_returns(r_t, discount_t, v_t, n=5)
    assert returns[0, 0].item() == pytest.approx(1 + 0.9 * 2 + 0.81 * 0.5 + 0.729 * 30)
    assert returns[1, 0].item() == pytest.approx(2 + 0.9 * 0.5 + 0.81 * 30)
    assert returns[2, 0].item() == pytest.approx(0.5 + 0.9 * 30)
    # Without the fix the padding's zero discount drops V(x_3) altogether.
    cut = value_learning.n_step_bootstrapped_returns(
        r_t, gamma * valid_t.float(), torch.zeros_like(v_t), n=5
    )
    assert cut[0, 0].item() == pytest.approx(1 + 0.9 * 2 + 0.81 * 0.5)


def test_retrace_cuts_the_trace_at_the_final_step_so_a_truncation_bootstraps():
    # T = 3 target rows: valid 0, 1 (row 1 is the truncated end), row 2 padding.
    q_t = torch.tensor([[[1.0, 3.0]], [[2.0, 4.0]], [[0.0, 0.0]]])  # [T, B=1, A=2]
    pi_t = torch.tensor([[[0.5, 0.5]], [[0.25, 0.75]], [[0.5, 0.5]]])
    a_t = torch.tensor([[1], [0], [0]])
    r_t = torch.tensor([[1.0], [2.0], [0.0]])
    gamma = 0.9
    discount_t = gamma * torch.tensor([[1.0], [1.0], [0.0]])
    valid_t = torch.tensor([[True], [True], [False]])
    mu_t = torch.tensor([[0.5], [0.5], [1.0]])
    mu_t = torch.where(final_valid_rows(valid_t), torch.inf, mu_t)
    pi_a = torch.tensor([[0.5], [0.25], [0.5]])
    c_t = torch.clamp(pi_a / (mu_t + 1e-8), max=1.0) * 0.95
    returns = value_learning.general_off_policy_returns_from_action_values(
        q_t, a_t, r_t, discount_t, c_t, pi_t
    )
    e_q1 = 0.25 * 2.0 + 0.75 * 4.0  # E_π Q at the final observation
    assert returns[1, 0].item() == pytest.approx(2.0 + 0.9 * e_q1)  # no trace past the end
    e_q0 = 0.5 * 1.0 + 0.5 * 3.0
    c0 = 0.95 * min(1.0, 0.5 / 0.5)
    expected0 = 1.0 + 0.9 * (e_q0 - c0 * 3.0 + c0 * (2.0 + 0.9 * e_q1))
    assert returns[0, 0].item() == pytest.approx(expected0, rel=1e-6)


def test_largest_rewards_reads_only_the_valid_steps_of_each_sequence():
    # Sequence 0 reached the far reward (1.0); sequence 1 only the distractor (0.1), and its
    # padding after the episode's end holds a stale 1.0 that must not count; sequence 2 is
    # all padding.
    reward = torch.tensor([[0.0, 0.1, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 5.0]])
    mask = torch.tensor([[True, True, False], [True, True, False], [True, False, False]])
    best = largest_rewards(reward, mask)
    assert best[:2].tolist() == pytest.approx([1.0, 0.1])
    assert best[2] == -torch.inf
