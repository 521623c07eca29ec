"""MinAtar by its ids: MinAtar/<Game>-v0 and -v1 registered on first use (also in a spawned
process), observations [C, 10, 10] bool, coloured recordings, and one-line errors for an
unknown game or a missing minatar package (environments/minatar_games.py with gym_env's name
checks)."""

from __future__ import annotations

import multiprocessing
import sys

import gymnasium as gym
import numpy as np
import pytest
from cli_support import one_error_line, output_flags, run_module, subprocess_env, tiny_flags

import gym_env
from environments import minatar_games, observations
from gym_env import UnknownEnvironmentError

GAMES = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}  # C


def _one_line_error(call, *args) -> str:
    with pytest.raises(UnknownEnvironmentError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(("game", "channels"), GAMES.items())
def test_minatar_ids_give_channels_first_bool_observations(game, channels):
    spec = gym_env.EnvSpec(classic_name=f"MinAtar/{game}-v1")
    with spec.create(2, seed=0) as env:
        assert env.observation_shape == (channels, 10, 10)
        assert env.observation_dtype == np.bool_
        ts = env.reset()
        assert ts.observation.shape == (2, channels, 10, 10) and ts.observation.dtype == np.bool_
        assert ts.observation.any()  # the game's objects are on the planes
        ts = env.step(np.zeros(2, dtype=np.int64))
        assert ts.observation.dtype == np.bool_ and not ts.first.any()


def test_every_game_and_version_is_a_name_and_a_bare_game_still_means_atari():
    for game in GAMES:
        for version in (0, 1):
            gym_env.check_environment_name(f"MinAtar/{game}-v{version}")
    assert gym_env.is_atari_game("Breakout") and not gym_env.is_atari_game("MinAtar/Breakout-v1")
    assert sorted(minatar_games.registered_ids()) == sorted(
        f"MinAtar/{game}-v{v}" for game in GAMES for v in (0, 1)
    )
    with gym_env.EnvSpec(classic_name="MinAtar/Breakout-v0").create(1, seed=0) as env:
        assert env.num_actions == 6  # v0: all actions; v1: Breakout's minimal 3
    with gym_env.EnvSpec(classic_name="MinAtar/Breakout-v1").create(1, seed=0) as env:
        assert env.num_actions == 3


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("MinAtar/SpaceInvader-v1", "MinAtar/SpaceInvaders-v1"),
        ("minatar/breakout-v1", "MinAtar/Breakout-v1"),
        ("MinAtar/Breakout", "MinAtar/Breakout-v"),
        ("MinAtar/Pong-v1", None),  # no MinAtar game is close; never an Atari name
    ],
)
def test_an_unknown_minatar_game_suggests_among_the_minatar_ids(name, suggestion):
    message = _one_line_error(gym_env.check_environment_name, name)
    assert f"unknown environment {name!r}" in message
    assert "Asterix, Breakout, Freeway, Seaquest, SpaceInvaders" in message
    if suggestion is None:
        assert "did you mean" not in message
    else:
        assert f"did you mean '{suggestion}" in message


def test_a_missing_minatar_package_is_one_line(monkeypatch):
    for env_id in minatar_games.registered_ids():
        monkeypatch.delitem(gym.registry, env_id)
    monkeypatch.setitem(sys.modules, "minatar", None)  # `import minatar` now fails
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    for call in (gym_env.check_environment_name, gym_env.check_gymnasium_id):
        message = _one_line_error(call, "MinAtar/Breakout-v1")
        assert message == (
            "environment 'MinAtar/Breakout-v1' needs the minatar package: pip install minatar"
        )
    gym_env.check_environment_name("Breakout")  # Atari needs no minatar


def _shape_in_fresh_process(name: str) -> tuple[int, ...]:
    with gym_env.EnvSpec(classic_name=name).create(1, seed=0) as env:
        return env.observation_shape


def test_a_spawned_process_registers_minatar_itself():
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_shape_in_fresh_process, ("MinAtar/Seaquest-v1",)) == (10, 10, 10)


def test_recordings_colour_each_channel_at_320_pixels():
    with gym_env.EnvSpec(classic_name="MinAtar/Seaquest-v1").create(1, 0, render=True) as env:
        observation = env.reset().observation[0]
        frame = env.render()
    assert frame.shape == (320, 320, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, observations.channel_picture(observation))
    cells = frame[::32, ::32].reshape(-1, 3)
    drawn = {tuple(c) for c in cells} - {(0, 0, 0)}
    # Each channel present in some cell (and on top there) shows its own colour.
    highest = len(observation) - 1 - np.argmax(observation[::-1], axis=0)
    top = np.where(observation.any(0), highest, -1)
    expected = {tuple(observations.CHANNEL_COLOURS[c]) for c in np.unique(top[top >= 0])}
    assert drawn == expected and len(drawn) >= 2


# --------------------------------------------------------------------------------------
# The command lines' one-line errors
# --------------------------------------------------------------------------------------


def test_an_unknown_minatar_game_is_one_line_on_the_command_line(tmp_path):
    args = ["--environment_name=MinAtar/Breakuot-v1", *tiny_flags("dqn"), *output_flags(tmp_path)]
    line = one_error_line(run_module("dqn", "run_atari", args, timeout=60))
    assert "did you mean 'MinAtar/Breakout-v1'?" in line
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("module", ["run_atari", "eval_agent"])
def test_a_missing_minatar_package_is_one_line_on_the_command_line(tmp_path, module):
    # A module named minatar that fails to import, first on the path: as if it were missing.
    (tmp_path / "minatar.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'minatar'\", name='minatar')\n"
    )
    env = subprocess_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env.get('PYTHONPATH', '')}"
    args = ["--environment_name=MinAtar/Breakout-v1", f"--checkpoint_dir={tmp_path}"]
    line = one_error_line(run_module("r2d2", module, args, timeout=60, env=env))
    assert line == (
        "error: environment 'MinAtar/Breakout-v1' needs the minatar package: pip install minatar"
    )
