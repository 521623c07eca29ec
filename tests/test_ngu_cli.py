"""End-to-end tests of NGU's command lines with real actor processes: a tiny Pong run that
trains, checkpoints everything NGU adds and evaluates any policy to an mp4; a Ctrl-C that
--resume continues with the normalisers and counters it had; bad input in one line."""

from __future__ import annotations

import math
import os
import pathlib
import signal
import subprocess
import time

import cli_support
import cv2
import pytest
import torch
from cli_support import REPO, check_ok, load_checkpoint, read_csv, subprocess_env

pytestmark = pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs /proc")

TINY = [
    "--num_actors=2",
    "--num_envs=2",
    "--batch_size=4",
    "--min_replay_size=8",
    "--replay_capacity=100",
    "--burn_in=8",
    "--sequence_length=16",
    "--replay_period=8",
    "--num_policies=4",
    "--episodic_memory_capacity=500",
    "--num_eval_steps=60",
    "--device=cpu",
    "--seed=3",
]


def _dir_flags(root: pathlib.Path) -> list[str]:
    return [f"--checkpoint_dir={root / 'checkpoints'}", f"--tensorboard_dir={root / 'tb'}"]


def _run(module: str, args: list[str], timeout: float = cli_support.TIMEOUT_S):
    return cli_support.run_module("ngu", module, args, timeout)


def _video_frames(path: pathlib.Path) -> list:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.slow
def test_pong_two_actors_train_checkpoint_everything_and_evaluate(tmp_path):
    result = _run(
        "run_atari",
        [*TINY, "--num_iterations=2", "--num_train_steps=300", *_dir_flags(tmp_path)],
    )
    check_ok(result)
    run_dir = tmp_path / "checkpoints" / "ngu" / "Pong" / "seed_3"
    rows = read_csv(run_dir / "results.csv")
    assert [r["iteration"] for r in rows] == ["1", "2"]
    last = rows[-1]
    for column in (
        "intrinsic/reward",
        "intrinsic/episodic",
        "intrinsic/lifelong_alpha",
        "learner/loss",
        "learner/loss_embedding",
        "learner/loss_rnd",
        "learner/grad_norm_q",
        "learner/grad_norm_embedding",
        "learner/grad_norm_rnd",
    ):
        assert math.isfinite(float(last[column])), column
    assert float(last["intrinsic/reward"]) > 0

    state = load_checkpoint(run_dir / "iteration_0002.ckpt")["state"]
    assert state["config"]["num_policies"] == 4
    network = state["learner"]["network"]
    # The Q-network, the embedding, RND and every normaliser are saved.
    for key in (
        "q.lstm.weight_ih_l0",
        "embedding.embed.weight",
        "rnd.predictor.0.layers.0.weight",
        "rnd.observation_stats.mean",
        "rnd.error_stats.count",
    ):
        assert key in network, key
    assert network["rnd.error_stats.count"].item() > 0
    assert network["rnd.observation_stats.mean"].shape == (1, 84, 84)  # one frame, NGU's
    assert len(state["learner"]["optimizer"]["param_groups"]) == 3  # Q, embedding, RND
    actor_states = state["trainer"]["actor_states"]
    assert set(actor_states) == {"0", "1"}
    for actor_state in actor_states.values():
        assert all(count > 0 for count in actor_state["memory"]["count"])  # d_m² per env
        # Fixed policy indices: environment g plays g mod N.
        assert actor_state["policies"]["indices"] in ([0, 1], [2, 3])

    recordings = tmp_path / "recordings"
    for policy in (0, 3):
        result = _run(
            "eval_agent",
            [
                f"--checkpoint_dir={tmp_path / 'checkpoints'}",
                f"--recording_dir={recordings / str(policy)}",
                f"--policy_index={policy}",
                "--num_eval_steps=50",
                "--seed=3",
            ],
        )
        check_ok(result)
        videos = list((recordings / str(policy)).glob("*.mp4"))
        assert len(videos) == 1
        frames = _video_frames(videos[0])
        assert len(frames) == 51 and frames[0].shape == (210, 160, 3)

    result = _run(
        "eval_agent",
        [f"--checkpoint_dir={tmp_path / 'checkpoints'}", "--policy_index=4", "--seed=3"],
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: policy_index must be in")


@pytest.mark.slow
def test_interrupted_run_resumes_with_its_normalisers_and_counters(tmp_path):
    args = [*TINY, "--num_iterations=1", "--num_train_steps=1500", *_dir_flags(tmp_path)]
    run_dir = tmp_path / "checkpoints" / "ngu" / "Pong" / "seed_3"
    with open(tmp_path / "run.log", "w") as log:
        process = subprocess.Popen(
            cli_support.command("ngu", "run_atari", args),
            cwd=REPO,
            env=subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 150
        # Wait until the learner has trained (its TensorBoard/CSV are not written before the
        # iteration ends, so watch the log's progress instead: learning starts once replay has
        # 8 sequences, a few hundred steps in).
        while "train:" not in (tmp_path / "run.log").read_text():
            assert process.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no progress line"
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert code == 130, (tmp_path / "run.log").read_text()[-3000:]
    partial = load_checkpoint(run_dir / "iteration_0001.partial.ckpt")["state"]

    result = _run("run_atari", [*args, "--resume"])
    check_ok(result)
    assert "iteration_0001.partial.ckpt" in result.stderr
    final = load_checkpoint(run_dir / "iteration_0001.ckpt")["state"]
    before, after = partial["learner"]["network"], final["learner"]["network"]
    for key in ("rnd.observation_stats.count", "rnd.error_stats.count"):
        assert after[key].item() > before[key].item(), key
    assert final["learner"]["num_updates"] > partial["learner"]["num_updates"]
    for index, state in partial["trainer"]["actor_states"].items():
        resumed = final["trainer"]["actor_states"][index]
        assert all(
            b < a for b, a in zip(state["memory"]["count"], resumed["memory"]["count"], strict=True)
        )
    assert torch.equal(
        torch.tensor(final["trainer"]["actor_states"]["0"]["policies"]["indices"]),
        torch.tensor(partial["trainer"]["actor_states"]["0"]["policies"]["indices"]),
    )
