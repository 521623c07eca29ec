"""The torsos (networks/value.py) and their choice by observation shape: the MinAtar network of
Young & Tian (2019) for small multi-channel grids, the Nature DQN for Atari stacks, an MLP for
vectors, each overridable by --torso, with the LSTM size of the recurrent agents."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.agent57.agent import Agent57Config
from agents.agent57.agent import build_network as agent57_network
from agents.dqn.agent import DqnConfig
from agents.dqn.agent import build_network as dqn_network
from agents.ngu.agent import NguConfig
from agents.ngu.agent import build_network as ngu_network
from agents.r2d2.agent import R2d2Config
from agents.r2d2.agent import build_network as r2d2_network
from experiment.errors import ConfigError
from networks.intrinsic import EmbeddingNetwork, RndNetworks
from networks.recurrent import recurrent_network_for
from networks.value import (
    LayerStack,
    MinAtarTorso,
    MlpTorso,
    NatureConvTorso,
    choose_torso,
    q_network_for,
)

MINATAR = (4, 10, 10)  # Breakout's [C, H, W]
ATARI = (4, 84, 84)


def _layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


@pytest.mark.parametrize(
    ("shape", "torso"),
    [
        ((6,), "mlp"),
        (ATARI, "nature"),
        ((1, 84, 84), "nature"),
        ((3, 36, 36), "nature"),
        ((3, 35, 36), "minatar"),
        (MINATAR, "minatar"),
        ((2, 7, 10, 10), "minatar"),  # a stack of multi-channel frames
        ((1, 2, 40, 40), "nature"),
    ],
)
def test_auto_picks_the_torso_by_observation_shape(shape, torso):
    assert choose_torso("auto", shape) == torso


def test_a_torso_that_cannot_take_the_observation_is_one_line():
    for torso, shape, expected in [
        ("nature", MINATAR, "--torso=nature needs image observations of at least 36x36"),
        ("nature", (6,), "--torso=nature needs"),
        ("minatar", (6,), "--torso=minatar needs image observations"),
        ("convnet", MINATAR, "torso must be one of auto, nature, minatar, mlp, got 'convnet'"),
    ]:
        with pytest.raises(ConfigError, match=expected) as info:
            choose_torso(torso, shape)
        assert "\n" not in str(info.value)
    assert choose_torso("mlp", MINATAR) == "mlp"  # the MLP takes any shape, flattened
    assert choose_torso("minatar", ATARI) == "minatar"


def test_the_minatar_dqn_is_the_papers_conv16_fc128_outputs():
    network = q_network_for(MINATAR, 3)
    assert isinstance(network.torso, MinAtarTorso)
    (conv,) = _layers(network, nn.Conv2d)
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (
        4,
        16,
        (3, 3),
        (1, 1),
    )
    assert conv.padding == (0, 0)
    shapes = [(layer.in_features, layer.out_features) for layer in _layers(network, nn.Linear)]
    assert shapes == [(16 * 8 * 8, 128), (128, 3)]  # no hidden layer in the head
    assert sum(p.numel() for p in network.parameters()) == (
        4 * 16 * 9 + 16 + 1024 * 128 + 128 + 128 * 3 + 3
    )
    dueling = q_network_for(MINATAR, 3, dueling=True)
    shapes = [(layer.in_features, layer.out_features) for layer in _layers(dueling.head, nn.Linear)]
    assert shapes == [(128, 3), (128, 1)]  # advantage and value streams straight from fc 128


def test_the_nature_and_mlp_q_networks_are_unchanged():
    nature = q_network_for(ATARI, 6)
    assert isinstance(nature.torso, NatureConvTorso) and nature.torso.output_size == 3136
    assert [m.out_features for m in _layers(nature.head, nn.Linear)] == [512, 6]
    assert set(nature.state_dict()) >= {"head.advantage.0.weight", "head.advantage.2.weight"}
    mlp = q_network_for((6,), 2)
    assert isinstance(mlp.torso, MlpTorso)
    assert [m.out_features for m in _layers(mlp, nn.Linear)] == [128, 128, 128, 2]


def test_minatar_planes_enter_as_zeros_and_ones_and_stacks_as_channels():
    torso = MinAtarTorso(4, 10, 10)
    planes = torch.rand(2, *MINATAR) < 0.5
    expected = torso.layers(planes.float())  # no 1/255
    torch.testing.assert_close(torso(planes), expected)
    torch.testing.assert_close(torso(planes.to(torch.uint8)), expected)
    stacked = MinAtarTorso(8, 10, 10)
    assert stacked(torch.zeros(2, 2, *MINATAR, dtype=torch.bool)).shape == (2, 128)
    nature = NatureConvTorso(4)  # bool planes are not scaled by 1/255 either
    frames = torch.rand(2, *ATARI) < 0.5
    torch.testing.assert_close(nature(frames), nature.layers(frames.float()))


def test_the_agents_build_their_networks_with_the_torso_flag():
    assert isinstance(dqn_network(DqnConfig(), MINATAR, 3).torso, MinAtarTorso)
    assert isinstance(dqn_network(DqnConfig(torso="mlp"), MINATAR, 3).torso, MlpTorso)
    with pytest.raises(ConfigError, match="torso must be one of"):
        DqnConfig(torso="resnet")
    with pytest.raises(ConfigError, match="torso must be one of"):
        R2d2Config(torso="resnet")
    with pytest.raises(ConfigError, match="lstm_size"):
        R2d2Config(lstm_size=-1)
    with pytest.raises(ConfigError, match="--torso=nature needs"):
        r2d2_network(R2d2Config(torso="nature"), MINATAR, 3)


@pytest.mark.parametrize(
    ("shape", "lstm_size", "expected"),
    [(MINATAR, 0, 128), (ATARI, 0, 512), ((6,), 0, 64), (MINATAR, 48, 48)],
)
def test_the_lstm_size_defaults_to_the_torsos(shape, lstm_size, expected):
    network = r2d2_network(R2d2Config(lstm_size=lstm_size), shape, 3)
    assert network.lstm.hidden_size == expected and network.state_size == 2 * expected
    assert recurrent_network_for(shape, 3, lstm_size=lstm_size).lstm.hidden_size == expected


def test_the_recurrent_minatar_network_runs_on_bool_sequences():
    network = r2d2_network(R2d2Config(), MINATAR, 3)
    assert isinstance(network.torso, MinAtarTorso)
    inputs = {
        "observation": torch.rand(5, 2, *MINATAR) < 0.5,  # [T, B, C, H, W] bool
        "prev_action": torch.zeros(5, 2, dtype=torch.int64),
        "reward": torch.zeros(5, 2),
    }
    q, state = network(inputs, network.initial_state(2))
    assert q.shape == (5, 2, 3) and state.shape == (2, 256)


@pytest.mark.parametrize("build", [ngu_network, agent57_network], ids=["ngu", "agent57"])
def test_ngu_and_agent57_novelty_networks_use_the_same_torso(build):
    config = (NguConfig if build is ngu_network else Agent57Config)(num_policies=10)
    networks = build(config, MINATAR, 3)
    assert isinstance(networks.embedding.torso, MinAtarTorso)
    rnd = networks.rnd
    assert isinstance(rnd.target[0], MinAtarTorso) and isinstance(rnd.predictor[0], MinAtarTorso)
    lstm_sizes = [m.hidden_size for m in _layers(networks, nn.LSTM)]
    assert lstm_sizes in ([128], [128, 128])  # NGU: one Q-network; Agent57: a pair


def test_rnd_sees_the_whole_multi_channel_frame_and_the_newest_atari_screen():
    planes = torch.rand(3, *MINATAR) < 0.5
    rnd = RndNetworks(MINATAR)
    assert rnd.input_shape == MINATAR
    torch.testing.assert_close(rnd.frame(planes), planes.float())
    assert rnd.error(planes).shape == (3,)
    stacked = RndNetworks((2, *MINATAR))
    frames = torch.rand(3, 2, *MINATAR) < 0.5
    torch.testing.assert_close(stacked.frame(frames), frames[:, -1].float())
    atari = RndNetworks(ATARI)
    screens = torch.randint(0, 256, (3, *ATARI), dtype=torch.uint8)
    assert atari.input_shape == (1, 84, 84)
    torch.testing.assert_close(atari.frame(screens), screens[:, -1:].float())
    embedding = EmbeddingNetwork(MINATAR, 3)
    assert embedding(planes).shape == (3, 32)


@pytest.mark.parametrize("dueling", [False, True])
def test_the_layer_stacks_compute_and_name_parameters_as_nn_sequential(dueling):
    """The small networks run their layers without nn.Module.__call__ (speed): same outputs
    and gradients as nn.Sequential's, and the same parameter names, so checkpoints load."""
    torch.manual_seed(0)
    network = q_network_for(MINATAR, 3, dueling=dueling)
    assert "torso.layers.3.weight" in network.state_dict()  # nn.Sequential's numbering
    sequential = q_network_for(MINATAR, 3, dueling=dueling)
    for module in sequential.modules():
        if isinstance(module, LayerStack):
            module.forward = nn.Sequential.forward.__get__(module)
    sequential.load_state_dict(network.state_dict())
    planes = torch.rand(5, *MINATAR) < 0.3
    ours, theirs = network(planes), sequential(planes)
    assert torch.equal(ours, theirs)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for p, q in zip(network.parameters(), sequential.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)
