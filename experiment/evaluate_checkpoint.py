"""What every agent's eval_agent.py shares: flags, finding the checkpoint, greedy play of N
whole games, their mean score and human-normalised score, and recording the first to an mp4."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from absl import flags, logging

import gym_env
from analysis import atari_scores
from experiment import checkpoint, hyperparameters, preflight
from experiment.errors import UserError

FLAGS = flags.FLAGS


def define_policy_index_flag(default: int | None, help_text: str) -> None:
    """--policy_index, for the agents with a family of policies (NGU, Agent57): which one the
    evaluation plays; `default` None lets the agent choose."""
    flags.DEFINE_integer("policy_index", default, help_text, lower_bound=0)


def define_eval_flags() -> None:
    flags.DEFINE_string("environment_name", "Pong", gym_env.ENVIRONMENT_NAME_HELP)
    flags.DEFINE_string(
        "checkpoint_path", None, "Checkpoint file (default: the latest one of the run of --seed)."
    )
    flags.DEFINE_string(
        "checkpoint_dir",
        "./checkpoints",
        "Root of checkpoints, as given to run_atari: the latest checkpoint of "
        "<checkpoint_dir>/<agent>/<environment>/seed_<seed>/ is evaluated.",
    )
    flags.DEFINE_string("run_label", "", "The --run_label the run was trained with, if any.")
    flags.DEFINE_integer(
        "num_episodes",
        1,
        "Whole games to play. Prints the mean ± std of their scores and their human-normalised "
        "score; only the first game is recorded.",
        1,
    )
    flags.DEFINE_integer(
        "num_eval_steps",
        30_000,
        "Agent steps per game at most: a game still going then ends there and is scored as it "
        "stands, as at the --max_episode_frames cap.",
        1,
    )
    flags.DEFINE_string(
        "recording_dir",
        "./recordings",
        "Directory of the mp4 of the first game: <agent>_<environment>_<time>.mp4, every frame "
        "at full resolution, 15 frames per second.",
    )
    flags.DEFINE_float(
        "eval_epsilon",
        0.01,
        "ε of the playing actor: its probability of a uniformly random action instead of the "
        "greedy one (Nature DQN's evaluation: 0.05).",
        0,
        1,
    )
    flags.DEFINE_integer(
        "max_episode_frames",
        108_000,
        "Atari only: a game ends after this many emulator frames (108,000 = 30 minutes at 60 "
        "Hz); other environments keep their own time limit.",
        1,
    )
    flags.DEFINE_integer(
        "seed",
        1,
        "Seed of the run to evaluate (its checkpoints are under "
        "<checkpoint_dir>/<agent>/<game>/seed_<seed>/) and of the evaluation games.",
    )


@dataclasses.dataclass(frozen=True)
class EvalResult:
    video_path: pathlib.Path
    frames_written: int  # Of the first game, the one recorded.
    episode_returns: list[float]  # Raw score of each game played.
    episode_lengths: list[int]  # Agent steps of each game.


def checkpoint_to_evaluate(agent: str) -> pathlib.Path:
    if FLAGS.checkpoint_path:
        return pathlib.Path(FLAGS.checkpoint_path)
    game, seed = FLAGS.environment_name, FLAGS.seed
    run_dir = checkpoint.run_directory(FLAGS.checkpoint_dir, agent, game, seed, FLAGS.run_label)
    latest = checkpoint.latest_path(run_dir)
    if latest is None:
        raise UserError(
            f"no checkpoint for {agent} on {game} with seed {seed} under {run_dir}"
            f"{_other_seeds_hint(run_dir)}; train with python -m agents.{agent}.run_atari "
            f"--environment_name={game} --seed={seed} or pass --checkpoint_path"
        )
    return latest


def _other_seeds_hint(run_dir: pathlib.Path) -> str:
    """' (runs exist for --seed=3, 4)' when other seeds of this agent and game were trained."""
    others = sorted(
        path.name.removeprefix("seed_")
        for path in run_dir.parent.glob("seed_*")
        if checkpoint.latest_path(path) is not None
    )
    return f" (runs exist for --seed={', '.join(others)})" if others else ""


def load_for_evaluation(agent: str) -> tuple[pathlib.Path, dict[str, Any]]:
    gym_env.check_environment_name(FLAGS.environment_name)
    path = checkpoint_to_evaluate(agent)
    state = checkpoint.load(path, {"agent": agent, "environment_name": FLAGS.environment_name})
    return path, state


def recording_environment(state: dict[str, Any]):
    """The training environment's settings, capped and scored as evaluation requires, rendering
    RGB frames (Atari: the full-resolution screen; Gymnasium: render_mode="rgb_array")."""
    spec = gym_env.EnvSpec.from_checkpoint_state(state)
    if spec.atari is not None:
        atari = dataclasses.replace(
            spec.atari, max_episode_frames=FLAGS.max_episode_frames, terminal_on_life_loss=False
        )
        spec = dataclasses.replace(spec, atari=atari)
        # The Python ALE prints a banner to stderr at INFO level, which would turn a later
        # one-line error (a network that does not fit) into three lines; keep warnings only.
        import ale_py

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)
    return spec.create(1, FLAGS.seed, render=True)


def _file_part(name: str) -> str:
    """An environment name usable in a file name: "toy_envs:Room-v0" -> "toy_envs_Room-v0"."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


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


def play_game(env, actor, max_steps: int, video: Mp4Writer | None = None) -> tuple[float, int]:
    """Plays one game of env 0 from a reset, for at most `max_steps` agent steps.

    Returns (raw score, agent steps). With `video`, records the reset frame and one frame per
    agent step.
    """
    actor.reset()
    timestep = env.reset()
    if video is not None:
        video.write(env.render())
    score, steps = 0.0, 0
    while steps < max_steps:
        timestep = env.step(actor.step(timestep))
        score += float(timestep.raw_reward[0])
        steps += 1
        if video is not None:
            video.write(env.render())
        if timestep.last[0]:
            break
    return score, steps


def play_games(
    env, actor, num_games: int, max_steps: int, video_path: pathlib.Path, fps: float = 15.0
) -> EvalResult:
    """Plays `num_games` games one after another and records the first one to `video_path`."""
    video = Mp4Writer(video_path, fps)
    try:
        games = [play_game(env, actor, max_steps, video)]
    finally:
        video.close()
    games += [play_game(env, actor, max_steps) for _ in range(num_games - 1)]
    scores, lengths = zip(*games, strict=True)
    return EvalResult(video.path, video.frames_written, list(scores), list(lengths))


def score_summary(game: str, scores: list[float]) -> str:
    """'Pong: 3 games, score -20.3 ± 0.6, human-normalised -0.006 ± 0.017' (mean ± std over
    games, std with Bessel's correction; no ± for one game)."""
    mean = float(np.mean(scores))
    std = float(np.std(scores, ddof=1)) if len(scores) > 1 else None
    text = f"{game}: {len(scores)} game{'s' if len(scores) > 1 else ''}, score {mean:.1f}"
    text += f" ± {std:.1f}" if std is not None else ""
    if not atari_scores.has_published_scores(game):
        return f"{text}, no human-normalised score (no published human score for {game})"
    random, human = atari_scores.RANDOM_AND_HUMAN_SCORES[game]
    text += f", human-normalised {atari_scores.human_normalized_score(game, mean):.3f}"
    return text + (f" ± {std / (human - random):.3f}" if std is not None else "")


def run_evaluation(agent: str, make_actor: Callable[[dict[str, Any], Any], Any]) -> EvalResult:
    """Loads the checkpoint, builds the actor with make_actor(state, env), plays, records."""
    gym_env.check_environment_name(FLAGS.environment_name)
    # Before loading and playing: a bad --recording_dir fails now, not after the episode.
    preflight.check_writable_directory(pathlib.Path(FLAGS.recording_dir), "--recording_dir")
    path, state = load_for_evaluation(agent)
    with recording_environment(state) as env:
        try:
            actor = make_actor(state, env)
        except checkpoint.CheckpointError as error:
            # Name the file: it may have been found by --checkpoint_dir, not given.
            raise checkpoint.CheckpointError(f"{path}: {error}") from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        video_path = (
            pathlib.Path(FLAGS.recording_dir)
            / f"{agent}_{_file_part(FLAGS.environment_name)}_{stamp}.mp4"
        )
        result = play_games(env, actor, FLAGS.num_episodes, FLAGS.num_eval_steps, video_path)
    logging.info(
        "%s: %d games, scores %s in %s agent steps; first game (%d frames) recorded to %s",
        path,
        len(result.episode_returns),
        [round(r, 1) for r in result.episode_returns],
        result.episode_lengths,
        result.frames_written,
        result.video_path,
    )
    print(score_summary(FLAGS.environment_name, result.episode_returns))
    print(result.video_path)
    return result


@dataclasses.dataclass(frozen=True)
class EvalScript:
    """An agent's eval_agent.py: its flags, defined when the script is built, and its main.

    make_actor(state, config, network, device) builds the playing actor from the checkpoint
    (its state dict, config and network with the saved weights, on `device`); it reads
    --eval_epsilon, --seed and --policy_index from FLAGS. policy_index: (default, help) of
    --policy_index, for the agents with a family of policies; None: no such flag.
    """

    agent: str
    config_cls: type
    build_network: Callable
    make_actor: Callable[[dict[str, Any], Any, torch.nn.Module, torch.device], Any]
    policy_index: tuple[int | None, str] | None = None

    def __post_init__(self) -> None:
        define_eval_flags()
        if self.policy_index is not None:
            define_policy_index_flag(*self.policy_index)

    def main(self) -> EvalResult:
        return run_evaluation(self.agent, self._actor_for)

    def _actor_for(self, state: dict[str, Any], env) -> Any:
        config, network, device = network_from_checkpoint(
            state, self.config_cls, self.build_network, env
        )
        return self.make_actor(state, config, network, device)


def greedy_actor(actor_class: type) -> Callable[..., Any]:
    """make_actor for an agent whose evaluation plays `actor_class`(network, ε, seed, device)."""

    def make_actor(state, config, network, device):
        return actor_class(network, FLAGS.eval_epsilon, FLAGS.seed, device)

    return make_actor


def config_from_checkpoint(config_cls: type, state: dict[str, Any]) -> Any:
    """The agent config a checkpoint was trained with, as `config_cls`; a checkpoint whose
    config does not fit (another agent, another version) gets one line."""
    saved = dict(state.get("config", {}))
    names = {field.name for field in dataclasses.fields(config_cls)}
    # Settings added since the checkpoint was written: the values it was trained with.
    added = hyperparameters.added_settings(config_cls)
    saved |= {k: v for k, v in added.items() if k in names - set(saved)}
    unknown, missing = sorted(set(saved) - names), sorted(names - set(saved))
    if unknown or missing:
        raise checkpoint.CheckpointError(
            f"its config does not fit {config_cls.__name__}: unknown fields {unknown}, "
            f"missing fields {missing}"
        )
    try:
        return config_cls(**saved)
    except UserError as error:
        raise checkpoint.CheckpointError(f"its config is invalid: {error}") from None


def network_from_checkpoint(
    state: dict[str, Any], config_cls: type, build_network: Callable, env
) -> tuple[Any, Any, Any]:
    """(config, network, device): the agent's network as its builder makes it for `env`, with
    the checkpoint's weights, in evaluation mode on the best device. The weights are those the
    run evaluated: the average of the online weights when it kept one
    (--evaluation_average_decay), else the online weights."""
    config = config_from_checkpoint(config_cls, state)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = build_network(config, env.observation_shape, env.num_actions).to(device)
    learner = state["learner"]
    if "evaluation_network" in learner:
        checkpoint.load_module_state(network, learner["evaluation_network"], "evaluation network")
    else:
        checkpoint.load_module_state(network, learner["network"], "network")
    return config, network.eval(), device
