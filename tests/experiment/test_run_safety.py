"""Unit tests of what keeps a run from losing work or failing late: output paths checked before
training (preflight), hyperparameters compared on resume, seeds of independent random streams,
a failed checkpoint write that keeps the previous checkpoint, a non-finite loss that stops the
run before any weight changes, and DQN's ε schedule starting after the replay warm-up.

All fast and in-process; the command-line versions are in test_run_safety_cli.py."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import time
import types

import numpy as np
import pytest
import torch

import gym_env
from agents.common.target_learner import TargetNetworkLearner
from agents.dqn.agent import DqnConfig, build_agent
from experiment import checkpoint, hyperparameters, preflight
from experiment.checkpoint import RunCheckpointer
from experiment.errors import NonFiniteLossError, UserError
from experiment.seeding import derive_seed
from main_loop import IterationSchedule, interrupts_deferred, run_single_thread_training
from tracker import MetricsWriter

needs_non_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions"
)


# --------------------------------------------------------------------------------------
# Output paths checked before training
# --------------------------------------------------------------------------------------


def test_missing_directories_are_checked_and_left_uncreated(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    preflight.check_writable_directory(target, "--checkpoint_dir")
    preflight.check_writable_file(tmp_path / "x" / "results.csv", "--results_csv_path")
    assert list(tmp_path.iterdir()) == []  # Probed, then removed: nothing is left behind.


def test_existing_directory_keeps_its_files(tmp_path):
    (tmp_path / "kept.txt").write_text("x")
    preflight.check_writable_directory(tmp_path, "--checkpoint_dir")
    assert [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


@pytest.mark.parametrize(
    ("make", "check", "flag", "expected"),
    [
        ("file", "directory", "--checkpoint_dir", "is not a directory"),
        ("file_parent", "directory", "--tensorboard_dir", "is not a directory"),
        ("dir", "file", "--results_csv_path", "is a directory, not a file"),
        ("file_parent", "file", "--results_csv_path", "is not a directory"),
    ],
)
def test_bad_output_paths_are_one_line_errors(tmp_path, make, check, flag, expected):
    blocker = tmp_path / "blocker"
    if make == "dir":
        blocker.mkdir()
        path = blocker
    else:
        blocker.write_text("a file")
        path = blocker if make == "file" else blocker / "below" / "results.csv"
    checkers = {
        "directory": preflight.check_writable_directory,
        "file": preflight.check_writable_file,
    }
    with pytest.raises(preflight.OutputPathError) as raised:
        checkers[check](path, flag)
    message = str(raised.value)
    assert message.startswith(f"{flag}: ") and expected in message and "\n" not in message
    assert isinstance(raised.value, UserError)


@needs_non_root
def test_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(preflight.OutputPathError, match=r"cannot (write|create)"):
            preflight.check_writable_directory(locked / "run", "--checkpoint_dir")
    finally:
        locked.chmod(0o700)


# --------------------------------------------------------------------------------------
# Hyperparameters on resume
# --------------------------------------------------------------------------------------

SAVED = {"learning_rate": 1e-4, "replay_ratio": 1.0, "batch_size": 64, "dueling": False}


def test_unchanged_hyperparameters_pass():
    current = {**SAVED, "batch_size": 64.0}  # 64 and 64.0 are one setting.
    assert hyperparameters.check_resume(SAVED, current, [], "ckpt") == {}


def test_changed_hyperparameters_are_refused_with_every_difference():
    current = {**SAVED, "learning_rate": 1e-3, "replay_ratio": 4.0}
    with pytest.raises(hyperparameters.ConfigChangeError) as raised:
        hyperparameters.check_resume(SAVED, current, [], "iteration_0002.ckpt")
    message = str(raised.value)
    assert message == (
        "--resume with hyperparameters that differ from iteration_0002.ckpt: "
        "learning_rate 0.0001 -> 0.001, replay_ratio 1.0 -> 4.0; pass "
        "--allow_config_change=learning_rate,replay_ratio to accept them"
    )
    assert isinstance(raised.value, UserError)


def test_named_changes_are_accepted_and_only_those():
    current = {**SAVED, "learning_rate": 1e-3, "replay_ratio": 4.0}
    accepted = hyperparameters.check_resume(
        SAVED, current, ["learning_rate", "replay_ratio"], "ckpt"
    )
    assert accepted == {"learning_rate": (1e-4, 1e-3), "replay_ratio": (1.0, 4.0)}
    with pytest.raises(hyperparameters.ConfigChangeError, match=r"replay_ratio 1\.0 -> 4\.0;"):
        hyperparameters.check_resume(SAVED, current, ["learning_rate"], "ckpt")


def test_a_checkpoint_that_predates_a_setting_resumes_at_the_value_it_was_trained_with():
    # SAVED has no torso or lstm_size: it was written before they existed.
    current = {**SAVED, "torso": "auto", "lstm_size": 0}
    assert hyperparameters.check_resume(SAVED, current, [], "ckpt") == {}
    with pytest.raises(hyperparameters.ConfigChangeError, match="torso 'absent' -> 'minatar'"):
        hyperparameters.check_resume(SAVED, {**current, "torso": "minatar"}, [], "ckpt")
    with pytest.raises(hyperparameters.ConfigChangeError, match="dueling"):  # Only added ones.
        hyperparameters.check_resume({"learning_rate": 1e-4}, SAVED, [], "ckpt")


def test_an_agents_added_setting_resumes_at_that_agents_value():
    from agents.agent57.agent import Agent57Config
    from agents.ngu.agent import NguConfig

    saved = dict(SAVED)  # Written before separate_value_networks existed.
    two, one = (
        {**SAVED, "separate_value_networks": True},
        {**SAVED, "separate_value_networks": False},
    )
    agent57, ngu = (hyperparameters.added_settings(c) for c in (Agent57Config, NguConfig))
    assert hyperparameters.check_resume(saved, two, [], "ckpt", agent57) == {}
    assert hyperparameters.check_resume(saved, one, [], "ckpt", ngu) == {}
    with pytest.raises(hyperparameters.ConfigChangeError, match="'absent' -> False"):
        hyperparameters.check_resume(saved, one, [], "ckpt", agent57)
    with pytest.raises(hyperparameters.ConfigChangeError, match="'absent' -> True"):
        hyperparameters.check_resume(saved, two, [], "ckpt", ngu)


@pytest.mark.parametrize("atari", [False, True])
def test_the_time_limit_setting_is_a_hyperparameter_of_both_environment_kinds(atari):
    def run(limit_ends_game: bool):
        if atari:
            config = gym_env.AtariConfig("Pong", time_limit_is_terminal=limit_ends_game)
            spec = gym_env.EnvSpec(atari=config)
        else:
            config = None
            spec = gym_env.EnvSpec(
                classic_name="CartPole-v1", time_limit_is_terminal=limit_ends_game
            )
        return types.SimpleNamespace(
            num_train_steps=100,
            num_eval_steps=10,
            num_envs=1,
            seed=0,
            eval_epsilon=0.05,
            flush_denormals=True,
            atari=config,
            eval_atari=config,
            env_spec=spec,
        )

    saved = hyperparameters.collect(run(False))
    with pytest.raises(
        hyperparameters.ConfigChangeError, match="time_limit_is_terminal False -> True"
    ):
        hyperparameters.check_resume(saved, hyperparameters.collect(run(True)), [], "ckpt")


def test_allowing_an_unknown_name_is_an_error():
    with pytest.raises(hyperparameters.ConfigChangeError, match="lerning_rate, which is not"):
        hyperparameters.check_resume(SAVED, SAVED, ["lerning_rate"], "ckpt")


def test_resumed_learner_takes_a_changed_learning_rate():
    """The optimiser's saved state carries the old learning rate; an accepted change wins."""
    config = DqnConfig(batch_size=4, min_replay_size=4, replay_capacity=100)
    _, learner = build_agent(config, (4,), np.float32, 2, 1, 0, torch.device("cpu"), 10)
    state = learner.state_dict()
    changed = DqnConfig(
        batch_size=4, min_replay_size=4, replay_capacity=100, learning_rate=3e-3, adam_eps=1e-5
    )
    _, resumed = build_agent(changed, (4,), np.float32, 2, 1, 0, torch.device("cpu"), 10)
    resumed.load_state_dict(state)
    group = resumed.optimizer.param_groups[0]
    assert (group["lr"], group["eps"]) == (3e-3, 1e-5)


# --------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------


def test_derived_seeds_differ_by_name_and_index_and_repeat_exactly():
    seeds = {
        derive_seed(1, "replay", 0),
        derive_seed(1, "replay", 400),
        derive_seed(1, "exploration"),
        derive_seed(2, "replay", 0),
        derive_seed(1, "actor", 0, 0, 0),
        derive_seed(1, "actor", 0, 1, 0),
        derive_seed(1, "actor", 0, 0, 1),
    }
    assert len(seeds) == 7
    assert derive_seed(1, "replay", 400) == derive_seed(1, "replay", 400)
    assert all(0 <= s < 2**30 for s in seeds)
    assert 0 <= derive_seed(-5, "x") < 2**30  # Negative run seeds are fine too.


def test_dqn_actor_and_replay_sampler_draw_independent_streams():
    config = DqnConfig(batch_size=4, min_replay_size=4, replay_capacity=100)
    actor, learner = build_agent(config, (4,), np.float32, 2, 1, 7, torch.device("cpu"), 10)
    actor_draws = actor.rng.random(8)
    sampler_draws = learner.replay.sampler._rng.random(8)
    assert not np.allclose(actor_draws, sampler_draws)
    # A resumed run's sampler (replay not restored) starts a stream of its own.
    _, resumed = build_agent(
        config, (4,), np.float32, 2, 1, 7, torch.device("cpu"), 10, resume_point=400
    )
    assert not np.allclose(resumed.replay.sampler._rng.random(8), sampler_draws)


# --------------------------------------------------------------------------------------
# A failed checkpoint write
# --------------------------------------------------------------------------------------


def _state(value: float) -> dict:
    return {"iteration": 1, "weights": torch.full((1000,), value)}


def test_failed_write_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    metadata = {"agent": "dqn", "environment_name": "Pong"}
    checkpointer = RunCheckpointer(tmp_path, metadata, resume=False)
    first = checkpointer.save(1, _state(1.0))
    first_bytes = first.read_bytes()

    real_write = pathlib.Path.write_bytes

    def disk_fills_up(self, data):
        real_write(self, bytes(data)[: len(data) // 2])  # A torn, half-written temp file...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then the disk is full.

    monkeypatch.setattr(pathlib.Path, "write_bytes", disk_fills_up)
    with pytest.raises(checkpoint.CheckpointError) as raised:
        checkpointer.save(2, _state(2.0))
    message = str(raised.value)
    assert "No space left on device" in message and "iteration_0001.ckpt is intact" in message
    assert "\n" not in message
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["iteration_0001.ckpt"]  # No temp.
    assert first.read_bytes() == first_bytes
    loaded = checkpoint.load(checkpoint.latest_path(tmp_path), metadata)
    assert torch.equal(loaded["weights"], torch.full((1000,), 1.0))


def test_replay_file_is_used_only_with_its_own_checkpoint(tmp_path):
    checkpointer = RunCheckpointer(tmp_path, {"agent": "dqn"}, resume=False)
    arrays = {"priorities": np.arange(5, dtype=np.float64)}
    checkpointer.save_replay(arrays, iteration=3)
    loaded = checkpointer.load_replay(3)
    np.testing.assert_array_equal(loaded["priorities"], arrays["priorities"])
    assert set(loaded) == {"priorities"}
    assert checkpointer.load_replay(2) is None  # The checkpoint's replay was never written.


# --------------------------------------------------------------------------------------
# Non-finite loss
# --------------------------------------------------------------------------------------


class _Config:
    learning_rate, adam_eps, max_grad_norm, target_update_period = 1e-2, 1e-8, 10.0, 100


def _learner() -> TargetNetworkLearner:
    torch.manual_seed(0)
    return TargetNetworkLearner(torch.nn.Linear(3, 2), None, _Config(), torch.device("cpu"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_raises_before_any_weight_changes(bad):
    learner = _learner()
    x = torch.ones(4, 3)
    learner.apply_gradients(learner.network(x).square().mean())  # One good update.
    before = [p.detach().clone() for p in learner.network.parameters()]
    adam_before = {k: v["step"].clone() for k, v in learner.optimizer.state.items()}
    with pytest.raises(NonFiniteLossError) as raised:
        learner.apply_gradients(learner.network(x).square().mean() * bad)
    assert raised.value.update == 2
    assert str(raised.value).startswith(f"the loss is {bad} at update 2;")
    assert learner.num_updates == 1
    for p, q in zip(learner.network.parameters(), before, strict=True):
        assert torch.equal(p, q)
    assert {k: v["step"] for k, v in learner.optimizer.state.items()} == adam_before


def test_non_finite_gradient_with_finite_loss_raises_too():
    learner = _learner()
    with torch.no_grad():
        learner.network.weight.zero_()
    before = learner.network.weight.detach().clone()
    loss = learner.network.weight.sum().sqrt()  # sqrt(0) = 0, but its slope there is infinite.
    assert torch.isfinite(loss)
    with pytest.raises(NonFiniteLossError, match="the gradient norm is inf at update 1"):
        learner.apply_gradients(loss)
    assert torch.equal(learner.network.weight, before)
    assert learner.num_updates == 0


class _DivergingLearner:
    """Learns normally until update `bad_update`, whose loss is NaN."""

    def __init__(self, bad_update: int) -> None:
        self.inner = _learner()
        self.bad_update = bad_update

    @property
    def num_updates(self) -> int:
        return self.inner.num_updates

    def ready(self) -> bool:
        return True

    def step(self) -> dict[str, float]:
        loss = self.inner.network(torch.ones(2, 3)).square().mean()
        if self.num_updates + 1 == self.bad_update:
            loss = loss * float("nan")
        return {"grad_norm": self.inner.apply_gradients(loss)}


class _RandomActor:
    def reset(self) -> None:
        pass

    def step(self, timestep) -> np.ndarray:
        return np.zeros(len(timestep.first), np.int64)


def test_single_thread_loop_names_iteration_and_update_and_saves_nothing_more():
    import gym_env

    env = gym_env.create_classic_environment("CartPole-v1", 1, 0)
    saved = []
    try:
        with pytest.raises(NonFiniteLossError) as raised:
            run_single_thread_training(
                schedule=IterationSchedule(3, 100, 0),
                actor=_RandomActor(),
                learner=_DivergingLearner(bad_update=30),  # In iteration 2 (25 per iteration).
                agent_steps_per_update=4,
                train_env=env,
                eval_env=None,
                eval_actor=None,
                save_checkpoint=lambda iteration, steps: saved.append(iteration),
                writer=MetricsWriter(None, None),
            )
    finally:
        env.close()
    assert str(raised.value) == (
        "the loss is nan at iteration 2, update 30; the run stops, keeping its last good checkpoint"
    )
    assert saved == [1]


# --------------------------------------------------------------------------------------
# DQN ε schedule
# --------------------------------------------------------------------------------------


def test_dqn_epsilon_stays_at_start_through_warm_up_then_anneals():
    config = DqnConfig(
        min_replay_size=1_000,
        replay_capacity=10_000,
        exploration_start=1.0,
        exploration_end=0.1,
        exploration_steps=2_000,
    )
    schedule = config.epsilon_schedule()
    # Hand values: 1.0 until step 1,000 (warm-up), then down by 0.9 / 2,000 per step.
    expected = {
        0: 1.0,
        999: 1.0,
        1_000: 1.0,
        1_001: 1.0 - 0.9 / 2_000,
        1_500: 0.775,
        2_000: 0.55,
        2_999: 1.0 - 0.9 * 1_999 / 2_000,
        3_000: 0.1,
        50_000: 0.1,
    }
    for step, epsilon in expected.items():
        assert schedule(step) == pytest.approx(epsilon, abs=1e-12), step


def test_dqn_actor_explores_fully_during_warm_up():
    config = DqnConfig(batch_size=4, min_replay_size=50, replay_capacity=100, exploration_steps=100)
    actor, _ = build_agent(config, (4,), np.float32, 2, 1, 0, torch.device("cpu"), 10)
    actor.agent_steps = 49
    assert actor.epsilon == 1.0
    actor.agent_steps = 100  # Half-way through the decay that starts at step 50.
    assert actor.epsilon == pytest.approx(0.55)


@pytest.fixture
def cli_signal_handlers():
    """The handlers run_cli installs (both signals raise KeyboardInterrupt), whatever an
    earlier test left in this process, restored afterwards."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, signal.default_int_handler)
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_an_update_lands_after_the_whole_update(signum, cli_signal_handlers):
    changed = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            changed.append("normalisers")
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # Long enough for an undeferred handler to have run.
            changed.append("optimiser")
            changed.append("update count")
        changed.append("after the block")  # Never reached: the interrupt comes first.
    assert changed == ["normalisers", "optimiser", "update count"]
    # The handlers are the run's again: a second signal interrupts at once.
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signum)
        time.sleep(0.05)


def test_a_second_interrupt_during_an_update_stops_it_at_once(cli_signal_handlers):
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached.append("held")
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached.append("never")
    assert reached == ["held"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_interrupt_means_no_delivery_and_handlers_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts_deferred():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_error_in_the_block_propagates_with_handlers_restored():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(ValueError, match="inside"), interrupts_deferred():
        raise ValueError("inside")
    assert signal.getsignal(signal.SIGINT) == before
