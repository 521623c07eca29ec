"""The command lines on Gymnasium environments other than Atari: DQN on a vector observation,
R2D2 (actor processes) on an image observation, both evaluated to an mp4; and one-line errors
for environments the agents cannot play."""

from __future__ import annotations

import pathlib

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

ROOM = "toy_envs:SparseGridRoom-v0"  # 15 x 15, one-hot [225], 5 actions, horizon 56
PIXEL_ROOM = "toy_envs:SparseGridRoomPixels-v0"  # the same room as a 60 x 60 RGB image


def _only_checkpoint(root: pathlib.Path, agent: str, environment: str) -> pathlib.Path:
    (path,) = (root / "checkpoints" / agent / environment).rglob("iteration_0001.ckpt")
    return path


def _video_frame_shapes(recording_dir: pathlib.Path) -> list[tuple[int, ...]]:
    (video,) = recording_dir.glob("*.mp4")
    return [frame.shape for frame in video_frames(video)]


DQN_FLAGS = [
    "--num_iterations=1",
    "--num_train_steps=300",
    "--num_eval_steps=100",
    *tiny_flags("dqn"),
]


@pytest.mark.slow
def test_dqn_trains_and_records_a_vector_gymnasium_environment(tmp_path):
    check_ok(
        run_module(
            "dqn", "run_atari", [f"--environment_name={ROOM}", *DQN_FLAGS, *output_flags(tmp_path)]
        )
    )
    payload = load_checkpoint(_only_checkpoint(tmp_path, "dqn", ROOM))
    assert payload["metadata"]["environment_name"] == ROOM
    assert list(payload["metadata"]["observation_shape"]) == [225]
    assert payload["metadata"]["num_actions"] == 5
    saved = payload["state"]["gymnasium"]
    assert saved["classic_name"] == ROOM and saved["clip_rewards"] is True  # DQN's default
    assert "atari" not in payload["state"]
    assert "torso.layers.0.weight" in payload["state"]["learner"]["network"]  # the MLP
    (csv_path,) = (tmp_path / "checkpoints").rglob("results.csv")
    assert [row["step"] for row in read_csv(csv_path)] == ["300"]

    recording_dir = tmp_path / "recordings"
    result = run_module(
        "dqn",
        "eval_agent",
        [
            f"--environment_name={ROOM}",
            f"--checkpoint_dir={tmp_path / 'checkpoints'}",
            f"--recording_dir={recording_dir}",
            "--seed=3",
            "--num_eval_steps=100",
        ],
    )
    check_ok(result)
    # An untrained agent does not find the goal: the game is truncated at the horizon of 56
    # steps, recorded from the reset frame on, 16 pixels per cell.
    assert _video_frame_shapes(recording_dir) == [(240, 240, 3)] * 57


R2D2_FLAGS = [
    *tiny_flags("r2d2"),
    "--num_iterations=1",
    "--num_train_steps=200",
    "--num_eval_steps=60",
]


@pytest.mark.slow
def test_r2d2_actor_processes_build_an_image_environment_from_its_module_id(tmp_path):
    # Actor processes are spawned: they import toy_envs only through the module:EnvName-v0 id.
    args = [f"--environment_name={PIXEL_ROOM}", *R2D2_FLAGS, *output_flags(tmp_path)]
    check_ok(run_module("r2d2", "run_atari", args))
    payload = load_checkpoint(_only_checkpoint(tmp_path, "r2d2", PIXEL_ROOM))
    assert list(payload["metadata"]["observation_shape"]) == [4, 84, 84]
    assert payload["state"]["gymnasium"]["classic_name"] == PIXEL_ROOM
    (csv_path,) = (tmp_path / "checkpoints").rglob("results.csv")
    assert [int(row["step"]) >= 200 for row in read_csv(csv_path)] == [True]
    assert "torso.layers.0.weight" in payload["state"]["learner"]["network"]
    assert payload["state"]["learner"]["network"]["torso.layers.0.weight"].dim() == 4  # conv

    recording_dir = tmp_path / "recordings"
    check_ok(
        run_module(
            "r2d2",
            "eval_agent",
            [
                f"--environment_name={PIXEL_ROOM}",
                f"--checkpoint_dir={tmp_path / 'checkpoints'}",
                f"--recording_dir={recording_dir}",
                "--seed=5",
                "--num_eval_steps=10",
            ],
        )
    )
    assert _video_frame_shapes(recording_dir) == [(240, 240, 3)] * 11


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--environment_name=Pendulum-v1"], ["Pendulum-v1", "action space Box", "not Discrete"]),
        (["--environment_name=tests.fake_envs:FakeDictObs-v0"], ["observation space Dict"]),
        (["--environment_name=no_such_module:Env-v0"], ["cannot import module 'no_such_module'"]),
        (["--environment_name=toy_envs:SparseGridRom-v0"], ["did you mean", ROOM]),
        (
            [f"--environment_name={ROOM}", "--sticky_action_probability=0.25"],
            ["--sticky_action_probability", "only apply to Atari games"],
        ),
    ],
)
def test_environments_the_agents_cannot_play_are_one_line_errors(tmp_path, args, expected):
    result = run_module(
        "dqn", "run_atari", [*DQN_FLAGS, *args, *output_flags(tmp_path)], timeout=60
    )
    line = one_error_line(result)
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_eval_agent_on_an_environment_without_rgb_frames_is_a_one_line_error(tmp_path):
    name = "tests.fake_envs:FakeNoRender-v0"
    check_ok(
        run_module(
            "dqn", "run_atari", [f"--environment_name={name}", *DQN_FLAGS, *output_flags(tmp_path)]
        )
    )
    result = run_module(
        "dqn",
        "eval_agent",
        [
            f"--environment_name={name}",
            f"--checkpoint_dir={tmp_path / 'checkpoints'}",
            f"--recording_dir={tmp_path / 'recordings'}",
            "--seed=3",
        ],
        timeout=60,
    )
    line = one_error_line(result)
    assert "cannot be recorded" in line and "rgb_array" in line
