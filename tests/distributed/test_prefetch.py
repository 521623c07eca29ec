"""The prefetching data path: batches made by worker threads (with their decoding processes
for compressed frames) are exactly those of the synchronous path for a fixed seed (slots, IS
weights, priorities and the resulting weights), a dead decoder is named, and a closed learner
leaves no thread or process behind."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading

import numpy as np
import pytest
import torch

import gym_env
import toy_envs  # noqa: F401  (registers SparseGridRoom-v0)
from agents.r2d2.agent import ActorFactory, R2d2Config, build_learner
from distributed.frame_decoding import ProcessFrameDecoder, decode_frames_into
from distributed.prefetch import BatchPrefetcher
from frame_codec import compress_frame

CARTPOLE = gym_env.EnvSpec(classic_name="CartPole-v1")
# Image observations: stored as snappy frames, so prefetching decodes in processes.
PIXEL_ROOM = gym_env.EnvSpec(
    classic_name="toy_envs:SparseGridRoom-v0", env_kwargs={"observation": "pixels"}
)
SMALL = R2d2Config(
    burn_in=2,
    sequence_length=8,
    replay_period=4,
    batch_size=8,
    min_replay_size=16,
    replay_capacity=400,
    prefetch_depth=2,
)


def filled_learner(config: R2d2Config, seed: int = 0, spec: gym_env.EnvSpec = CARTPOLE):
    torch.manual_seed(seed)
    env, actor = ActorFactory(config, spec, num_envs=4, num_actors=1)(0, seed)
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


def train(workers: int, depth: int, updates: int = 25, spec: gym_env.EnvSpec = CARTPOLE):
    config = dataclasses.replace(SMALL, prefetch_workers=workers, prefetch_depth=depth)
    learner = filled_learner(config, spec=spec)
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


# The frames' case makes fewer updates: each runs the Nature torso on 84 x 84 frames, and the
# decoding path is the same from the first batch on.
@pytest.mark.parametrize(
    "spec, updates", [(CARTPOLE, 25), (PIXEL_ROOM, 6)], ids=["vectors", "snappy-frames"]
)
def test_workers_give_exactly_the_synchronous_batches_priorities_and_weights(spec, updates):
    torch.set_num_threads(1)
    sync = train(workers=0, depth=2, updates=updates, spec=spec)
    threaded = train(workers=2, depth=2, updates=updates, spec=spec)
    assert len(sync[0]) == len(threaded[0]) == updates + 2  # two batches sampled ahead
    for a, b in zip(sync[0], threaded[0], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(sync[1], threaded[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert torch.equal(sync[2], threaded[2])
    np.testing.assert_array_equal(sync[3], threaded[3])
    if spec is PIXEL_ROOM:
        return  # What sampling ahead draws does not depend on how frames are stored.
    # Sampling ahead changes which batches are drawn (priorities are older), as it should.
    fully_synchronous = train(workers=0, depth=0, updates=updates, spec=spec)
    pairs = zip(sync[0][:updates], fully_synchronous[0], strict=True)
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

    def batch_of(self, items, compact=True, decoder=None):
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
    # Compared with the threads alive before: learners that earlier tests left open may
    # still hold theirs until they are collected.
    before = set(threading.enumerate())
    learner = filled_learner(dataclasses.replace(SMALL, prefetch_workers=2))
    learner.step()
    started = [t for t in threading.enumerate() if t not in before]
    assert any(t.name.startswith("prefetch") for t in started)
    learner.close()
    assert not any(t.is_alive() for t in started)


def test_a_closed_learner_leaves_no_decoding_process():
    learner = filled_learner(dataclasses.replace(SMALL, prefetch_workers=2), spec=PIXEL_ROOM)
    learner.step()
    learner.step()
    decoders = list(learner._prefetcher._decoders)
    assert len(decoders) == 2
    processes = [d._process for d in decoders]
    assert all(p.is_alive() for p in processes)
    learner.close()
    assert not any(p.is_alive() for p in processes)
    assert all(p.exitcode == 0 for p in processes)  # stopped by the closed pipe, not killed


def random_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((84, 84)) < 0.05).astype(np.uint8) * 200 for _ in range(count)]


def test_process_decoder_matches_decoding_here_and_zeroes_missing_frames():
    frames = random_frames(30)
    decoder = ProcessFrameDecoder(84 * 84, max_frames=40)
    try:
        decoder.decode([compress_frame(f) for f in frames])  # fills rows 1..30
        payloads = [compress_frame(f) for f in frames[:10]] + [None] + [compress_frame(frames[0])]
        decoded = decoder.decode(payloads)
        expected = np.zeros((len(payloads) + 1, 84 * 84), np.uint8)
        decode_frames_into(payloads, expected)
        np.testing.assert_array_equal(decoded, expected)
        assert not decoded[0].any() and not decoded[11].any()  # padding row, missing frame
        np.testing.assert_array_equal(decoded[12].reshape(84, 84), frames[0])
        with pytest.raises(ValueError, match="does not decode to 7056 bytes"):
            decoder.decode([compress_frame(np.zeros((10, 10), np.uint8))])
        with pytest.raises(ValueError, match="exceed"):
            decoder.decode([None] * 41)
    finally:
        decoder.close()


def test_a_dead_decoding_process_is_named_not_waited_for():
    decoder = ProcessFrameDecoder(84 * 84, max_frames=4, timeout_s=30)
    try:
        os.kill(decoder.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=f"frame decoding process {decoder.pid} died"):
            decoder.decode([compress_frame(random_frames(1)[0])])
    finally:
        decoder.close()
