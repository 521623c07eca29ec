"""Tests for value_learning.py.

Every expected value is computed independently of the implementation: by hand
(arithmetic written out) for tiny cases, or by a slow per-element numpy loop
written straight from the formula for seeded random inputs.
"""

import math

import numpy as np
import pytest
import torch

import value_learning as vl

# ---------------------------------------------------------------------------
# Independent references: plain loops over numpy arrays, straight from formulas.
# ---------------------------------------------------------------------------


def ref_h(x: float, eps: float = 1e-3) -> float:
    return math.copysign(1.0, x) * (math.sqrt(abs(x) + 1) - 1) + eps * x if x != 0 else 0.0


def ref_h_inv(y: float, eps: float = 1e-3) -> float:
    # Textbook root of eps s^2 + s - (1 + eps + |y|) = 0, then x = sign(y)(s^2 - 1).
    s = (math.sqrt(1 + 4 * eps * (1 + eps + abs(y))) - 1) / (2 * eps)
    return math.copysign(1.0, y) * (s * s - 1) if y != 0 else 0.0


def ref_n_step(r, d, v, n, lam):
    """G_t unrolled n times from v_{t+n-1}; past the end: reward 0, discount 1."""
    num_t, num_b = r.shape
    out = np.zeros((num_t, num_b))
    for b in range(num_b):
        for t in range(num_t):
            g = v[min(t + n - 1, num_t - 1), b]
            for k in range(t + n - 1, t - 1, -1):
                if k >= num_t:
                    continue  # virtual step: G = 0 + 1 * (0 * v + 1 * G)
                g = r[k, b] + d[k, b] * ((1 - lam[k, b]) * v[k, b] + lam[k, b] * g)
            out[t, b] = g
    return out


def ref_n_step_lambda1(r, d, v, n):
    """Sum of discounted rewards over min(n, T - t) steps plus the discounted bootstrap."""
    num_t, num_b = r.shape
    out = np.zeros((num_t, num_b))
    for b in range(num_b):
        for t in range(num_t):
            g, disc = 0.0, 1.0
            last = min(t + n, num_t) - 1
            for k in range(t, last + 1):
                g += disc * r[k, b]
                disc *= d[k, b]
            out[t, b] = g + disc * v[last, b]
    return out


def ref_general_off_policy(q, a, r, d, c, pi):
    num_t, num_b, _ = q.shape
    out = np.zeros((num_t, num_b))
    for b in range(num_b):
        exp_q = [float(np.dot(pi[t, b], q[t, b])) for t in range(num_t)]
        g = r[-1, b] + d[-1, b] * exp_q[-1]
        out[-1, b] = g
        for t in range(num_t - 2, -1, -1):
            q_a = q[t, b, a[t, b]]
            g = r[t, b] + d[t, b] * (exp_q[t] - c[t, b] * q_a + c[t, b] * g)
            out[t, b] = g
    return out


def ref_retrace_td(q_tm1, q_t, a_tm1, a_t, r, d, pi, mu, lam, h=None, h_inv=None):
    num_t, num_b, _ = q_t.shape
    c = np.zeros((num_t, num_b))
    for t in range(num_t):
        for b in range(num_b):
            c[t, b] = lam * min(1.0, pi[t, b, a_t[t, b]] / (mu[t, b] + 1e-8))
    q_t_raw = np.vectorize(h_inv)(q_t) if h_inv else q_t
    g = ref_general_off_policy(q_t_raw, a_t, r, d, c, pi)
    if h:
        g = np.vectorize(h)(g)
    td = np.zeros((num_t, num_b))
    for t in range(num_t):
        for b in range(num_b):
            td[t, b] = g[t, b] - q_tm1[t, b, a_tm1[t, b]]
    return td


def t64(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64)


def tlong(x):
    return torch.tensor(np.asarray(x), dtype=torch.long)


def random_sequence(seed, num_t=6, num_b=3, num_a=4):
    rng = np.random.default_rng(seed)
    q_tm1 = rng.normal(size=(num_t, num_b, num_a)) * 3
    q_t = rng.normal(size=(num_t, num_b, num_a)) * 3
    a_tm1 = rng.integers(num_a, size=(num_t, num_b))
    a_t = rng.integers(num_a, size=(num_t, num_b))
    r = rng.normal(size=(num_t, num_b))
    d = rng.uniform(0.5, 1.0, size=(num_t, num_b))
    d[2, 1] = 0.0  # an episode end mid-sequence
    pi = rng.dirichlet(np.ones(num_a), size=(num_t, num_b))
    mu = rng.uniform(0.05, 1.0, size=(num_t, num_b))
    return q_tm1, q_t, a_tm1, a_t, r, d, pi, mu


# ---------------------------------------------------------------------------
# q_learning and double_q_learning.
# ---------------------------------------------------------------------------


def test_q_learning_by_hand():
    q_tm1 = t64([[1.0, 2.0], [3.0, 4.0]])
    a_tm1 = tlong([0, 1])
    r_t = t64([1.0, -1.0])
    discount_t = t64([0.5, 0.0])
    q_t = t64([[2.0, 6.0], [5.0, 1.0]])
    td = vl.q_learning(q_tm1, a_tm1, r_t, discount_t, q_t)
    # row 0: 1 + 0.5 * max(2, 6) - q_tm1[0] = 1 + 3 - 1 = 3
    # row 1: -1 + 0 * max(5, 1) - q_tm1[1] = -1 + 0 - 4 = -5
    torch.testing.assert_close(td, t64([3.0, -5.0]))


def test_q_learning_random_matches_loop():
    rng = np.random.default_rng(0)
    q_tm1, q_t = rng.normal(size=(2, 7, 5))
    a_tm1 = rng.integers(5, size=7)
    r, d = rng.normal(size=7), rng.uniform(size=7)
    expected = [r[b] + d[b] * max(q_t[b]) - q_tm1[b, a_tm1[b]] for b in range(7)]
    td = vl.q_learning(t64(q_tm1), tlong(a_tm1), t64(r), t64(d), t64(q_t))
    torch.testing.assert_close(td, t64(expected))


@pytest.mark.parametrize("stop", [True, False])
def test_q_learning_stop_gradient(stop):
    q_tm1 = t64([[1.0, 2.0]]).requires_grad_()
    q_t = t64([[2.0, 6.0]]).requires_grad_()
    td = vl.q_learning(q_tm1, tlong([1]), t64([1.0]), t64([0.5]), q_t, stop)
    td.sum().backward()
    torch.testing.assert_close(q_tm1.grad, t64([[0.0, -1.0]]))
    if stop:
        assert q_t.grad is None
    else:  # d td / d q_t = discount at the argmax
        torch.testing.assert_close(q_t.grad, t64([[0.0, 0.5]]))


def test_double_q_learning_by_hand():
    q_tm1 = t64([[1.0, 2.0, 0.0]])
    a_tm1 = tlong([2])
    q_t_value = t64([[10.0, 3.0, 7.0]])  # its own argmax would be action 0 ...
    q_t_selector = t64([[0.0, 1.0, 5.0]])  # ... but the selector picks action 2
    td = vl.double_q_learning(q_tm1, a_tm1, t64([2.0]), t64([0.5]), q_t_value, q_t_selector)
    # 2 + 0.5 * q_t_value[2] - q_tm1[2] = 2 + 3.5 - 0 = 5.5
    torch.testing.assert_close(td, t64([5.5]))


def test_double_q_learning_random_matches_loop():
    rng = np.random.default_rng(1)
    q_tm1, q_v, q_s = rng.normal(size=(3, 8, 4))
    a_tm1 = rng.integers(4, size=8)
    r, d = rng.normal(size=8), rng.uniform(size=8)
    expected = []
    for b in range(8):
        best = max(range(4), key=lambda a, b=b: q_s[b, a])
        expected.append(r[b] + d[b] * q_v[b, best] - q_tm1[b, a_tm1[b]])
    td = vl.double_q_learning(t64(q_tm1), tlong(a_tm1), t64(r), t64(d), t64(q_v), t64(q_s))
    torch.testing.assert_close(td, t64(expected))


@pytest.mark.parametrize("stop", [True, False])
def test_double_q_learning_stop_gradient(stop):
    q_tm1 = t64([[1.0, 2.0]]).requires_grad_()
    q_v = t64([[2.0, 6.0]]).requires_grad_()
    q_s = t64([[3.0, 1.0]]).requires_grad_()
    td = vl.double_q_learning(q_tm1, tlong([0]), t64([1.0]), t64([0.5]), q_v, q_s, stop)
    td.sum().backward()
    torch.testing.assert_close(q_tm1.grad, t64([[-1.0, 0.0]]))
    assert q_s.grad is None  # argmax is not differentiable either way
    if stop:
        assert q_v.grad is None
    else:
        torch.testing.assert_close(q_v.grad, t64([[0.5, 0.0]]))


# ---------------------------------------------------------------------------
# n_step_bootstrapped_returns.
# ---------------------------------------------------------------------------


def test_n_step_by_hand():
    # T = 3, one batch column, n = 2, lambda = 1.
    r = t64([[1.0], [2.0], [3.0]])
    d = t64([[0.5], [0.5], [0.5]])
    v = t64([[10.0], [20.0], [30.0]])
    g = vl.n_step_bootstrapped_returns(r, d, v, n=2)
    # G_0 = r0 + d0 r1 + d0 d1 v1 = 1 + 0.5*2 + 0.25*20 = 7
    # G_1 = r1 + d1 r2 + d1 d2 v2 = 2 + 0.5*3 + 0.25*30 = 11
    # G_2 = r2 + d2 v2 (truncated at the end) = 3 + 0.5*30 = 18
    torch.testing.assert_close(g, t64([[7.0], [11.0], [18.0]]))


def test_n_step_with_lambda_by_hand():
    r = t64([[1.0], [2.0], [3.0]])
    d = t64([[0.5], [0.5], [0.5]])
    v = t64([[10.0], [20.0], [30.0]])
    g = vl.n_step_bootstrapped_returns(r, d, v, n=2, lambda_t=0.5)
    # Inner step (lambda irrelevant there): G_1' = 2 + 0.5*30 = 17 (start from v2).
    # G_0 = 1 + 0.5 * (0.5 * v0 + 0.5 * (r1 + d1 v1)) = 1 + 0.5 * (5 + 0.5 * 12) = 6.5
    # G_1 = 2 + 0.5 * (0.5 * v1 + 0.5 * (r2 + d2 v2)) = 2 + 0.5 * (10 + 0.5 * 18) = 11.5
    # G_2 = 3 + 0.5 * (0.5 * v2 + 0.5 * v2) = 18
    torch.testing.assert_close(g, t64([[6.5], [11.5], [18.0]]))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9])
def test_n_step_lambda_one_matches_discounted_sum(n):
    rng = np.random.default_rng(n)
    r, v = rng.normal(size=(2, 6, 3))
    d = rng.uniform(0.0, 1.0, size=(6, 3))
    d[3, 0] = 0.0
    g = vl.n_step_bootstrapped_returns(t64(r), t64(d), t64(v), n)
    torch.testing.assert_close(g, t64(ref_n_step_lambda1(r, d, v, n)))


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("lambda_kind", ["scalar", "tensor"])
def test_n_step_lambda_matches_loop(n, lambda_kind):
    rng = np.random.default_rng(10 + n)
    r, v = rng.normal(size=(2, 6, 3))
    d = rng.uniform(0.0, 1.0, size=(6, 3))
    if lambda_kind == "scalar":
        lam_arg, lam = 0.7, np.full((6, 3), 0.7)
    else:
        lam = rng.uniform(size=(6, 3))
        lam_arg = t64(lam)
    g = vl.n_step_bootstrapped_returns(t64(r), t64(d), t64(v), n, lambda_t=lam_arg)
    torch.testing.assert_close(g, t64(ref_n_step(r, d, v, n, lam)))


def test_n_step_with_n_one_is_one_step_target():
    rng = np.random.default_rng(2)
    r, d, v = rng.normal(size=(3, 5, 2))
    g = vl.n_step_bootstrapped_returns(t64(r), t64(d), t64(v), n=1, lambda_t=0.3)
    torch.testing.assert_close(g, t64(r + d * v))


def test_n_step_episode_end_cuts_return():
    r = t64([[1.0], [2.0], [3.0], [4.0]])
    d = t64([[0.9], [0.0], [0.9], [0.9]])  # the episode ends on the step with r = 2
    v = t64([[10.0], [20.0], [30.0], [40.0]])
    g = vl.n_step_bootstrapped_returns(r, d, v, n=3)
    # G_0 = 1 + 0.9 * 2 + 0.9 * 0 * (...) = 2.8 ; G_1 = 2 + 0 = 2
    # G_2 = 3 + 0.9 * 4 + 0.81 * v3 = 3 + 3.6 + 32.4 = 39 ; G_3 = 4 + 0.9 * 40 = 40
    torch.testing.assert_close(g, t64([[2.8], [2.0], [39.0], [40.0]]))
    # Nothing after the cut may leak into the returns before it.
    g2 = vl.n_step_bootstrapped_returns(r, d, v * 7 + 1, n=3)
    torch.testing.assert_close(g2[:2], g[:2])


@pytest.mark.parametrize("stop", [True, False])
def test_n_step_stop_gradient(stop):
    v = t64([[1.0], [2.0]]).requires_grad_()
    g = vl.n_step_bootstrapped_returns(
        t64([[0.0], [0.0]]), t64([[0.5], [0.5]]), v, n=2, stop_target_gradients=stop
    )
    assert g.requires_grad is not stop
    if not stop:
        g.sum().backward()
        # G_0 = 0.25 v1, G_1 = 0.5 v1  ->  dG/dv = [0, 0.75]
        torch.testing.assert_close(v.grad, t64([[0.0], [0.75]]))


# ---------------------------------------------------------------------------
# Value transforms.
# ---------------------------------------------------------------------------


def test_signed_hyperbolic_by_hand():
    x = t64([3.0, -8.0, 0.0, 99.0])
    # h(3) = sqrt(4) - 1 + 0.003 = 1.003 ; h(-8) = -(sqrt(9) - 1) - 0.008 = -2.008
    # h(0) = 0 ; h(99) = sqrt(100) - 1 + 0.099 = 9.099
    torch.testing.assert_close(vl.signed_hyperbolic(x), t64([1.003, -2.008, 0.0, 9.099]))
    # Inverse by hand: h^-1(1.003) = 3 etc.
    y = t64([1.003, -2.008, 0.0, 9.099])
    torch.testing.assert_close(vl.signed_parabolic(y), t64([3.0, -8.0, 0.0, 99.0]))


def test_transforms_match_textbook_formulas():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=50) * 10, rng.normal(size=50) * 1e3])
    for eps in (1e-3, 1e-2):
        h = vl.signed_hyperbolic(t64(x), eps)
        torch.testing.assert_close(h, t64([ref_h(v, eps) for v in x]))
        h_inv = vl.signed_parabolic(t64(x), eps)
        torch.testing.assert_close(h_inv, t64([ref_h_inv(v, eps) for v in x]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_signed_parabolic_inverts_signed_hyperbolic(dtype):
    mags = torch.logspace(-6, 4, 2001, dtype=torch.float64)
    x = torch.cat([-mags.flip(0), torch.zeros(1, dtype=torch.float64), mags]).to(dtype)
    rtol = 1e-12 if dtype == torch.float64 else 2e-6
    atol = 1e-15 if dtype == torch.float64 else 1e-9
    torch.testing.assert_close(
        vl.signed_parabolic(vl.signed_hyperbolic(x)), x, rtol=rtol, atol=atol
    )
    torch.testing.assert_close(
        vl.signed_hyperbolic(vl.signed_parabolic(x)), x, rtol=rtol, atol=atol
    )


def test_transform_gradients_match_derivative_formula():
    # h'(x) = 1 / (2 sqrt(|x| + 1)) + eps, including at x = 0; (h^-1)'(h(x)) = 1 / h'(x).
    x = t64([-100.0, -1.0, 0.0, 1e-7, 3.0, 1e4]).requires_grad_()
    vl.signed_hyperbolic(x).sum().backward()
    h_prime = [1 / (2 * math.sqrt(abs(v) + 1)) + 1e-3 for v in x.tolist()]
    torch.testing.assert_close(x.grad, t64(h_prime))
    y = vl.signed_hyperbolic(x.detach()).requires_grad_()
    vl.signed_parabolic(y).sum().backward()
    torch.testing.assert_close(y.grad, 1 / t64(h_prime))


def test_tx_pairs():
    x = t64([-5.0, 0.0, 2.0])
    assert vl.IDENTITY_PAIR.apply(x) is x and vl.IDENTITY_PAIR.apply_inv(x) is x
    assert vl.SIGNED_HYPERBOLIC_PAIR.apply is vl.signed_hyperbolic
    assert vl.SIGNED_HYPERBOLIC_PAIR.apply_inv is vl.signed_parabolic


# ---------------------------------------------------------------------------
# transformed_n_step_q_learning.
# ---------------------------------------------------------------------------


def test_transformed_n_step_q_learning_by_hand():
    # T = 2, B = 1, A = 2, n = 2, identity transform.
    q_tm1 = t64([[[1.0, 2.0]], [[3.0, 4.0]]])
    a_tm1 = tlong([[1], [0]])
    target_q_t = t64([[[5.0, 6.0]], [[7.0, 8.0]]])
    a_t = tlong([[0], [1]])  # bootstrap values v = [5, 8]
    r = t64([[1.0], [2.0]])
    d = t64([[0.5], [0.5]])
    td = vl.transformed_n_step_q_learning(q_tm1, a_tm1, target_q_t, a_t, r, d, n=2)
    # G_0 = 1 + 0.5 * 2 + 0.25 * 8 = 4, td_0 = 4 - q_tm1[0][1] = 4 - 2 = 2
    # G_1 = 2 + 0.5 * 8 = 6,            td_1 = 6 - q_tm1[1][0] = 6 - 3 = 3
    torch.testing.assert_close(td, t64([[2.0], [3.0]]))


def test_transformed_n_step_q_learning_hyperbolic_by_hand():
    # T = 1, n = 1: target = h(r + d * h^-1(v)). Pick v = h(3) = 1.003 so h^-1(v) = 3.
    q_tm1 = t64([[[0.5, 0.0]]])
    target_q_t = t64([[[0.0, 1.003]]])
    td = vl.transformed_n_step_q_learning(
        q_tm1,
        tlong([[0]]),
        target_q_t,
        tlong([[1]]),
        t64([[2.0]]),
        t64([[2.0]]),
        n=1,
        tx_pair=vl.SIGNED_HYPERBOLIC_PAIR,
    )
    # target = h(2 + 2 * 3) = h(8) = sqrt(9) - 1 + 0.008 = 2.008 ; td = 2.008 - 0.5
    torch.testing.assert_close(td, t64([[1.508]]))


@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("hyperbolic", [False, True])
def test_transformed_n_step_q_learning_matches_loop(n, hyperbolic):
    q_tm1, q_t, a_tm1, a_t, r, d, _, _ = random_sequence(20 + n)
    tx = vl.SIGNED_HYPERBOLIC_PAIR if hyperbolic else vl.IDENTITY_PAIR
    h = ref_h if hyperbolic else (lambda x: x)
    h_inv = ref_h_inv if hyperbolic else (lambda x: x)
    num_t, num_b = r.shape
    v_raw = np.array([[h_inv(q_t[t, b, a_t[t, b]]) for b in range(num_b)] for t in range(num_t)])
    g = ref_n_step_lambda1(r, d, v_raw, n)
    expected = np.array(
        [[h(g[t, b]) - q_tm1[t, b, a_tm1[t, b]] for b in range(num_b)] for t in range(num_t)]
    )
    td = vl.transformed_n_step_q_learning(
        t64(q_tm1), tlong(a_tm1), t64(q_t), tlong(a_t), t64(r), t64(d), n, tx_pair=tx
    )
    torch.testing.assert_close(td, t64(expected))


@pytest.mark.parametrize("stop", [True, False])
def test_transformed_n_step_q_learning_stop_gradient(stop):
    q_tm1, q_t, a_tm1, a_t, r, d, _, _ = random_sequence(4)
    q_tm1 = t64(q_tm1).requires_grad_()
    q_t = t64(q_t).requires_grad_()
    td = vl.transformed_n_step_q_learning(
        q_tm1, tlong(a_tm1), q_t, tlong(a_t), t64(r), t64(d), 3, stop, vl.SIGNED_HYPERBOLIC_PAIR
    )
    td.sum().backward()
    assert q_tm1.grad is not None and q_tm1.grad.abs().sum() > 0
    if stop:
        assert q_t.grad is None
    else:
        assert q_t.grad.abs().sum() > 0


# ---------------------------------------------------------------------------
# general_off_policy_returns_from_action_values, retrace, transformed_retrace.
# ---------------------------------------------------------------------------


def test_general_off_policy_returns_by_hand():
    # T = 2, B = 1, A = 2.
    q_t = t64([[[1.0, 3.0]], [[2.0, 4.0]]])
    a_t = tlong([[1], [0]])
    r = t64([[1.0], [1.0]])
    d = t64([[0.5], [0.5]])
    c = t64([[0.5], [0.9]])  # c at the last step is unused
    pi = t64([[[0.5, 0.5]], [[0.25, 0.75]]])
    g = vl.general_off_policy_returns_from_action_values(q_t, a_t, r, d, c, pi)
    # E_pi q = [0.5*1 + 0.5*3, 0.25*2 + 0.75*4] = [2, 3.5]
    # G_1 = 1 + 0.5 * 3.5 = 2.75
    # G_0 = 1 + 0.5 * (2 - 0.5 * q_t[0][1] + 0.5 * G_1) = 1 + 0.5 * (2 - 1.5 + 1.375) = 1.9375
    torch.testing.assert_close(g, t64([[1.9375], [2.75]]))


def test_general_off_policy_returns_random_matches_loop():
    _, q_t, _, a_t, r, d, pi, _ = random_sequence(5, num_t=7)
    c = np.random.default_rng(6).uniform(size=r.shape)
    g = vl.general_off_policy_returns_from_action_values(
        t64(q_t), tlong(a_t), t64(r), t64(d), t64(c), t64(pi)
    )
    torch.testing.assert_close(g, t64(ref_general_off_policy(q_t, a_t, r, d, c, pi)))


def test_retrace_by_hand():
    # T = 2, B = 1, A = 2, lambda = 0.8.
    q_tm1 = t64([[[0.0, 1.0]], [[2.0, 0.0]]])
    a_tm1 = tlong([[1], [0]])
    q_t = t64([[[1.0, 3.0]], [[2.0, 4.0]]])
    a_t = tlong([[1], [0]])
    r = t64([[1.0], [1.0]])
    d = t64([[0.5], [0.5]])
    pi = t64([[[0.5, 0.5]], [[0.25, 0.75]]])
    mu = t64([[0.25], [0.5]])
    td = vl.retrace(q_tm1, q_t, a_tm1, a_t, r, d, pi, mu, lambda_=0.8)
    # c_0 = 0.8 * min(1, 0.5 / 0.25) = 0.8 ; E_pi q = [2, 3.5]
    # G_1 = 1 + 0.5 * 3.5 = 2.75
    # G_0 = 1 + 0.5 * (2 - 0.8 * 3 + 0.8 * 2.75) = 1 + 0.5 * 1.8 = 1.9
    # td = [1.9 - q_tm1[0][1], 2.75 - q_tm1[1][0]] = [0.9, 0.75]
    torch.testing.assert_close(td, t64([[0.9], [0.75]]))


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_retrace_random_matches_loop(lam):
    q_tm1, q_t, a_tm1, a_t, r, d, pi, mu = random_sequence(30)
    td = vl.retrace(
        *map(t64, (q_tm1, q_t)), *map(tlong, (a_tm1, a_t)), t64(r), t64(d), t64(pi), t64(mu), lam
    )
    expected = ref_retrace_td(q_tm1, q_t, a_tm1, a_t, r, d, pi, mu, lam)
    torch.testing.assert_close(td, t64(expected))


def test_retrace_lambda_zero_on_policy_is_expected_sarsa():
    q_tm1, q_t, a_tm1, a_t, r, d, pi, _ = random_sequence(31)
    num_t, num_b = r.shape
    mu = np.array([[pi[t, b, a_t[t, b]] for b in range(num_b)] for t in range(num_t)])
    td = vl.retrace(
        t64(q_tm1), t64(q_t), tlong(a_tm1), tlong(a_t), t64(r), t64(d), t64(pi), t64(mu), 0.0
    )
    # c = 0 cuts every trace: target = r + discount * sum_a pi(a) q_t(a).
    expected = np.zeros((num_t, num_b))
    for t in range(num_t):
        for b in range(num_b):
            exp_q = sum(pi[t, b, a] * q_t[t, b, a] for a in range(q_t.shape[-1]))
            expected[t, b] = r[t, b] + d[t, b] * exp_q - q_tm1[t, b, a_tm1[t, b]]
    torch.testing.assert_close(td, t64(expected))


def test_retrace_episode_end_cuts_return():
    q_tm1, q_t, a_tm1, a_t, r, d, pi, mu = random_sequence(32)
    d[2, :] = 0.0
    args = [t64(q_tm1), t64(q_t), tlong(a_tm1), tlong(a_t), t64(r), t64(d), t64(pi), t64(mu)]
    td = vl.retrace(*args, lambda_=1.0)
    # Step 2 ends the episode: its target is just r_2.
    torch.testing.assert_close(
        td[2], t64(r[2] - np.take_along_axis(q_tm1[2], a_tm1[2, :, None], -1)[:, 0])
    )
    # Changing anything after the cut leaves the earlier TD errors alone.
    args[1] = args[1].clone()
    args[1][3:] += 100.0
    args[4] = args[4].clone()
    args[4][3:] -= 50.0
    td2 = vl.retrace(*args, lambda_=1.0)
    torch.testing.assert_close(td2[:3], td[:3])


@pytest.mark.parametrize("lam", [0.0, 0.9])
def test_transformed_retrace_matches_loop(lam):
    q_tm1, q_t, a_tm1, a_t, r, d, pi, mu = random_sequence(33)
    td = vl.transformed_retrace(
        t64(q_tm1), t64(q_t), tlong(a_tm1), tlong(a_t), t64(r), t64(d), t64(pi), t64(mu), lam
    )
    expected = ref_retrace_td(q_tm1, q_t, a_tm1, a_t, r, d, pi, mu, lam, ref_h, ref_h_inv)
    torch.testing.assert_close(td, t64(expected))


def test_transformed_retrace_identity_equals_retrace():
    args = random_sequence(34)
    targs = [t64(args[0]), t64(args[1]), tlong(args[2]), tlong(args[3])]
    targs += [t64(x) for x in args[4:]]
    td = vl.transformed_retrace(*targs, 0.7, tx_pair=vl.IDENTITY_PAIR)
    torch.testing.assert_close(td, vl.retrace(*targs, 0.7))


@pytest.mark.parametrize("fn", [vl.retrace, vl.transformed_retrace])
@pytest.mark.parametrize("stop", [True, False])
def test_retrace_stop_gradient(fn, stop):
    q_tm1, q_t, a_tm1, a_t, r, d, pi, mu = random_sequence(35)
    q_tm1 = t64(q_tm1).requires_grad_()
    q_t = t64(q_t).requires_grad_()
    pi = t64(pi).requires_grad_()
    td = fn(
        q_tm1,
        q_t,
        tlong(a_tm1),
        tlong(a_t),
        t64(r),
        t64(d),
        pi,
        t64(mu),
        0.9,
        stop_target_gradients=stop,
    )
    td.sum().backward()
    # Only the selected q_tm1 entries get gradient, each exactly -1.
    expected = -torch.nn.functional.one_hot(tlong(a_tm1), q_tm1.shape[-1]).to(torch.float64)
    torch.testing.assert_close(q_tm1.grad, expected)
    if stop:
        assert q_t.grad is None and pi.grad is None
    else:
        assert q_t.grad.abs().sum() > 0 and pi.grad.abs().sum() > 0


# ---------------------------------------------------------------------------
# huber_loss.
# ---------------------------------------------------------------------------


def test_huber_loss_by_hand():
    x = t64([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0])
    # |x| <= 1: 0.5 x^2 ; beyond: 1 * (|x| - 0.5)
    expected = t64([2.5, 0.5, 0.125, 0.0, 0.125, 1.5])
    torch.testing.assert_close(vl.huber_loss(x), expected)
    # delta = 2: 0.5 * 4 + 2 * (3 - 2) = 4 for x = 3 ; 0.5 * 1 = 0.5 for x = -1
    torch.testing.assert_close(vl.huber_loss(t64([3.0, -1.0]), delta=2.0), t64([4.0, 0.5]))


def test_huber_loss_gradient_is_clipped_error():
    x = t64([-3.0, -0.5, 0.25, 4.0]).requires_grad_()
    vl.huber_loss(x, delta=1.0).sum().backward()
    torch.testing.assert_close(x.grad, t64([-1.0, -0.5, 0.25, 1.0]))
