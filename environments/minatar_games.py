"""MinAtar (Young & Tian 2019) by its Gymnasium ids: ``MinAtar/<Game>-v0`` plays with all 6
actions, ``MinAtar/<Game>-v1`` with the game's minimal set; the games are Asterix, Breakout,
Freeway, Seaquest and SpaceInvaders.

The ``minatar`` package defines these environments but registers them only when
``minatar.gym.register_envs()`` is called. :func:`register` does that lazily, the first time a
process meets a ``MinAtar/`` id (gym_env's name checks call it, so a freshly spawned actor
process registers them too), and turns a missing package into one line.

Observations are ``(10, 10, C)`` bool object planes; environments/observations.py turns them into
channels-first ``[C, 10, 10]`` bool without stacking frames (MinAtar encodes motion in trail
channels), and records them by colouring each channel itself (MinAtar's own ``rgb_array``
needs seaborn).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator

import gymnasium as gym

from environments.observations import one_line
from experiment.errors import UnknownEnvironmentError

__all__ = ["HINT", "PREFIX", "is_minatar_id", "register", "registered_ids"]

PREFIX = "MinAtar/"
HINT = (
    "MinAtar ids are MinAtar/<Game>-v0 (all actions) or MinAtar/<Game>-v1 (minimal action set), "
    "<Game> one of Asterix, Breakout, Freeway, Seaquest, SpaceInvaders"
)
_PROBE_ID = "MinAtar/Breakout-v0"  # Registered exactly when register_envs() has run.


def is_minatar_id(env_id: str) -> bool:
    """Whether a Gymnasium id (without a ``module:`` part) names MinAtar, in any letter case."""
    return env_id.lower().startswith(PREFIX.lower())


def registered_ids() -> list[str]:
    """The MinAtar ids now in Gymnasium's registry."""
    return [env_id for env_id in gym.registry if env_id.startswith(PREFIX)]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """minatar warns through the root logger when seaborn or matplotlib is missing, which
    would add a line to a one-line error; the warning is irrelevant here (we render our own
    frames). A handler is added for the while so that logging.warning cannot call basicConfig."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        root.removeHandler(handler)


def register(name: str) -> None:
    """Registers MinAtar's ids with Gymnasium, once per process.

    `name` is the environment name as given, for the error. Raises UnknownEnvironmentError
    (one line) when the ``minatar`` package cannot be imported.
    """
    if _PROBE_ID in gym.registry:
        return
    try:
        with _quiet_root_logger():
            module = importlib.import_module("minatar.gym")
    except ImportError as error:
        missing = str(getattr(error, "name", None) or "").split(".")[0] == "minatar"
        detail = "" if missing else f" ({type(error).__name__}: {error})"
        raise UnknownEnvironmentError(
            one_line(f"environment {name!r} needs the minatar package: pip install minatar{detail}")
        ) from None
    module.register_envs()
