"""The shared learner step: gradient clipping against torch's own, statistics fetched with it."""

import copy
import math

import pytest
import torch

from agents.common.target_learner import TargetNetworkLearner, host_floats


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


def test_host_floats_gives_every_value_as_float_in_order():
    values = {
        "b": torch.tensor(0.1, dtype=torch.float32),
        "a": 2,
        "nan": torch.nan,
        "c": torch.tensor([3.5], dtype=torch.float64),
        "d": torch.tensor(-1.25, requires_grad=True) * 2,
    }
    floats = host_floats(values)
    assert list(floats) == ["b", "a", "nan", "c", "d"]
    assert floats["b"] == float(torch.tensor(0.1, dtype=torch.float32))  # exact, not 0.1
    assert floats["a"] == 2.0 and math.isnan(floats["nan"])
    assert floats["c"] == 3.5 and floats["d"] == -2.5
    assert all(type(v) is float for v in floats.values())
    assert host_floats({"x": 1}) == {"x": 1.0}
