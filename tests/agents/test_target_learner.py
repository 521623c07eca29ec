"""The shared learner step: gradient clipping against torch's own, statistics fetched with it."""

import copy

import pytest
import torch

from agents.common.target_learner import TargetNetworkLearner


class _Config:
    learning_rate, adam_eps, max_grad_norm, target_update_period = 1e-2, 1e-8, 1.0, 100


def _learner() -> TargetNetworkLearner:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    return TargetNetworkLearner(network, None, _Config(), torch.device("cpu"))


@pytest.mark.parametrize("scale", [1e-3, 1e3], ids=["under the limit", "over the limit"])
def test_a_step_moves_the_weights_as_clip_grad_norm_then_adam_would(scale):
    learner = _learner()
    reference = copy.deepcopy(learner.network)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-8)
    x = torch.randn(8, 3)

    norm = learner.apply_gradients(scale * learner.network(x).square().mean())

    (scale * reference(x).square().mean()).backward()
    expected_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
    reference_optimizer.step()
    assert norm == pytest.approx(float(expected_norm), rel=1e-6)
    assert (norm > 1.0) == (scale > 1)
    for p, q in zip(learner.network.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)  # clipped alike, or left alone alike
        torch.testing.assert_close(p, q)


def test_fetched_statistics_come_back_with_the_step():
    learner = _learner()
    loss = learner.network(torch.ones(2, 3)).square().mean()
    learner.apply_gradients(loss, fetch=(loss.detach().square(), torch.tensor(2.5)))
    assert learner.last_loss == pytest.approx(float(loss.detach()))
    assert learner.last_fetched == [pytest.approx(float(loss.detach()) ** 2), 2.5]
