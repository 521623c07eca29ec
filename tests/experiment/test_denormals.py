"""Denormal flushing: what the CPU mode does to a denormal float, that a run's start puts the
learning process (and the threads it starts later) in the mode its --flush_denormals asks for,
and that a resume cannot switch the mode unnoticed."""

from __future__ import annotations

import pathlib
import threading

import pytest
import torch

import gym_env
from agents.dqn.agent import DqnConfig
from experiment import denormals, hyperparameters, runner
from experiment.run_config import RunConfig

pytestmark = pytest.mark.skipif(
    not denormals.flush_denormals(False), reason="this CPU cannot flush denormals"
)

DENORMAL = 1e-39  # Below float32's smallest normal, 1.18e-38.


def reads_denormals_as_zero() -> bool:
    return float(torch.tensor([DENORMAL]) * 1.0) == 0.0


@pytest.fixture(autouse=True)
def ieee_afterwards():
    yield
    denormals.flush_denormals(False)  # Later tests in this process expect IEEE arithmetic.


def test_flushing_reads_a_denormal_as_zero_and_turning_it_off_restores_it():
    assert not reads_denormals_as_zero()
    assert denormals.flush_denormals(True)
    assert reads_denormals_as_zero()
    assert float(torch.tensor([2e-38]) * 1.0) == pytest.approx(2e-38)  # Normal floats unchanged.
    denormals.flush_denormals(False)
    assert float(torch.tensor([DENORMAL]) * 1.0) == pytest.approx(DENORMAL)


def test_denormals_flushed_holds_only_inside_its_block():
    with denormals.denormals_flushed() as supported:
        assert supported and reads_denormals_as_zero()
    assert not reads_denormals_as_zero()


def run_config(tmp_path: pathlib.Path, flush: bool) -> RunConfig:
    spec = gym_env.EnvSpec(classic_name="CartPole-v1")
    return RunConfig(
        agent="dqn",
        environment_name="CartPole-v1",
        num_iterations=1,
        num_train_steps=100,
        num_eval_steps=0,
        num_envs=1,
        seed=0,
        run_label="",
        eval_epsilon=0.0,
        env_spec=spec,
        eval_env_spec=spec,
        checkpoint_root=tmp_path,
        results_csv_path=tmp_path / "results.csv",
        tensorboard_dir=None,
        resume=False,
        save_replay=False,
        device=torch.device("cpu"),
        flush_denormals=flush,
    )


def in_a_new_thread(fn):
    result = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    thread.join()
    return result[0]


@pytest.mark.parametrize("flush", [True, False])
def test_a_run_starts_in_the_mode_its_flag_asks_for(tmp_path, monkeypatch, flush):
    monkeypatch.setattr(runner, "seed_everything", lambda seed: None)  # Keep the global RNGs.
    denormals.flush_denormals(not flush)  # The opposite mode beforehand.
    start = runner._start_run("dqn", run_config(tmp_path, flush), DqnConfig())
    assert reads_denormals_as_zero() == flush
    assert in_a_new_thread(reads_denormals_as_zero) == flush  # Threads started later inherit it.
    assert start.settings["flush_denormals"] is flush  # Saved with every checkpoint.


def test_a_resume_in_the_other_mode_is_refused_and_an_older_checkpoint_was_ieee(tmp_path):
    flushed = hyperparameters.collect(run_config(tmp_path, True), DqnConfig())
    ieee = hyperparameters.collect(run_config(tmp_path, False), DqnConfig())
    with pytest.raises(hyperparameters.ConfigChangeError, match="flush_denormals False -> True"):
        hyperparameters.check_resume(ieee, flushed, [], "ckpt")
    older = {k: v for k, v in ieee.items() if k != "flush_denormals"}
    hyperparameters.check_resume(older, ieee, [], "ckpt")  # It was trained with IEEE.
    with pytest.raises(hyperparameters.ConfigChangeError, match="flush_denormals"):
        hyperparameters.check_resume(older, flushed, [], "ckpt")
