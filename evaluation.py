"""What every agent's eval_agent.py shares: flags, finding the checkpoint, greedy play and
recording one episode to an mp4."""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from absl import flags, logging

import checkpoint
import gym_env
from errors import UserError
from tracker import EpisodeTracker

FLAGS = flags.FLAGS


def define_eval_flags() -> None:
    flags.DEFINE_string("environment_name", "Pong", "Atari game, e.g. Pong.")
    flags.DEFINE_string("checkpoint_path", None, "Checkpoint file (default: the latest one).")
    flags.DEFINE_string("checkpoint_dir", "./checkpoints", "Root of checkpoints.")
    flags.DEFINE_integer("num_eval_steps", 30_000, "Agent steps to play at most.", 1)
    flags.DEFINE_string("recording_dir", "./recordings", "Where the mp4 goes.")
    flags.DEFINE_float("eval_epsilon", 0.01, "ε of the greedy actor.", 0, 1)
    flags.DEFINE_integer("max_episode_frames", 108_000, "Episode cap in frames.", 1)
    flags.DEFINE_integer("seed", 1, "Seed of the environment and the actor.")


@dataclasses.dataclass(frozen=True)
class EvalResult:
    video_path: pathlib.Path
    frames_written: int
    episode_returns: list[float]


def checkpoint_to_evaluate(agent: str) -> pathlib.Path:
    if FLAGS.checkpoint_path:
        return pathlib.Path(FLAGS.checkpoint_path)
    run_dir = checkpoint.run_directory(FLAGS.checkpoint_dir, agent, FLAGS.environment_name)
    latest = checkpoint.latest_path(run_dir)
    if latest is None:
        raise UserError(
            f"no checkpoint for {agent} on {FLAGS.environment_name} under {run_dir}; train with "
            f"python -m agents.{agent}.run_atari --environment_name={FLAGS.environment_name} "
            "or pass --checkpoint_path"
        )
    return latest


def load_for_evaluation(agent: str) -> tuple[pathlib.Path, dict[str, Any]]:
    gym_env.validate_atari_game(FLAGS.environment_name)
    path = checkpoint_to_evaluate(agent)
    state = checkpoint.load(path, {"agent": agent, "environment_name": FLAGS.environment_name})
    return path, state


def recording_environment(state: dict[str, Any]):
    """The training environment's settings, capped and scored as evaluation requires."""
    atari = gym_env.AtariConfig(**state["atari"])
    atari = dataclasses.replace(
        atari, max_episode_frames=FLAGS.max_episode_frames, terminal_on_life_loss=False
    )
    # The Python ALE prints a banner to stderr at INFO level, which would turn a later
    # one-line error (a network that does not fit) into three lines; keep warnings only.
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)
    return gym_env.create_atari_environment(atari, 1, FLAGS.seed, render=True)


class Mp4Writer:
    """RGB frames -> mp4 (mp4v) with OpenCV."""

    def __init__(self, path: pathlib.Path, fps: float) -> None:
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self._writer = None
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        if self._writer is None:
            height, width = rgb.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write {self.path}")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def play_and_record(
    env, actor, num_steps: int, video_path: pathlib.Path, fps: float = 15.0
) -> EvalResult:
    """Plays one episode (at most `num_steps` agent steps) and records every frame of it."""
    tracker = EpisodeTracker(env.num_envs)
    video = Mp4Writer(video_path, fps)
    try:
        actor.reset()
        timestep = env.reset()
        tracker.step(timestep)
        video.write(env.render())
        for _ in range(num_steps):
            timestep = env.step(actor.step(timestep))
            tracker.step(timestep)
            video.write(env.render())
            if timestep.last[0]:
                break
    finally:
        video.close()
    return EvalResult(video.path, video.frames_written, tracker.episode_returns)


def run_evaluation(agent: str, make_actor: Callable[[dict[str, Any], Any], Any]) -> EvalResult:
    """Loads the checkpoint, builds the actor with make_actor(state, env), plays, records."""
    path, state = load_for_evaluation(agent)
    with recording_environment(state) as env:
        try:
            actor = make_actor(state, env)
        except checkpoint.CheckpointError as error:
            # Name the file: it may have been found by --checkpoint_dir, not given.
            raise checkpoint.CheckpointError(f"{path}: {error}") from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        video_path = (
            pathlib.Path(FLAGS.recording_dir) / f"{agent}_{FLAGS.environment_name}_{stamp}.mp4"
        )
        result = play_and_record(env, actor, FLAGS.num_eval_steps, video_path)
    returns = result.episode_returns
    logging.info(
        "%s: %d finished games, returns %s; %d frames recorded to %s",
        path,
        len(returns),
        [round(r, 1) for r in returns],
        result.frames_written,
        result.video_path,
    )
    print(result.video_path)
    return result
