"""Value-learning targets and TD errors, in PyTorch, following DeepMind's rlax.

Names, argument order and meaning match rlax. Two conventions differ, because rlax
works on single examples and relies on `vmap`:

* per-transition functions take a leading batch dimension: `[B, ...]`;
* sequence functions are time-major with a batch dimension: `[T, B, ...]`.
  Time is always axis 0 and actions always the last axis, so any other trailing
  batch shape (including none) works as well.

As in rlax, a quantity at index `t` of an `_t` sequence belongs to time `t + 1`
relative to the matching `_tm1` entry: `r_t[t]` and `discount_t[t]` are received on
the transition out of the state where `q_tm1[t]` was computed, into the state where
`q_t[t]` was computed.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------


def _batched_index(values: Tensor, indices: Tensor) -> Tensor:
    """Selects `values[..., indices[...]]` along the last axis.

    Args:
      values: `[..., A]` values per action.
      indices: `[...]` integer action indices.

    Returns:
      `[...]` the selected values.
    """
    # `gather` needs int64 indices; accepting int32 saves callers a cast.
    return values.gather(-1, indices.long().unsqueeze(-1)).squeeze(-1)


def _maybe_stop_gradient(x: Tensor, stop_gradient: bool) -> Tensor:
    """Returns `x` detached from the graph when `stop_gradient` is set."""
    return x.detach() if stop_gradient else x


# ---------------------------------------------------------------------------
# Value transforms (R2D2's h and h^-1).
# ---------------------------------------------------------------------------


def signed_hyperbolic(x: Tensor, eps: float = 1e-3) -> Tensor:
    """R2D2's value rescaling h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x.

    Squashes large returns roughly to their square root, so one network can fit
    both small and large reward scales; the `eps x` term keeps h invertible with a
    Lipschitz inverse (Pohlen et al., 2018).

    We evaluate the algebraically equal x / (sqrt(|x| + 1) + 1) + eps x: the
    direct form subtracts nearly equal numbers for small |x| and loses most of
    its digits in float32 (and its autograd slope at 0 would be eps, not 0.5 + eps).

    Args:
      x: any-shape tensor.
      eps: the small linear term's coefficient.

    Returns:
      h(x), same shape as `x`.
    """
    return x * (1 / (torch.sqrt(torch.abs(x) + 1) + 1) + eps)


def signed_parabolic(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Exact inverse of `signed_hyperbolic`: h^-1(x).

    Writing s = sqrt(|h^-1(x)| + 1), h^-1 is the positive root of the quadratic
    eps s^2 + s - (1 + eps + |x|) = 0, and h^-1(x) = sign(x)(s^2 - 1). The
    textbook root (sqrt(1 + 4 eps (1 + eps + |x|)) - 1) / (2 eps) - 1 cancels
    catastrophically for small |x| in float32, so we use the algebraically equal
    form s - 1 = 2|x| / (1 + 2 eps + sqrt(1 + 4 eps (1 + eps + |x|))), which has
    no subtraction of nearly equal numbers, and s^2 - 1 = (s - 1)(s - 1 + 2).

    Args:
      x: any-shape tensor (in h-space).
      eps: must equal the `eps` used by `signed_hyperbolic`.

    Returns:
      h^-1(x), same shape as `x`.
    """
    abs_x = torch.abs(x)
    # s - 1 = |x| * scale; multiplying x (not |x|) by it restores the sign.
    scale = 2 / (1 + 2 * eps + torch.sqrt(1 + 4 * eps * (1 + eps + abs_x)))
    return x * scale * (abs_x * scale + 2)


class TxPair(NamedTuple):
    """A value transform and its inverse, applied around bootstrapped targets."""

    apply: Callable[[Tensor], Tensor]
    apply_inv: Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


IDENTITY_PAIR = TxPair(_identity, _identity)
SIGNED_HYPERBOLIC_PAIR = TxPair(signed_hyperbolic, signed_parabolic)


# ---------------------------------------------------------------------------
# One-step TD errors on a batch of transitions.
# ---------------------------------------------------------------------------


def q_learning(
    q_tm1: Tensor,
    a_tm1: Tensor,
    r_t: Tensor,
    discount_t: Tensor,
    q_t: Tensor,
    stop_target_gradients: bool = True,
) -> Tensor:
    """Q-learning TD error: r_t + discount_t * max_a q_t[a] - q_tm1[a_tm1].

    Args:
      q_tm1: `[B, A]` Q-values at the first state.
      a_tm1: `[B]` int64 actions taken at the first state.
      r_t: `[B]` rewards received on the transition.
      discount_t: `[B]` discounts (0 at episode ends) on the transition.
      q_t: `[B, A]` Q-values at the second state (usually the target network's).
      stop_target_gradients: detach the target, so only `q_tm1` gets gradients.

    Returns:
      `[B]` TD errors (target minus prediction).
    """
    target_tm1 = r_t + discount_t * q_t.max(dim=-1).values
    target_tm1 = _maybe_stop_gradient(target_tm1, stop_target_gradients)
    return target_tm1 - _batched_index(q_tm1, a_tm1)


def double_q_learning(
    q_tm1: Tensor,
    a_tm1: Tensor,
    r_t: Tensor,
    discount_t: Tensor,
    q_t_value: Tensor,
    q_t_selector: Tensor,
    stop_target_gradients: bool = True,
) -> Tensor:
    """Double Q-learning TD error (van Hasselt et al., 2016).

    One network picks the bootstrap action and another evaluates it, which
    removes the max operator's overestimation bias:
    target = r_t + discount_t * q_t_value[argmax_a q_t_selector[a]].

    Args:
      q_tm1: `[B, A]` Q-values at the first state.
      a_tm1: `[B]` int64 actions taken at the first state.
      r_t: `[B]` rewards.
      discount_t: `[B]` discounts (0 at episode ends).
      q_t_value: `[B, A]` Q-values at the second state used to evaluate the
        bootstrap action (usually the target network's).
      q_t_selector: `[B, A]` Q-values at the second state used to select the
        bootstrap action (usually the online network's). Ties go to the lowest
        index, as `argmax` does.
      stop_target_gradients: detach the target, so only `q_tm1` gets gradients.

    Returns:
      `[B]` TD errors (target minus prediction).
    """
    best_action = q_t_selector.argmax(dim=-1)
    target_tm1 = r_t + discount_t * _batched_index(q_t_value, best_action)
    target_tm1 = _maybe_stop_gradient(target_tm1, stop_target_gradients)
    return target_tm1 - _batched_index(q_tm1, a_tm1)


# ---------------------------------------------------------------------------
# Multi-step returns on time-major sequences.
# ---------------------------------------------------------------------------


def n_step_bootstrapped_returns(
    r_t: Tensor,
    discount_t: Tensor,
    v_t: Tensor,
    n: int,
    lambda_t: float | Tensor = 1.0,
    stop_target_gradients: bool = True,
) -> Tensor:
    """Truncated n-step (optionally lambda-mixed) bootstrapped returns.

    Each return is the recursion below iterated `n` times, starting from the
    value `n` steps ahead:

        G_t = r_t + discount_t * ((1 - lambda_t) v_t + lambda_t G_{t+1}).

    With lambda_t = 1 this is r_t + g_t r_{t+1} + ... + g_t...g_{t+n-1} v_{t+n-1}.
    Near the end of the sequence, where fewer than `n` steps remain, the return
    takes the remaining rewards and bootstraps from the last value `v_t[-1]`.

    Args:
      r_t: `[T, B]` rewards.
      discount_t: `[T, B]` discounts (0 at episode ends, which cut the return).
      v_t: `[T, B]` values to bootstrap from, at the state each reward leads to.
      n: number of rewards to accumulate before bootstrapping (n >= 1).
      lambda_t: scalar or `[T, B]` mixing between bootstrapping and continuing.
      stop_target_gradients: detach the returns. (rlax defaults this to False
        here; we default to True like every other target builder in this file.)

    Returns:
      `[T, B]` returns; entry t is the target for the state before `r_t[t]`.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seq_len = r_t.shape[0]
    lambda_t = torch.ones_like(discount_t) * lambda_t

    # Append n - 1 virtual steps (reward 0, discount 1, lambda 1, value v_t[-1]).
    # They pass the bootstrap value through unchanged, which truncates the returns
    # near the end at v_t[-1] while keeping a single vectorised recursion.
    def pad(x: Tensor, fill: Tensor) -> Tensor:
        return torch.cat([x, fill.expand(n - 1, *x.shape[1:])])

    r = pad(r_t, torch.zeros_like(r_t[-1:]))
    discount = pad(discount_t, torch.ones_like(discount_t[-1:]))
    lambda_ = pad(lambda_t, torch.ones_like(lambda_t[-1:]))
    v = pad(v_t, v_t[-1:])

    # Row t of the window starting at i holds time t + i; unroll n steps backwards.
    returns = v[n - 1 : n - 1 + seq_len]
    for i in reversed(range(n)):
        window = slice(i, i + seq_len)
        bootstrap = (1 - lambda_[window]) * v[window] + lambda_[window] * returns
        returns = r[window] + discount[window] * bootstrap
    return _maybe_stop_gradient(returns, stop_target_gradients)


def transformed_n_step_q_learning(
    q_tm1: Tensor,
    a_tm1: Tensor,
    target_q_t: Tensor,
    a_t: Tensor,
    r_t: Tensor,
    discount_t: Tensor,
    n: int,
    stop_target_gradients: bool = True,
    tx_pair: TxPair = IDENTITY_PAIR,
) -> Tensor:
    """n-step Q-learning TD errors in a transformed value space (R2D2).

    The network predicts h(Q). Rewards live in the untransformed space, so the
    bootstrap values are mapped back with h^-1, the n-step return is formed, and
    the result is mapped forward with h:

        target = h(n_step_return(r, discount, h^-1(target_q_t[a_t]))).

    For R2D2, pass `tx_pair=SIGNED_HYPERBOLIC_PAIR` and `a_t` = argmax of the
    online network at s_t (double Q-learning).

    Args:
      q_tm1: `[T, B, A]` Q-values (in h-space) at the states where `a_tm1` was taken.
      a_tm1: `[T, B]` int64 actions taken.
      target_q_t: `[T, B, A]` target-network Q-values (in h-space) at the next states.
      a_t: `[T, B]` int64 actions at which `target_q_t` is evaluated.
      r_t: `[T, B]` rewards.
      discount_t: `[T, B]` discounts (0 at episode ends).
      n: number of steps before bootstrapping.
      stop_target_gradients: detach the target.
      tx_pair: the transform h and its inverse.

    Returns:
      `[T, B]` TD errors (target minus prediction), in h-space.
    """
    v_t = _batched_index(target_q_t, a_t)
    target_tm1 = n_step_bootstrapped_returns(
        r_t, discount_t, tx_pair.apply_inv(v_t), n, stop_target_gradients=stop_target_gradients
    )
    return tx_pair.apply(target_tm1) - _batched_index(q_tm1, a_tm1)


def general_off_policy_returns_from_action_values(
    q_t: Tensor,
    a_t: Tensor,
    r_t: Tensor,
    discount_t: Tensor,
    c_t: Tensor,
    pi_t: Tensor,
    stop_target_gradients: bool = True,
) -> Tensor:
    """Off-policy returns with per-step trace coefficients (Munos et al., 2016).

    Computed backwards from the end of the sequence:

        G_{T-1} = r_{T-1} + discount_{T-1} E_pi q_{T-1},
        G_t = r_t + discount_t (E_pi q_t - c_t q_t[a_t] + c_t G_{t+1}).

    The choice of c_t gives importance sampling (pi/mu), Q(lambda) (lambda),
    Tree-Backup (pi(a_t)) or Retrace (lambda min(1, pi/mu)). The last step always
    bootstraps from E_pi q, so `a_t[-1]` and `c_t[-1]` are unused.

    Args:
      q_t: `[T, B, A]` Q-values at the next states.
      a_t: `[T, B]` int64 actions the behaviour policy took at the next states.
      r_t: `[T, B]` rewards.
      discount_t: `[T, B]` discounts (0 at episode ends).
      c_t: `[T, B]` trace coefficients for `a_t`.
      pi_t: `[T, B, A]` target-policy probabilities at the next states.
      stop_target_gradients: detach the returns. (rlax defaults this to False
        here; we default to True like every other target builder in this file.)

    Returns:
      `[T, B]` returns; entry t is the target for the state before `r_t[t]`.
    """
    exp_q_t = (pi_t * q_t).sum(dim=-1)
    q_a_t = _batched_index(q_t, a_t)
    g = r_t[-1] + discount_t[-1] * exp_q_t[-1]
    returns = [g]
    for t in reversed(range(r_t.shape[0] - 1)):
        g = r_t[t] + discount_t[t] * (exp_q_t[t] - c_t[t] * q_a_t[t] + c_t[t] * g)
        returns.append(g)
    returns = torch.stack(returns[::-1])
    return _maybe_stop_gradient(returns, stop_target_gradients)


def transformed_retrace(
    q_tm1: Tensor,
    q_t: Tensor,
    a_tm1: Tensor,
    a_t: Tensor,
    r_t: Tensor,
    discount_t: Tensor,
    pi_t: Tensor,
    mu_t: Tensor,
    lambda_: float,
    eps: float = 1e-8,
    stop_target_gradients: bool = True,
    tx_pair: TxPair = SIGNED_HYPERBOLIC_PAIR,
) -> Tensor:
    """Retrace TD errors in a transformed value space (as used by Agent57).

    Q-values are mapped back to reward space with h^-1, the Retrace return is
    formed there, and mapped forward with h. Traces are
    c_t = lambda_ min(1, pi_t[a_t] / mu_t), which keeps the update safe for any
    behaviour policy while cutting traces only where pi and mu disagree.

    Args:
      q_tm1: `[T, B, A]` Q-values (in h-space) at the states where `a_tm1` was taken.
      q_t: `[T, B, A]` Q-values (in h-space) at the next states (target network).
      a_tm1: `[T, B]` int64 actions taken.
      a_t: `[T, B]` int64 actions the behaviour policy took at the next states.
      r_t: `[T, B]` rewards.
      discount_t: `[T, B]` discounts (0 at episode ends).
      pi_t: `[T, B, A]` target-policy probabilities at the next states.
      mu_t: `[T, B]` behaviour-policy probabilities of `a_t`.
      lambda_: trace decay.
      eps: added to `mu_t` to avoid dividing by zero.
      stop_target_gradients: detach the target.
      tx_pair: the transform h and its inverse. (rlax defaults to the identity.)

    Returns:
      `[T, B]` TD errors (target minus prediction), in h-space.
    """
    pi_a_t = _batched_index(pi_t, a_t)
    c_t = torch.clamp(pi_a_t / (mu_t + eps), max=1.0) * lambda_
    target_tm1 = general_off_policy_returns_from_action_values(
        tx_pair.apply_inv(q_t),
        a_t,
        r_t,
        discount_t,
        c_t,
        pi_t,
        stop_target_gradients=stop_target_gradients,
    )
    return tx_pair.apply(target_tm1) - _batched_index(q_tm1, a_tm1)


def retrace(
    q_tm1: Tensor,
    q_t: Tensor,
    a_tm1: Tensor,
    a_t: Tensor,
    r_t: Tensor,
    discount_t: Tensor,
    pi_t: Tensor,
    mu_t: Tensor,
    lambda_: float,
    eps: float = 1e-8,
    stop_target_gradients: bool = True,
) -> Tensor:
    """Retrace TD errors (Munos et al., 2016): `transformed_retrace` with no transform.

    Traces are c_t = lambda_ min(1, pi_t[a_t] / mu_t); see
    `general_off_policy_returns_from_action_values` for the return.

    Args:
      q_tm1: `[T, B, A]` Q-values at the states where `a_tm1` was taken.
      q_t: `[T, B, A]` Q-values at the next states (target network).
      a_tm1: `[T, B]` int64 actions taken.
      a_t: `[T, B]` int64 actions the behaviour policy took at the next states.
      r_t: `[T, B]` rewards.
      discount_t: `[T, B]` discounts (0 at episode ends).
      pi_t: `[T, B, A]` target-policy probabilities at the next states.
      mu_t: `[T, B]` behaviour-policy probabilities of `a_t`.
      lambda_: trace decay.
      eps: added to `mu_t` to avoid dividing by zero.
      stop_target_gradients: detach the target.

    Returns:
      `[T, B]` TD errors (target minus prediction).
    """
    return transformed_retrace(
        q_tm1,
        q_t,
        a_tm1,
        a_t,
        r_t,
        discount_t,
        pi_t,
        mu_t,
        lambda_,
        eps=eps,
        stop_target_gradients=stop_target_gradients,
        tx_pair=IDENTITY_PAIR,
    )


# ---------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------


def huber_loss(x: Tensor, delta: float = 1.0) -> Tensor:
    """Elementwise Huber loss: 0.5 x^2 for |x| <= delta, delta (|x| - 0.5 delta) beyond.

    Its gradient is x clipped to [-delta, delta], which is why DQN uses it: large
    TD errors cannot produce large updates.

    Args:
      x: any-shape tensor, typically TD errors.
      delta: where the loss switches from quadratic to linear.

    Returns:
      The loss, same shape as `x`.
    """
    # torch's kernel computes the same piecewise formula in one op (and one backward op),
    # instead of six small ones: it matters on small networks.
    return torch.nn.functional.huber_loss(x, torch.zeros_like(x), reduction="none", delta=delta)
