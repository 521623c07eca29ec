"""A run's hyperparameters as one flat {flag name: value} dict, saved in every checkpoint and
compared on --resume, so that a resumed run cannot silently learn with other settings.

`--num_iterations` is left out on purpose: raising it is how a finished run is extended.
Paths, the device and other settings that do not change what is learned are left out too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from absl import logging

from experiment.errors import UserError

# RunConfig fields that shape learning or evaluation, by flag name.
# flush_denormals changes the arithmetic in its last bits, so a run that resumes in the other
# mode no longer continues the run it resumes (and nothing else records which mode it used).
_RUN_FIELDS = (
    "num_train_steps",
    "num_eval_steps",
    "num_envs",
    "seed",
    "eval_epsilon",
    "flush_denormals",
)
_ATARI_FIELDS = (
    "sticky_action_probability",
    "full_action_space",
    "clip_rewards",
    "terminal_on_life_loss",
)

ALLOW_FLAG_HELP = (
    "Comma-separated hyperparameters that --resume may change on purpose, e.g. "
    "learning_rate,replay_ratio. Without it, a resume whose hyperparameters differ from the "
    "checkpoint's stops with the list of differences."
)


class ConfigChangeError(UserError):
    """--resume with hyperparameters that differ from the checkpoint's, not allowed by name."""


# Settings added after checkpoints were first written, each with the value that builds what a
# checkpoint without it was trained with. A checkpoint that predates one resumes and evaluates
# as if it had been saved with that value.
ADDED_SETTINGS: dict[str, Any] = {
    "torso": "auto",
    "lstm_size": 0,
    "optimizer": "adam",
    "rmsprop_decay": 0.95,
    "rmsprop_eps": 0.01,
    "time_limit_is_terminal": False,
    "flush_denormals": False,  # IEEE arithmetic before the flag existed.
    "evaluation_average_decay": 0.0,  # The online weights were evaluated.
}


def added_settings(*configs: Any) -> dict[str, Any]:
    """ADDED_SETTINGS with each config (class or instance) merged in: an agent whose settings
    were added later declares, in a class attribute `added_settings`, what its checkpoints were
    trained with (NGU's one value network; Agent57's two)."""
    merged = dict(ADDED_SETTINGS)
    for config in configs:
        merged |= getattr(config, "added_settings", {})
    return merged


def collect(run, *configs: Any) -> dict[str, Any]:
    """{flag name: value} of the run's learning-relevant settings and of each config
    dataclass (the agent's, the parallel loop's)."""
    values: dict[str, Any] = {name: getattr(run, name) for name in _RUN_FIELDS}
    if run.atari is not None:
        values.update({name: getattr(run.atari, name) for name in _ATARI_FIELDS})
        values["max_eval_episode_frames"] = run.eval_atari.max_episode_frames
    else:  # A Gymnasium environment: of the Atari settings only reward clipping applies.
        values["clip_rewards"] = run.env_spec.clip_rewards
    values["time_limit_is_terminal"] = (run.atari or run.env_spec).time_limit_is_terminal
    for config in configs:
        values.update(dataclasses.asdict(config))
    return values


def check_resume(
    saved: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    allowed: Collection[str],
    source: str,
    added: Mapping[str, Any] = ADDED_SETTINGS,
) -> dict[str, tuple[Any, Any]]:
    """Raises ConfigChangeError listing the hyperparameters that differ from `saved` (those of
    the checkpoint at `source`) and are not in `allowed`; returns the allowed changes.

    Names in `allowed` must be hyperparameters: a typo would otherwise allow nothing. A
    checkpoint written before hyperparameters were saved (`saved` None) is let through with a
    warning. `added`: the settings that may be absent from `saved`, with the value they had
    (`added_settings`).
    """
    if saved is None:
        logging.warning("%s holds no hyperparameters to compare with; not checked", source)
        return {}
    unknown = sorted(set(allowed) - set(current))
    if unknown:
        raise ConfigChangeError(
            f"--allow_config_change names {', '.join(unknown)}, which "
            f"{'is not a hyperparameter' if len(unknown) == 1 else 'are not hyperparameters'} "
            "of this agent"
        )
    changes = {
        name: (saved.get(name, "absent"), current.get(name, "absent"))
        for name in sorted(set(saved) | set(current))
        if not _same(saved.get(name), current.get(name))
        and not _predates(saved, current, name, added)
    }
    refused = [name for name in changes if name not in allowed]
    if refused:
        listed = ", ".join(
            f"{name} {changes[name][0]!r} -> {changes[name][1]!r}" for name in refused
        )
        raise ConfigChangeError(
            f"--resume with hyperparameters that differ from {source}: {listed}; pass "
            f"--allow_config_change={','.join(refused)} to accept "
            f"{'it' if len(refused) == 1 else 'them'}"
        )
    return changes


def _predates(
    saved: Mapping[str, Any], current: Mapping[str, Any], name: str, added: Mapping[str, Any]
) -> bool:
    """The checkpoint predates setting `name`, which now has the value it was trained with."""
    return name not in saved and name in added and _same(current.get(name), added[name])


def _same(a: Any, b: Any) -> bool:
    # A checkpoint gives back ints and floats as saved; 1 and 1.0 are the same setting.
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b
