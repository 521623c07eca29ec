"""Policy-gradient losses, in PyTorch, following DeepMind's rlax.

Names, argument order and meaning match rlax. rlax takes a single sequence `[T]`;
here every leading dimension is treated as batch, so `[T]`, `[B]` and `[T, B]`
inputs all work, and each loss averages over all of them.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def _maybe_stop_gradient(x: Tensor, stop_gradient: bool) -> Tensor:
    """Returns `x` detached from the graph when `stop_gradient` is set."""
    return x.detach() if stop_gradient else x


def policy_gradient_loss(
    logits_t: Tensor,
    a_t: Tensor,
    adv_t: Tensor,
    w_t: Tensor,
    use_stop_gradient: bool = True,
) -> Tensor:
    """REINFORCE-style loss: -mean(w_t * log pi(a_t) * adv_t).

    Its gradient with respect to the logits is the (weighted) policy gradient.

    Args:
      logits_t: `[..., A]` unnormalised action preferences of a softmax policy.
      a_t: `[...]` int64 actions taken.
      adv_t: `[...]` advantages (or returns) of those actions.
      w_t: `[...]` per-element weights (e.g. masks or importance weights).
      use_stop_gradient: detach `adv_t`, so a learned baseline inside it is not
        pushed to change by this loss.

    Returns:
      Scalar loss, averaged over all leading dimensions.
    """
    log_pi = F.log_softmax(logits_t, dim=-1)
    log_pi_a_t = log_pi.gather(-1, a_t.long().unsqueeze(-1)).squeeze(-1)
    adv_t = _maybe_stop_gradient(adv_t, use_stop_gradient)
    return -torch.mean(w_t * log_pi_a_t * adv_t)


def entropy_loss(logits_t: Tensor, w_t: Tensor) -> Tensor:
    """Negated entropy of a softmax policy: -mean(w_t * H(pi_t)).

    Minimising it raises the entropy, which delays premature policy collapse.

    Args:
      logits_t: `[..., A]` unnormalised action preferences of a softmax policy.
      w_t: `[...]` per-element weights (e.g. masks).

    Returns:
      Scalar loss, averaged over all leading dimensions.
    """
    log_pi = F.log_softmax(logits_t, dim=-1)
    pi = torch.exp(log_pi)
    # Actions masked with -inf logits have pi = 0 and log pi = -inf; they add 0 to
    # the entropy. Zeroing log pi (not the product) keeps the gradient NaN-free too.
    log_pi = torch.where(pi > 0, log_pi, torch.zeros_like(log_pi))
    entropy = -(pi * log_pi).sum(dim=-1)
    return -torch.mean(w_t * entropy)


def clipped_surrogate_pg_loss(
    prob_ratios_t: Tensor,
    adv_t: Tensor,
    epsilon: float,
    use_stop_gradient: bool = True,
) -> Tensor:
    """PPO's clipped surrogate objective, negated (Schulman et al., 2017).

    -mean(min(rho_t adv_t, clip(rho_t, 1 - epsilon, 1 + epsilon) adv_t)): the
    minimum makes this a pessimistic bound, so moving the ratio beyond the clip
    range can never improve the objective, which limits the policy's step size.

    Args:
      prob_ratios_t: `[...]` ratios pi(a_t) / pi_old(a_t).
      adv_t: `[...]` advantages.
      epsilon: clip half-width around 1.
      use_stop_gradient: detach `adv_t`.

    Returns:
      Scalar loss, averaged over all leading dimensions.
    """
    adv_t = _maybe_stop_gradient(adv_t, use_stop_gradient)
    clipped_ratios_t = torch.clamp(prob_ratios_t, 1.0 - epsilon, 1.0 + epsilon)
    # fmin (not minimum) ignores a NaN in one branch, as rlax's jnp.fmin does.
    clipped_objective = torch.fmin(prob_ratios_t * adv_t, clipped_ratios_t * adv_t)
    return -torch.mean(clipped_objective)
