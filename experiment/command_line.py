"""The command line every training and evaluation script shares: the common run flags, one
flag per field of a config dataclass (its help text is the docstring under the field), and the
CLI wrapper that turns bad input into a one-line error."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import signal
import sys
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from absl import app, flags, logging

import gym_env
from experiment import hyperparameters
from experiment.errors import UserError

FLAGS = flags.FLAGS

RUN_LABEL_HELP = (
    "A name for this configuration, e.g. nstep3: the run lives in <checkpoint_dir>/<agent>-<label>/"
    "... and is recorded with it, so that python -m report sets two configurations of one agent "
    "on one game side by side. Letters, digits, '_', '-' and '.'; empty: no label."
)


def define_run_flags(agent_defaults: Mapping[str, Any] | None = None) -> None:
    """Flags shared by every agent's run_atari.py. `agent_defaults` overrides defaults."""
    d = {
        "environment_name": "Pong",
        "num_iterations": 10,
        "num_train_steps": 1_000_000,
        "num_eval_steps": 100_000,
        "num_envs": 1,
        "eval_epsilon": 0.05,
        "max_eval_episode_frames": 108_000,
        "sticky_action_probability": 0.0,
        "full_action_space": False,
        "clip_rewards": True,
        "terminal_on_life_loss": False,
        "time_limit_is_terminal": False,
        **(agent_defaults or {}),
    }
    flags.DEFINE_string("environment_name", d["environment_name"], gym_env.ENVIRONMENT_NAME_HELP)
    flags.DEFINE_integer(
        "num_iterations",
        d["num_iterations"],
        "Iterations of the run. Each trains for --num_train_steps agent steps, evaluates for "
        "--num_eval_steps, then writes a checkpoint, a CSV row and TensorBoard scalars.",
        1,
    )
    flags.DEFINE_integer(
        "num_train_steps",
        d["num_train_steps"],
        "Agent steps of training per iteration, counted over all environments (on Atari one "
        "agent step is 4 frames).",
        1,
    )
    flags.DEFINE_integer(
        "num_eval_steps",
        d["num_eval_steps"],
        "Agent steps of evaluation per iteration: a separate environment played by the greedy "
        "actor (ε = --eval_epsilon); only games finished within them are scored; 0 skips it.",
        0,
    )
    flags.DEFINE_integer(
        "num_envs",
        d["num_envs"],
        "Environments one actor steps together, with one batched network call per step (R2D2: "
        "per actor process).",
        1,
    )
    flags.DEFINE_integer(
        "seed",
        1,
        "Seed of the run: every random number generator (environments, exploration, replay "
        "sampling, network initialisation) derives from it; runs of different seeds live in "
        "different directories.",
    )
    flags.DEFINE_string("run_label", "", RUN_LABEL_HELP)
    flags.DEFINE_float(
        "eval_epsilon",
        d["eval_epsilon"],
        "ε of the evaluation actor: its probability of a uniformly random action (Nature DQN: "
        "0.05).",
        0,
        1,
    )
    flags.DEFINE_integer(
        "max_eval_episode_frames",
        d["max_eval_episode_frames"],
        "Atari only: an evaluation game ends after this many emulator frames (108,000 = 30 "
        "minutes at 60 Hz, Machado et al. 2018; Nature DQN: 18,000).",
        1,
    )
    flags.DEFINE_float(
        "sticky_action_probability",
        d["sticky_action_probability"],
        "Atari only: probability that the emulator repeats the previous action instead of the "
        "chosen one, at every frame (Machado et al. 2018: 0.25; the DQN and R2D2 papers: 0).",
        0,
        1,
    )
    flags.DEFINE_bool(
        "full_action_space",
        d["full_action_space"],
        "Atari only: act with all 18 joystick actions instead of the game's minimal set (R2D2 "
        "paper: all 18).",
    )
    flags.DEFINE_bool(
        "clip_rewards",
        d["clip_rewards"],
        "Clip the learning reward to [-1, 1] (Nature DQN: yes; R2D2 rescales values instead). "
        "Returns in the CSV and TensorBoard are always the game's own.",
    )
    flags.DEFINE_bool(
        "terminal_on_life_loss",
        d["terminal_on_life_loss"],
        "Atari only: a lost life stops bootstrapping (discount 0) while the game goes on "
        "(Nature DQN: yes; Machado et al. 2018 and R2D2: no).",
    )
    flags.DEFINE_bool(
        "time_limit_is_terminal",
        d["time_limit_is_terminal"],
        "A game cut by the environment's time limit stops bootstrapping (discount 0), as if "
        "the game were over. Right when the limit is part of the task, as in toy_envs' "
        "deceptive tasks (Pardo et al. 2018); off (bootstrap from the last observation) when "
        "the limit only bounds the run, as Atari's 108k-frame cap does.",
    )
    flags.DEFINE_string(
        "checkpoint_dir",
        "./checkpoints",
        "Root of checkpoints: a run writes <checkpoint_dir>/<agent>/<environment>/seed_<seed>/"
        "iteration_NNNN.ckpt after every iteration.",
    )
    flags.DEFINE_string(
        "results_csv_path",
        None,
        "CSV file with one row per iteration (returns, losses, rates, replay size); default: "
        "results.csv in the run's checkpoint directory.",
    )
    flags.DEFINE_string(
        "tensorboard_dir",
        "./runs",
        "Root of TensorBoard logs, written to <tensorboard_dir>/<agent>/<environment>/"
        "seed_<seed>/; '' writes none.",
    )
    flags.DEFINE_bool(
        "resume",
        False,
        "Continue the run (same agent, environment and seed) from its latest checkpoint. "
        "Without it, a run refuses to start where checkpoints exist.",
    )
    flags.DEFINE_bool(
        "save_replay",
        False,
        "Also write replay (replay.npz, numpy arrays with priorities) at each iteration end, so "
        "--resume continues with it instead of refilling it.",
    )
    flags.DEFINE_list("allow_config_change", [], hyperparameters.ALLOW_FLAG_HELP)
    flags.DEFINE_bool(
        "flush_denormals",
        True,
        "Read and write float32 values below 1.18e-38 (denormals) as 0 on the CPU (x86 FTZ/DAZ, "
        "ARM FZ): the optimiser's moments of rarely-active inputs sink into that range, where "
        "arithmetic takes a slow path. For DQN this covers the whole run (acting, environments, "
        "evaluation); for R2D2, NGU and Agent57 the learner's process, while their actor and "
        "evaluation processes keep IEEE arithmetic. It changes results in their last bits, so "
        "a seed does not repeat a run made in the other mode, and --resume refuses a switch. "
        "--noflush_denormals keeps IEEE arithmetic.",
    )
    flags.DEFINE_string(
        "device",
        "auto",
        "Device of the learner (and of DQN's actor; R2D2's actors use the CPU): auto (cuda "
        "when available, else cpu), cpu, cuda or cuda:N.",
    )


def run_cli(main: Callable[[], None]) -> None:
    """Parses flags and runs `main`; user errors print one line and exit 2.

    SIGTERM is turned into KeyboardInterrupt so both stop a run the same way.
    """
    app.define_help_flags()  # --help, --helpfull: print the flags' help texts and exit.
    try:
        FLAGS(sys.argv)
    except flags.Error as error:
        _fail(f"bad flag: {error}")
    logging.set_verbosity(logging.INFO)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    # A shell's background job inherits SIGINT ignored; a run must still stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except (UserError, gym_env.UnknownEnvironmentError) as error:
        _fail(str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fail(message: str) -> None:
    one_line = " ".join(message.split())
    print(f"error: {one_line}", file=sys.stderr)
    sys.exit(2)


def field_help_texts(config_cls: type) -> dict[str, str]:
    """{field name: help text} of a config dataclass: the string literal on the line under each
    field (an attribute docstring, as in CleanRL's configs). A subclass's text for a field it
    overrides replaces its base class's."""
    texts: dict[str, str] = {}
    for klass in reversed(config_cls.__mro__):
        if dataclasses.is_dataclass(klass):
            texts.update(_attribute_docstrings(klass))
    return texts


def _attribute_docstrings(klass: type) -> dict[str, str]:
    """{name: text} for each annotated assignment in the class body followed by a string."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # No source (an interactive session): no help texts.
        return {}
    body = ast.parse(source).body[0].body
    texts = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            texts[statement.target.id] = " ".join(following.value.value.split())
    return texts


def define_config_flags(
    config_cls: type,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Defines one absl flag per field of a frozen config dataclass, with its default (or the
    agent's own from `defaults`, e.g. NGU's actors fetch weights more often than R2D2's) and
    its help text: the docstring under the field, which every field must have."""
    help_texts = field_help_texts(config_cls)
    # Checked for all fields before any flag exists, so a failure leaves no half-defined set.
    missing = [f.name for f in dataclasses.fields(config_cls) if not help_texts.get(f.name)]
    if missing:
        raise TypeError(
            f"{config_cls.__name__} fields without a help text: {', '.join(missing)}; write a "
            "docstring under each saying what it means, in which unit, and the paper's value"
        )
    defaults = defaults or {}
    definers = {
        bool: flags.DEFINE_bool,
        int: flags.DEFINE_integer,
        float: flags.DEFINE_float,
        str: flags.DEFINE_string,
    }
    for field in dataclasses.fields(config_cls):
        kind = type(field.default)
        if kind not in definers:
            raise TypeError(f"{config_cls.__name__}.{field.name}: unsupported flag type {kind}")
        default = defaults.get(field.name, field.default)
        definers[kind](field.name, default, help_texts[field.name])


def config_from_flags(config_cls: type) -> Any:
    """Builds the config dataclass from the flags of the same names (validated by the class)."""
    values = {f.name: FLAGS[f.name].value for f in dataclasses.fields(config_cls)}
    return config_cls(**values)
