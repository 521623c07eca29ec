"""The agents' command lines on MinAtar: DQN trains on MinAtar/Breakout-v1 by its id alone and
eval_agent records the game to an mp4 of coloured channels; R2D2's actor process registers
MinAtar itself; --torso is checked at start."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from cli_support import (
    check_ok,
    load_checkpoint,
    one_error_line,
    output_flags,
    read_csv,
    run_module,
    tiny_flags,
    video_frames,
)

from environments import observations

GAME = "MinAtar/Breakout-v1"  # [4, 10, 10] bool, 3 actions


def _train(
    root: pathlib.Path,
    agent: str,
    train_steps: int,
    *extra: str,
    game: str = GAME,
    channels: int = 4,
) -> dict:
    """One iteration of `agent` on `game` with tiny flags; returns its checkpoint, which holds
    MinAtar's observation shape and a network with MinAtar's conv torso."""
    args = [f"--environment_name={game}", *tiny_flags(agent), *extra, *output_flags(root)]
    args += ["--num_iterations=1", f"--num_train_steps={train_steps}", "--num_eval_steps=30"]
    check_ok(run_module(agent, "run_atari", args))
    (path,) = (root / "checkpoints" / agent / game).rglob("iteration_0001.ckpt")
    payload = load_checkpoint(path)
    assert list(payload["metadata"]["observation_shape"]) == [channels, 10, 10]
    assert payload["state"]["gymnasium"]["classic_name"] == game
    network = payload["state"]["learner"]["network"]
    convs = {name: w.shape for name, w in network.items() if w.dim() == 4}
    assert convs and set(convs.values()) == {(16, channels, 3, 3)}  # MinAtar's conv, each
    return payload


def _evaluate(root: pathlib.Path, agent: str, seed: int, game: str = GAME) -> list[np.ndarray]:
    recording_dir = root / "recordings"
    result = run_module(
        agent,
        "eval_agent",
        [
            f"--environment_name={game}",
            f"--checkpoint_dir={root / 'checkpoints'}",
            f"--recording_dir={recording_dir}",
            f"--seed={seed}",
            "--num_eval_steps=20",
        ],
    )
    check_ok(result)
    (video,) = recording_dir.glob("*.mp4")
    assert result.stdout.strip().splitlines()[-1] == str(video)
    return video_frames(video)


@pytest.mark.slow
def test_dqn_trains_on_a_minatar_id_and_eval_agent_records_it(tmp_path):
    payload = _train(tmp_path, "dqn", 300)
    assert payload["metadata"]["num_actions"] == 3
    assert payload["state"]["config"]["torso"] == "auto"
    network = payload["state"]["learner"]["network"]
    assert network["head.advantage.weight"].shape == (3, 128)  # fc 128 -> the actions
    (csv_path,) = (tmp_path / "checkpoints").rglob("results.csv")
    assert [row["step"] for row in read_csv(csv_path)] == ["300"]

    frames = _evaluate(tmp_path, "dqn", seed=3)
    assert 2 <= len(frames) <= 21  # the reset frame, then one per step
    assert all(frame.shape == (320, 320, 3) for frame in frames)  # 10 x 10 cells of 32 pixels
    # One pixel per cell (cv2 reads BGR), each near black or a channel's colour (mp4 is lossy).
    cells = frames[0][16::32, 16::32, ::-1].reshape(-1, 1, 3).astype(int)
    palette = np.concatenate([[(0, 0, 0)], observations.CHANNEL_COLOURS]).astype(int)
    distance = np.abs(cells - palette[None]).sum(-1)  # [cells, 11]
    assert (distance.min(axis=1) < 60).all()
    assert len(set(distance.argmin(axis=1))) >= 3  # black and two channels (paddle, bricks)


@pytest.mark.slow
def test_r2d2_with_one_actor_process_trains_on_a_minatar_id(tmp_path):
    # Its one actor process is spawned: it registers MinAtar from the id alone.
    payload = _train(tmp_path, "r2d2", 100, "--num_actors=1", "--prefetch_workers=0")
    network = payload["state"]["learner"]["network"]
    assert network["lstm.weight_hh_l0"].shape == (4 * 128, 128)  # LSTM 128, the torso's
    (csv_path,) = (tmp_path / "checkpoints").rglob("results.csv")
    (row,) = read_csv(csv_path)
    assert int(row["step"]) >= 100 and float(row["learner/num_updates"]) > 0


@pytest.mark.slow
def test_agent57_trains_on_space_invaders_with_all_actions_and_eval_agent_records_it(tmp_path):
    # Six object planes and v0's six actions (v1 has four). Agent57 builds on NGU's networks,
    # so its embedding and RND networks must take MinAtar's torso as its Q-networks do.
    game = "MinAtar/SpaceInvaders-v0"
    payload = _train(tmp_path, "agent57", 200, "--num_actors=1", game=game, channels=6)
    assert payload["metadata"]["num_actions"] == 6
    convs = [k for k, w in payload["state"]["learner"]["network"].items() if w.dim() == 4]
    assert sorted(k.removesuffix(".layers.0.weight") for k in convs) == [
        "embedding.torso",
        "q.extrinsic.torso",
        "q.intrinsic.torso",
        "rnd.predictor.0",
        "rnd.target.0",
    ]
    (csv_path,) = (tmp_path / "checkpoints").rglob("results.csv")
    (row,) = read_csv(csv_path)
    assert float(row["learner/num_updates"]) > 0
    frames = _evaluate(tmp_path, "agent57", seed=3, game=game)
    assert 2 <= len(frames) <= 21
    assert all(frame.shape == (320, 320, 3) for frame in frames)


@pytest.mark.parametrize(
    ("agent", "flag", "expected"),
    [
        ("dqn", "--torso=nature", "--torso=nature needs image observations of at least 36x36"),
        ("r2d2", "--torso=resnet", "torso must be one of auto, nature, minatar, mlp"),
    ],
)
def test_a_torso_that_does_not_fit_is_one_line_at_start(tmp_path, agent, flag, expected):
    args = [f"--environment_name={GAME}", flag, *tiny_flags(agent), *output_flags(tmp_path)]
    line = one_error_line(run_module(agent, "run_atari", args, timeout=60))
    assert expected in line
