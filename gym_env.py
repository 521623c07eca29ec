"""Batched environments with dm_env-like timesteps for Atari and classic control.

Every environment the agents see is an :class:`EnvironmentBatch`: ``E`` environments
stepped together, returning :class:`TimeStep` batches. It adapts any gymnasium
``VectorEnv`` that uses ``NEXT_STEP`` autoreset:

* Atari, training (``render=False``): ``ale_py.AtariVectorEnv``, which does the standard
  preprocessing in C++ threads (noop starts, frame skip with a max over the last two
  frames, grayscale 84x84, frame stacking, FIRE on reset, the episode frame cap).
* Atari, evaluation videos (``render=True``): one Python-wrapped ``ALE/<Game>-v5`` with
  the same semantics inside a ``SyncVectorEnv``; :meth:`EnvironmentBatch.render` gives
  the full-resolution RGB screen.
* Any other Gymnasium environment with Discrete actions, named by its registered id
  (``CartPole-v1``, or ``module:EnvName-v0``, which imports ``module`` first so that it can
  register its environments; ``MinAtar/<Game>-v0`` and ``-v1`` register MinAtar's games on
  first use, see environments/minatar_games.py): a ``SyncVectorEnv`` of ``gym.make(id)``,
  observations adapted by kind (environments/observations.py), each kind with its torso
  (``--torso=auto``):

  - a 1-D ``Box`` (a vector) becomes float32 ``[D]``: the MLP torso;
  - a colour or grayscale uint8 image, ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with C in
    {1, 3, 4}, is preprocessed like an Atari screen: grayscale (alpha dropped), resized to
    84x84 with area interpolation, and the last 4 frames stacked with zero padding at an
    episode's start: uint8 ``[4, 84, 84]``, the Nature conv torso. Why not colour or the
    native size: replay stores one 2-D frame per step and rebuilds stacks from it, and the
    Nature conv torso expects 84x84;
  - a multi-channel ``Box``: bool object planes (MinAtar's ``(10, 10, C)``), ``(H, W, C)``
    or ``(C, H, W)``, or a uint8 image whose C is not 1, 3 or 4, keeps its C channels as they
    are, channels-first ``[C, H, W]`` of the same dtype (bool stays bool, so replay bit-packs
    it): no grayscale, no resize, and no frame stack unless ``frame_stack`` > 1 is asked for
    (then ``[S, C, H, W]``). The channel axis is the smaller of the first and last (the last on
    a tie). Below 36x36 it gets the MinAtar torso (Young & Tian 2019), else the Nature conv
    torso; a frame of 36x36 or more always keeps the stack axis, ``[S, C, H, W]`` with S = 1
    too, so that no one reads it as a stack of 2-D frames (environments.observations.frame_layout).
    Recordings colour each channel (``render()`` needs no render mode of the environment);
  - anything else (continuous actions, Dict/Tuple/Discrete observations, float images)
    raises :class:`UnsupportedEnvironmentError` naming what is unsupported.

  The environment's own time limit applies; there are no no-op starts, frame skip or
  life-loss signals.

Timestep semantics (per environment):

* ``reset()`` returns ``first=True`` everywhere.
* A step that ends the game (game over or time limit) has ``last=True``. The *next*
  ``step()`` for that environment ignores its action, resets it, and returns its first
  observation with ``first=True`` and zero reward.
* ``discount`` is 0 on game over (``terminated``) and, with
  ``terminal_on_life_loss``, on a lost life (the game goes on: ``last`` stays False). A
  time-limit truncation keeps discount 1 (the learner bootstraps from the last observation),
  unless ``time_limit_is_terminal``: then the limit is part of the task and ends it like a
  game over (Pardo et al. 2018, "Time Limits in Reinforcement Learning").
* ``reward`` is the learning reward (clipped to [-1, 1] when ``clip_rewards``);
  ``raw_reward`` is the game's own reward, for statistics.

Atari frame stacks are ZERO-padded at the start of an episode: the first observation of
an episode is ``[0, ..., 0, frame]``. The replay rebuilds stacks with the same zero
padding before an episode's first frame, so both must agree.

Run ``python -m gym_env --list`` to print the valid Atari game names. :class:`EnvSpec` is the
picklable recipe that actor processes build their environments from;
:func:`check_environment_name` tells Atari names and Gymnasium ids apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import importlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from environments import minatar_games
from environments.observations import (
    LARGE_IMAGE_SIZE,
    ChannelsFirst,
    Float32Observation,
    GrayscaleResize,
    KeepIndices,
    check_renders_rgb,
    check_supported,
    image_layout,
    multi_channel_layout,
    one_line,
    rgb_frame,
)
from experiment.errors import UnknownEnvironmentError, UnsupportedEnvironmentError

__all__ = [
    "AtariConfig",
    "EnvSpec",
    "EnvironmentBatch",
    "TimeStep",
    "UnknownEnvironmentError",
    "UnsupportedEnvironmentError",
    "atari_game_names",
    "check_environment_name",
    "check_gymnasium_id",
    "create_atari_environment",
    "create_classic_environment",
    "create_gymnasium_environment",
    "is_atari_game",
    "validate_atari_game",
]

_LIST_HINT = "list the valid names with: python -m gym_env --list"


@dataclasses.dataclass
class TimeStep:
    """A batch of E environment timesteps, dm_env-like semantics."""

    observation: np.ndarray  # [E, *observation_shape]; Atari: uint8 [E, frame_stack, 84, 84]
    # (MinAtar: bool [E, C, 10, 10])
    reward: np.ndarray  # [E] float32, learning reward (clipped if clip_rewards); 0 on first
    raw_reward: np.ndarray  # [E] float32, unclipped game reward; 0 on a first step
    discount: np.ndarray  # [E] float32, 0 on game over (or life loss if terminal_on_life_loss)
    first: np.ndarray  # [E] bool, this observation starts a new game
    last: np.ndarray  # [E] bool, the game ended here (game over or time limit)
    life_loss: np.ndarray  # [E] bool, a life was lost in this transition


# --------------------------------------------------------------------------------------
# The adapter: gymnasium VectorEnv (NEXT_STEP autoreset) -> TimeStep batches.
# --------------------------------------------------------------------------------------


class EnvironmentBatch:
    """E environments stepped together. Wraps a gymnasium VectorEnv with NEXT_STEP autoreset.

    Args:
        vector_env: a gymnasium ``VectorEnv`` with a ``Discrete`` single action space and
            ``NEXT_STEP`` autoreset (a done env is reset by the following ``step``).
        seed: environment ``i`` is seeded with ``seed + i`` at the first :meth:`reset`;
            later resets (explicit or automatic) continue the seeded random streams, so the
            same seed and actions give the same observations.
        clip_rewards: clip ``reward`` to [-1, 1] (``raw_reward`` stays unclipped).
        terminal_on_life_loss: a lost life sets discount 0 (the game is not reset).
        time_limit_is_terminal: a game cut by the environment's time limit gets discount 0,
            like a game over, instead of bootstrapping from its last observation.
        render_fn: returns env 0's RGB frame; None means rendering is unavailable.
    """

    def __init__(
        self,
        vector_env: gym.vector.VectorEnv,
        seed: int,
        *,
        clip_rewards: bool = False,
        terminal_on_life_loss: bool = False,
        time_limit_is_terminal: bool = False,
        render_fn: Callable[[], np.ndarray] | None = None,
    ) -> None:
        mode = vector_env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if AutoresetMode(mode) != AutoresetMode.NEXT_STEP:
            raise ValueError(f"EnvironmentBatch needs NEXT_STEP autoreset, got {mode}")
        action_space = vector_env.single_action_space
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"EnvironmentBatch needs a Discrete action space, got {action_space}")
        self._env = vector_env
        self._seed = int(seed)
        self._clip_rewards = clip_rewards
        self._terminal_on_life_loss = terminal_on_life_loss
        self._time_limit_is_terminal = time_limit_is_terminal
        self._render_fn = render_fn

        self.num_envs: int = int(vector_env.num_envs)
        self.observation_shape: tuple[int, ...] = tuple(vector_env.single_observation_space.shape)
        self.observation_dtype: np.dtype = np.dtype(vector_env.single_observation_space.dtype)
        self.num_actions: int = int(action_space.n)

        self._seeded = False
        self._closed = False
        self._started = False
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)  # `last` on the previous step
        self._lives = np.zeros(self.num_envs, dtype=np.int64)

    # -- helpers ---------------------------------------------------------------------

    def _lives_from(self, info: dict[str, Any]) -> np.ndarray | None:
        lives = info.get("lives")
        if lives is None:
            return None
        return np.asarray(lives, dtype=np.int64).reshape(self.num_envs)

    def _observation(self, obs: Any) -> np.ndarray:
        return np.asarray(obs, dtype=self.observation_dtype)

    # -- API -------------------------------------------------------------------------

    def reset(self) -> TimeStep:
        """Resets all environments; every returned timestep has ``first=True``."""
        if self._closed:
            raise RuntimeError("EnvironmentBatch is closed")
        seed = None if self._seeded else self._seed
        obs, info = self._env.reset(seed=seed)
        self._seeded = True
        self._started = True
        lives = self._lives_from(info)
        self._lives[:] = 0 if lives is None else lives
        self._needs_reset[:] = False
        e = self.num_envs
        return TimeStep(
            observation=self._observation(obs),
            reward=np.zeros(e, dtype=np.float32),
            raw_reward=np.zeros(e, dtype=np.float32),
            discount=np.ones(e, dtype=np.float32),
            first=np.ones(e, dtype=bool),
            last=np.zeros(e, dtype=bool),
            life_loss=np.zeros(e, dtype=bool),
        )

    def step(self, actions: np.ndarray) -> TimeStep:
        """Steps all environments with integer ``actions`` of shape [E].

        The action of an environment whose previous timestep had ``last=True`` is ignored:
        that environment is reset and returns ``first=True``.
        """
        if self._closed:
            raise RuntimeError("EnvironmentBatch is closed")
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
        obs, reward, terminated, truncated, info = self._env.step(actions.astype(np.int64))

        first = self._needs_reset.copy()
        not_first = ~first
        terminated = np.asarray(terminated, dtype=bool) & not_first
        truncated = np.asarray(truncated, dtype=bool) & not_first
        raw_reward = np.where(first, 0.0, np.asarray(reward, dtype=np.float32)).astype(np.float32)
        learn_reward = np.clip(raw_reward, -1.0, 1.0) if self._clip_rewards else raw_reward.copy()

        lives = self._lives_from(info)
        if lives is None:
            life_loss = np.zeros(self.num_envs, dtype=bool)
        else:
            life_loss = (lives < self._lives) & not_first
            self._lives[:] = lives

        discount = np.ones(self.num_envs, dtype=np.float32)
        discount[terminated] = 0.0
        if self._time_limit_is_terminal:
            discount[truncated] = 0.0
        if self._terminal_on_life_loss:
            discount[life_loss] = 0.0
        last = terminated | truncated
        self._needs_reset = last.copy()
        return TimeStep(
            observation=self._observation(obs),
            reward=learn_reward.astype(np.float32, copy=False),
            raw_reward=raw_reward,
            discount=discount,
            first=first,
            last=last,
            life_loss=life_loss,
        )

    def render(self) -> np.ndarray:
        """The RGB frame [H, W, 3] of env 0 (only for environments created with render=True)."""
        if self._render_fn is None:
            raise RuntimeError(
                "render() is unavailable: create the environment with render=True "
                "(Atari: num_envs=1, Python wrappers)"
            )
        if self._closed:
            raise RuntimeError("EnvironmentBatch is closed")
        return np.asarray(self._render_fn())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._env.close()

    def __enter__(self) -> EnvironmentBatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"EnvironmentBatch(num_envs={self.num_envs}, observation_shape="
            f"{self.observation_shape}, num_actions={self.num_actions})"
        )


# --------------------------------------------------------------------------------------
# Atari
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AtariConfig:
    game: str  # bare CamelCase name: "Pong", "Breakout", "MontezumaRevenge"
    frame_skip: int = 4
    frame_stack: int = 4
    screen_size: int = 84
    noop_max: int = 30
    max_episode_frames: int = 108_000  # emulator frames (agent steps * frame_skip)
    sticky_action_probability: float = 0.0
    full_action_space: bool = False
    fire_reset: bool = True
    clip_rewards: bool = True
    terminal_on_life_loss: bool = False
    time_limit_is_terminal: bool = False


def _rom_id_to_name(rom_id: str) -> str:
    # Same convention as ale_py's registration: "montezuma_revenge" -> "MontezumaRevenge".
    return rom_id.title().replace("_", "")


@functools.lru_cache(maxsize=1)
def _atari_name_to_rom_id() -> dict[str, str]:
    from ale_py import roms

    return {_rom_id_to_name(rom_id): rom_id for rom_id in roms.get_all_rom_ids()}


def atari_game_names() -> list[str]:
    """CamelCase names of every ROM that ale-py ships, sorted."""
    return sorted(_atari_name_to_rom_id())


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _unknown_message(kind: str, name: str, suggestion: str | None, hint: str) -> str:
    text = f"unknown {kind} {name!r}"
    if suggestion is not None:
        text += f" (did you mean {suggestion!r}?)"
    return f"{text}; {hint}".replace("\n", " ").replace("\r", " ")


def _suggest(name: str, candidates: Sequence[str]) -> str | None:
    key = _normalise(name)
    by_key = {_normalise(c): c for c in candidates}
    if key in by_key:
        return by_key[key]
    matches = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
    return by_key[matches[0]] if matches else None


def validate_atari_game(game: str) -> str:
    """Returns the ale ROM id of a CamelCase game name ("MontezumaRevenge" -> "montezuma_revenge").

    Raises UnknownEnvironmentError (one line, with a suggestion when one is close).
    """
    table = _atari_name_to_rom_id()
    if isinstance(game, str) and game in table:
        return table[game]
    name = str(game)
    stripped = name.removeprefix("ALE/").split("-v")[0].split("NoFrameskip")[0]
    suggestion = _suggest(stripped, list(table)) if stripped else None
    raise UnknownEnvironmentError(_unknown_message("Atari game", name, suggestion, _LIST_HINT))


def is_atari_game(name: str) -> bool:
    """Whether `name` is a bare CamelCase Atari game name ("Pong"), the default kind of name."""
    return isinstance(name, str) and name in _atari_name_to_rom_id()


class _FireOnReset(gym.Wrapper):
    """Presses FIRE once after every reset (for games whose action set has FIRE)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self._fire = meanings.index("FIRE") if "FIRE" in meanings else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self._fire is None:
            return obs, info
        obs, _, terminated, truncated, step_info = self.env.step(self._fire)
        info = {**info, **step_info}
        if terminated or truncated:
            obs, info = self.env.reset(options=options)
        return obs, info


def _make_python_atari(config: AtariConfig) -> gym.Env:
    import ale_py
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)
    env = gym.make(
        f"ALE/{config.game}-v5",
        frameskip=1,
        repeat_action_probability=config.sticky_action_probability,
        full_action_space=config.full_action_space,
        max_num_frames_per_episode=config.max_episode_frames,
        render_mode="rgb_array",
    )
    env = AtariPreprocessing(
        env,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        screen_size=config.screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        grayscale_newaxis=False,
        scale_obs=False,
    )
    if config.fire_reset:
        env = _FireOnReset(env)
    return FrameStackObservation(env, config.frame_stack, padding_type="zero")


def _resolve_num_threads(num_threads: int, num_envs: int) -> int:
    """0 -> one thread per CPU core this process may use, at most num_envs."""
    if num_threads > 0:
        return num_threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(num_envs, cores))


def create_atari_environment(
    config: AtariConfig,
    num_envs: int,
    seed: int,
    *,
    render: bool = False,
    num_threads: int = 0,
) -> EnvironmentBatch:
    """E Atari games with standard preprocessing; observations uint8 [E, stack, size, size].

    render=False uses ale_py's C++ ``AtariVectorEnv`` (fast, threaded; ``num_threads`` 0 means
    one thread per available CPU core, at most ``num_envs``: ale-py's own default was measured
    to use a single core). render=True builds one Python-wrapped env with the same semantics whose
    ``render()`` gives the full-resolution RGB screen (num_envs must be 1). Frame stacks are
    zero-padded at the start of every episode on both paths. One small difference: on the
    render path the ALE's frame cap also counts the noop-start frames, so a time-limited
    episode may end up to ``noop_max`` frames earlier there.
    """
    rom_id = validate_atari_game(config.game)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if render:
        if num_envs != 1:
            raise ValueError(f"render=True supports num_envs=1 only, got {num_envs}")
        vector_env = gym.vector.SyncVectorEnv(
            [functools.partial(_make_python_atari, config)],
            autoreset_mode=AutoresetMode.NEXT_STEP,
        )
        render_fn = vector_env.envs[0].render
    else:
        import ale_py

        vector_env = ale_py.AtariVectorEnv(
            rom_id,
            num_envs,
            num_threads=_resolve_num_threads(num_threads, num_envs),
            max_num_frames_per_episode=config.max_episode_frames,
            repeat_action_probability=config.sticky_action_probability,
            full_action_space=config.full_action_space,
            autoreset_mode=AutoresetMode.NEXT_STEP,
            img_height=config.screen_size,
            img_width=config.screen_size,
            grayscale=True,
            stack_num=config.frame_stack,
            frameskip=config.frame_skip,
            maxpool=True,
            noop_max=config.noop_max,
            episodic_life=False,
            life_loss_info=False,
            reward_clipping=False,
            use_fire_reset=config.fire_reset,
        )
        render_fn = None
    return EnvironmentBatch(
        vector_env,
        seed,
        clip_rewards=config.clip_rewards,
        terminal_on_life_loss=config.terminal_on_life_loss,
        time_limit_is_terminal=config.time_limit_is_terminal,
        render_fn=render_fn,
    )


# --------------------------------------------------------------------------------------
# Any Gymnasium environment: classic control, a researcher's own environments
# --------------------------------------------------------------------------------------

_GYMNASIUM_EXAMPLES = (
    "CartPole-v1",
    "Acrobot-v1",
    "toy_envs:SparseGridRoom-v0",
    "MinAtar/Breakout-v1",
)
_ENVIRONMENT_HINT = (
    "pass an Atari game name (python -m gym_env --list) or a registered Gymnasium id such as "
    + ", ".join(_GYMNASIUM_EXAMPLES)
)
_CARTPOLE_POSITIONS = (0, 2)  # cart position, pole angle (velocities are 1 and 3)
ENVIRONMENT_NAME_HELP = (
    "Atari game by its bare name (Pong, MontezumaRevenge; python -m gym_env --list prints them "
    "all), or any registered Gymnasium id with Discrete actions: CartPole-v1, or "
    "module:EnvName-v0, which imports module first (toy_envs:SparseGridRoom-v0), or a MinAtar "
    "game, MinAtar/<Game>-v1 (minimal action set) or -v0 (Asterix, Breakout, Freeway, Seaquest, "
    "SpaceInvaders). Vector observations get an MLP torso; colour and grayscale uint8 images "
    "become stacks of 4 grayscale 84x84 frames for the Nature conv torso; multi-channel "
    "observations (bool planes such as MinAtar's) keep their channels, [C, H, W], for the "
    "MinAtar torso (see --torso)."
)
IMAGE_SIZE = 84  # The Nature conv torso's input size.
IMAGE_FRAME_STACK = 4  # Colour and grayscale images; multi-channel observations stack none.


def _split_gymnasium_id(name: str) -> tuple[str, str]:
    """ "module:EnvName-v0" -> ("module", "EnvName-v0"); a plain id has no module ("")."""
    module, colon, env_id = name.partition(":")
    return (module, env_id) if colon else ("", name)


def _register_ale() -> None:
    # ALE ids ("ALE/Pong-v5") exist once ale_py is imported; a spawned actor has not yet.
    import ale_py

    gym.register_envs(ale_py)


def check_gymnasium_id(name: str) -> None:
    """Checks that `name` is a registered Gymnasium id; for ``module:EnvName-v0`` it first
    imports ``module`` (as ``gym.make`` does), which registers its environments, and for a
    ``MinAtar/`` id it registers MinAtar's games (one line if the minatar package is missing;
    an unknown game gets a suggestion among the MinAtar ids).

    Raises UnknownEnvironmentError (one line) for a module that fails to import or an unknown
    id, with a suggestion when one is close.
    """
    module, env_id = _split_gymnasium_id(name)
    if module:
        try:
            importlib.import_module(module)
        except Exception as error:  # A researcher's module may fail in any way: report it.
            raise UnknownEnvironmentError(
                one_line(
                    f"cannot import module {module!r} of environment {name!r}: "
                    f"{type(error).__name__}: {error}"
                )
            ) from None
    if env_id.startswith("ALE/"):
        _register_ale()
    is_minatar = minatar_games.is_minatar_id(env_id)
    if is_minatar:  # Registered on first use, in whichever process meets the id.
        minatar_games.register(name)
    if env_id in gym.registry:
        return
    if is_minatar:  # Matched on the game part alone: every candidate shares the prefix.
        prefix, hint = minatar_games.PREFIX, minatar_games.HINT
        games = [i.removeprefix(prefix) for i in minatar_games.registered_ids()]
        game = _suggest(env_id[len(prefix) :], games)
        suggestion = None if game is None else prefix + game
    else:
        hint = _ENVIRONMENT_HINT
        suggestion = _suggest(env_id, [*atari_game_names(), *gym.registry])
    if module and suggestion in gym.registry:
        suggestion = f"{module}:{suggestion}"
    raise UnknownEnvironmentError(_unknown_message("environment", name, suggestion, hint))


def check_environment_name(name: str) -> None:
    """Accepts a bare Atari game name ("Pong") or a registered Gymnasium id ("CartPole-v1",
    "toy_envs:SparseGridRoom-v0"); raises UnknownEnvironmentError (one line) otherwise."""
    if not is_atari_game(name):
        check_gymnasium_id(name)


def _make_gymnasium(
    name: str,
    hide_velocity: bool,
    render: bool,
    frame_stack: int | None,
    env_kwargs: Mapping[str, Any],
) -> gym.Env:
    """gym.make(name) with its spaces checked and its observations adapted (module docstring)."""
    from gymnasium.wrappers import FrameStackObservation

    check_gymnasium_id(name)  # Imports the module: this may run in a fresh actor process.
    try:
        with warnings.catch_warnings():
            if render:  # gym.make warns about an unknown render mode; checked just below.
                warnings.simplefilter("ignore")
            if minatar_games.is_minatar_id(_split_gymnasium_id(name)[1]):
                # MinAtar's v0 and v1 are two action sets, not an old and a new version.
                warnings.filterwarnings("ignore", message=".*is out of date")
            env = gym.make(name, render_mode="rgb_array" if render else None, **env_kwargs)
    except gym.error.Error as error:  # e.g. a missing optional dependency (box2d, mujoco)
        raise UnknownEnvironmentError(one_line(f"cannot create {name!r}: {error}")) from None
    channels = multi_channel_layout(env.observation_space) is not None
    try:
        check_supported(env, name)
        if render and not channels:  # Multi-channel observations are drawn by ChannelsFirst.
            check_renders_rgb(env, name)
    except Exception:
        env.close()
        raise
    is_image = image_layout(env.observation_space) is not None
    if not (is_image or channels):
        return KeepIndices(env, _CARTPOLE_POSITIONS) if hide_velocity else Float32Observation(env)
    if hide_velocity:
        raise ValueError(f"hide_velocity is only defined for CartPole, got {name!r}")
    if is_image:
        env = GrayscaleResize(env, IMAGE_SIZE)
        return FrameStackObservation(env, frame_stack or IMAGE_FRAME_STACK, padding_type="zero")
    env = ChannelsFirst(env)
    if (frame_stack or 1) == 1 and min(env.observation_space.shape[1:]) < LARGE_IMAGE_SIZE:
        return env  # [C, H, W]; a large frame keeps a stack axis of 1 (module docstring).
    return FrameStackObservation(env, frame_stack or 1, padding_type="zero")


def create_gymnasium_environment(
    name: str,
    num_envs: int,
    seed: int,
    *,
    hide_velocity: bool = False,
    render: bool = False,
    clip_rewards: bool = False,
    frame_stack: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    time_limit_is_terminal: bool = False,
) -> EnvironmentBatch:
    """E copies of a registered Gymnasium environment with Discrete actions.

    Args:
        name: a registered id, or ``module:EnvName-v0`` (``module`` is imported first).
        hide_velocity: CartPole only: keep the cart position and pole angle (indices 0 and
            2), a partially observed task that needs memory.
        render: env 0's ``render()`` gives RGB frames (made with ``render_mode="rgb_array"``;
            an environment without that mode raises UnsupportedEnvironmentError).
        clip_rewards: clip the learning reward to [-1, 1].
        frame_stack: frames stacked for image and multi-channel observations; None: the
            kind's default, 4 for colour and grayscale images, 1 (no stack) for multi-channel.
        env_kwargs: keyword arguments of ``gym.make``.
        time_limit_is_terminal: the environment's time limit ends a game like a game over
            (discount 0) instead of being bootstrapped through.

    Observations are float32 [D] for vectors, uint8 [frame_stack, 84, 84] for images and
    [C, H, W] (stacked: [frame_stack, C, H, W]) of the environment's dtype for multi-channel
    observations (see the module docstring); anything else raises
    UnsupportedEnvironmentError.
    """
    check_gymnasium_id(name)
    if hide_velocity and not _split_gymnasium_id(name)[1].startswith("CartPole"):
        raise ValueError(f"hide_velocity is only defined for CartPole, got {name!r}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if frame_stack is not None and frame_stack < 1:
        raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
    make = functools.partial(
        _make_gymnasium, name, hide_velocity, render, frame_stack, dict(env_kwargs or {})
    )
    vector_env = gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)
    try:
        render_fn = functools.partial(rgb_frame, vector_env.envs[0], name) if render else None
        return EnvironmentBatch(
            vector_env,
            seed,
            clip_rewards=clip_rewards,
            time_limit_is_terminal=time_limit_is_terminal,
            render_fn=render_fn,
        )
    except Exception:
        vector_env.close()
        raise


# The name from when only classic control went this way.
create_classic_environment = create_gymnasium_environment


# --------------------------------------------------------------------------------------
# The recipe actor processes build their environments from
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """A picklable recipe for an EnvironmentBatch, so actor processes build their own.

    Either ``atari`` (the Atari pipeline) or ``classic_name``: any registered Gymnasium id,
    ``module:EnvName-v0`` included; the module is imported by whichever process creates the
    environment, so spawned actors register it too. The remaining fields apply to Gymnasium ids.
    """

    atari: AtariConfig | None = None
    classic_name: str | None = None  # Any Gymnasium id; named when only classic control was.
    hide_velocity: bool = False
    clip_rewards: bool = False
    frame_stack: int | None = None  # Images and multi-channel; None: the kind's default.
    env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # For gym.make.
    time_limit_is_terminal: bool = False  # The time limit ends a game like a game over.

    @property
    def name(self) -> str:
        return self.atari.game if self.atari is not None else str(self.classic_name)

    def create(
        self, num_envs: int, seed: int, *, num_threads: int = 0, render: bool = False
    ) -> EnvironmentBatch:
        """`num_threads` is for Atari's C++ environment only."""
        if self.atari is not None:
            return create_atari_environment(
                self.atari, num_envs, seed, render=render, num_threads=num_threads
            )
        if self.classic_name is None:
            raise ValueError("EnvSpec needs an AtariConfig or a Gymnasium id")
        return create_gymnasium_environment(
            self.classic_name,
            num_envs,
            seed,
            hide_velocity=self.hide_velocity,
            render=render,
            clip_rewards=self.clip_rewards,
            frame_stack=self.frame_stack,
            env_kwargs=self.env_kwargs,
            time_limit_is_terminal=self.time_limit_is_terminal,
        )

    def checkpoint_state(self) -> dict[str, Any]:
        """Plain values for a checkpoint: ``{"atari": {...}}`` or ``{"gymnasium": {...}}``."""
        if self.atari is not None:
            return {"atari": dataclasses.asdict(self.atari)}
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["atari"]
        fields["env_kwargs"] = dict(self.env_kwargs)
        return {"gymnasium": fields}

    @classmethod
    def from_checkpoint_state(cls, state: Mapping[str, Any]) -> EnvSpec:
        """The spec saved by :meth:`checkpoint_state` in `state` (which may hold more keys)."""
        if "atari" in state:
            return cls(atari=AtariConfig(**state["atari"]))
        fields = dict(state["gymnasium"])
        fields["env_kwargs"] = dict(fields["env_kwargs"])
        return cls(**fields)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gym_env", description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print the valid Atari game names")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(atari_game_names()))
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
