"""The agent-independent part of a training run (environment, budget, seed, output paths,
device), built once from the flags."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import torch
from absl import flags

import gym_env
from experiment import checkpoint, preflight, run_record
from experiment.errors import ConfigError

FLAGS = flags.FLAGS


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
    run_label: str  # --run_label: which configuration; part of the run directory
    eval_epsilon: float
    env_spec: gym_env.EnvSpec  # Training environments; actor processes build theirs from it.
    eval_env_spec: gym_env.EnvSpec
    checkpoint_root: pathlib.Path
    results_csv_path: pathlib.Path
    tensorboard_dir: pathlib.Path | None
    resume: bool
    save_replay: bool
    device: torch.device
    flush_denormals: bool  # --flush_denormals: FTZ/DAZ in the learning process (denormals.py)

    @classmethod
    def from_flags(cls, agent: str, **atari_overrides: Any) -> RunConfig:
        env_spec, eval_env_spec = environment_specs(**atari_overrides)
        root = pathlib.Path(FLAGS.checkpoint_dir)
        label = FLAGS.run_label  # run_directory refuses one that is not a plain name.
        run_dir = checkpoint.run_directory(root, agent, FLAGS.environment_name, FLAGS.seed, label)
        tb = FLAGS.tensorboard_dir
        config = cls(
            agent=agent,
            environment_name=FLAGS.environment_name,
            num_iterations=FLAGS.num_iterations,
            num_train_steps=FLAGS.num_train_steps,
            num_eval_steps=FLAGS.num_eval_steps,
            num_envs=FLAGS.num_envs,
            seed=FLAGS.seed,
            run_label=label,
            eval_epsilon=FLAGS.eval_epsilon,
            env_spec=env_spec,
            eval_env_spec=eval_env_spec,
            checkpoint_root=root,
            results_csv_path=pathlib.Path(FLAGS.results_csv_path or run_dir / "results.csv"),
            tensorboard_dir=pathlib.Path(tb) / run_dir.relative_to(root) if tb else None,
            resume=FLAGS.resume,
            save_replay=FLAGS.save_replay,
            device=resolve_device(FLAGS.device),
            flush_denormals=FLAGS.flush_denormals,
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
            self.checkpoint_root, self.agent, self.environment_name, self.seed, self.run_label
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
            label=self.run_label,
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
    applies to a Gymnasium environment's image and multi-channel observations (without it,
    images stack 4 frames and multi-channel observations none)."""
    name = FLAGS.environment_name
    if gym_env.is_atari_game(name):
        atari = gym_env.AtariConfig(
            game=name,
            sticky_action_probability=FLAGS.sticky_action_probability,
            full_action_space=FLAGS.full_action_space,
            clip_rewards=FLAGS.clip_rewards,
            terminal_on_life_loss=FLAGS.terminal_on_life_loss,
            time_limit_is_terminal=FLAGS.time_limit_is_terminal,
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
        time_limit_is_terminal=FLAGS.time_limit_is_terminal,
        frame_stack=atari_overrides.get("frame_stack"),  # None: the observation kind's default
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
