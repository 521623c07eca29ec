"""Evaluation beside training (evaluator.py, main_loop.run_parallel_training), with real
spawned actor and evaluation processes on CartPole: the learner keeps updating while an
evaluation runs, rows come out in order each with its own evaluation, a killed evaluation
process is restarted and its evaluation redone, and a checkpoint's pending row is evaluated
again on resume unless the CSV already holds it."""

from __future__ import annotations

import functools
import os
import re
import signal
import threading
import time

import pytest
import torch

import gym_env
from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner, build_network
from distributed.config import ParallelConfig
from distributed.evaluation_process import (
    EvalActorFactory,
    EvaluatorFailure,
    EvalWorker,
    OverlappedEvaluation,
    _PendingRow,
)
from experiment.errors import NonFiniteLossError
from greedy_actors import RecurrentEpsilonGreedyActor
from main_loop import IterationSchedule, ParallelTrainer, run_parallel_training
from tracker import MetricsWriter

CARTPOLE = gym_env.EnvSpec(classic_name="CartPole-v1")
SMALL = R2d2Config(
    burn_in=2,
    sequence_length=8,
    replay_period=4,
    batch_size=4,
    min_replay_size=8,
    replay_capacity=200,
)


class SlowEvalActor(RecurrentEpsilonGreedyActor):
    """An evaluation actor that takes `delay` seconds per step, so an evaluation lasts long
    enough to watch the learner during it."""

    def __init__(self, network, epsilon, seed, device, delay: float = 0.0) -> None:
        super().__init__(network, epsilon, seed, device)
        self.delay = delay

    def step(self, timestep):
        time.sleep(self.delay)
        return super().step(timestep)


def eval_factory(delay: float = 0.0) -> EvalActorFactory:
    return EvalActorFactory(
        CARTPOLE,
        functools.partial(build_network, SMALL),
        functools.partial(SlowEvalActor, epsilon=0.0, device=torch.device("cpu"), delay=delay),
    )


class RecordingWriter(MetricsWriter):
    """Keeps each row with the learner's update count at the moment it is written."""

    def __init__(self, learner) -> None:
        super().__init__(None, None)
        self.learner = learner
        self.written: list[tuple[int, int, dict, int]] = []

    def write(self, iteration, step, scalars) -> None:
        super().write(iteration, step, scalars)
        self.written.append((iteration, step, dict(scalars), self.learner.num_updates))


@pytest.fixture
def limited_time():
    def too_long(signum, frame):
        raise TimeoutError("the test ran past 240 s")

    threads = torch.get_num_threads()
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(240)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    torch.set_num_threads(threads)


def _learner():
    env = CARTPOLE.create(1, 0)
    try:
        shape, dtype, actions = env.observation_shape, env.observation_dtype, env.num_actions
    finally:
        env.close()
    torch.manual_seed(0)
    return build_learner(SMALL, shape, dtype, actions, 0, torch.device("cpu"))


def _trainer(learner, log) -> ParallelTrainer:
    return ParallelTrainer(
        ParallelConfig(num_actors=2, learner_threads=1),
        ActorFactory(SMALL, CARTPOLE, num_envs=2, num_actors=2),
        learner,
        seed=0,
        log=log,
    )


@pytest.mark.slow
def test_learner_keeps_updating_while_each_iteration_is_evaluated(limited_time):
    learner = _learner()
    writer = RecordingWriter(learner)
    events: list[str] = []
    # 200 evaluation steps at 10 ms: each evaluation lasts about 2 s, a few training
    # iterations of updates that take milliseconds.
    worker = EvalWorker(eval_factory(delay=0.01), learner.network)
    evaluation = OverlappedEvaluation(worker, writer, seed=0, num_eval_steps=200, log=events.append)
    saved = []

    def save(iteration: int, steps_into_next: int) -> None:
        # Row before checkpoint: every earlier row is written, this one is pending.
        saved.append((iteration, steps_into_next, [w[0] for w in writer.written]))
        assert evaluation.state_dict(learner.network)["iteration"] == iteration

    rows = run_parallel_training(
        schedule=IterationSchedule(num_iterations=3, num_train_steps=300, num_eval_steps=200),
        trainer=_trainer(learner, events.append),
        evaluation=evaluation,
        save_checkpoint=save,
    )
    assert [w[0] for w in writer.written] == [1, 2, 3]  # In order, one row each.
    assert saved == [(1, 0, []), (2, 0, [1]), (3, 0, [1, 2])]
    for iteration, _, scalars, updates_when_written in writer.written:
        assert scalars["eval/seconds"] > 1.0
        # Updates went on between the end of the iteration and the arrival of its evaluation
        # (the last iteration's evaluation runs after training ended: none there).
        if iteration < 3:
            assert updates_when_written > scalars["learner/num_updates"], iteration
        assert "learner/eval_wait_seconds" in scalars
        assert scalars["eval/num_episodes"] >= 1  # An untrained CartPole game is short.
    assert len(rows) == 3
    assert not [e for e in events if "died" in e]
    assert not worker.process.is_alive()


@pytest.mark.slow
def test_killed_evaluation_process_is_restarted_and_its_row_still_written(limited_time):
    learner = _learner()
    writer = RecordingWriter(learner)
    events: list[str] = []
    worker = EvalWorker(eval_factory(delay=0.02), learner.network, max_restarts=1)
    evaluation = OverlappedEvaluation(worker, writer, seed=0, num_eval_steps=200, log=events.append)
    killed = []

    def kill_during_first_evaluation() -> None:
        deadline = time.monotonic() + 120
        while worker.pending is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # In the middle of it.
        killed.append(worker.process.pid)
        os.kill(worker.process.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_during_first_evaluation, daemon=True)
    killer.start()
    run_parallel_training(
        schedule=IterationSchedule(num_iterations=2, num_train_steps=300, num_eval_steps=200),
        trainer=_trainer(learner, events.append),
        evaluation=evaluation,
        save_checkpoint=lambda iteration, steps: None,
    )
    killer.join(timeout=5)
    assert killed
    assert "evaluation process died (exit code -9); restarted" in events
    assert worker.restarts == 1
    assert [w[0] for w in writer.written] == [1, 2]
    assert not worker.process.is_alive()


@pytest.mark.slow
def test_an_evaluation_process_that_keeps_dying_stops_the_run(limited_time):
    learner = _learner()
    broken = EvalActorFactory(
        gym_env.EnvSpec(),  # Names no environment: the evaluation process raises.
        functools.partial(build_network, SMALL),
        functools.partial(RecurrentEpsilonGreedyActor, epsilon=0.0, device=torch.device("cpu")),
    )
    worker = EvalWorker(broken, learner.network, max_restarts=1)
    evaluation = OverlappedEvaluation(worker, RecordingWriter(learner), 0, 50, log=lambda e: None)
    with pytest.raises(EvaluatorFailure, match=r"died 2 times \(last exit code 1\)"):
        run_parallel_training(
            schedule=IterationSchedule(num_iterations=3, num_train_steps=200, num_eval_steps=50),
            trainer=_trainer(learner, lambda e: None),
            evaluation=evaluation,
            save_checkpoint=lambda iteration, steps: None,
        )
    assert not worker.process.is_alive()


@pytest.mark.slow
def test_resume_evaluates_a_pending_row_again_unless_the_csv_has_it(tmp_path, limited_time):
    learner = _learner()
    network = learner.network
    pending = {"iteration": 4, "step": 1234, "scalars": {"train/episode_return": 17.0}}

    # A kill after checkpoint 4 and before row 4: the resumed run evaluates and writes it.
    writer = RecordingWriter(learner)
    evaluation = OverlappedEvaluation(EvalWorker(eval_factory(), network), writer, 0, 100)
    evaluation.load_state_dict(pending, network)
    with evaluation:
        evaluation.finish()
    [(iteration, step, scalars, _)] = writer.written
    assert (iteration, step, scalars["train/episode_return"]) == (4, 1234, 17.0)
    assert scalars["eval/num_episodes"] >= 1

    # The same evaluation seed: a redone evaluation plays the same games.
    again = RecordingWriter(learner)
    evaluation = OverlappedEvaluation(EvalWorker(eval_factory(), network), again, 0, 100)
    evaluation.load_state_dict(pending, network)
    with evaluation:
        evaluation.finish()
    assert again.written[0][2]["eval/episode_return"] == scalars["eval/episode_return"]

    # Row 4 made it to the CSV before the kill: nothing is evaluated again.
    csv_path = tmp_path / "results.csv"
    MetricsWriter(csv_path, None).write(4, 1234, {"eval/episode_return": 9.0})
    resumed_writer = MetricsWriter(csv_path, None, resume_iteration=4)
    evaluation = OverlappedEvaluation(EvalWorker(eval_factory(), network), resumed_writer, 0, 100)
    evaluation.load_state_dict(pending, network)
    assert evaluation.pending is None


def test_a_pending_row_keeps_its_weights_once_the_learner_moves_on():
    learner = _learner()
    writer = MetricsWriter(None, None)
    evaluation = OverlappedEvaluation(EvalWorker(eval_factory(), learner.network), writer, 0, 10)
    assert evaluation.state_dict(learner.network) == {}
    # As begin() leaves it, without starting a process:
    snapshot = {k: v.clone() for k, v in learner.network.state_dict().items()}
    evaluation.pending = _PendingRow(2, 500, {"x": 1.0}, snapshot)
    state = evaluation.state_dict(learner.network)
    assert state == {"iteration": 2, "step": 500, "scalars": {"x": 1.0}}  # Same weights.
    with torch.no_grad():
        next(learner.network.parameters()).add_(1.0)  # The learner trained on.
    state = evaluation.state_dict(learner.network)
    assert set(state) == {"iteration", "step", "scalars", "network"}
    for key, value in snapshot.items():
        assert torch.equal(state["network"][key], value)


@pytest.mark.slow
def test_non_finite_loss_stops_the_parallel_run_naming_iteration_and_update(limited_time):
    learner = _learner()
    apply_gradients = learner.apply_gradients

    def diverge_at_update_40(loss):
        if learner.num_updates + 1 == 40:
            loss = loss * float("nan")
        return apply_gradients(loss)

    learner.apply_gradients = diverge_at_update_40
    worker = EvalWorker(eval_factory(), learner.network)
    evaluation = OverlappedEvaluation(worker, RecordingWriter(learner), 0, 20, log=lambda e: None)
    trainer = _trainer(learner, lambda e: None)
    saved = []
    with pytest.raises(NonFiniteLossError) as raised:
        run_parallel_training(
            schedule=IterationSchedule(num_iterations=50, num_train_steps=100, num_eval_steps=20),
            trainer=trainer,
            evaluation=evaluation,
            save_checkpoint=lambda iteration, steps: saved.append((iteration, steps)),
        )
    message = str(raised.value)
    match = re.fullmatch(
        r"the loss is nan at iteration (\d+), update 40; the run stops, keeping its last good "
        r"checkpoint",
        message,
    )
    assert match, message
    iteration = int(match.group(1))
    # Every finished iteration was saved, the diverging one not (no partial checkpoint).
    assert saved == [(i, 0) for i in range(1, iteration)]
    assert learner.num_updates == 39
    for slot in trainer.pool.slots:
        assert not slot.process.is_alive()
    assert not worker.process.is_alive()
