"""Tests of the multi-process actor-learner machinery in `main_loop.py` and of the R2D2 parts
it drives: the rate limiter, the seqlocked shared weights, the ε ladder, config validation,
and, with real spawned actor processes on CartPole, that a killed actor is replaced and that
an actor which keeps dying stops the run with `ActorFailure`.

The command-line behaviour (Pong smoke run, Ctrl-C/SIGTERM, resume) is in
tests/agents/test_r2d2_cli.py.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
import torch

import gym_env
from agents.r2d2.agent import ActorFactory, R2d2Config, actor_epsilons, build_learner
from distributed.actors import ActorFailure, ActorMessage, ActorPool, _ActorSlot
from distributed.config import ParallelConfig
from distributed.intake import RateLimiter
from distributed.shared_weights import SharedWeights
from experiment.errors import ConfigError, UserError
from main_loop import ParallelTrainer

CARTPOLE = gym_env.EnvSpec(classic_name="CartPole-v1")
# Small enough that replay is warm after a few chunks and an update is cheap on the CPU.
SMALL = R2d2Config(
    burn_in=2,
    sequence_length=8,
    replay_period=4,
    batch_size=4,
    min_replay_size=8,
    replay_capacity=200,
)


# --------------------------------------------------------------------------------------
# RateLimiter
# --------------------------------------------------------------------------------------


def test_rate_limiter_waits_for_replay_before_learning():
    limiter = RateLimiter(replay_ratio=1.0, batch_size=4, tolerance=16)
    limiter.inserted = 100
    assert not limiter.may_learn() and limiter.may_insert()
    limiter.observe_ready(False)
    assert not limiter.may_learn() and limiter.may_insert()
    limiter.observe_ready(True)  # Counting starts here: the 100 warm-up samples are free.
    assert limiter.may_learn() and limiter.may_insert()
    limiter.inserted = 200
    limiter.observe_ready(True)  # Latches once: the warm point stays at 100.
    assert limiter._target() == 100


def test_rate_limiter_stops_a_learner_that_is_ahead():
    limiter = RateLimiter(replay_ratio=1.0, batch_size=4, tolerance=16)
    limiter.observe_ready(True)  # Warm at 0 inserted.
    limiter.inserted = 40
    limiter.learned = 56  # 56 + 4 > 40 + 16: one more batch would exceed the tolerance.
    assert not limiter.may_learn()
    assert limiter.may_insert()
    limiter.learned = 52  # 52 + 4 <= 40 + 16: exactly at the edge, still allowed.
    assert limiter.may_learn()


def test_rate_limiter_stops_insertion_when_the_learner_is_behind():
    limiter = RateLimiter(replay_ratio=2.0, batch_size=4, tolerance=16)
    limiter.inserted = 10
    limiter.observe_ready(True)  # Warm at 10.
    limiter.inserted = 10 + 9  # Target 2 x 9 = 18 learned samples; behind by 18 > 16.
    assert not limiter.may_insert()
    assert limiter.may_learn()
    limiter.learned = 4  # Behind by 14 <= 16.
    assert limiter.may_insert()


@pytest.mark.parametrize("ratio, batch", [(1.0, 4), (0.25, 8), (4.0, 2), (4.0, 64)])
def test_rate_limiter_never_blocks_both_sides_and_holds_the_ratio_within_its_bound(ratio, batch):
    """Random producer/consumer schedule with messages of up to M samples: someone may always
    proceed; learned samples stay within [target − (tolerance + ratio × M), target + tolerance]
    of target = ratio × inserted, whatever the schedule (so however long updates take)."""
    rng = np.random.default_rng(0)
    largest_message = 5
    limiter = RateLimiter(ratio, batch)  # The default, what ParallelTrainer uses: one batch.
    assert limiter.tolerance == batch
    for _ in range(5_000):
        limiter.observe_ready(limiter.inserted >= 50)
        can_learn, can_insert = limiter.may_learn(), limiter.may_insert()
        if limiter._inserted_at_warm is not None:
            assert can_learn or can_insert, (ratio, limiter.state_dict())
        else:
            assert can_insert and not can_learn
        if can_learn and (not can_insert or rng.random() < 0.5):
            limiter.add_learned(batch)
        elif can_insert:
            limiter.add_inserted(int(rng.integers(1, largest_message + 1)))
        if limiter._inserted_at_warm is not None:
            target = limiter._target()
            assert limiter.learned <= target + batch  # At most one batch ahead...
            assert target - limiter.learned <= batch + ratio * largest_message  # ...or behind.
    assert limiter.ratio_since_warm() == pytest.approx(ratio, rel=0.05)


def test_rate_limiter_tolerance_below_half_a_batch_is_refused():
    with pytest.raises(ValueError, match="stalls"):
        RateLimiter(1.0, batch_size=8, tolerance=3)


def test_intake_waits_for_the_learner_and_wakes_when_it_learns():
    limiter = RateLimiter(replay_ratio=1.0, batch_size=4)
    limiter.observe_ready(True)
    limiter.add_inserted(10)  # Behind by 10 > 4: intake must wait.
    assert not limiter.wait_until_may_insert(timeout=0.05)
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(limiter.wait_until_may_insert(5.0)))
    waiter.start()
    time.sleep(0.1)
    limiter.add_learned(4)  # Behind by 6: still waiting.
    time.sleep(0.1)
    assert not woke
    limiter.add_learned(4)  # Behind by 2: intake may go on, and is woken at once.
    waiter.join(timeout=2.0)
    assert woke == [True]


# --------------------------------------------------------------------------------------
# SharedWeights
# --------------------------------------------------------------------------------------


def _net(fill: float | None = None, size: int = 16) -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(size, size), torch.nn.Linear(size, 3))
    if fill is not None:
        with torch.no_grad():
            for p in net.parameters():
                p.fill_(fill)
    return net


def _flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().clone()


def test_shared_weights_round_trip_with_versions():
    learner_net, actor_net = _net(1.0), _net(0.0)
    weights = SharedWeights(learner_net)
    assert int(weights.version[0]) == 0
    assert weights.publish(learner_net) == 2
    assert weights.pull(actor_net, -1) == 2
    assert torch.equal(_flat(actor_net), _flat(learner_net))

    # A reader that holds the current version copies nothing.
    with torch.no_grad():
        next(actor_net.parameters()).fill_(7.0)
    mine = _flat(actor_net)
    assert weights.pull(actor_net, 2) == 2
    assert torch.equal(_flat(actor_net), mine)

    # A newer publication reaches it.
    with torch.no_grad():
        for p in learner_net.parameters():
            p.add_(1.0)
    assert weights.publish(learner_net) == 4
    assert weights.pull(actor_net, 2) == 4
    assert torch.equal(_flat(actor_net), _flat(learner_net))


def test_shared_weights_carry_buffers_of_every_dtype_exactly():
    """Normalisation statistics live in buffers (float64 counts too): they must travel."""
    learner_net, actor_net = _net(1.0), _net(0.0)
    for net in (learner_net, actor_net):
        net.register_buffer("count", torch.zeros((), dtype=torch.float64))
        net.register_buffer("mean", torch.zeros(4))
    learner_net.count.fill_(2**40 + 1)  # not representable in float32
    learner_net.mean.copy_(torch.arange(4.0))
    weights = SharedWeights(learner_net)
    weights.publish(learner_net)
    assert weights.pull(actor_net, -1) == 2
    assert actor_net.count.dtype == torch.float64 and int(actor_net.count) == 2**40 + 1
    assert torch.equal(actor_net.mean, torch.arange(4.0))
    assert torch.equal(_flat(actor_net), _flat(learner_net))


def test_shared_weights_never_reads_an_odd_version():
    learner_net, actor_net = _net(1.0), _net(0.0)
    weights = SharedWeights(learner_net)
    weights.publish(learner_net)
    weights.version[0] = 3  # The learner is in the middle of writing version 4.
    for buffer in weights.buffers.values():
        buffer.fill_(-1.0)  # Half-written garbage.
    before = _flat(actor_net)
    assert weights.pull(actor_net, 2) == 2
    assert weights.pull(actor_net, -1) == -1
    assert torch.equal(_flat(actor_net), before)


class _WriterDuringEveryCopy:
    """A buffer whose every copy overlaps a publication (the version moves meanwhile)."""

    def __init__(self, buffer: torch.Tensor, version: torch.Tensor) -> None:
        self.buffer, self.version, self.copies = buffer, version, 0

    def clone(self) -> torch.Tensor:
        self.copies += 1
        self.version[0] += 2
        return self.buffer.clone()


def test_shared_weights_drops_a_copy_when_the_version_moves_during_it():
    learner_net, actor_net = _net(1.0), _net(0.0)
    weights = SharedWeights(learner_net)
    weights.publish(learner_net)
    torn = _WriterDuringEveryCopy(weights.buffers["torch.float32"], weights.version)
    weights.buffers["torch.float32"] = torn
    before = _flat(actor_net)
    assert weights.pull(actor_net, 0) == 0  # Gave up after its retries...
    assert torn.copies >= 2  # ...having retried...
    assert torch.equal(_flat(actor_net), before)  # ...and kept none of the torn copies.


def _pull_in_a_loop(weights: SharedWeights, seconds: float, results) -> None:
    """Child process: pull as fast as possible; every accepted copy must be one publication."""
    net = _net(size=512)
    version, versions_seen, torn, pulls = -1, set(), 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        new = weights.pull(net, version)
        if new != version:
            pulls += 1
            flat = _flat(net)
            # Publication k fills every parameter with k and has version 2k.
            if not (flat.min() == flat.max() == new // 2):
                torn += 1
            versions_seen.add(new)
            version = new
    results.put((pulls, len(versions_seen), torn))


@pytest.mark.slow
def test_shared_weights_across_processes_are_never_torn():
    """A spawned reader pulls while this process publishes continuously: it sees many
    versions, each exactly as published."""
    learner_net = _net(0.0, size=512)  # ~270k parameters: a copy takes a while.
    weights = SharedWeights(learner_net)
    context = multiprocessing.get_context("spawn")
    results = context.Queue(maxsize=1)
    reader = context.Process(target=_pull_in_a_loop, args=(weights, 2.0, results), daemon=True)
    reader.start()
    try:
        k = 0
        deadline = time.monotonic() + 60
        while reader.is_alive() and time.monotonic() < deadline:
            k += 1
            with torch.no_grad():
                for p in learner_net.parameters():
                    p.fill_(float(k))
            assert weights.publish(learner_net) == 2 * k
            if results.qsize():
                break
        pulls, versions_seen, torn = results.get(timeout=30)
    finally:
        reader.join(timeout=10)
        if reader.is_alive():
            reader.kill()
            reader.join(timeout=5)
    assert torn == 0, f"{torn} of {pulls} pulls mixed two publications"
    assert versions_seen >= 3 and pulls >= 3


# --------------------------------------------------------------------------------------
# ActorPool channels
# --------------------------------------------------------------------------------------


class _FakeProcess:
    def __init__(self) -> None:
        self.killed = False

    def is_alive(self) -> bool:
        return not self.killed

    def kill(self) -> None:
        self.killed = True


def _pool_with_channels(num_channels: int):
    """An ActorPool whose slots hold real channels but stand-in processes (nothing spawns)."""
    pool = ActorPool(ParallelConfig(num_actors=num_channels), None, None, seed=0)
    writers = []
    for _ in range(num_channels):
        reader, writer = pool.context.Pipe(duplex=False)
        credits = pool.context.Semaphore(pool.config.messages_in_flight)
        assert credits.acquire(timeout=0)  # As an actor does before it sends.
        pool.slots.append(_ActorSlot(_FakeProcess(), reader, credits))
        writers.append(writer)
    return pool, writers


def _close(pool: ActorPool, writers) -> None:
    for connection in [*writers, *(slot.reader for slot in pool.slots)]:
        connection.close()


def _message(index: int) -> ActorMessage:
    return ActorMessage(index, 16, ["chunk"], [1.0], [10])


def test_pool_receives_from_every_ready_channel_and_returns_credits():
    pool, writers = _pool_with_channels(2)
    writers[0].send(_message(0))
    writers[1].send(_message(1))
    messages = pool.receive(timeout=1.0)
    assert sorted(messages) == [_message(0), _message(1)]
    for slot in pool.slots:
        assert slot.credits.get_value() == pool.config.messages_in_flight
    assert pool.receive(timeout=0.0) == []  # Nothing more: no blocking, no duplicates.
    _close(pool, writers)


def test_pool_drops_a_broken_channel_and_keeps_the_others():
    """A channel whose writer died mid-message (EOF), or that an interrupt left in the middle
    of a message (garbage where a message should start), is closed with its actor; the other
    actor's message still arrives, and no error escapes (`stop()` drains with `receive` after
    Ctrl-C)."""
    pool, writers = _pool_with_channels(3)
    writers[0].send_bytes(b"\x80\x05 the middle of a compressed chunk")
    writers[1].send(_message(1))
    writers[2].close()  # Its actor died.
    assert pool.receive(timeout=1.0) == [_message(1)]
    assert [slot.reader.closed for slot in pool.slots] == [True, False, True]
    # The garbled channel's actor goes too (check_health replaces it); the exiting one is
    # left to exit with its own exit code, which check_health reports.
    assert [slot.process.killed for slot in pool.slots] == [True, False, False]
    assert pool.receive(timeout=0.0) == []  # Broken channels are not waited on again.
    _close(pool, writers)


# --------------------------------------------------------------------------------------
# Exploration ladder and configuration
# --------------------------------------------------------------------------------------


def test_actor_epsilons_follow_the_ape_x_ladder():
    expected = [0.4 ** (1 + 7 * i / 7) for i in range(8)]  # 0.4, 0.4^2, ..., 0.4^8
    np.testing.assert_allclose(actor_epsilons(8), expected, rtol=1e-12)
    assert actor_epsilons(8)[0] == pytest.approx(0.4)
    assert actor_epsilons(8)[7] == pytest.approx(0.4**8)
    np.testing.assert_allclose(actor_epsilons(1), [0.4])
    np.testing.assert_allclose(actor_epsilons(3, base=0.5, alpha=2.0), [0.5, 0.25, 0.125])


def test_actor_factory_gives_each_process_its_slice_of_the_ladder():
    factory = ActorFactory(SMALL, CARTPOLE, num_envs=2, num_actors=3)
    ladder = actor_epsilons(6)
    for index in range(3):
        env, actor = factory(index, seed=index)
        try:
            assert env.num_envs == 2
            np.testing.assert_allclose(actor.epsilon, ladder[2 * index : 2 * index + 2])
            assert [b._stream for b in actor.recorder.builders] == [2 * index, 2 * index + 1]
        finally:
            env.close()


def test_r2d2_config_rejects_burn_in_longer_than_replay_period():
    with pytest.raises(ConfigError, match=r"burn_in \(9\).*replay_period \(8\)"):
        R2d2Config(burn_in=9, replay_period=8, sequence_length=16)
    R2d2Config(burn_in=8, replay_period=8, sequence_length=16)  # Equal is fine.
    with pytest.raises(ConfigError, match="replay_period must not exceed sequence_length"):
        R2d2Config(burn_in=8, replay_period=32, sequence_length=16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_actors": 0}, "num_actors must be at least 1"),
        ({"num_actors": -3}, "num_actors must be at least 1"),
        ({"replay_ratio": 0.0}, "replay_ratio must be positive"),
        ({"actor_update_interval": 0}, "actor_update_interval must be at least 1"),
    ],
)
def test_parallel_config_rejects_bad_values(kwargs, message):
    with pytest.raises(UserError, match=message):
        ParallelConfig(**kwargs)


# --------------------------------------------------------------------------------------
# Real actor processes on CartPole
# --------------------------------------------------------------------------------------


@pytest.fixture
def trainer_test():
    """Fails a test that runs past 120 s instead of hanging the suite, and restores the
    process's torch threads, which ParallelTrainer sets."""

    def too_long(signum, frame):
        raise TimeoutError("the test ran past 120 s")

    threads = torch.get_num_threads()
    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    torch.set_num_threads(threads)


def _cartpole_learner(seed: int = 0):
    env = CARTPOLE.create(1, seed)
    try:
        shape, dtype, actions = env.observation_shape, env.observation_dtype, env.num_actions
    finally:
        env.close()
    torch.manual_seed(seed)
    return build_learner(SMALL, shape, dtype, actions, seed, torch.device("cpu"))


def _assert_all_stopped(trainer: ParallelTrainer) -> None:
    for slot in trainer.pool.slots:
        assert not slot.process.is_alive()
        assert slot.process.exitcode is not None
        assert slot.reader.closed


@pytest.mark.slow
def test_killed_actor_is_replaced_and_the_run_finishes(trainer_test):
    learner = _cartpole_learner()
    events: list[tuple[float, str, int]] = []

    def log(message: str) -> None:
        events.append((time.monotonic(), message, trainer.progress.actor_steps.get(0, 0)))

    trainer = ParallelTrainer(
        ParallelConfig(num_actors=2, learner_threads=1),
        ActorFactory(SMALL, CARTPOLE, num_envs=2, num_actors=2),
        learner,
        seed=0,
        log=log,
    )
    with trainer:
        trainer.run_steps(400, "warm-up")
        deadline = time.monotonic() + 60
        while len(trainer.progress.actor_steps) < 2 and time.monotonic() < deadline:
            trainer.run_steps(100, "warm-up")  # One actor may start seconds after the other.
        assert set(trainer.progress.actor_steps) == {0, 1}  # Both actors deliver.
        assert learner.num_updates > 0
        victim = trainer.pool.slots[0].process
        start = trainer.progress.total_steps
        killed_at: list[float] = []

        def kill_mid_run() -> None:
            deadline = time.monotonic() + 60
            while trainer.progress.total_steps < start + 500 and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(victim.pid, signal.SIGKILL)
            killed_at.append(time.monotonic())

        killer = threading.Thread(target=kill_mid_run, daemon=True)
        killer.start()
        _, _, rates = trainer.run_steps(5_000, "train")  # The actor dies while this runs.
        killer.join(timeout=5)
        assert trainer.progress.total_steps >= start + 5_000  # The run reached its target.
        assert killed_at, "the actor was never killed"

        restarts = [(t, m, steps) for t, m, steps in events if "died" in m]
        assert len(restarts) == 1, events
        noticed_at, message, actor0_steps_at_restart = restarts[0]
        assert message == "actor 0 died (exit code -9); restarted"
        assert noticed_at - killed_at[0] < 10.0
        assert victim.exitcode == -signal.SIGKILL
        replacement = trainer.pool.slots[0]
        assert replacement.process.pid != victim.pid
        assert replacement.process.is_alive()
        assert replacement.restarts == 1 and trainer.pool.total_restarts == 1
        assert trainer.pool.slots[1].restarts == 0

        # The replacement actor delivers data of its own (its predecessor's pipe is gone).
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
    _assert_all_stopped(trainer)


@pytest.mark.slow
def test_an_actor_that_keeps_dying_stops_the_run(trainer_test):
    learner = _cartpole_learner()
    events: list[str] = []
    # An EnvSpec naming no environment: every actor process raises while building its env.
    broken = ActorFactory(SMALL, gym_env.EnvSpec(), num_envs=1, num_actors=2)
    trainer = ParallelTrainer(
        ParallelConfig(num_actors=2, max_actor_restarts=2, learner_threads=1),
        broken,
        learner,
        seed=0,
        log=events.append,
    )
    started = time.monotonic()
    with pytest.raises(ActorFailure) as failure:  # noqa: SIM117 (the inner block must raise)
        with trainer:
            trainer.run_steps(1_000, "train")
    assert time.monotonic() - started < 60
    message = str(failure.value)
    assert re.fullmatch(
        r"actor [01] died 3 times \(last exit code 1\); stopping the run", message
    ), message
    assert isinstance(failure.value, UserError)  # So the CLIs print it as one line.
    failed = int(message.split()[1])
    assert trainer.pool.slots[failed].restarts == 2
    assert trainer.progress.total_steps == 0
    deaths = [e for e in events if "died" in e]  # Not the progress line of a slow machine.
    assert len(deaths) == trainer.pool.total_restarts >= 2
    assert all(re.fullmatch(r"actor [01] died \(exit code 1\); restarted", e) for e in deaths)
    _assert_all_stopped(trainer)


# --------------------------------------------------------------------------------------
# Learner threads
# --------------------------------------------------------------------------------------


def _threads(monkeypatch, cores: int, num_actors: int, omp: str | None = None):
    from distributed.threads import LearnerThreads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    return LearnerThreads(0, num_actors, explore_every=10), set_to


def test_learner_takes_the_cores_actors_leave_and_all_when_faster(monkeypatch):
    threads, set_to = _threads(monkeypatch, cores=8, num_actors=6)
    assert threads.use(actors_throttled=False) == 2  # 8 cores, 6 busy actors.
    # Throttled actors: both counts are timed, then the faster one is kept...
    seconds = {8: 1.0, 2: 3.0}
    used = []
    for _ in range(40):
        n = threads.use(actors_throttled=True)
        threads.record(n, seconds[n])
        used.append(n)
    assert used[:8].count(8) >= 3 and used[:8].count(2) >= 3
    assert used[-20:].count(8) >= 18  # ...trying the other one now and then.
    assert 2 in used[-20:]
    # ...and it moves back when the measurements turn (other work arrived on the cores).
    seconds = {8: 5.0, 2: 3.0}
    for _ in range(60):
        n = threads.use(actors_throttled=True)
        threads.record(n, seconds[n])
    assert threads.use(actors_throttled=True) == 2 or threads._throttled_updates % 10 == 0
    assert set(set_to) <= {2, 8}
    assert threads.use(actors_throttled=False) == 2


def test_learner_threads_respect_omp_num_threads(monkeypatch):
    threads, _ = _threads(monkeypatch, cores=8, num_actors=2, omp="1")
    assert threads.use(actors_throttled=False) == 1
    assert all(threads.use(actors_throttled=True) == 1 for _ in range(20))


class _NotStarted:
    """Stands in for a Process: records its arguments, never runs."""

    def __init__(self, target, args, name, daemon) -> None:
        self.args = args

    def start(self) -> None:
        pass


def _actor_seeds(monkeypatch, resume_point: int, restarts: int) -> list[int]:
    pool = ActorPool(ParallelConfig(num_actors=3), None, None, seed=1)
    pool.resume_point = resume_point
    monkeypatch.setattr(pool.context, "Process", _NotStarted)
    slots = [pool._spawn(index, restarts) for index in range(3)]
    for slot in slots:
        slot.reader.close()
    return [slot.process.args[1] for slot in slots]


def test_actor_streams_are_new_after_a_restart_and_after_a_resume(monkeypatch):
    fresh = _actor_seeds(monkeypatch, resume_point=0, restarts=0)
    restarted = _actor_seeds(monkeypatch, resume_point=0, restarts=1)
    resumed = _actor_seeds(monkeypatch, resume_point=12_000, restarts=0)
    assert len(set(fresh + restarted + resumed)) == 9  # No stream is used twice.
    assert _actor_seeds(monkeypatch, resume_point=0, restarts=0) == fresh  # Reproducible.


def test_resumed_trainer_names_its_resume_point(monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # Leave this process's.
    trainer = ParallelTrainer(
        ParallelConfig(num_actors=1, learner_threads=1),
        None,
        _cartpole_learner(),
        seed=0,
    )
    trainer.load_state_dict(
        {"total_steps": 12_000, "actor_steps": {}, "actor_episodes": {}, "actor_states": {}}
    )
    assert trainer.pool.resume_point == 12_000
