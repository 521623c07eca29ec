"""Tiny Gymnasium environments with chosen spaces, for tests of gym_env's adapter and of the
CLIs' errors. Importing this module registers them; a CLI run from the repository root names
them as ``tests.fake_envs:FakeVector-v0``."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class SpacesEnv(gym.Env):
    """Episodes of `length` steps paying `reward` each. The observation is `observation` when
    given, else the observation space filled with the step count (Box) or a seeded sample."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        observation: np.ndarray | None = None,
        reward: float = 1.0,
        length: int = 5,
        render_mode: str | None = None,
    ) -> None:
        self.observation_space = observation_space or gym.spaces.Box(-10, 10, (3,), np.float32)
        self.action_space = action_space or gym.spaces.Discrete(2)
        self._fixed = observation
        self._reward = reward
        self._length = length
        self.render_mode = render_mode
        self._t = 0

    def _observe(self) -> Any:
        if self._fixed is not None:
            return self._fixed.copy()
        if isinstance(self.observation_space, gym.spaces.Box):
            return np.full(self.observation_space.shape, self._t, self.observation_space.dtype)
        return self.observation_space.sample()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action: Any):
        self._t += 1
        return self._observe(), self._reward, self._t >= self._length, False, {}

    def render(self) -> np.ndarray:
        return np.full((6, 8, 3), 7, dtype=np.uint8)


class NoRenderEnv(SpacesEnv):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "render_fps": 10}


class RenderFailsEnv(SpacesEnv):
    def render(self) -> np.ndarray:
        raise ImportError("no drawing library")


_VARIANTS = {
    "FakeVector-v0": (SpacesEnv, {}),
    "FakeNoRender-v0": (NoRenderEnv, {}),
    "FakeRenderFails-v0": (RenderFailsEnv, {}),
    "FakeContinuous-v0": (SpacesEnv, {"action_space": gym.spaces.Box(-1, 1, (2,), np.float32)}),
    "FakeDictObs-v0": (
        SpacesEnv,
        {"observation_space": gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (2,), np.float32)})},
    ),
}
for _env_id, (_entry_point, _kwargs) in _VARIANTS.items():
    # Tests import this module both as `fake_envs` and as `tests.fake_envs`.
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, kwargs=_kwargs)
