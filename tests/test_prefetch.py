"""The prefetching data path: batches decoded by worker threads are exactly those of the
synchronous path for a fixed seed (slots, IS weights, priorities and the resulting weights),
and a closed learner leaves no thread behind."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import torch

import gym_env
from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner
from prefetch import BatchPrefetcher

CARTPOLE = gym_env.EnvSpec(classic_name="CartPole-v1")
SMALL = R2d2Config(
    burn_in=2,
    sequence_length=8,
    replay_period=4,
    batch_size=8,
    min_replay_size=16,
    replay_capacity=400,
    prefetch_depth=2,
)


def filled_learner(config: R2d2Config, seed: int = 0):
    torch.manual_seed(seed)
    env, actor = ActorFactory(config, CARTPOLE, num_envs=4, num_actors=1)(0, seed)
    learner = build_learner(
        config,
        env.observation_shape,
        env.observation_dtype,
        env.num_actions,
        seed,
        torch.device("cpu"),
    )
    timestep = env.reset()
    while learner.replay.size < 200:
        timestep = env.step(actor.step(timestep))
        learner.ingest(actor.drain())
    env.close()
    return learner


def train(workers: int, depth: int, updates: int = 25):
    config = dataclasses.replace(SMALL, prefetch_workers=workers, prefetch_depth=depth)
    learner = filled_learner(config)
    keys_seen, weights_seen = [], []
    original = learner.replay.sample_items

    def recording_sample(batch_size, exponent):
        items, keys, weights = original(batch_size, exponent)
        keys_seen.append(keys.copy())
        weights_seen.append(weights.copy())
        return items, keys, weights

    learner.replay.sample_items = recording_sample
    for _ in range(updates):
        learner.step()
    learner.close()
    parameters = torch.nn.utils.parameters_to_vector(learner.network.parameters()).detach()
    priorities = learner.replay.sampler.probabilities(np.arange(learner.replay.capacity))
    return keys_seen, weights_seen, parameters, priorities


def test_worker_threads_give_exactly_the_synchronous_batches_priorities_and_weights():
    torch.set_num_threads(1)
    sync = train(workers=0, depth=2)
    threaded = train(workers=2, depth=2)
    assert len(sync[0]) == len(threaded[0]) == 25 + 2  # two batches sampled ahead
    for a, b in zip(sync[0], threaded[0], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(sync[1], threaded[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert torch.equal(sync[2], threaded[2])
    np.testing.assert_array_equal(sync[3], threaded[3])
    # Sampling ahead changes which batches are drawn (priorities are older), as it should.
    fully_synchronous = train(workers=0, depth=0)
    pairs = zip(sync[0][:25], fully_synchronous[0], strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)


class _Replay:
    """Items are numbers; a batch is their list; sampling counts up."""

    def __init__(self) -> None:
        self.sampled = 0

    def sample_items(self, batch_size, exponent):
        first = self.sampled
        self.sampled += batch_size
        keys = np.arange(first, first + batch_size)
        return list(keys), keys, np.ones(batch_size, np.float32)

    def batch_of(self, items, compact=True):
        return [int(i) for i in items]


def test_prefetcher_keeps_depth_batches_in_flight_in_order_and_stops_its_threads():
    replay = _Replay()
    before = set(threading.enumerate())
    prefetcher = BatchPrefetcher(replay, 2, 0.0, convert=lambda b: b, num_workers=2, depth=3)
    batches = [prefetcher.next()[0] for _ in range(5)]
    assert batches == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]  # in sampling order
    assert replay.sampled == 2 * (5 + 3)  # 3 more sampled ahead
    prefetcher.close()
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


def test_a_closed_learner_leaves_no_prefetch_thread():
    learner = filled_learner(dataclasses.replace(SMALL, prefetch_workers=2))
    learner.step()
    assert any(t.name.startswith("prefetch") for t in threading.enumerate())
    learner.close()
    assert not any(t.name.startswith("prefetch") and t.is_alive() for t in threading.enumerate())
