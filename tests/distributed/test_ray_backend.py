"""Tests of the Ray backend's parts (ray_backend.py) on a Ray instance started here, bound
to the loopback address: backend flags, weights through the object store, the bound on an
actor's messages in flight, one-line setup errors, and, with real Ray actors on CartPole,
that a killed actor is replaced and the run finishes, and that an actor which keeps dying
stops the run with ActorFailure.

The command-line behaviour (Ctrl-C, resume, evaluation, two nodes) is in test_ray_cli.py."""

from __future__ import annotations

import importlib
import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Before anything imports Ray.

import functools
import logging
import re
import signal
import subprocess
import sys
import threading
import time
import types

import pytest
import torch
from cli_support import REPO

# The process backend's CartPole set-up, and its fixture that bounds a test's time.
from test_parallel import CARTPOLE, SMALL, _cartpole_learner, trainer_test  # noqa: F401

import gym_env
from agents.r2d2.agent import ActorFactory
from distributed.actors import ActorFailure
from distributed.config import BackendConfig, ParallelConfig
from experiment.errors import UserError
from main_loop import ParallelTrainer

ray = pytest.importorskip("ray")
ray_backend = importlib.import_module("distributed.ray_backend")  # After the skip: needs Ray.


# --------------------------------------------------------------------------------------
# Flags and setup errors (no Ray instance needed)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backend": "spark"}, "backend must be 'process' or 'ray', got 'spark'"),
        ({"backend": "ray", "ray_address": "head"}, "ray_address must be empty, 'auto' or"),
        ({"backend": "ray", "ray_address": "10.0.0.5:99999"}, "ray_address must be empty"),
        ({"backend": "ray", "ray_cpus_per_actor": 0.0}, "ray_cpus_per_actor must be positive"),
        ({"ray_address": "auto"}, "only apply with --backend=ray"),
    ],
)
def test_backend_config_rejects_bad_values(kwargs, message):
    with pytest.raises(UserError, match=re.escape(message)):
        BackendConfig(**kwargs)


def test_backend_config_accepts_addresses():
    for address in ("", "auto", "10.0.0.5:6379", "head-node.example:6379", "[::1]:6379"):
        BackendConfig(backend="ray", ray_address=address)


def test_process_backend_needs_no_ray():
    code = (
        "import sys; from experiment import runner; from distributed.config import BackendConfig; "
        "runner.actor_pool_factory(BackendConfig()); "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_too_few_cpus_is_one_line():
    with pytest.raises(ray_backend.RaySetupError) as error:
        ray_backend.require_cpus(8.0, num_actors=16, cpus_per_actor=1.0)
    assert str(error.value) == (
        "the Ray cluster has 8 CPUs but 16 actors x --ray_cpus_per_actor=1 need 16; lower "
        "--num_actors or --ray_cpus_per_actor, or add machines"
    )
    ray_backend.require_cpus(8.0, num_actors=16, cpus_per_actor=0.5)  # Fits exactly.


def test_an_address_where_nothing_answers_is_one_line_at_once():
    connected = ray.is_initialized()
    with socket_bound_but_closed() as port:
        session = ray_backend.RaySession(f"127.0.0.1:{port}", num_actors=2, cpus_per_actor=1.0)
        started = time.monotonic()
        with pytest.raises(ray_backend.RaySetupError, match="no Ray cluster answers at"):
            session.open()
    assert time.monotonic() - started < 10
    assert ray.is_initialized() == connected  # A failed open leaves Ray as it was.


class socket_bound_but_closed:
    """A local port nothing listens on (bound, never listening, for the test's duration)."""

    def __enter__(self) -> int:
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        return self.socket.getsockname()[1]

    def __exit__(self, *exc_info) -> None:
        self.socket.close()


# --------------------------------------------------------------------------------------
# On a local Ray instance
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance of this test process, on loopback, shut down after the module."""
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    signal.signal(signal.SIGTERM, sigterm)  # Ray's would exit pytest on SIGTERM.
    yield
    ray.shutdown()


def test_weights_go_through_the_object_store_buffers_included(local_ray):
    source = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    source[1].running_mean.copy_(torch.arange(4.0))
    source = source.double()  # Float64 parameters and statistics keep their precision.
    source[0].weight.data[0, 0] = 1 / 3
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    reference = ray.put(ray_backend.flat_weights(source))
    holder = types.SimpleNamespace(_weights=(7, reference))
    pull = functools.partial(ray_backend.RayActorWorker._pull, holder)
    assert pull(target, 7) == 7  # Same version: nothing fetched.
    assert not torch.equal(target[0].weight, source[0].weight)
    assert pull(target, 6) == 7
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_an_actor_has_at_most_its_credits_in_flight(local_ray):
    network = _cartpole_learner().network
    reference = ray.put(ray_backend.flat_weights(network))
    factory = ActorFactory(SMALL, CARTPOLE, num_envs=2, num_actors=1)
    # Here, not in a Ray actor: its thread acts as soon as it is built.
    worker = ray_backend.RayActorWorker(0, 0, factory, 10, None, 3, 1, [reference])
    _wait(lambda: worker._outbox.qsize() == 3, "the actor did not use its 3 credits")
    time.sleep(0.5)
    assert worker._outbox.qsize() == 3  # It waits for credits instead of acting on.
    assert len(_unpickle(worker.collect(1, [reference], wait_s=1))) == 3
    time.sleep(0.5)
    # The learner has not asked again, so those 3 are still in flight: nothing new.
    assert worker._outbox.qsize() == 0
    assert len(_unpickle(worker.collect(1, [reference], wait_s=30))) >= 1  # Credits back.


def _unpickle(data: bytes) -> list:
    import pickle

    return pickle.loads(data)


def _wait(condition, message: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _ray_trainer(parallel: ParallelConfig, factory, learner, log) -> ParallelTrainer:
    pool = functools.partial(ray_backend.RayActorPool, cpus_per_actor=0.5, log=log)
    return ParallelTrainer(parallel, factory, learner, seed=0, log=log, pool_factory=pool)


@pytest.mark.slow
@pytest.mark.usefixtures("trainer_test")
def test_killed_ray_actor_is_replaced_and_the_run_finishes(local_ray):
    learner = _cartpole_learner()
    events: list[tuple[float, str, int]] = []

    def log(message: str) -> None:
        events.append((time.monotonic(), message, trainer.progress.actor_steps.get(0, 0)))

    trainer = _ray_trainer(
        ParallelConfig(num_actors=2, learner_threads=1),
        ActorFactory(SMALL, CARTPOLE, num_envs=2, num_actors=2),
        learner,
        log,
    )
    with trainer:
        trainer.run_steps(400, "warm-up")
        assert set(trainer.progress.actor_steps) == {0, 1}  # Both actors deliver.
        assert learner.num_updates > 0
        assert any(m == "Ray: 2 actors on 1 node(s)" for _, m, _ in events)
        victim = trainer.pool.slots[0]
        start = trainer.progress.total_steps
        killed_at: list[float] = []

        def kill_mid_run() -> None:
            deadline = time.monotonic() + 60
            while trainer.progress.total_steps < start + 300 and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(victim.pid, signal.SIGKILL)
            killed_at.append(time.monotonic())

        killer = threading.Thread(target=kill_mid_run, daemon=True)
        killer.start()
        trainer.run_steps(2_000, "train")  # The actor dies while this runs.
        killer.join(timeout=5)
        assert trainer.progress.total_steps >= start + 2_000  # The run reached its target.
        assert killed_at, "the actor was never killed"

        restarts = [(t, m, steps) for t, m, steps in events if "died" in m]
        assert len(restarts) == 1, events
        noticed_at, message, actor0_steps_at_restart = restarts[0]
        assert message == "actor 0 died (ActorDiedError); restarted"
        assert noticed_at - killed_at[0] < 10.0
        replacement = trainer.pool.slots[0]
        assert replacement.handle != victim.handle
        assert replacement.restarts == 1 and trainer.pool.total_restarts == 1
        assert trainer.pool.slots[1].restarts == 0

        # The replacement actor delivers data of its own.
        deadline = time.monotonic() + 60
        while (
            trainer.progress.actor_steps[0] <= actor0_steps_at_restart
            and time.monotonic() < deadline
        ):
            _, _, rates = trainer.run_steps(200, "train")
        assert trainer.progress.actor_steps[0] > actor0_steps_at_restart
        assert rates["actors/restarts"] == 1.0
        assert trainer.state_dict()["actor_restarts"] == [1, 0]
        assert sum(trainer.progress.actor_steps.values()) == trainer.progress.total_steps
    assert all(slot.pending is None for slot in trainer.pool.slots)  # Stopped: none asked.


@pytest.mark.slow
@pytest.mark.usefixtures("trainer_test")
def test_a_ray_actor_that_keeps_dying_stops_the_run(local_ray):
    learner = _cartpole_learner()
    events: list[str] = []
    # An EnvSpec naming no environment: every actor raises while building its env.
    broken = ActorFactory(SMALL, gym_env.EnvSpec(), num_envs=1, num_actors=2)
    trainer = _ray_trainer(
        ParallelConfig(num_actors=2, max_actor_restarts=1, learner_threads=1),
        broken,
        learner,
        events.append,
    )
    started = time.monotonic()
    with pytest.raises(ActorFailure) as failure:  # noqa: SIM117 (the inner block must raise)
        with trainer:
            trainer.run_steps(1_000, "train")
    assert time.monotonic() - started < 60
    message = str(failure.value)
    assert re.fullmatch(
        r"actor [01] died 2 times \(last error: \w+Error: .+\); stopping the run", message
    ), message
    assert isinstance(failure.value, UserError)  # So the CLIs print it as one line.
    failed = int(message.split()[1])
    assert trainer.pool.slots[failed].restarts == 1
    assert trainer.progress.total_steps == 0
    deaths = [e for e in events if "died" in e]
    assert len(deaths) == trainer.pool.total_restarts >= 1
