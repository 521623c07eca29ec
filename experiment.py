"""What every training and evaluation script shares: common flags, the run configuration,
checkpoint bookkeeping, and the CLI wrapper that turns bad input into a one-line error."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import itertools
import pathlib
import signal
import sys
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from absl import app, flags, logging

import checkpoint
import gym_env
import hyperparameters
import preflight
import run_record
from errors import ConfigError, UserError

FLAGS = flags.FLAGS


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
    flags.DEFINE_string(
        "device",
        "auto",
        "Device of the learner (and of DQN's actor; R2D2's actors use the CPU): auto (cuda "
        "when available, else cpu), cpu, cuda or cuda:N.",
    )


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The agent-independent part of a training run, built once from the flags."""

    agent: str
    environment_name: str
    num_iterations: int
    num_train_steps: int
    num_eval_steps: int
    num_envs: int
    seed: int
    eval_epsilon: float
    env_spec: gym_env.EnvSpec  # Training environments; actor processes build theirs from it.
    eval_env_spec: gym_env.EnvSpec
    checkpoint_root: pathlib.Path
    results_csv_path: pathlib.Path
    tensorboard_dir: pathlib.Path | None
    resume: bool
    save_replay: bool
    device: torch.device

    @classmethod
    def from_flags(cls, agent: str, **atari_overrides: Any) -> RunConfig:
        env_spec, eval_env_spec = environment_specs(**atari_overrides)
        root = pathlib.Path(FLAGS.checkpoint_dir)
        run_dir = checkpoint.run_directory(root, agent, FLAGS.environment_name, FLAGS.seed)
        tb = FLAGS.tensorboard_dir
        config = cls(
            agent=agent,
            environment_name=FLAGS.environment_name,
            num_iterations=FLAGS.num_iterations,
            num_train_steps=FLAGS.num_train_steps,
            num_eval_steps=FLAGS.num_eval_steps,
            num_envs=FLAGS.num_envs,
            seed=FLAGS.seed,
            eval_epsilon=FLAGS.eval_epsilon,
            env_spec=env_spec,
            eval_env_spec=eval_env_spec,
            checkpoint_root=root,
            results_csv_path=pathlib.Path(FLAGS.results_csv_path or run_dir / "results.csv"),
            tensorboard_dir=pathlib.Path(tb) / run_dir.relative_to(root) if tb else None,
            resume=FLAGS.resume,
            save_replay=FLAGS.save_replay,
            device=resolve_device(FLAGS.device),
        )
        config.check_output_paths()
        return config

    def check_output_paths(self) -> None:
        """Fails at once, with one line, on an output path that cannot be written: the
        alternative is a traceback at the first checkpoint, after a whole iteration."""
        preflight.check_writable_directory(self.run_dir, "--checkpoint_dir")
        preflight.check_writable_file(self.results_csv_path, "--results_csv_path")
        if self.tensorboard_dir is not None:
            preflight.check_writable_directory(self.tensorboard_dir, "--tensorboard_dir")

    @property
    def atari(self) -> gym_env.AtariConfig | None:
        """The Atari settings of training; None for a Gymnasium environment."""
        return self.env_spec.atari

    @property
    def eval_atari(self) -> gym_env.AtariConfig | None:
        return self.eval_env_spec.atari

    @property
    def run_dir(self) -> pathlib.Path:
        return checkpoint.run_directory(
            self.checkpoint_root, self.agent, self.environment_name, self.seed
        )

    @property
    def frames_per_step(self) -> int:
        """Environment frames per agent step (the action repeat): papers plot against frames."""
        return self.atari.frame_skip if self.atari is not None else 1

    def claim_results_csv(self) -> None:
        """Records agent, game and seed beside the results CSV (for the report), refusing a
        CSV that holds another run's results."""
        record = run_record.RunRecord(
            agent=self.agent,
            environment_name=self.environment_name,
            seed=self.seed,
            frames_per_step=self.frames_per_step,
            num_iterations=self.num_iterations,
        )
        run_record.claim(self.results_csv_path, record)


# Flags of the Atari pipeline, meaningless for any other Gymnasium environment.
_ATARI_ONLY_FLAGS = (
    "sticky_action_probability",
    "full_action_space",
    "terminal_on_life_loss",
    "max_eval_episode_frames",
)


def environment_specs(**atari_overrides: Any) -> tuple[gym_env.EnvSpec, gym_env.EnvSpec]:
    """(training, evaluation) environments named by --environment_name: an Atari game, or a
    registered Gymnasium id whose spaces are checked now, so a bad one fails in one line before
    anything is written. `atari_overrides` set AtariConfig fields; of them, `frame_stack` also
    applies to a Gymnasium environment's image observations."""
    name = FLAGS.environment_name
    if gym_env.is_atari_game(name):
        atari = gym_env.AtariConfig(
            game=name,
            sticky_action_probability=FLAGS.sticky_action_probability,
            full_action_space=FLAGS.full_action_space,
            clip_rewards=FLAGS.clip_rewards,
            terminal_on_life_loss=FLAGS.terminal_on_life_loss,
            **atari_overrides,
        )
        # Evaluation scores whole games on raw rewards with the evaluation frame cap.
        eval_atari = dataclasses.replace(
            atari, max_episode_frames=FLAGS.max_eval_episode_frames, terminal_on_life_loss=False
        )
        return gym_env.EnvSpec(atari=atari), gym_env.EnvSpec(atari=eval_atari)
    gym_env.check_gymnasium_id(name)
    given = [f"--{flag}" for flag in _ATARI_ONLY_FLAGS if FLAGS[flag].present]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to Atari games, not to {name!r}")
    spec = gym_env.EnvSpec(
        classic_name=name,
        clip_rewards=FLAGS.clip_rewards,
        frame_stack=atari_overrides.get("frame_stack", gym_env.IMAGE_FRAME_STACK),
    )
    spec.create(1, seed=0).close()  # Unsupported spaces fail here, in one line.
    # The environment's own time limit ends evaluation games too.
    return spec, spec


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device={name} but no CUDA device is available")
    return torch.device(name)


def run_metadata(agent: str, environment_name: str, env) -> dict[str, Any]:
    """What a checkpoint of this run must match to be loaded: agent, game and shapes."""
    return {
        "agent": agent,
        "environment_name": environment_name,
        "num_actions": env.num_actions,
        "observation_shape": list(env.observation_shape),
    }


class RunCheckpointer:
    """Saves iteration checkpoints of one run and finds the one to resume from.

    A fresh run refuses to start over an existing run's checkpoints (that would overwrite
    saved work): the user must pass --resume or pick another --checkpoint_dir.
    """

    def __init__(self, run_dir: pathlib.Path, metadata: Mapping[str, Any], resume: bool) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.metadata = dict(metadata)
        self.resume = resume
        latest = checkpoint.latest_path(self.run_dir)
        if latest is not None and not resume:
            raise UserError(
                f"{self.run_dir} already holds checkpoints (latest {latest.name}); pass --resume "
                "to continue that run or choose another --checkpoint_dir"
            )
        self.resume_path = latest if resume else None

    def load_latest(self) -> dict[str, Any] | None:
        if self.resume_path is None:
            if self.resume:
                logging.info("--resume: no checkpoint in %s, starting a new run", self.run_dir)
            return None
        logging.info("Resuming from %s", self.resume_path)
        return checkpoint.load(self.resume_path, self.metadata)

    def save(
        self, iteration: int, state: Mapping[str, Any], steps_into_next: int = 0
    ) -> pathlib.Path:
        """Saves after `iteration` completed iterations, or `steps_into_next` steps into the
        next one (a partial checkpoint, written when a run is interrupted)."""
        partial = steps_into_next > 0
        path = checkpoint.iteration_path(self.run_dir, iteration + partial, partial)
        with self._failed_write_is_one_line(path):
            checkpoint.save(path, {**state, "steps_into_iteration": steps_into_next}, self.metadata)
        if not partial:
            # The finished iteration supersedes a partial checkpoint of it.
            checkpoint.iteration_path(self.run_dir, iteration, True).unlink(missing_ok=True)
        return path

    @property
    def replay_path(self) -> pathlib.Path:
        return self.run_dir / "replay.npz"

    def save_replay(self, arrays: Mapping[str, np.ndarray], iteration: int) -> None:
        """Writes replay as of the end of `iteration`. Call it before that iteration's
        checkpoint: the file is tagged with the iteration, and `load_replay` uses it only with
        the checkpoint it belongs to."""
        tagged = {**arrays, _REPLAY_ITERATION: np.array(iteration, np.int64)}
        with self._failed_write_is_one_line(self.replay_path):
            checkpoint.atomic_write(self.replay_path, lambda temp: _savez(temp, tagged))

    @contextlib.contextmanager
    def _failed_write_is_one_line(self, path: pathlib.Path):
        """A full disk (or any write error) stops the run with one line. The write went to a
        temp file that atomic_write removed, so the previous checkpoint is untouched."""
        try:
            yield
        except OSError as error:
            previous = checkpoint.latest_path(self.run_dir)
            kept = f"; {previous.name} is intact" if previous is not None else ""
            raise checkpoint.CheckpointError(
                f"cannot write {path} ({error.strerror or error}){kept}"
            ) from None

    def load_replay(self, iteration: int) -> dict[str, np.ndarray] | None:
        """The replay saved at the end of `iteration` (the resumed checkpoint's), or None when
        there is none or it belongs to another iteration (a run killed between the two
        writes): replay is then refilled, which is safe, where a mismatched one is not."""
        if not self.replay_path.exists():
            return None
        try:
            with np.load(self.replay_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as error:
            raise checkpoint.CheckpointError(
                f"replay file {self.replay_path} is corrupt ({type(error).__name__})"
            ) from None
        saved_at = arrays.pop(_REPLAY_ITERATION, None)
        if saved_at is None or int(saved_at) != iteration:
            logging.warning(
                "%s is from iteration %s, not %d; replay will be refilled",
                self.replay_path,
                "?" if saved_at is None else int(saved_at),
                iteration,
            )
            return None
        return arrays


_REPLAY_ITERATION = "saved_at_iteration"


def _savez(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


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


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
