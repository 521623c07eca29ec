"""Agent57's own parts against values computed independently: the discount ladder, the
sliding-window UCB bandit (a reference loop over an explicit deque); and the separate value
networks (Agent57's, and NGU's with --separate_value_networks): the separation of their losses,
and the combined Q."""

from __future__ import annotations

import collections
import functools
import math

import numpy as np
import pytest
import torch

import value_learning
from agents.agent57.agent import Agent57Config, build_learner
from agents.ngu import agent as ngu
from agents.ngu.agent import combined_q
from exploration.bandit import BanditPolicyChooser, SlidingWindowUcb
from exploration.policies import agent57_discounts

# --------------------------------------------------------------------------------------------
# The discount ladder
# --------------------------------------------------------------------------------------------


def paper_gamma(j: int, n: int = 32, g0: float = 0.9999, g1: float = 0.997, g2: float = 0.99):
    """Agent57 App. B, written out per j. For j >= 8 the paper prints (N − 9)·log(1 − γ1) in
    the numerator, which taken literally climbs to 1 − (1 − γ1)(1 − γ2) = 0.99997 at j = N − 1,
    against the paper's own description (γ2 = 0.99 the smallest discount): the interpolation
    from γ1 at j = 8 to γ2 at j = N − 1, as NGU's ladder does, is what is meant."""
    if j == 0:
        return g0
    if 1 <= j <= 6:
        return g1 + (g0 - g1) / (1 + math.exp(-10 * (2 * j - 6) / 6))
    if j == 7:
        return g1
    k = j - 8
    return 1 - math.exp(((n - 9 - k) * math.log(1 - g1) + k * math.log(1 - g2)) / (n - 9))


@pytest.mark.parametrize("j", [0, 1, 6, 7, 8, 31])
def test_agent57_discount_ladder_matches_the_paper(j):
    assert agent57_discounts(32)[j] == pytest.approx(paper_gamma(j), abs=1e-12)


def test_agent57_ladder_values_by_hand():
    gammas = agent57_discounts(32)
    assert gammas[0] == 0.9999 and gammas[7] == 0.997
    assert gammas[8] == pytest.approx(0.997) and gammas[31] == pytest.approx(0.99)
    # j = 1: σ(−20/3) ≈ 1.2710e−3 of the way from γ1 to γ0.
    assert gammas[1] == pytest.approx(0.997 + 0.0029 * 1.2710e-3, abs=1e-9)
    assert gammas[6] == pytest.approx(0.997 + 0.0029 * (1 / (1 + math.exp(-10))), abs=1e-12)
    assert Agent57Config(min_replay_size=64).discounts()[0] == 0.9999  # not NGU's 0.997


# --------------------------------------------------------------------------------------------
# The bandit against a reference loop over an explicit deque of the last τ episodes
# --------------------------------------------------------------------------------------------


class ReferenceBandit:
    """Written from the paper's description, with the same draws in the same order."""

    def __init__(self, arms: int, window: int, epsilon: float, beta: float, seed: int):
        self.arms, self.epsilon, self.beta = arms, epsilon, beta
        self.history: collections.deque = collections.deque(maxlen=window)
        self.rng = np.random.default_rng(seed)

    def stats(self):
        counts = [0] * self.arms
        sums = [0.0] * self.arms
        for arm, reward in self.history:
            counts[arm] += 1
            sums[arm] += reward
        return counts, [s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)]

    def choose(self) -> int:
        counts, means = self.stats()
        for arm in range(self.arms):
            if counts[arm] == 0:
                return arm
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.arms))
        scores = [means[k] + self.beta * math.sqrt(1 / counts[k]) for k in range(self.arms)]
        return int(np.argmax(scores))


def test_bandit_equals_the_reference_over_a_long_random_stream():
    bandit = SlidingWindowUcb(num_arms=8, window=20, epsilon=0.3, beta=1.0, seed=7)
    reference = ReferenceBandit(8, 20, 0.3, 1.0, seed=7)
    stream = np.random.default_rng(0)
    for _ in range(3_000):
        arm = bandit.choose()
        assert arm == reference.choose()
        reward = float(stream.normal(arm / 4.0, 1.0))
        bandit.update(arm, reward)
        reference.history.append((arm, reward))
        counts, means = bandit.statistics()
        ref_counts, ref_means = reference.stats()
        np.testing.assert_array_equal(counts, ref_counts)
        np.testing.assert_allclose(means, ref_means, rtol=1e-12, atol=1e-12)


def test_the_window_truly_forgets():
    bandit = SlidingWindowUcb(num_arms=3, window=5, epsilon=0.0, beta=0.0, seed=0)
    bandit.update(0, 1_000.0)  # a huge reward, then τ = 5 more episodes
    for _ in range(5):
        bandit.update(1, 1.0)
    counts, means = bandit.statistics()
    assert counts.tolist() == [0, 5, 0] and means[0] == 0.0
    assert bandit.choose() == 0  # arm 0 is unpulled again within the window


def test_a_stationary_best_arm_comes_to_dominate():
    bandit = SlidingWindowUcb(num_arms=8, window=160, epsilon=0.5, beta=1.0, seed=1)
    rng = np.random.default_rng(1)
    choices = []
    for _ in range(2_000):
        arm = bandit.choose()
        bandit.update(arm, float(rng.normal(1.0 if arm == 5 else 0.0, 0.3)))
        choices.append(arm)
    late = np.bincount(choices[-1_000:], minlength=8) / 1_000
    # ε = 0.5 spreads half the pulls uniformly (1/16 each); the UCB half goes to arm 5.
    assert late[5] > 0.45 and late.argmax() == 5


def test_the_bandit_follows_a_change_of_best_arm_within_about_one_window():
    window = 100
    bandit = SlidingWindowUcb(num_arms=6, window=window, epsilon=0.2, beta=1.0, seed=2)
    rng = np.random.default_rng(2)

    def run(best: int, episodes: int) -> list[int]:
        choices = []
        for _ in range(episodes):
            arm = bandit.choose()
            bandit.update(arm, float(rng.normal(1.0 if arm == best else 0.0, 0.3)))
            choices.append(arm)
        return choices

    before = run(best=1, episodes=600)
    assert np.bincount(before[-200:], minlength=6).argmax() == 1
    after = run(best=4, episodes=2 * window)
    # Within about one window of the change the new best arm leads, the old one no longer.
    second_window = np.bincount(after[window:], minlength=6)
    assert second_window.argmax() == 4 and second_window[4] > 2 * second_window[1]


def test_bandit_state_round_trips_and_continues_the_same_choices():
    chooser = BanditPolicyChooser(8, num_envs=2, window=10, epsilon=0.5, beta=1.0, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        chooser.on_episode_end(np.array([True, True]), rng.normal(size=2))
        chooser.on_episode_start(np.array([True, True]))
    copy = BanditPolicyChooser(8, num_envs=2, window=10, epsilon=0.5, beta=1.0, seed=99)
    copy.load_state_dict(chooser.state_dict())
    for _ in range(30):
        returns = rng.normal(size=2)
        for c in (chooser, copy):
            c.on_episode_end(np.array([True, False]), returns)
            c.on_episode_start(np.array([True, False]))
        assert chooser.indices.tolist() == copy.indices.tolist()


# --------------------------------------------------------------------------------------------
# Two heads: combined Q and the separation of their losses
# --------------------------------------------------------------------------------------------


def test_combined_q_is_the_formula():
    q = torch.tensor([[[1.0, -2.0]], [[3.0, 0.5]]])  # [2, B=1, A=2]
    beta = torch.tensor([0.3])
    np.testing.assert_allclose(combined_q(q, beta, False, None).numpy(), [[1.9, -1.85]])
    tx = value_learning.SIGNED_HYPERBOLIC_PAIR
    expected = tx.apply(tx.apply_inv(q[0]) + 0.3 * tx.apply_inv(q[1]))
    torch.testing.assert_close(combined_q(q, beta, True, tx), expected)


SEPARATE = {
    "agent57": Agent57Config,
    "ngu": functools.partial(ngu.NguConfig, separate_value_networks=True),
}


def _small_learner(agent: str = "agent57", **overrides):
    torch.manual_seed(0)
    config = SEPARATE[agent](
        **overrides,
        burn_in=2,
        sequence_length=6,
        replay_period=2,
        batch_size=3,
        min_replay_size=3,
        replay_capacity=10,
        num_policies=10,
        episodic_memory_capacity=10,
    )
    return build_learner(config, (4,), np.float32, 3, 0, torch.device("cpu"))


# Both agents build the learner the same way: Agent57's is NGU's.
assert build_learner.func is ngu.build_learner.func


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    time, batch = 8, 3
    mask = torch.ones(time, batch, dtype=torch.bool)
    mask[6:, 2] = False  # one item ends early (a truncated episode)
    return {
        "observation": torch.randn(time, batch, 4, generator=g),
        "action": torch.randint(0, 3, (time, batch), generator=g),
        "prev_action": torch.randint(0, 3, (time, batch), generator=g),
        "reward": torch.randn(time, batch, generator=g),
        "intrinsic_reward": torch.rand(time, batch, generator=g),
        "discount": torch.ones(time, batch),
        "policy_index": torch.tensor([3, 9, 0]).expand(time, batch).clone(),
        "behaviour_prob": torch.rand(time, batch, generator=g) * 0.5 + 0.25,
        "mask": mask,
        "has_burn_in": torch.tensor([True, False, True]),
        "start_state": torch.randn(batch, 256, generator=g),  # two LSTMs of 64: (h, c) each
    }


def _head_losses_and_grads(learner, batch, extrinsic_reward, intrinsic_reward):
    """Each head's loss and the gradients it sends to both Q-networks, for the given rewards
    (the network's inputs, previous rewards included, stay those of `batch`)."""
    q, target_q, policy_q = learner.unroll_heads(batch)
    heads = learner.retrace_of_heads(
        q, target_q, policy_q, extrinsic_reward, intrinsic_reward, batch
    )
    result = {}
    for name, td in heads.items():
        learner.optimizer.zero_grad()
        loss = td.square().mean()
        loss.backward(retain_graph=True)  # both heads come out of one forward
        grads = {
            head: torch.cat(
                [p.grad.flatten() for p in getattr(learner.network.q, head).parameters()]
            )
            for head in ("extrinsic", "intrinsic")
        }
        result[name] = (loss.detach(), grads)
    return result


@pytest.mark.parametrize("agent", SEPARATE)
def test_intrinsic_rewards_leave_the_extrinsic_head_exactly_unchanged_and_vice_versa(agent):
    learner = _small_learner(agent)
    batch = _batch()
    r_e, r_i = batch["reward"], batch["intrinsic_reward"]
    base = _head_losses_and_grads(learner, batch, r_e, r_i)
    changed = _head_losses_and_grads(learner, batch, r_e, r_i * 7 + 1)
    assert torch.equal(changed["_extrinsic"][0], base["_extrinsic"][0])
    assert torch.equal(changed["_extrinsic"][1]["extrinsic"], base["_extrinsic"][1]["extrinsic"])
    assert not torch.equal(changed["_intrinsic"][0], base["_intrinsic"][0])

    changed = _head_losses_and_grads(learner, batch, r_e * -3 + 2, r_i)
    assert torch.equal(changed["_intrinsic"][0], base["_intrinsic"][0])
    assert torch.equal(changed["_intrinsic"][1]["intrinsic"], base["_intrinsic"][1]["intrinsic"])
    assert not torch.equal(changed["_extrinsic"][0], base["_extrinsic"][0])
    # And each head's loss moves only its own network.
    assert not base["_extrinsic"][1]["intrinsic"].any()
    assert not base["_intrinsic"][1]["extrinsic"].any()


@pytest.mark.parametrize("agent", SEPARATE)
def test_the_learner_trains_each_head_on_its_own_reward_column(agent):
    learner = _small_learner(agent)
    batch = _batch()
    heads, _ = learner.head_td_errors(batch)
    q, target_q, policy_q = learner.unroll_heads(batch)
    expected = learner.retrace_of_heads(
        q, target_q, policy_q, batch["reward"], batch["intrinsic_reward"], batch
    )
    for name in ("_extrinsic", "_intrinsic"):
        torch.testing.assert_close(heads[name], expected[name])
    swapped = learner.retrace_of_heads(
        q, target_q, policy_q, batch["intrinsic_reward"], batch["reward"], batch
    )
    assert not torch.allclose(heads["_extrinsic"], swapped["_extrinsic"])


@pytest.mark.parametrize("agent", SEPARATE)
def test_each_head_has_its_own_optimiser_group_and_its_own_clipping(agent):
    learner = _small_learner(agent)
    assert learner.group_names == ["extrinsic", "intrinsic", "embedding", "rnd"]
    batch = _batch()
    intrinsic_params = list(learner.network.q.intrinsic.parameters())
    heads, _ = learner.head_td_errors(batch)
    learner.optimizer.zero_grad()
    heads["_intrinsic"].square().mean().backward()
    alone = torch.cat([p.grad.flatten() for p in intrinsic_params]).clone()
    assert alone.norm() < learner.max_grad_norm
    # A huge extrinsic loss: its group is clipped to 40, the intrinsic group keeps its gradient
    # (one global clip would have shrunk it by the same factor).
    heads, _ = learner.head_td_errors(batch)
    learner.apply_gradients(
        1e6 * heads["_extrinsic"].square().mean() + heads["_intrinsic"].square().mean()
    )
    norms = learner.last_grad_norms
    assert norms["grad_norm_extrinsic"] > 1e3 > learner.max_grad_norm > norms["grad_norm_intrinsic"]
    after_clip = torch.cat([p.grad.flatten() for p in intrinsic_params])
    torch.testing.assert_close(after_clip, alone)


def test_gamma_0_may_sit_below_the_exploratory_discounts_but_not_reach_one():
    gammas = Agent57Config(num_policies=16, gamma_0=0.95).discounts()
    assert gammas[0] == 0.95 and gammas[7] == 0.997 and gammas[-1] == pytest.approx(0.99)
    assert np.all((gammas[1:7] >= 0.95) & (gammas[1:7] <= 0.997))
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="gamma_0"):
            Agent57Config(num_policies=16, gamma_0=bad)


@pytest.mark.parametrize("agent", SEPARATE)
def test_one_shared_network_when_separate_value_networks_is_off(agent):
    learner = _small_learner(agent, separate_value_networks=False)
    assert learner.group_names == ["q", "embedding", "rnd"]
    batch = _batch()
    batch["start_state"] = batch["start_state"][:, : learner.network.state_size]  # one LSTM
    heads, stats = learner.head_td_errors(batch)
    assert list(heads) == [""] and "q_value" in stats
    assert ngu.NguConfig().separate_value_networks is False  # NGU's paper: one network
    assert Agent57Config().separate_value_networks is True


@pytest.mark.parametrize("agent", SEPARATE)
def test_the_actor_acts_on_the_combined_q_of_the_separate_networks(agent):
    learner = _small_learner(agent)
    config = learner.config
    actor = ngu.evaluation_actor(learner.network, config, 0.0, 4, seed=0, num_envs=2)
    output = torch.randn(2, 1, 2, 3)  # [heads, T = 1, E, A]
    beta = torch.full((2,), float(config.betas()[4]))
    torch.testing.assert_close(
        actor.action_values(output), combined_q(output[:, 0], beta, False, None)
    )
