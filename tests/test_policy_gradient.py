"""Tests for policy_gradient.py.

Expected values are computed independently of the implementation: by hand for
tiny cases, or with per-element numpy loops straight from the formulas.
"""

import math

import numpy as np
import pytest
import torch

import policy_gradient as pg


def t64(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64)


def tlong(x):
    return torch.tensor(np.asarray(x), dtype=torch.long)


def ref_softmax(logits_row):
    z = np.exp(logits_row - logits_row.max())
    return z / z.sum()


# ---------------------------------------------------------------------------
# policy_gradient_loss.
# ---------------------------------------------------------------------------


def test_policy_gradient_loss_by_hand():
    # Row 0: logits [0, ln 3] -> pi = [1/4, 3/4]; a = 1, adv = 2, w = 1.
    # Row 1: logits [0, 0]    -> pi = [1/2, 1/2]; a = 0, adv = -1, w = 0.5.
    logits = t64([[0.0, math.log(3.0)], [0.0, 0.0]])
    loss = pg.policy_gradient_loss(logits, tlong([1, 0]), t64([2.0, -1.0]), t64([1.0, 0.5]))
    # -mean([1 * ln(3/4) * 2, 0.5 * ln(1/2) * -1])
    expected = -(2 * math.log(0.75) + 0.5 * math.log(2.0)) / 2
    torch.testing.assert_close(loss, t64(expected))


@pytest.mark.parametrize("shape", [(7,), (5, 3)])
def test_policy_gradient_loss_matches_loop(shape):
    rng = np.random.default_rng(len(shape))
    logits = rng.normal(size=(*shape, 4)) * 2
    a = rng.integers(4, size=shape)
    adv, w = rng.normal(size=shape), rng.uniform(size=shape)
    terms = []
    for idx in np.ndindex(*shape):
        log_pi_a = math.log(ref_softmax(logits[idx])[a[idx]])
        terms.append(-w[idx] * log_pi_a * adv[idx])
    loss = pg.policy_gradient_loss(t64(logits), tlong(a), t64(adv), t64(w))
    torch.testing.assert_close(loss, t64(sum(terms) / len(terms)))


def test_policy_gradient_loss_logit_gradient_matches_formula():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 3))
    a, adv, w = rng.integers(3, size=6), rng.normal(size=6), rng.uniform(size=6)
    logits_t = t64(logits).requires_grad_()
    pg.policy_gradient_loss(logits_t, tlong(a), t64(adv), t64(w)).backward()
    # d(-w adv log pi(a)) / d logits = -w adv (onehot(a) - pi), then averaged over 6.
    expected = np.zeros((6, 3))
    for i in range(6):
        onehot = np.eye(3)[a[i]]
        expected[i] = -w[i] * adv[i] * (onehot - ref_softmax(logits[i])) / 6
    torch.testing.assert_close(logits_t.grad, t64(expected))


@pytest.mark.parametrize("stop", [True, False])
def test_policy_gradient_loss_stop_gradient(stop):
    logits = t64([[0.0, math.log(3.0)]]).requires_grad_()
    adv = t64([2.0]).requires_grad_()
    pg.policy_gradient_loss(logits, tlong([1]), adv, t64([0.5]), use_stop_gradient=stop).backward()
    if stop:
        assert adv.grad is None
    else:  # d/d adv of -w log pi(a) adv = -0.5 ln(3/4)
        torch.testing.assert_close(adv.grad, t64([-0.5 * math.log(0.75)]))


# ---------------------------------------------------------------------------
# entropy_loss.
# ---------------------------------------------------------------------------


def test_entropy_loss_by_hand():
    # Uniform over 4 actions: H = ln 4. Deterministic-ish [0, ln 3]: H = -(1/4 ln 1/4 + 3/4 ln 3/4).
    logits = t64([[1.0, 1.0, 1.0, 1.0], [0.0, math.log(3.0), -math.inf, -math.inf]])
    w = t64([1.0, 2.0])
    h1 = math.log(4.0)
    h2 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(pg.entropy_loss(logits, w), t64(-(h1 + 2 * h2) / 2))


def test_entropy_loss_matches_loop():
    rng = np.random.default_rng(4)
    logits, w = rng.normal(size=(4, 3, 5)) * 2, rng.uniform(size=(4, 3))
    terms = []
    for idx in np.ndindex(4, 3):
        p = ref_softmax(logits[idx])
        terms.append(-w[idx] * -sum(pk * math.log(pk) for pk in p))
    torch.testing.assert_close(pg.entropy_loss(t64(logits), t64(w)), t64(sum(terms) / 12))


def test_entropy_loss_masked_actions_have_finite_gradient():
    logits = t64([[0.5, -math.inf, 1.5]]).requires_grad_()
    pg.entropy_loss(logits, t64([1.0])).backward()
    assert torch.isfinite(logits.grad).all()
    # dH/dz_i = -p_i (log p_i + H); the loss is -H, and the masked action gets 0.
    p = ref_softmax(np.array([0.5, 1.5]))
    h = -sum(p * np.log(p))
    expected = [p[0] * (math.log(p[0]) + h), 0.0, p[1] * (math.log(p[1]) + h)]
    torch.testing.assert_close(logits.grad, t64([expected]))


# ---------------------------------------------------------------------------
# clipped_surrogate_pg_loss.
# ---------------------------------------------------------------------------


def test_clipped_surrogate_by_hand():
    ratios = t64([0.5, 1.5, 1.0, 1.5, 0.5])
    adv = t64([1.0, 1.0, 2.0, -1.0, -1.0])
    # eps = 0.2, clip range [0.8, 1.2]; min(rho A, clip(rho) A) per element:
    # min(0.5, 0.8) = 0.5 ; min(1.5, 1.2) = 1.2 ; min(2, 2) = 2 ;
    # min(-1.5, -1.2) = -1.5 ; min(-0.5, -0.8) = -0.8  -> mean 1.4 / 5 = 0.28
    loss = pg.clipped_surrogate_pg_loss(ratios, adv, epsilon=0.2)
    torch.testing.assert_close(loss, t64(-0.28))


def test_clipped_surrogate_matches_loop():
    rng = np.random.default_rng(5)
    ratios, adv = rng.uniform(0.3, 1.7, size=(6, 4)), rng.normal(size=(6, 4))
    terms = []
    for idx in np.ndindex(6, 4):
        clipped = min(max(ratios[idx], 0.9), 1.1)
        terms.append(min(ratios[idx] * adv[idx], clipped * adv[idx]))
    loss = pg.clipped_surrogate_pg_loss(t64(ratios), t64(adv), epsilon=0.1)
    torch.testing.assert_close(loss, t64(-sum(terms) / 24))


@pytest.mark.parametrize("stop", [True, False])
def test_clipped_surrogate_gradients(stop):
    ratios = t64([0.5, 1.5, 1.0, 1.5, 0.5]).requires_grad_()
    adv = t64([1.0, 1.0, 2.0, -1.0, -1.0]).requires_grad_()
    pg.clipped_surrogate_pg_loss(ratios, adv, 0.2, use_stop_gradient=stop).backward()
    # Where the unclipped branch is the min (elements 0, 2, 3) d/d rho = -A / 5;
    # where the clipped one is (1: 1.2 < 1.5, 4: -0.8 < -0.5) rho is out of range -> 0.
    torch.testing.assert_close(ratios.grad, t64([-0.2, 0.0, -0.4, 0.2, 0.0]))
    if stop:
        assert adv.grad is None
    else:  # d/dA of -min(...) / 5 = -(ratio of the chosen branch) / 5
        torch.testing.assert_close(adv.grad, t64([-0.1, -0.24, -0.2, -0.3, -0.16]))
