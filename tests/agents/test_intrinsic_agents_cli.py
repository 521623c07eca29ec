"""End-to-end tests of NGU's and Agent57's command lines with real actor processes:
- a tiny Pong run with 2 actors that trains, checkpoints everything the agent adds, and
  evaluates to an mp4 that is read back;
- a Ctrl-C'd run that stops within seconds, leaving no process and no shared memory behind,
  and that --resume continues with the normalisers, optimisers, counters and (for Agent57)
  bandits it had;
- bad input in one line."""

from __future__ import annotations

import math
import os
import pathlib
import signal
import time

import cli_support
import proc_support
import pytest
from cli_support import check_ok, load_checkpoint, output_flags, read_csv, start_module, tiny_flags

pytestmark = pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs /proc")

AGENTS = ["ngu", "agent57"]
# What each agent adds to the optimiser (one group per network it trains).
GROUPS = {
    "ngu": ["q", "embedding", "rnd"],
    "agent57": ["extrinsic", "intrinsic", "embedding", "rnd"],
}
LOSSES = {
    "ngu": ["learner/loss"],
    "agent57": ["learner/loss_extrinsic", "learner/loss_intrinsic"],
}


@pytest.mark.slow
@pytest.mark.parametrize("agent", AGENTS)
def test_pong_two_actors_train_checkpoint_everything_and_evaluate(tmp_path, agent):
    result = cli_support.run_module(
        agent,
        "run_atari",
        [
            *tiny_flags(agent),
            "--num_iterations=2",
            "--num_train_steps=200",
            "--num_eval_steps=40",
            *output_flags(tmp_path),
        ],
    )
    check_ok(result)
    run_dir = tmp_path / "checkpoints" / agent / "Pong" / "seed_3"
    rows = read_csv(run_dir / "results.csv")
    assert [r["iteration"] for r in rows] == ["1", "2"]
    last = rows[-1]
    columns = ["intrinsic/reward", "intrinsic/episodic", "intrinsic/lifelong_alpha"]
    columns += ["learner/loss_embedding", "learner/loss_rnd", *LOSSES[agent]]
    columns += [f"learner/grad_norm_{group}" for group in GROUPS[agent]]
    for column in columns:
        assert math.isfinite(float(last[column])), column
    assert float(last["intrinsic/reward"]) > 0

    state = load_checkpoint(run_dir / "iteration_0002.ckpt")["state"]
    assert state["config"]["num_policies"] == 10
    network = state["learner"]["network"]
    for key in (
        "embedding.embed.weight",
        "rnd.predictor.0.layers.0.weight",
        "rnd.observation_stats.mean",
        "rnd.error_stats.count",
    ):
        assert key in network, key
    assert network["rnd.error_stats.count"].item() > 0
    assert network["rnd.observation_stats.mean"].shape == (1, 84, 84)  # one frame, no stack
    assert len(state["learner"]["optimizer"]["param_groups"]) == len(GROUPS[agent])
    actor_states = state["trainer"]["actor_states"]
    assert set(actor_states) == {"0", "1"}
    for actor_state in actor_states.values():
        assert all(count > 0 for count in actor_state["memory"]["count"])  # d_m² per env
        if agent == "agent57":
            assert len(actor_state["policies"]["bandits"]) == 2  # one bandit per environment

    recordings = tmp_path / "recordings"
    result = cli_support.run_module(
        agent,
        "eval_agent",
        [
            f"--checkpoint_dir={tmp_path / 'checkpoints'}",
            f"--recording_dir={recordings}",
            "--policy_index=9",
            "--num_eval_steps=30",
            "--seed=3",
        ],
    )
    check_ok(result)
    videos = list(recordings.glob("*.mp4"))
    assert len(videos) == 1
    frames = cli_support.video_frames(videos[0])
    assert len(frames) == 31 and frames[0].shape == (210, 160, 3)

    result = cli_support.run_module(
        agent,
        "eval_agent",
        [f"--checkpoint_dir={tmp_path / 'checkpoints'}", "--policy_index=10", "--seed=3"],
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: policy_index must be in [0, 10), got 10"), lines[-3:]


# Not tiny_flags: by the interrupt (after the first progress line) the run must have learned
# and ended many episodes, Agent57's bandits pulling an arm per episode. The toy room's short
# episodes, 4 environments per actor and shorter sequences (replay warm sooner) give that.
ROOM = [
    "--environment_name=toy_envs:SparseGridRoom-v0",
    "--num_actors=2",
    "--num_envs=4",
    "--batch_size=8",
    "--min_replay_size=16",
    "--replay_capacity=500",
    "--burn_in=4",
    "--sequence_length=8",
    "--replay_period=4",
    "--num_policies=10",
    "--episodic_memory_capacity=200",
    "--num_eval_steps=100",
    "--device=cpu",
    "--seed=4",
]


LONG_ITERATION = 2_000_000


def _interrupt_when_learning(args: list[str], agent: str, log_path: pathlib.Path) -> int:
    """Starts a run, waits until it has learned for a while, Ctrl-C's it (the whole process
    group, as a terminal does) and checks that it exits within seconds, in one line, leaving no
    process and no shared memory behind (the R2D2 tests check SIGTERM the same way); its exit
    code."""
    shm_before = proc_support.shm_entries()
    process = start_module(agent, "run_atari", args, log_path)

    def wait_until_learning() -> dict[int, tuple[int, str]]:
        deadline = time.monotonic() + 150
        while "train:" not in log_path.read_text():  # the first progress line, after 30 s
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.5)
        return proc_support.children(process.pid)

    return proc_support.interrupt_and_check_clean_exit(
        process,
        log_path,
        shm_before,
        wait_until_learning,
        lambda: os.killpg(process.pid, signal.SIGINT),
    )


@pytest.mark.slow
@pytest.mark.parametrize("agent", AGENTS)
def test_interrupted_run_resumes_with_its_normalisers_optimisers_and_bandits(tmp_path, agent):
    # Far more steps than the run takes before the interrupt: a fast machine must not finish
    # the iteration before the first progress line (CI did, at 60,000 steps).
    args = [
        *ROOM,
        "--num_iterations=1",
        f"--num_train_steps={LONG_ITERATION}",
        *output_flags(tmp_path),
    ]
    if agent == "agent57":
        args.append("--bandit_window=1000")  # holds every episode of the test
    code = _interrupt_when_learning(args, agent, tmp_path / "run.log")
    assert code == 130, (tmp_path / "run.log").read_text()[-3000:]
    run_dir = tmp_path / "checkpoints" / agent / "toy_envs:SparseGridRoom-v0" / "seed_4"
    partial_path = next(run_dir.glob("*.partial.ckpt"))
    partial = load_checkpoint(partial_path)["state"]
    done = partial["steps_into_iteration"]
    assert 0 < done < LONG_ITERATION and partial["learner"]["num_updates"] > 0

    # Resume with a shorter iteration: it finishes soon after the interrupted point.
    resumed = [a for a in args if not a.startswith("--num_train_steps")]
    resumed += [
        f"--num_train_steps={done + 2_000}",
        "--resume",
        "--allow_config_change=num_train_steps",
    ]
    result = cli_support.run_module(agent, "run_atari", resumed)
    check_ok(result)
    assert partial_path.name in result.stderr
    final = load_checkpoint(run_dir / "iteration_0001.ckpt")["state"]

    learner_before, learner_after = partial["learner"], final["learner"]
    assert learner_after["num_updates"] > learner_before["num_updates"]
    # Every optimiser group kept its Adam moments: their step counts go on from the checkpoint.
    steps = {int(s["step"]) for s in learner_after["optimizer"]["state"].values()}
    assert steps == {learner_after["num_updates"]}
    for key in ("rnd.observation_stats.count", "rnd.error_stats.count"):
        assert learner_after["network"][key] > learner_before["network"][key], key
    for index, before in partial["trainer"]["actor_states"].items():
        after = final["trainer"]["actor_states"][index]
        counts = zip(before["memory"]["count"], after["memory"]["count"], strict=True)
        assert all(b < a for b, a in counts)  # d_m² statistics carried on
        if agent == "agent57":
            for bandit_before, bandit_after in zip(
                before["policies"]["bandits"], after["policies"]["bandits"], strict=True
            ):
                arms = bandit_before["arms"]
                assert len(arms) > 10  # past the first pull of each arm
                assert bandit_after["arms"][: len(arms)] == arms  # the same window, continued
                assert len(bandit_after["arms"]) > len(arms)
