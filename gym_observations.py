"""How a Gymnasium environment's spaces are checked and its observations adapted for the agents:
a 1-D Box becomes float32 (or keeps some of its entries), a uint8 image of any supported layout
becomes one grayscale square frame. gym_env.py assembles these into environment batches."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import gymnasium as gym
import numpy as np

from experiment.errors import UnsupportedEnvironmentError

_IMAGE_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA


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


def check_supported(env: gym.Env, name: str) -> None:
    """Raises UnsupportedEnvironmentError unless actions are Discrete(n) from 0 and the
    observation is a 1-D Box or a uint8 image."""
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
    if not is_vector and image_layout(space) is None:
        raise UnsupportedEnvironmentError(
            f"unsupported environment {name!r}: observation space {brief(space)} is neither a "
            "1-D Box (a vector) nor a uint8 image Box of shape (H, W), (H, W, C) or (C, H, W) "
            "with C in 1, 3, 4"
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
