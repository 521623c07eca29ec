"""Tests for gym_env: name validation, the TimeStep adapter, Atari (C++ and Python render
paths) and classic control environments."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import gym_env
from environments import observations
from gym_env import (
    AtariConfig,
    EnvironmentBatch,
    EnvSpec,
    TimeStep,
    UnknownEnvironmentError,
    atari_game_names,
    create_atari_environment,
    create_classic_environment,
    validate_atari_game,
)


def _random_actions(rng: np.random.Generator, env: EnvironmentBatch) -> np.ndarray:
    return rng.integers(0, env.num_actions, size=env.num_envs)


def _assert_timestep_layout(ts: TimeStep, env: EnvironmentBatch) -> None:
    e = env.num_envs
    assert ts.observation.shape == (e, *env.observation_shape)
    assert ts.observation.dtype == env.observation_dtype
    for field in ("reward", "raw_reward", "discount"):
        value = getattr(ts, field)
        assert value.shape == (e,) and value.dtype == np.float32, field
    for field in ("first", "last", "life_loss"):
        value = getattr(ts, field)
        assert value.shape == (e,) and value.dtype == np.bool_, field


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def test_atari_game_names_sorted_and_contains_common_games():
    names = atari_game_names()
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for game in ("Pong", "Breakout", "MontezumaRevenge", "SpaceInvaders", "MsPacman"):
        assert game in names


@pytest.mark.parametrize(
    ("game", "rom_id"),
    [("Pong", "pong"), ("MontezumaRevenge", "montezuma_revenge"), ("Breakout", "breakout")],
)
def test_validate_atari_game_accepts_camel_case(game, rom_id):
    assert validate_atari_game(game) == rom_id


def test_validate_atari_game_rejects_typo_with_one_line_hint():
    with pytest.raises(UnknownEnvironmentError) as info:
        validate_atari_game("Pongg")
    message = str(info.value)
    assert "\n" not in message
    assert "'Pongg'" in message
    assert "did you mean 'Pong'" in message
    assert "python -m gym_env --list" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("game", ["pong", "montezuma_revenge", "ALE/Pong-v5", "Qwertyuiop"])
def test_validate_atari_game_rejects_non_camel_case_names(game):
    with pytest.raises(UnknownEnvironmentError, match="--list"):
        validate_atari_game(game)


def test_create_atari_environment_rejects_unknown_game():
    with pytest.raises(UnknownEnvironmentError):
        create_atari_environment(AtariConfig("Pongg"), 1, 0)


def test_cli_list_prints_every_name():
    result = subprocess.run(
        [sys.executable, "-m", "gym_env", "--list"], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == atari_game_names()


# --------------------------------------------------------------------------------------
# The adapter, driven by a scripted fake VectorEnv (exact control over done flags)
# --------------------------------------------------------------------------------------


class _ScriptedVectorEnv(gym.vector.VectorEnv):
    """One env; each step returns the next scripted (reward, terminated, truncated, lives).

    Follows NEXT_STEP autoreset: the step after a done resets (reward 0, flags False) and
    does not consume the script.
    """

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, script, start_lives=3):
        self.num_envs = 1
        self.single_observation_space = gym.spaces.Box(0, 255, (2,), np.uint8)
        self.single_action_space = gym.spaces.Discrete(3)
        self._script = list(script)
        self._start_lives = start_lives
        self._lives = start_lives
        self._done = False
        self._t = 0
        self.reset_seeds = []
        self.actions = []

    def reset(self, *, seed=None, options=None):
        self.reset_seeds.append(seed)
        self._lives = self._start_lives
        self._done = False
        return np.zeros((1, 2), np.uint8), {"lives": np.array([self._lives])}

    def step(self, actions):
        self.actions.append(actions.copy())
        self._t += 1
        obs = np.full((1, 2), self._t % 256, np.uint8)
        if self._done:
            self._done = False
            self._lives = self._start_lives
            info = {"lives": np.array([self._lives])}
            return obs, np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), info
        reward, terminated, truncated, lives = self._script.pop(0)
        self._lives = lives
        self._done = terminated or truncated
        info = {"lives": np.array([lives])}
        return obs, np.array([reward]), np.array([terminated]), np.array([truncated]), info

    def close(self, **kwargs):
        pass


def _run_script(script, **kwargs):
    env = EnvironmentBatch(_ScriptedVectorEnv(script), seed=7, **kwargs)
    steps = [env.reset()]
    for _ in range(len(script) + sum(1 for s in script if s[1] or s[2])):
        steps.append(env.step(np.zeros(1, np.int64)))
    return env, steps


def test_adapter_clips_reward_but_keeps_raw_reward():
    script = [(5.0, False, False, 3), (-3.0, False, False, 3), (0.5, False, False, 3)]
    _, steps = _run_script(script, clip_rewards=True)
    np.testing.assert_array_equal([s.raw_reward[0] for s in steps], [0.0, 5.0, -3.0, 0.5])
    np.testing.assert_array_equal([s.reward[0] for s in steps], [0.0, 1.0, -1.0, 0.5])
    _, unclipped = _run_script(script, clip_rewards=False)
    np.testing.assert_array_equal([s.reward[0] for s in unclipped], [0.0, 5.0, -3.0, 0.5])


def test_adapter_game_over_then_first():
    script = [(1.0, False, False, 3), (2.0, True, False, 0), (0.0, False, False, 3)]
    _, steps = _run_script(script)
    reset, mid, over, restart, after = steps
    assert reset.first[0] and not reset.last[0]
    assert not mid.first[0] and not mid.last[0] and mid.discount[0] == 1.0
    assert over.last[0] and over.discount[0] == 0.0 and not over.first[0]
    # The step after a game over starts a new game: first, zero reward, no life loss.
    assert restart.first[0] and not restart.last[0]
    assert restart.reward[0] == 0.0 and restart.raw_reward[0] == 0.0
    assert restart.discount[0] == 1.0 and not restart.life_loss[0]
    assert not after.first[0]


def test_adapter_truncation_keeps_discount_one():
    script = [(0.0, False, False, 3), (0.0, False, True, 3), (0.0, False, False, 3)]
    _, steps = _run_script(script)
    truncated, restart = steps[2], steps[3]
    assert truncated.last[0] and truncated.discount[0] == 1.0
    assert restart.first[0]


def test_adapter_time_limit_is_terminal_ends_bootstrapping_at_truncation_only():
    script = [(0.0, False, False, 3), (0.0, False, True, 3), (0.0, False, False, 3)]
    _, steps = _run_script(script, time_limit_is_terminal=True)
    assert [s.discount[0] for s in steps] == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert steps[2].last[0] and steps[3].first[0]


def test_spec_time_limit_is_terminal_reaches_the_environment_and_the_checkpoint():
    spec = EnvSpec(classic_name="toy_envs:DeceptiveCorridor-v0", time_limit_is_terminal=True)
    env = spec.create(1, seed=0)
    step = env.reset()
    while not step.last[0]:  # No-ops until the time limit.
        step = env.step(np.array([4]))
    env.close()
    assert step.discount[0] == 0.0
    restored = EnvSpec.from_checkpoint_state(spec.checkpoint_state())
    assert restored.time_limit_is_terminal
    old = spec.checkpoint_state()
    del old["gymnasium"]["time_limit_is_terminal"]  # Checkpoints from before the setting.
    assert not EnvSpec.from_checkpoint_state(old).time_limit_is_terminal


def test_adapter_life_loss_and_terminal_on_life_loss():
    script = [(0.0, False, False, 3), (0.0, False, False, 2), (0.0, False, False, 2)]
    _, steps = _run_script(script)
    assert [bool(s.life_loss[0]) for s in steps] == [False, False, True, False]
    assert steps[2].discount[0] == 1.0 and not steps[2].last[0]

    _, steps = _run_script(script, terminal_on_life_loss=True)
    assert steps[2].life_loss[0] and steps[2].discount[0] == 0.0
    # The game goes on: no last, no first on the following step.
    assert not steps[2].last[0] and not steps[3].first[0] and steps[3].discount[0] == 1.0


def test_adapter_no_life_loss_when_new_game_starts_with_fewer_lives():
    # E.g. a game that awards extra lives: 4 lives at the time limit, 3 in the new game.
    script = [(0.0, False, False, 4), (0.0, False, True, 4), (0.0, False, False, 3)]
    _, steps = _run_script(script)
    assert not any(s.life_loss[0] for s in steps)
    assert steps[3].first[0]


def test_adapter_seeds_first_reset_only_and_validates_actions():
    env = EnvironmentBatch(_ScriptedVectorEnv([(0.0, False, False, 3)] * 3), seed=11)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1, np.int64))
    env.reset()
    env.reset()
    assert env._env.reset_seeds == [11, None]
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="integer"):
        env.step(np.zeros(1, np.float32))
    env.step(np.array([2], np.int32))
    assert env._env.actions[-1].dtype == np.int64 and env._env.actions[-1][0] == 2
    with pytest.raises(RuntimeError, match="render=True"):
        env.render()
    with env:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        env.step(np.zeros(1, np.int64))


# --------------------------------------------------------------------------------------
# Atari, C++ AtariVectorEnv path
# --------------------------------------------------------------------------------------


def test_atari_shapes_dtypes_and_first_on_reset():
    with create_atari_environment(AtariConfig("Pong"), num_envs=3, seed=0) as env:
        assert env.num_envs == 3
        assert env.observation_shape == (4, 84, 84)
        assert env.observation_dtype == np.uint8
        assert env.num_actions == 6
        ts = env.reset()
        _assert_timestep_layout(ts, env)
        assert ts.first.all() and not ts.last.any()
        assert (ts.discount == 1.0).all() and (ts.reward == 0.0).all()
        ts = env.step(np.zeros(3, np.int64))
        _assert_timestep_layout(ts, env)
        assert not ts.first.any()
        with pytest.raises(RuntimeError, match="render=True"):
            env.render()


def test_num_threads_default_is_one_per_core_at_most_num_envs():
    assert gym_env._resolve_num_threads(0, 1) == 1
    assert gym_env._resolve_num_threads(3, 8) == 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert gym_env._resolve_num_threads(0, 1024) == cores


def test_atari_config_is_plumbed_through():
    config = AtariConfig("Breakout", frame_stack=2, screen_size=42, full_action_space=True)
    with create_atari_environment(config, num_envs=1, seed=0) as env:
        assert env.observation_shape == (2, 42, 42)
        assert env.num_actions == 18
        assert env.reset().observation.shape == (1, 2, 42, 42)


def test_atari_initial_stack_is_zero_padded_and_shifts():
    with create_atari_environment(AtariConfig("Pong"), num_envs=2, seed=1) as env:
        ts0 = env.reset()
        assert (ts0.observation[:, :3] == 0).all()
        assert (ts0.observation[:, 3].reshape(2, -1).max(axis=1) > 0).all()
        ts1 = env.step(np.zeros(2, np.int64))
        assert (ts1.observation[:, :2] == 0).all()
        np.testing.assert_array_equal(ts1.observation[:, 2], ts0.observation[:, 3])
        kept = ts1.observation.copy()
        env.step(np.zeros(2, np.int64))
        # Returned observations are not overwritten by later steps (replay stores them).
        np.testing.assert_array_equal(ts1.observation, kept)


def _atari_rollout(seed: int, steps: int, config: AtariConfig) -> np.ndarray:
    rng = np.random.default_rng(123)
    with create_atari_environment(config, num_envs=2, seed=seed) as env:
        observations = [env.reset().observation]
        for _ in range(steps):
            observations.append(env.step(_random_actions(rng, env)).observation)
    return np.stack(observations)


def test_atari_same_seed_same_observations():
    config = AtariConfig("Breakout", sticky_action_probability=0.25, max_episode_frames=200)
    a = _atari_rollout(5, 120, config)
    b = _atari_rollout(5, 120, config)
    c = _atari_rollout(6, 120, config)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_atari_time_limit_last_then_first():
    config = AtariConfig("Pong", max_episode_frames=40)  # 10 agent steps per episode
    with create_atari_environment(config, num_envs=2, seed=0) as env:
        env.reset()
        history = [env.step(np.zeros(2, np.int64)) for _ in range(23)]
    lasts = [i for i, ts in enumerate(history) if ts.last[0]]
    assert lasts == [9, 20]
    for i in lasts:
        assert history[i].last.all() and (history[i].discount == 1.0).all()
        restart = history[i + 1]
        assert restart.first.all() and not restart.last.any()
        assert (restart.raw_reward == 0.0).all()
        assert (restart.observation[:, :3] == 0).all()  # new episode: zero-padded stack
    firsts = [i for i, ts in enumerate(history) if ts.first.any()]
    assert firsts == [10, 21]


def test_atari_life_loss_on_breakout_game_continues():
    rng = np.random.default_rng(0)
    with create_atari_environment(AtariConfig("Breakout"), num_envs=2, seed=0) as env:
        env.reset()
        losses = []
        for _ in range(150):
            ts = env.step(_random_actions(rng, env))
            losses.extend((ts, i) for i in np.flatnonzero(ts.life_loss & ~ts.last))
            if len(losses) >= 2:
                break
    assert losses, "random Breakout play should lose a life within 150 steps"
    for ts, i in losses:
        assert ts.discount[i] == 1.0 and not ts.first[i]


def test_atari_terminal_on_life_loss_sets_discount_zero_without_reset():
    rng = np.random.default_rng(0)
    config = AtariConfig("Breakout", terminal_on_life_loss=True)
    with create_atari_environment(config, num_envs=2, seed=0) as env:
        env.reset()
        for _ in range(150):
            ts = env.step(_random_actions(rng, env))
            hit = np.flatnonzero(ts.life_loss & ~ts.last)
            if hit.size:
                i = hit[0]
                assert ts.discount[i] == 0.0
                following = env.step(_random_actions(rng, env))
                assert not following.first[i]
                break
        else:
            pytest.fail("no life loss within 150 steps of random Breakout play")


def test_atari_reward_clipping_changes_reward_not_raw_reward():
    def rollout(clip: bool):
        rng = np.random.default_rng(3)
        config = AtariConfig("SpaceInvaders", clip_rewards=clip)
        with create_atari_environment(config, num_envs=2, seed=3) as env:
            env.reset()
            steps = [env.step(_random_actions(rng, env)) for _ in range(120)]
        return np.stack([s.reward for s in steps]), np.stack([s.raw_reward for s in steps])

    clipped, raw = rollout(True)
    unclipped, raw_again = rollout(False)
    assert (raw > 1.0).any(), "SpaceInvaders should score more than 1 point at once"
    np.testing.assert_array_equal(raw, raw_again)
    np.testing.assert_array_equal(clipped, np.clip(raw, -1.0, 1.0))
    np.testing.assert_array_equal(unclipped, raw)


# --------------------------------------------------------------------------------------
# Atari, Python render path
# --------------------------------------------------------------------------------------


def test_atari_render_path_matches_layout_and_renders_rgb():
    config = AtariConfig("Breakout")
    with create_atari_environment(config, num_envs=2, seed=0) as fast:
        fast_shape, fast_dtype, fast_actions = (
            fast.observation_shape,
            fast.observation_dtype,
            fast.num_actions,
        )
    with create_atari_environment(config, num_envs=1, seed=0, render=True) as env:
        assert env.observation_shape == fast_shape
        assert env.observation_dtype == fast_dtype
        assert env.num_actions == fast_actions
        ts = env.reset()
        _assert_timestep_layout(ts, env)
        assert ts.first.all()
        assert (ts.observation[0, :3] == 0).all() and ts.observation[0, 3].max() > 0
        frame = env.render()
        assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8 and frame.max() > 0
        ts1 = env.step(np.array([1]))
        assert not ts1.first.any()
        np.testing.assert_array_equal(ts1.observation[0, 2], ts.observation[0, 3])


def test_atari_render_path_is_deterministic_and_single_env():
    def rollout():
        rng = np.random.default_rng(0)
        with create_atari_environment(AtariConfig("Pong"), 1, seed=4, render=True) as env:
            obs = [env.reset().observation]
            obs += [env.step(_random_actions(rng, env)).observation for _ in range(40)]
        return np.stack(obs)

    np.testing.assert_array_equal(rollout(), rollout())
    with pytest.raises(ValueError, match="num_envs=1"):
        create_atari_environment(AtariConfig("Pong"), 2, seed=0, render=True)


@pytest.mark.parametrize("render", [False, True], ids=["cpp", "python"])
def test_atari_fire_reset_launches_the_ball(render):
    # Breakout with only NOOPs: the ball is in play (and soon lost) only if FIRE was pressed
    # on reset.
    def lives_lost(fire_reset: bool) -> int:
        config = AtariConfig("Breakout", fire_reset=fire_reset)
        with create_atari_environment(config, 1, seed=0, render=render) as env:
            env.reset()
            return sum(int(env.step(np.zeros(1, np.int64)).life_loss[0]) for _ in range(60))

    assert lives_lost(True) >= 1
    assert lives_lost(False) == 0


# --------------------------------------------------------------------------------------
# Classic control
# --------------------------------------------------------------------------------------


def test_cartpole_shapes_and_game_over():
    rng = np.random.default_rng(0)
    with create_classic_environment("CartPole-v1", num_envs=3, seed=0) as env:
        assert env.observation_shape == (4,)
        assert env.observation_dtype == np.float32
        assert env.num_actions == 2
        ts = env.reset()
        _assert_timestep_layout(ts, env)
        assert ts.first.all()
        for _ in range(200):
            ts = env.step(_random_actions(rng, env))
            _assert_timestep_layout(ts, env)
            if ts.last[0]:
                break
        assert ts.last[0] and ts.discount[0] == 0.0  # pole fell: terminated
        assert env.step(_random_actions(rng, env)).first[0]


def test_classic_env_i_is_seeded_with_seed_plus_i():
    with create_classic_environment("CartPole-v1", 2, seed=5) as a:
        first_a = a.reset().observation
    with create_classic_environment("CartPole-v1", 1, seed=6) as b:
        first_b = b.reset().observation
    np.testing.assert_array_equal(first_a[1], first_b[0])
    assert not np.array_equal(first_a[0], first_a[1])


def test_cartpole_hide_velocity_keeps_positions():
    def rollout(hide: bool):
        rng = np.random.default_rng(1)
        with create_classic_environment("CartPole-v1", 2, seed=9, hide_velocity=hide) as env:
            obs = [env.reset().observation]
            firsts = 0
            for _ in range(100):
                ts = env.step(_random_actions(rng, env))
                obs.append(ts.observation)
                firsts += int(ts.first.sum())
        return env, np.stack(obs), firsts

    hidden_env, hidden, firsts = rollout(True)
    _, full, _ = rollout(False)
    assert hidden_env.observation_shape == (2,)
    assert hidden.dtype == np.float32 and hidden.shape == (101, 2, 2)
    assert firsts > 0  # the comparison covers automatic resets too
    np.testing.assert_array_equal(hidden, full[..., [0, 2]])


def test_classic_unknown_id_and_bad_hide_velocity():
    with pytest.raises(UnknownEnvironmentError) as info:
        create_classic_environment("CartPol-v1", 1, 0)
    message = str(info.value)
    assert "\n" not in message and "CartPole-v1" in message
    with pytest.raises(ValueError, match="CartPole"):
        create_classic_environment("Acrobot-v1", 1, 0, hide_velocity=True)


def test_module_exports():
    for name in gym_env.__all__:
        assert hasattr(gym_env, name)


# --------------------------------------------------------------------------------------
# Any Gymnasium environment: names, spaces, image preprocessing, rendering, the spec
# --------------------------------------------------------------------------------------

FAKE = "tests.fake_envs:FakeVector-v0"


def _one_line_error(error_type, call, *args, **kwargs) -> str:
    with pytest.raises(error_type) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("name", ["Pong", "CartPole-v1", "toy_envs:SparseGridRoom-v0", FAKE])
def test_check_environment_name_accepts_atari_names_and_gymnasium_ids(name):
    gym_env.check_environment_name(name)
    assert gym_env.is_atari_game(name) == (name == "Pong")


def test_unknown_names_suggest_atari_games_and_gymnasium_ids():
    message = _one_line_error(UnknownEnvironmentError, gym_env.check_environment_name, "Pongg")
    assert "did you mean 'Pong'" in message and "python -m gym_env --list" in message
    assert "module:EnvName-v0" not in message and "toy_envs:SparseGridRoom-v0" in message
    message = _one_line_error(
        UnknownEnvironmentError, gym_env.check_environment_name, "toy_envs:SparseGridRom-v0"
    )
    assert "did you mean 'toy_envs:SparseGridRoom-v0'" in message


def test_module_that_fails_to_import_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "broken_env_module.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = _one_line_error(
        UnknownEnvironmentError, gym_env.check_environment_name, "broken_env_module:Env-v0"
    )
    assert "'broken_env_module'" in message and "RuntimeError: boom second line" in message
    message = _one_line_error(
        UnknownEnvironmentError, gym_env.create_gymnasium_environment, "no_such_mod:X-v0", 1, 0
    )
    assert "ModuleNotFoundError" in message and "'no_such_mod'" in message


def _fake_spec(**env_kwargs) -> gym_env.EnvSpec:
    return gym_env.EnvSpec(classic_name=FAKE, env_kwargs=env_kwargs)


_BOX3 = gym.spaces.Box(0, 1, (3,), np.float32)


@pytest.mark.parametrize(
    ("env_kwargs", "expected"),
    [
        ({"action_space": gym.spaces.Box(-1, 1, (2,), np.float32)}, "action space Box"),
        ({"action_space": gym.spaces.MultiDiscrete([2, 3])}, "action space MultiDiscrete"),
        ({"action_space": gym.spaces.Discrete(3, start=1)}, "start at 1"),
        ({"observation_space": gym.spaces.Dict({"x": _BOX3})}, "observation space Dict"),
        ({"observation_space": gym.spaces.Tuple([_BOX3, _BOX3])}, "observation space Tuple"),
        ({"observation_space": gym.spaces.Discrete(16)}, "observation space Discrete(16)"),
        ({"observation_space": gym.spaces.Box(0, 1, (8, 8, 3), np.float32)}, "uint8 image"),
        ({"observation_space": gym.spaces.Box(0, 1, (5, 7), np.float32)}, "1-D Box"),
        # (8, 8, 5) uint8 is multi-channel now (supported); 4-D images are not.
        ({"observation_space": gym.spaces.Box(0, 255, (2, 8, 8, 5), np.uint8)}, "C in 1, 3, 4"),
    ],
)
def test_unsupported_spaces_are_named_in_one_line(env_kwargs, expected):
    message = _one_line_error(
        gym_env.UnsupportedEnvironmentError, _fake_spec(**env_kwargs).create, 1, 0
    )
    assert expected in message and FAKE in message


def test_registered_unsupported_environments_fail_through_the_spec():
    assert "not Discrete" in _one_line_error(
        gym_env.UnsupportedEnvironmentError, create_classic_environment, "Pendulum-v1", 1, 0
    )
    assert isinstance(gym_env.UnsupportedEnvironmentError("x"), UnknownEnvironmentError)


def test_vector_observations_become_float32_and_rewards_clip_on_request():
    spec = gym_env.EnvSpec(
        classic_name=FAKE,
        clip_rewards=True,
        env_kwargs={
            "observation_space": gym.spaces.Box(0, 100, (6,), np.int64),
            "reward": 5.0,
            "length": 3,
        },
    )
    with spec.create(2, seed=0) as env:
        assert env.observation_shape == (6,) and env.observation_dtype == np.float32
        assert env.num_actions == 2
        env.reset()
        ts = env.step(np.zeros(2, dtype=np.int64))
        _assert_timestep_layout(ts, env)
        np.testing.assert_array_equal(ts.observation, np.ones((2, 6), np.float32))
        np.testing.assert_array_equal(ts.reward, [1.0, 1.0])
        np.testing.assert_array_equal(ts.raw_reward, [5.0, 5.0])
        env.step(np.zeros(2, dtype=np.int64))
        ts = env.step(np.zeros(2, dtype=np.int64))
        assert ts.last.all() and (ts.discount == 0).all()  # terminated after `length` steps
        assert env.step(np.zeros(2, dtype=np.int64)).first.all()


def _two_colour_picture() -> np.ndarray:
    """[16, 20, 3] RGB: left half pure red, right half pure blue."""
    picture = np.zeros((16, 20, 3), dtype=np.uint8)
    picture[:, :10, 0] = 255
    picture[:, 10:, 2] = 255
    return picture


def test_grayscale_resize_uses_luma_and_treats_every_layout_alike():
    picture = _two_colour_picture()
    frame = observations.grayscale_resize(picture, "HWC", 84)
    assert frame.shape == (84, 84) and frame.dtype == np.uint8
    # ITU-R 601 luma: red 0.299 * 255 = 76, blue 0.114 * 255 = 29; halves stay halves.
    assert (frame[:, :40] == 76).all() and (frame[:, 44:] == 29).all()
    chw = observations.grayscale_resize(np.moveaxis(picture, -1, 0), "CHW", 84)
    rgba = np.concatenate([picture, np.full((16, 20, 1), 9, np.uint8)], axis=-1)
    np.testing.assert_array_equal(chw, frame)
    np.testing.assert_array_equal(observations.grayscale_resize(rgba, "HWC", 84), frame)
    gray = np.where(np.arange(20) < 10, 76, 29).astype(np.uint8)[None].repeat(16, 0)
    np.testing.assert_array_equal(observations.grayscale_resize(gray, "HW", 84), frame)
    resized = observations.grayscale_resize(gray[..., None], "HWC", 84)
    np.testing.assert_array_equal(resized, frame)


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_image_observations_become_zero_padded_grayscale_stacks(layout):
    picture = _two_colour_picture()
    if layout == "CHW":
        picture = np.moveaxis(picture, -1, 0)
    space = gym.spaces.Box(0, 255, picture.shape, np.uint8)
    spec = _fake_spec(observation_space=space, observation=picture)
    expected = observations.grayscale_resize(_two_colour_picture(), "HWC", 84)
    with spec.create(1, seed=0) as env:
        assert env.observation_shape == (4, 84, 84) and env.observation_dtype == np.uint8
        first = env.reset().observation[0]
        np.testing.assert_array_equal(first[:3], 0)  # zero padding before the first frame
        np.testing.assert_array_equal(first[3], expected)
        second = env.step(np.zeros(1, dtype=np.int64)).observation[0]
        np.testing.assert_array_equal(second[:2], 0)
        np.testing.assert_array_equal(second[2:], [expected, expected])


def test_frame_stack_of_image_environments_is_configurable():
    spec = gym_env.EnvSpec(classic_name="toy_envs:SparseGridRoomPixels-v0", frame_stack=2)
    with spec.create(1, seed=0) as env:
        assert env.observation_shape == (2, 84, 84)


def test_networks_pick_their_torso_from_the_adapted_observation():
    from networks.value import MlpTorso, NatureConvTorso, q_network_for

    torch = pytest.importorskip("torch")
    for env_id, torso in [
        ("toy_envs:SparseGridRoom-v0", MlpTorso),
        ("toy_envs:SparseGridRoomPixels-v0", NatureConvTorso),
    ]:
        with gym_env.EnvSpec(classic_name=env_id).create(2, seed=0) as env:
            network = q_network_for(env.observation_shape, env.num_actions)
            assert isinstance(network.torso, torso)
            q_values = network(torch.as_tensor(env.reset().observation))
            assert q_values.shape == (2, 5)


def test_render_gives_rgb_frames_of_environments_that_have_them():
    spec = gym_env.EnvSpec(classic_name="toy_envs:SparseGridRoom-v0", env_kwargs={"size": 5})
    with spec.create(1, seed=0, render=True) as env:
        env.reset()
        frame = env.render()
        assert frame.shape == (80, 80, 3) and frame.dtype == np.uint8
    with spec.create(1, seed=0) as env, pytest.raises(RuntimeError, match="render=True"):
        env.render()


def test_environments_that_cannot_render_are_one_line_errors():
    no_mode = gym_env.EnvSpec(classic_name="tests.fake_envs:FakeNoRender-v0")
    message = _one_line_error(
        gym_env.UnsupportedEnvironmentError, no_mode.create, 1, 0, render=True
    )
    assert "rgb_array" in message and "FakeNoRender-v0" in message
    with no_mode.create(1, 0) as env:  # Training does not need rendering.
        env.reset()
    failing = gym_env.EnvSpec(classic_name="tests.fake_envs:FakeRenderFails-v0")
    with failing.create(1, seed=0, render=True) as env:
        env.reset()
        message = _one_line_error(gym_env.UnsupportedEnvironmentError, env.render)
        assert "ImportError: no drawing library" in message


def test_env_spec_survives_pickle_and_checkpoint_state():
    import pickle

    torch = pytest.importorskip("torch")
    gym_spec = gym_env.EnvSpec(
        classic_name="toy_envs:SparseGridRoom-v0",
        clip_rewards=True,
        frame_stack=2,
        env_kwargs={"size": 7, "observation": "coordinates"},
    )
    atari_spec = gym_env.EnvSpec(atari=AtariConfig("Breakout", frame_stack=3))
    for spec in (gym_spec, atari_spec):
        assert pickle.loads(pickle.dumps(spec)) == spec
        buffer = __import__("io").BytesIO()
        torch.save(spec.checkpoint_state(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)  # plain values only
        assert gym_env.EnvSpec.from_checkpoint_state(state) == spec
    assert set(atari_spec.checkpoint_state()) == {"atari"}
    assert atari_spec.checkpoint_state()["atari"]["game"] == "Breakout"
    with gym_env.EnvSpec.from_checkpoint_state(gym_spec.checkpoint_state()).create(1, 0) as env:
        assert env.observation_shape == (2,)  # env_kwargs reached gym.make


def _observation_shape_in_fresh_process(spec: gym_env.EnvSpec) -> tuple[int, ...]:
    with spec.create(1, seed=0) as env:
        return env.observation_shape


def test_spawned_process_imports_the_module_of_a_module_id():
    import multiprocessing

    spec = gym_env.EnvSpec(classic_name="toy_envs:SparseGridRoom-v0", env_kwargs={"size": 4})
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_observation_shape_in_fresh_process, (spec,)) == (16,)


# --------------------------------------------------------------------------------------
# Multi-channel observations (bool object planes, uint8 with C not 1, 3, 4)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "layout"),
    [
        (gym.spaces.Box(0, 1, (10, 10, 4), bool), "HWC"),  # MinAtar
        (gym.spaces.Box(0, 1, (10, 10, 10), bool), "HWC"),  # a tie: the last axis
        (gym.spaces.Box(0, 1, (4, 10, 10), bool), "CHW"),
        (gym.spaces.Box(0, 1, (6, 5, 3), bool), "HWC"),  # not square: the smaller end axis
        (gym.spaces.Box(0, 1, (3, 6, 5), bool), "CHW"),
        (gym.spaces.Box(0, 1, (6, 5), bool), "HW"),
        (gym.spaces.Box(0, 255, (8, 8, 5), np.uint8), "HWC"),
        (gym.spaces.Box(0, 255, (5, 8, 8), np.uint8), "CHW"),
        (gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), None),  # colour: an image
        (gym.spaces.Box(0, 255, (8, 8), np.uint8), None),  # grayscale: an image
        (gym.spaces.Box(0, 1, (8, 8, 5), np.float32), None),
        (gym.spaces.Box(0, 1, (7,), bool), None),
    ],
)
def test_multi_channel_layout_takes_the_smaller_end_axis_as_channels(space, layout):
    assert observations.multi_channel_layout(space) == layout


@pytest.mark.parametrize(
    ("shape", "frame_shape", "stack", "stack_axis"),
    [
        ((6,), (6,), 1, False),
        ((4, 84, 84), (84, 84), 4, True),  # Atari: a stack of 2-D frames
        ((1, 84, 84), (84, 84), 1, True),  # NGU's Atari: one 2-D frame, still a stack axis
        ((4, 10, 10), (4, 10, 10), 1, False),  # MinAtar: one frame of 4 channels
        ((2, 7, 10, 10), (7, 10, 10), 2, True),  # MinAtar with frame_stack 2
        ((1, 2, 40, 40), (2, 40, 40), 1, True),  # a large multi-channel frame
    ],
)
def test_frame_layout_reads_every_observation_kind(shape, frame_shape, stack, stack_axis):
    layout = observations.frame_layout(shape)
    assert layout == (frame_shape, stack, stack_axis)
    assert layout.is_vector == (len(shape) == 1)


def _planes(shape: tuple[int, ...], dtype=bool) -> np.ndarray:
    """A deterministic multi-channel observation: cell (i, j, c) set when (i + 2j + c) % 3 == 0."""
    return (np.indices(shape).sum(axis=0) % 3 == 0).astype(dtype)


@pytest.mark.parametrize(
    ("shape", "dtype", "channels_first"),
    [
        ((10, 10, 4), bool, lambda x: np.moveaxis(x, -1, 0)),
        ((4, 10, 10), bool, lambda x: x),
        ((6, 5), bool, lambda x: x[None]),
        ((8, 8, 5), np.uint8, lambda x: np.moveaxis(x, -1, 0)),
    ],
)
def test_multi_channel_observations_keep_their_channels_and_dtype(shape, dtype, channels_first):
    observation = _planes(shape, dtype)
    space = gym.spaces.Box(0, 1, shape, dtype)
    spec = _fake_spec(observation_space=space, observation=observation)
    expected = channels_first(observation)
    with spec.create(2, seed=0) as env:
        assert env.observation_shape == expected.shape  # no resize, no grayscale, no stack
        assert env.observation_dtype == dtype
        ts = env.reset()
        _assert_timestep_layout(ts, env)
        np.testing.assert_array_equal(ts.observation, [expected, expected])


def test_multi_channel_frames_stack_only_when_asked_and_large_ones_keep_a_stack_axis():
    space = gym.spaces.Box(0, 1, (10, 10, 3), bool)
    planes = _planes((10, 10, 3))
    stacked = _fake_spec(observation_space=space, observation=planes)
    with dataclasses.replace(stacked, frame_stack=2).create(1, seed=0) as env:
        assert env.observation_shape == (2, 3, 10, 10) and env.observation_dtype == np.bool_
        first = env.reset().observation[0]
        assert not first[0].any()  # zero padding before the episode's first frame
        np.testing.assert_array_equal(first[1], np.moveaxis(planes, -1, 0))
    large = _fake_spec(
        observation_space=gym.spaces.Box(0, 1, (40, 40, 2), bool),
        observation=_planes((40, 40, 2)),
    )
    with large.create(1, seed=0) as env:
        assert env.observation_shape == (1, 2, 40, 40)


def test_multi_channel_frames_are_drawn_one_colour_per_channel():
    frame = np.zeros((3, 10, 10), dtype=bool)
    frame[0, 0, 0] = frame[1, 0, 1] = frame[2, 9, 9] = True
    frame[0, 9, 9] = True  # two channels in one cell: the higher one is drawn
    picture = observations.channel_picture(frame)
    assert picture.shape == (320, 320, 3) and picture.dtype == np.uint8  # 32 x 32 per cell
    cell = picture[::32, ::32]  # one pixel per cell
    colours = observations.CHANNEL_COLOURS
    np.testing.assert_array_equal(cell[0, 0], colours[0])
    np.testing.assert_array_equal(cell[0, 1], colours[1])
    np.testing.assert_array_equal(cell[9, 9], colours[2])
    assert not cell[5, 5].any()  # black background
    assert len({tuple(c) for c in colours}) == len(colours)  # every channel its own colour
    np.testing.assert_array_equal(picture[32:64, 32:64], 0)


def test_multi_channel_environments_render_their_channels_without_a_render_mode():
    space = gym.spaces.Box(0, 1, (10, 10, 4), bool)
    observation = _planes((10, 10, 4))
    spec = gym_env.EnvSpec(
        classic_name="tests.fake_envs:FakeNoRender-v0",
        env_kwargs={"observation_space": space, "observation": observation},
    )
    with spec.create(1, seed=0, render=True) as env:
        env.reset()
        frame = env.render()
        expected = observations.channel_picture(np.moveaxis(observation, -1, 0))
        np.testing.assert_array_equal(frame, expected)
        assert frame.shape == (320, 320, 3)


def test_networks_pick_the_minatar_torso_for_small_multi_channel_observations():
    torch = pytest.importorskip("torch")
    from networks.value import MinAtarTorso, q_network_for

    space = gym.spaces.Box(0, 1, (10, 10, 4), bool)
    spec = _fake_spec(observation_space=space, observation=_planes((10, 10, 4)))
    with spec.create(2, seed=0) as env:
        network = q_network_for(env.observation_shape, env.num_actions)
        assert isinstance(network.torso, MinAtarTorso)
        q_values = network(torch.as_tensor(env.reset().observation))  # a bool tensor
        assert q_values.shape == (2, 2)
