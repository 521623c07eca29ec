"""The shared learner step: gradient clipping against torch's own, the lean fused Adam step
against torch's, statistics fetched with it, and the average of the weights that a run
evaluates."""

import copy
import math

import pytest
import torch

from agents.common import target_learner
from agents.common.target_learner import (
    TargetNetworkLearner,
    check_evaluation_average_decay,
    host_floats,
    step_optimizer,
)
from experiment.errors import ConfigError


class _Config:
    learning_rate, adam_eps, max_grad_norm, target_update_period = 1e-2, 1e-8, 1.0, 100
    evaluation_average_decay = 0.0


def _learner(evaluation_average_decay: float = 0.0) -> TargetNetworkLearner:
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )
    config = _Config()
    config.evaluation_average_decay = evaluation_average_decay
    return TargetNetworkLearner(network, None, config, torch.device("cpu"))


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


def _train(learner: TargetNetworkLearner, steps: int, seed: int = 1) -> list[dict]:
    """`steps` updates on random data; the online weights after each (copies)."""
    generator = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(steps):
        x = torch.randn(8, 3, generator=generator)
        learner.apply_gradients(learner.network(x).square().mean())
        history.append({k: v.clone() for k, v in learner.network.state_dict().items()})
    return history


def test_without_decay_the_run_evaluates_the_online_network():
    learner = _learner()
    assert learner.evaluation_network is learner.network
    assert "evaluation_network" not in learner.state_dict()


def test_evaluation_weights_are_the_exponential_average_of_the_online_weights():
    decay = 0.9
    learner = _learner(decay)
    initial = {k: v.clone() for k, v in learner.network.state_dict().items()}
    history = _train(learner, 5)
    averaged = learner.evaluation_network.state_dict()
    for name, value in averaged.items():
        if not value.is_floating_point():
            continue
        if name.endswith(("running_mean", "running_var")):  # buffers: copied, not averaged
            torch.testing.assert_close(value, history[-1][name])
            continue
        # avg_n = d^n·θ_0 + Σ_k (1 − d)·d^(n−k)·θ_k, written out rather than iterated
        expected = decay**5 * initial[name] + sum(
            (1 - decay) * decay ** (5 - k) * history[k - 1][name] for k in range(1, 6)
        )
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(value, history[-1][name])  # it lags the online weights
    assert not any(p.requires_grad for p in learner.evaluation_network.parameters())


def test_the_average_resumes_exactly_from_a_checkpoint():
    learner = _learner(0.8)
    _train(learner, 3)
    resumed = _learner(0.8)
    resumed.load_state_dict(copy.deepcopy(learner.state_dict()))
    _train(learner, 2, seed=7)
    _train(resumed, 2, seed=7)
    for p, q in zip(
        learner.evaluation_network.state_dict().values(),
        resumed.evaluation_network.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_checkpoint_without_the_average_starts_it_from_the_online_weights():
    plain = _learner()
    _train(plain, 3)
    averaging = _learner(0.8)
    averaging.load_state_dict(copy.deepcopy(plain.state_dict()))
    for p, q in zip(
        averaging.evaluation_network.state_dict().values(),
        plain.network.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_evaluation_average_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ConfigError, match="evaluation_average_decay must be in"):
        check_evaluation_average_decay(decay)


def _two_group_adam(network: torch.nn.Module, fused: bool = True) -> torch.optim.Adam:
    first, last = network[0], network[-1]
    groups = [
        {"params": list(first.parameters()), "lr": 1e-2},
        {"params": list(last.parameters()), "lr": 3e-3, "weight_decay": 0.01},
    ]
    return torch.optim.Adam(groups, eps=1.5e-4, betas=(0.8, 0.99), fused=fused)


def _loss_of(network: torch.nn.Module, step: int) -> torch.Tensor:
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(step))
    return network(x).square().mean()


def test_the_lean_fused_adam_step_is_bitwise_torchs_own_and_skips_optimizer_step(monkeypatch):
    """Two groups (own learning rates, one with weight decay), resumed from a checkpoint
    half-way: every weight and moment equals torch's Adam.step() bit for bit."""
    network = _learner().network
    reference = copy.deepcopy(network)
    optimizer, reference_optimizer = _two_group_adam(network), _two_group_adam(reference)
    calls_of_torchs_step = []
    for step in range(12):
        if step == 6:  # a resume: the moments are new tensors, loaded from a state dict
            saved = copy.deepcopy(optimizer.state_dict())
            optimizer = _two_group_adam(network)
            optimizer.load_state_dict(saved)
            monkeypatch.setattr(optimizer, "step", lambda: calls_of_torchs_step.append(1))
        for net, opt, take_step in (
            (network, optimizer, step_optimizer),
            (reference, reference_optimizer, torch.optim.Adam.step),
        ):
            opt.zero_grad(set_to_none=True)
            _loss_of(net, step).backward()
            take_step(opt)
    assert calls_of_torchs_step == []  # the state existed: torch's step was never called
    for p, q in zip(network.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    trained = [
        (p, q)
        for g, h in zip(optimizer.param_groups, reference_optimizer.param_groups, strict=True)
        for p, q in zip(g["params"], h["params"], strict=True)
    ]
    assert len(trained) == 4
    for p, q in trained:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(optimizer.state[p][key], reference_optimizer.state[q][key])


def test_adam_without_state_or_fusion_goes_through_torchs_step(monkeypatch):
    for fused, warm in ((True, False), (False, True)):
        optimizer = _two_group_adam(_learner().network, fused=fused)
        network = optimizer.param_groups[0]["params"]
        if warm:
            optimizer.step()
        calls = []
        monkeypatch.setattr(optimizer, "step", lambda calls=calls: calls.append(1))
        sum(p.sum() for p in network).backward()
        step_optimizer(optimizer)
        assert calls == [1], (fused, warm)


def test_the_total_gradient_norm_is_bitwise_torchs_get_total_norm():
    torch.manual_seed(0)
    grads = [torch.randn(128, 400), torch.randn(128), torch.randn(3, 128) * 1e3]
    expected = torch.nn.utils.get_total_norm(grads)
    assert torch.equal(target_learner._total_norm(grads), expected)
    mixed = [grads[0], grads[1].double()]  # two dtypes: torch's own grouping
    assert torch.equal(target_learner._total_norm(mixed), torch.nn.utils.get_total_norm(mixed))
