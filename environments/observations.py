"""How a Gymnasium environment's spaces are checked and its observations adapted for the agents:
a 1-D Box becomes float32 (or keeps some of its entries), a uint8 image of any supported layout
becomes one grayscale square frame, and a multi-channel Box (bool object planes such as
MinAtar's, or a uint8 image whose channels are not colours) keeps its channels, channels-first.
gym_env.py assembles these into environment batches.

:func:`frame_layout` is the convention every consumer of observations (replay, networks) reads
an observation shape by: which part of it is one step's frame and how many frames are stacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import gymnasium as gym
import numpy as np

from experiment.errors import UnsupportedEnvironmentError

_IMAGE_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA
# The smallest image the Nature conv torso takes (8x8 stride 4, 4x4 stride 2, 3x3 stride 1 leave
# 1x1). A 3-D observation [S, H, W] this large is a stack of 2-D frames; a smaller one
# [C, H, W] is one multi-channel frame (see frame_layout).
LARGE_IMAGE_SIZE = 36
# Recordings of multi-channel observations: each channel in its own colour of matplotlib's
# tab10 palette (values copied, so that no plotting library is needed), cycled beyond 10
# channels, on black; cells scaled up by whole pixels to about this many pixels a side.
CHANNEL_COLOURS = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    dtype=np.uint8,
)
RECORDING_SIZE = 320


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def brief(value: object, limit: int = 160) -> str:
    text = one_line(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def image_layout(space: gym.Space) -> str | None:
    """ "HW", "HWC" or "CHW" for a uint8 image Box; None for anything else."""
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8:
        return None
    shape = space.shape
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3 and shape[-1] in _IMAGE_CHANNELS:
        return "HWC"
    if len(shape) == 3 and shape[0] in _IMAGE_CHANNELS:
        return "CHW"
    return None


def multi_channel_layout(space: gym.Space) -> str | None:
    """ "HW", "HWC" or "CHW" for a Box of object channels; None for anything else.

    Multi-channel: a bool Box of 2 or 3 dimensions (a 2-D one is a single channel), or a uint8
    3-D Box that is not a colour image (neither its first nor its last axis is 1, 3 or 4).
    The channel axis is whichever of the first and the last axis is smaller; on a tie, the last
    (Gymnasium's HWC, as MinAtar's (10, 10, 10)). So (10, 10, 4) is HWC and (4, 10, 10) CHW.
    """
    if not isinstance(space, gym.spaces.Box):
        return None
    shape = space.shape
    if space.dtype == np.bool_ and len(shape) == 2:
        return "HW"
    if len(shape) != 3:
        return None
    if space.dtype == np.bool_ or (space.dtype == np.uint8 and image_layout(space) is None):
        return "CHW" if shape[0] < shape[-1] else "HWC"
    return None


class FrameLayout(NamedTuple):
    """How an observation shape splits into frames: replay stores one frame per step and
    rebuilds stacks of `frame_stack` of them; `stack_axis` says whether the observation has a
    leading stack axis (then its shape is [frame_stack, *frame_shape])."""

    frame_shape: tuple[int, ...]
    frame_stack: int
    stack_axis: bool

    @property
    def is_vector(self) -> bool:
        return len(self.frame_shape) == 1


def frame_layout(observation_shape: Sequence[int]) -> FrameLayout:
    """The frames of an observation of `observation_shape`, read from the shape alone:

    - [D]: a vector, one frame per step, no stack;
    - [S, H, W] with H and W >= LARGE_IMAGE_SIZE: a stack of S 2-D frames (grayscale images,
      Atari screens), one [H, W] frame per step;
    - [C, H, W] with H or W below LARGE_IMAGE_SIZE: ONE multi-channel frame (MinAtar), the
      whole observation per step, no stack;
    - [S, C, H, W]: a stack of S multi-channel frames [C, H, W] (multi-channel observations
      with frame stacking, and large multi-channel observations, which always keep this axis so
      that they cannot be read as a stack of 2-D frames).
    """
    shape = tuple(int(d) for d in observation_shape)
    if len(shape) == 1:
        return FrameLayout(shape, 1, False)
    if len(shape) == 3 and min(shape[1:]) >= LARGE_IMAGE_SIZE:
        return FrameLayout(shape[1:], shape[0], True)
    if len(shape) == 3:
        return FrameLayout(shape, 1, False)
    if len(shape) == 4:
        return FrameLayout(shape[1:], shape[0], True)
    raise ValueError(
        f"observation shape {shape} is none of [D], [stack, H, W], [C, H, W], [stack, C, H, W]"
    )


def check_supported(env: gym.Env, name: str) -> None:
    """Raises UnsupportedEnvironmentError unless actions are Discrete(n) from 0 and the
    observation is a 1-D Box, a uint8 image or a multi-channel Box."""
    actions = env.action_space
    if not isinstance(actions, gym.spaces.Discrete):
        raise UnsupportedEnvironmentError(
            f"unsupported environment {name!r}: action space {brief(actions)} is not Discrete "
            "(the agents pick one of n actions)"
        )
    if int(actions.start) != 0:
        raise UnsupportedEnvironmentError(
            f"unsupported environment {name!r}: its Discrete actions start at {actions.start}, "
            "not 0"
        )
    space = env.observation_space
    is_vector = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
    if not is_vector and image_layout(space) is None and multi_channel_layout(space) is None:
        raise UnsupportedEnvironmentError(
            f"unsupported environment {name!r}: observation space {brief(space)} is neither a "
            "1-D Box (a vector), a uint8 image Box of shape (H, W), (H, W, C) or (C, H, W) "
            "with C in 1, 3, 4, nor a multi-channel Box (bool, or uint8 with other C) of shape "
            "(H, W, C) or (C, H, W)"
        )


def check_renders_rgb(env: gym.Env, name: str) -> None:
    modes = list(env.metadata.get("render_modes") or [])
    if "rgb_array" not in modes:
        raise UnsupportedEnvironmentError(
            f"environment {name!r} cannot be recorded: its render modes are {modes}, "
            "without 'rgb_array'"
        )


def rgb_frame(env: gym.Env, name: str) -> np.ndarray:
    """env.render() as an RGB frame [H, W, 3] uint8; one-line error when it cannot give one."""
    try:
        frame = env.render()
    except Exception as error:  # e.g. classic control without pygame
        raise UnsupportedEnvironmentError(
            one_line(f"environment {name!r} cannot render a frame: {type(error).__name__}: {error}")
        ) from None
    frame = None if frame is None else np.asarray(frame)
    if frame is None or frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        what = "None" if frame is None else f"{frame.dtype} {frame.shape}"
        raise UnsupportedEnvironmentError(
            f"environment {name!r} rendered {what}, not an RGB uint8 frame (H, W, 3)"
        )
    return frame


class KeepIndices(gym.ObservationWrapper):
    """Keeps only some entries of a 1-D Box observation (float32)."""

    def __init__(self, env: gym.Env, indices: Sequence[int]) -> None:
        super().__init__(env)
        self._indices = np.asarray(indices, dtype=np.int64)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            low=space.low[self._indices].astype(np.float32),
            high=space.high[self._indices].astype(np.float32),
            dtype=np.float32,
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32)[self._indices]


class Float32Observation(gym.ObservationWrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            low=space.low.astype(np.float32),
            high=space.high.astype(np.float32),
            shape=space.shape,
            dtype=np.float32,
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32)


def grayscale_resize(image: np.ndarray, layout: str, size: int) -> np.ndarray:
    """One uint8 image in `layout` ("HW", "HWC" or "CHW"; C in 1, 3, 4) -> grayscale
    [size, size] uint8. RGB(A) uses the ITU-R 601 luma weights (alpha dropped); resizing uses
    area interpolation, as the Atari preprocessing does."""
    image = np.asarray(image, dtype=np.uint8)
    if layout == "CHW":
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3:
        if image.shape[-1] == 1:
            image = image[..., 0]
        else:
            image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=cv2.INTER_AREA)


class GrayscaleResize(gym.ObservationWrapper):
    """uint8 image observations in any supported layout -> grayscale uint8 [size, size]."""

    def __init__(self, env: gym.Env, size: int) -> None:
        super().__init__(env)
        self._layout = image_layout(env.observation_space)
        self._size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return grayscale_resize(observation, self._layout, self._size)


def channels_first(observation: np.ndarray, layout: str) -> np.ndarray:
    """One multi-channel observation in `layout` ("HW", "HWC" or "CHW") -> [C, H, W]."""
    observation = np.asarray(observation)
    if layout == "HW":
        return observation[None]
    if layout == "HWC":
        return np.ascontiguousarray(np.moveaxis(observation, -1, 0))
    return observation


def channel_picture(frame: np.ndarray, size: int = RECORDING_SIZE) -> np.ndarray:
    """One multi-channel frame [C, H, W] -> an RGB picture uint8 [k·H, k·W, 3] for a person to
    watch: channel c's cells in CHANNEL_COLOURS[c % 10] (the highest set channel wins where
    several are), black where none is set, every cell k x k pixels with k = size // max(H, W)
    (at least 1): a 10 x 10 MinAtar frame becomes 320 x 320."""
    frame = np.asarray(frame) != 0
    channels, height, width = frame.shape
    index = np.arange(1, channels + 1).reshape(-1, 1, 1)
    top = np.max(np.where(frame, index, 0), axis=0)  # [H, W]: 1 + the highest set channel
    colours = CHANNEL_COLOURS[np.arange(channels) % len(CHANNEL_COLOURS)]
    palette = np.concatenate([np.zeros((1, 3), np.uint8), colours])  # row 0: black
    scale = max(1, size // max(height, width))
    return np.repeat(np.repeat(palette[top], scale, axis=0), scale, axis=1)


class ChannelsFirst(gym.ObservationWrapper):
    """Multi-channel observations in any supported layout -> [C, H, W], dtype kept (bool stays
    bool). Renders the latest observation itself (channel_picture), whatever the environment's
    own render modes are."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._layout = multi_channel_layout(env.observation_space)
        space = env.observation_space
        low = channels_first(space.low, self._layout)
        high = channels_first(space.high, self._layout)
        self.observation_space = gym.spaces.Box(low, high, low.shape, space.dtype)
        self._latest: np.ndarray | None = None

    def observation(self, observation: np.ndarray) -> np.ndarray:
        self._latest = channels_first(observation, self._layout).astype(
            self.observation_space.dtype, copy=False
        )
        return self._latest

    def render(self) -> np.ndarray:
        if self._latest is None:
            raise RuntimeError("render() before reset()")
        return channel_picture(self._latest)
