"""Tests for replay.py: sum tree, prioritized sampler, n-step accumulation, transition replay."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from frame_codec import (
    compress_frame,
    decompress_frame,
    frame_nbytes,
    frame_to_bytes,
    frames_from_rows,
)
from prioritized_sampler import PrioritizedSampler, SlotSet, SumTree
from replay import NStepAccumulator, TransitionReplay

# --------------------------------------------------------------------------------------------
# Synthetic environment streams
# --------------------------------------------------------------------------------------------

# Frames are int32 triples (stream + 1, episode + 1, step + 1): any frame, wherever it is read
# from, says exactly which (stream, episode, step) it belongs to, and zero means padding.
FRAME_SHAPE = (3,)


@dataclass
class Steps:
    """num_steps timesteps of E streams, fields as TransitionReplay.add takes them."""

    observation: np.ndarray  # [T, E, frame_stack, 3] int32
    reward: np.ndarray  # [T, E]
    discount: np.ndarray  # [T, E]
    first: np.ndarray  # [T, E]
    last: np.ndarray  # [T, E]
    action: np.ndarray  # [T, E]

    def stream(self, e: int) -> Steps:
        return Steps(*(getattr(self, f)[:, e : e + 1] for f in self.__dataclass_fields__))

    def add_all(self, replay: TransitionReplay, start: int = 0, stop: int | None = None) -> None:
        for t in range(start, self.reward.shape[0] if stop is None else stop):
            replay.add(
                self.observation[t],
                self.reward[t],
                self.discount[t],
                self.first[t],
                self.last[t],
                self.action[t],
            )


def action_of(episode: int, step: int) -> int:
    return (7 * episode + step) % 5


def make_streams(
    num_streams: int, num_steps: int, frame_stack: int, seed: int, max_episode_len: int = 15
) -> Steps:
    """Random episodes: life losses (discount 0 mid-episode), game overs (discount 0, last)
    and time-limit truncations (discount 1, last), stacks zero-padded at episode start."""
    rng = np.random.default_rng(seed)
    shape = (num_steps, num_streams)
    steps = Steps(
        observation=np.zeros((*shape, frame_stack, *FRAME_SHAPE), dtype=np.int32),
        reward=rng.integers(-3, 4, size=shape).astype(np.float32),
        discount=np.where(rng.random(shape) < 0.1, 0.0, 1.0).astype(np.float32),
        first=np.zeros(shape, dtype=bool),
        last=np.zeros(shape, dtype=bool),
        action=np.zeros(shape, dtype=np.int64),
    )
    for e in range(num_streams):
        episode, step, length = 0, 0, rng.integers(1, max_episode_len + 1)
        for t in range(num_steps):
            if step == 0:
                steps.first[t, e] = True
            steps.last[t, e] = step == length
            if steps.last[t, e]:
                steps.discount[t, e] = float(rng.random() < 0.5)  # game over or truncation
            steps.action[t, e] = action_of(episode, step)
            for lag in range(min(step, frame_stack - 1) + 1):
                frame = (e + 1, episode + 1, step - lag + 1)
                steps.observation[t, e, frame_stack - 1 - lag] = frame
            if steps.last[t, e]:
                episode, step, length = episode + 1, 0, rng.integers(1, max_episode_len + 1)
            else:
                step += 1
    return steps


def expected_stack(newest: np.ndarray, frame_stack: int) -> np.ndarray:
    """The zero-padded stack the environment shows when `newest` is its newest frame."""
    stream, episode, step = (int(v) for v in newest)
    stack = np.zeros((frame_stack, *FRAME_SHAPE), dtype=np.int32)
    for lag in range(frame_stack):
        if step - lag >= 1:
            stack[frame_stack - 1 - lag] = (stream, episode, step - lag)
    return stack


def assert_transitions_consistent(replay: TransitionReplay, slots: np.ndarray, stack: int) -> None:
    """Every stack is one episode's frames with zero padding, s_t is k steps later in the same
    episode, and a_tm1 is the action taken at s_tm1."""
    batch = replay.gather(slots)
    s_tm1, s_t = batch.s_tm1, batch.s_t
    if stack == 1:
        s_tm1, s_t = s_tm1[:, None], s_t[:, None]
    for i in range(slots.shape[0]):
        np.testing.assert_array_equal(s_tm1[i], expected_stack(s_tm1[i, -1], stack))
        np.testing.assert_array_equal(s_t[i], expected_stack(s_t[i, -1], stack))
        stream, episode, step = s_tm1[i, -1]
        assert step >= 1, "the newest frame is never padding"
        assert s_t[i, -1, 0] == stream and s_t[i, -1, 1] == episode
        assert 1 <= s_t[i, -1, 2] - step <= 3
        assert batch.a_tm1[i] == action_of(episode - 1, step - 1)


def reference_transitions(steps: Steps, n: int, gamma: float) -> dict[tuple, tuple]:
    """Brute-force n-step transitions of stream 0: (episode, step) -> (R, discount, k)."""
    out = {}
    frames = steps.observation[:, 0, -1]
    reward, discount, last = steps.reward[:, 0], steps.discount[:, 0], steps.last[:, 0]
    for t in range(len(reward)):
        if last[t]:
            continue
        ret, scale = 0.0, 1.0
        for k in range(1, n + 1):
            if t + k >= len(reward):
                break  # still pending at the end of the data
            ret += scale * reward[t + k]
            scale *= gamma * discount[t + k]
            if k == n or discount[t + k] == 0 or last[t + k]:
                out[(frames[t, 1], frames[t, 2])] = (ret, scale, k)
                break
    return out


def atari_like_replay(**overrides) -> TransitionReplay:
    kwargs = dict(
        capacity=64,
        num_streams=1,
        observation_shape=FRAME_SHAPE,
        observation_dtype=np.int32,
        frame_stack=4,
        n_step=3,
        discount=0.9,
        compress=True,
        prioritized=True,
        seed=0,
    )
    return TransitionReplay(**(kwargs | overrides))


# --------------------------------------------------------------------------------------------
# SumTree
# --------------------------------------------------------------------------------------------


def test_sum_tree_total_and_prefix_search_match_brute_force_cumsum():
    rng = np.random.default_rng(0)
    capacity = 1000  # not a power of two: padding leaves must stay out of the way
    tree = SumTree(capacity)
    # Integer values keep every partial sum exact, so comparisons can be exact too.
    values = rng.integers(0, 10, size=capacity).astype(np.float64)
    tree.set(np.arange(capacity), values)
    assert tree.total == values.sum()
    assert tree.num_nonzero == np.count_nonzero(values)
    np.testing.assert_array_equal(tree.get(np.arange(capacity)), values)

    cumsum = np.cumsum(values)
    targets = np.concatenate([rng.random(5000) * values.sum(), cumsum[:-1]])  # + exact boundaries
    expected = np.searchsorted(cumsum, targets, side="right")
    np.testing.assert_array_equal(tree.find_prefix_sum_index(targets), expected)


def test_sum_tree_duplicate_indices_last_wins_and_parents_stay_consistent():
    tree = SumTree(10)
    tree.set(np.array([3, 3, 7, 3]), np.array([1.0, 2.0, 4.0, 5.0]))
    assert tree.get(np.array([3]))[0] == 5.0
    assert tree.total == 9.0
    assert tree.num_nonzero == 2
    tree.set(np.array([3, 3]), np.array([2.0, 0.0]))
    assert tree.total == 4.0
    assert tree.num_nonzero == 1


def test_sum_tree_parents_are_recomputed_not_drifting():
    rng = np.random.default_rng(1)
    incremental = SumTree(300)
    for _ in range(2000):
        slots = rng.integers(0, 300, size=16)
        incremental.set(slots, rng.random(16) * 10 ** rng.uniform(-6, 6))
    rebuilt = SumTree(300)
    rebuilt.set(np.arange(300), incremental.get(np.arange(300)))
    assert incremental.total == rebuilt.total  # bitwise: same leaves, same pairwise sums


def test_sum_tree_never_returns_zero_leaf_at_edges():
    tree = SumTree(8)
    tree.set(np.array([1, 2, 5]), np.array([0.1, 0.2, 0.3]))
    total = tree.total
    targets = np.array([0.0, 0.1, 0.1 + 0.2, total, total * (1 + 1e-12), 1e9, -1.0])
    found = tree.find_prefix_sum_index(targets)
    assert np.all(tree.get(found) > 0), found
    assert found[3] == 5 and found[4] == 5 and found[5] == 5  # clamped below the total
    assert found[0] == 1 and found[6] == 1


def test_sum_tree_rounding_never_lands_on_zero_leaf():
    # Found by search: a target just below the total survives the root's subtraction with a
    # remainder above the right subtree's (rounded) sum, which then points at a zero leaf.
    values = [0.0, 0.0, 0.48884954683346427, 0.0, 0.7756911881018284, 0.308857362719261, 0, 0]
    tree = SumTree(8)
    tree.set(np.arange(8), np.array(values))
    cumsum = np.cumsum(values)
    targets = np.concatenate([cumsum, np.nextafter(cumsum, 0), np.nextafter(cumsum, 2)])
    assert np.all(tree.get(tree.find_prefix_sum_index(targets)) > 0)


def test_sum_tree_state_dict_round_trip():
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 0.5]))
    restored = SumTree(5)
    restored.load_state_dict(tree.state_dict())
    assert restored.total == tree.total and restored.num_nonzero == 4
    np.testing.assert_array_equal(restored.find_prefix_sum_index(np.array([1.5])), [2])


# --------------------------------------------------------------------------------------------
# PrioritizedSampler
# --------------------------------------------------------------------------------------------


def draw_counts(sampler: PrioritizedSampler, capacity: int, draws: int) -> np.ndarray:
    counts = np.zeros(capacity, dtype=np.int64)
    for _ in range(draws // 64):
        slots, _ = sampler.sample(64, 0.5)
        counts += np.bincount(slots, minlength=capacity)
    return counts


def test_prioritized_sampling_frequencies_follow_p_to_the_alpha():
    rng = np.random.default_rng(0)
    capacity, alpha = 20, 0.6
    sampler = PrioritizedSampler(capacity, priority_exponent=alpha, seed=1)
    priorities = rng.uniform(0.1, 3.0, size=capacity)
    valid = np.ones(capacity, dtype=bool)
    valid[[2, 9, 10, 19]] = False
    sampler.set_priorities(np.flatnonzero(valid), priorities[valid])

    counts = draw_counts(sampler, capacity, 200_000)
    assert counts[~valid].sum() == 0
    expected_p = priorities[valid] ** alpha / np.sum(priorities[valid] ** alpha)
    _, p_value = stats.chisquare(counts[valid], expected_p * counts.sum())
    assert p_value > 0.001, p_value


def test_uniform_mode_is_uniform_over_valid_slots_with_unit_weights():
    capacity = 20
    sampler = PrioritizedSampler(capacity, priority_exponent=0.6, uniform=True, seed=2)
    sampler.set_priorities(np.arange(capacity), np.linspace(0.1, 50.0, capacity))
    sampler.clear(np.array([0, 5, 6]))
    valid = np.ones(capacity, dtype=bool)
    valid[[0, 5, 6]] = False

    counts = draw_counts(sampler, capacity, 200_000)
    assert counts[~valid].sum() == 0
    _, p_value = stats.chisquare(counts[valid])  # against equal frequencies
    assert p_value > 0.001, p_value
    _, weights = sampler.sample(64, 1.0)
    np.testing.assert_array_equal(weights, np.ones(64, dtype=np.float32))


def test_importance_weights_match_hand_computation():
    # p = [1, 4], α = 0.5: p^α = [1, 2], P = [1/3, 2/3], N = 2, β = 0.5:
    # w = (N·P)^(-β) = [(2/3)^(-1/2), (4/3)^(-1/2)], / max = [1, 1/√2].
    # Six strata of width 0.5 over total 3: the first two fall in slot 0's mass [0, 1).
    sampler = PrioritizedSampler(2, priority_exponent=0.5, seed=0)
    sampler.set_priorities(np.array([0, 1]), np.array([1.0, 4.0]))
    slots, weights = sampler.sample(6, importance_sampling_exponent=0.5)
    np.testing.assert_array_equal(slots, [0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(weights, [1, 1] + [1 / np.sqrt(2)] * 4, rtol=1e-6)
    assert weights.dtype == np.float32


def test_new_items_get_max_priority_and_clear_excludes():
    sampler = PrioritizedSampler(4, priority_exponent=1.0, seed=0)
    sampler.set_priorities(np.array([0, 1]), np.array([5.0, 1.0]))
    sampler.set_max_priority(np.array([2]))
    assert sampler.max_priority == 5.0
    np.testing.assert_allclose(sampler.probabilities(np.array([0, 1, 2])), [5 / 11, 1 / 11, 5 / 11])
    sampler.clear(np.array([0, 2]))
    assert sampler.num_valid == 1
    slots, _ = sampler.sample(32, 0.4)
    assert np.all(slots == 1)


def test_sampling_with_nothing_valid_raises():
    sampler = PrioritizedSampler(8, priority_exponent=0.6)
    with pytest.raises(ValueError, match="nonzero priority"):
        sampler.sample(4, 0.4)
    sampler.set_priorities(np.array([3]), np.array([1.0]))
    sampler.clear(np.array([3]))
    with pytest.raises(ValueError, match="nonzero priority"):
        sampler.sample(4, 0.4)
    with pytest.raises(ValueError, match="nonzero priority"):
        atari_like_replay().sample(4)


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------


def pong_like_frame(t: int) -> np.ndarray:
    """84x84 uint8: flat background, two paddles, a ball and a score bar."""
    frame = np.full((84, 84), 87, dtype=np.uint8)
    frame[:10] = 236
    frame[20 + t % 40 : 28 + t % 40, 8:10] = 147
    frame[50 - t % 30 : 58 - t % 30, 74:76] = 92
    frame[30 + t % 20 : 32 + t % 20, 20 + t % 50 : 22 + t % 50] = 236
    return frame


def test_compression_round_trips_exactly():
    rng = np.random.default_rng(0)
    for frame in (
        rng.integers(0, 256, size=(84, 84), dtype=np.uint8),
        rng.standard_normal(4).astype(np.float32),
        pong_like_frame(3),
    ):
        restored = decompress_frame(compress_frame(frame), frame.shape, frame.dtype)
        assert restored.dtype == frame.dtype
        np.testing.assert_array_equal(restored, frame)


def test_pong_like_frames_are_stored_much_smaller_than_raw():
    raw = 84 * 84
    assert len(compress_frame(pong_like_frame(0))) < raw / 10
    replay = TransitionReplay(
        2000, 1, (84, 84), np.uint8, 4, 3, 0.99, compress=True, prioritized=True
    )
    zeros = np.zeros(1)
    for t in range(2000):
        observation = pong_like_frame(t)[None, None].repeat(4, axis=1)
        replay.add(observation, zeros, zeros + 1, [t == 0], [False], [t % 6])
    assert replay.num_stored_steps == 2000
    assert replay.bytes_per_stored_step() < raw / 5
    assert replay.memory_bytes() > 2000 * len(compress_frame(pong_like_frame(0)))


# --------------------------------------------------------------------------------------------
# n-step accumulation
# --------------------------------------------------------------------------------------------

# (reward, discount, first, last) per timestep; γ = 0.5, n = 3.
HAND_STEPS = [
    (0, 0, True, False),  # t0
    (1, 1, False, False),  # t1
    (2, 1, False, False),  # t2
    (3, 0, False, False),  # t3 life loss: discount 0, the episode goes on
    (4, 1, False, False),  # t4
    (5, 1, False, True),  # t5 time-limit truncation
    (0, 0, True, False),  # t6
    (6, 1, False, False),  # t7
    (7, 0, False, True),  # t8 game over
    (0, 0, True, False),  # t9
    (1, 1, False, False),  # t10
    (1, 0.5, False, False),  # t11
    (1, 1, False, False),  # t12
    (1, 1, False, True),  # t13 truncation
]
# start t -> (R, bootstrap discount, k, the call that finishes it)
HAND_EXPECTED = {
    0: (1 + 0.5 * 2 + 0.25 * 3, 0.0, 3, 3),
    1: (2 + 0.5 * 3, 0.0, 2, 3),
    2: (3.0, 0.0, 1, 3),
    3: (4 + 0.5 * 5, 0.25, 2, 5),  # truncation bootstraps with γ^k, not 0
    4: (5.0, 0.5, 1, 5),
    6: (6 + 0.5 * 7, 0.0, 2, 8),
    7: (7.0, 0.0, 1, 8),
    9: (1 + 0.5 * 1 + 0.25 * 0.5 * 1, 0.125 * 0.5, 3, 12),
    10: (1 + 0.5 * 0.5 * 1 + 0.25 * 0.5 * 1, 0.125 * 0.5, 3, 13),
    11: (1 + 0.5 * 1, 0.25, 2, 13),
    12: (1.0, 0.5, 1, 13),
}


def test_n_step_accumulator_matches_hand_computed_returns():
    accumulator = NStepAccumulator(num_streams=1, n_step=3, discount=0.5)
    finished = {}
    for t, (reward, discount, first, last) in enumerate(HAND_STEPS):
        out = accumulator.step([reward], [discount], [first], [last], [t])
        for slot, ret, disc, k in zip(*out, strict=True):
            finished[int(slot)] = (float(ret), float(disc), int(k), t)
    assert finished.keys() == HAND_EXPECTED.keys()
    for start, (ret, disc, k, t) in HAND_EXPECTED.items():
        got = finished[start]
        assert got[2:] == (k, t), start
        np.testing.assert_allclose(got[:2], (ret, disc), rtol=1e-6, err_msg=str(start))
    assert accumulator.num_pending == 0


def test_n_step_accumulator_drops_pending_transition_whose_start_is_overwritten():
    # A 2-slot ring with n = 3: the transition starting in slot 0 at call 0 would finish at
    # call 3 with k = 3, but call 2 reuses slot 0, so it must be dropped instead.
    accumulator = NStepAccumulator(num_streams=1, n_step=3, discount=0.5)
    finished = []
    for call, slot in enumerate([0, 1, 0, 1]):
        out = accumulator.step([1.0], [1.0], [call == 0], [False], [slot])
        finished += out.slots.tolist()
    assert finished == []
    assert accumulator.num_pending == 2  # only those started at calls 2 and 3


def test_replay_transitions_match_hand_computed_values():
    replay = TransitionReplay(
        64,
        1,
        (1,),
        np.float32,
        frame_stack=1,
        n_step=3,
        discount=0.5,
        compress=False,
        prioritized=False,
    )
    for t, (reward, discount, first, last) in enumerate(HAND_STEPS):
        replay.add(np.array([[t]], dtype=np.float32), [reward], [discount], [first], [last], [t])
    slots = replay.valid_slots()
    np.testing.assert_array_equal(slots, sorted(HAND_EXPECTED))
    batch = replay.gather(slots)
    expected = np.array([HAND_EXPECTED[s][:3] for s in slots])
    np.testing.assert_allclose(batch.r_t, expected[:, 0], rtol=1e-6)
    np.testing.assert_allclose(batch.discount_t, expected[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(batch.s_tm1[:, 0], slots)
    np.testing.assert_array_equal(batch.s_t[:, 0], slots + expected[:, 2])
    np.testing.assert_array_equal(batch.a_tm1, slots)
    assert batch.s_tm1.shape == (len(slots), 1)
    assert len(replay) == len(HAND_EXPECTED)


def test_replay_n_step_returns_match_brute_force_on_random_episodes():
    steps = make_streams(1, 600, frame_stack=1, seed=3)
    replay = atari_like_replay(capacity=1000, frame_stack=1, compress=False)
    steps.add_all(replay)
    batch = replay.gather(replay.valid_slots())
    got = {
        (s[1], s[2] - 1): (r, d, nxt[2] - s[2])
        for s, r, d, nxt in zip(batch.s_tm1, batch.r_t, batch.discount_t, batch.s_t, strict=True)
    }
    expected = reference_transitions(steps, n=3, gamma=0.9)
    expected = {(ep, step - 1): v for (ep, step), v in expected.items()}
    assert got.keys() == expected.keys()
    for key, (ret, disc, k) in expected.items():
        np.testing.assert_allclose(got[key][:2], (ret, disc), rtol=1e-5, atol=1e-6)
        assert got[key][2] == k


def test_interleaved_streams_equal_separate_single_stream_runs():
    num_streams, ring = 3, 40
    steps = make_streams(num_streams, 300, frame_stack=4, seed=4)
    together = atari_like_replay(capacity=num_streams * ring, num_streams=num_streams)
    steps.add_all(together)
    all_slots = together.valid_slots()
    for e in range(num_streams):
        alone = atari_like_replay(capacity=ring)
        steps.stream(e).add_all(alone)
        alone_slots = alone.valid_slots()
        mine = all_slots[all_slots // ring == e]
        np.testing.assert_array_equal(mine - e * ring, alone_slots)
        for a, b in zip(together.gather(mine), alone.gather(alone_slots), strict=True):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# Stacks and eviction
# --------------------------------------------------------------------------------------------


def test_stacks_stay_in_one_episode_with_zero_padding():
    steps = make_streams(2, 400, frame_stack=4, seed=5, max_episode_len=6)
    replay = atari_like_replay(capacity=1000, num_streams=2)
    steps.add_all(replay)
    slots = replay.valid_slots()
    assert_transitions_consistent(replay, slots, stack=4)
    batch = replay.gather(slots)
    first_steps = batch.s_tm1[:, -1, 2] == 1
    assert first_steps.any()
    assert np.all(batch.s_tm1[first_steps, :-1] == 0)  # padding really is there
    assert batch.s_tm1.shape == (len(slots), 4, 3)


def test_step_index_saturation_does_not_break_long_episode_stacks():
    steps = make_streams(1, 700, frame_stack=4, seed=6, max_episode_len=400)
    replay = atari_like_replay(capacity=1000)
    steps.add_all(replay)
    assert steps.observation[:, 0, -1, 2].max() > 256
    assert_transitions_consistent(replay, replay.valid_slots(), stack=4)


def test_wrapped_rings_never_reference_overwritten_frames():
    num_streams, ring = 2, 16
    steps = make_streams(num_streams, 3000, frame_stack=4, seed=7)
    replay = atari_like_replay(capacity=num_streams * ring, num_streams=num_streams)
    for chunk in range(60):
        steps.add_all(replay, chunk * 50, (chunk + 1) * 50)
        _, slots, _ = replay.sample(32)
        assert_transitions_consistent(replay, slots, stack=4)
    assert_transitions_consistent(replay, replay.valid_slots(), stack=4)
    assert replay.size <= num_streams * ring


def test_update_priorities_does_not_resurrect_evicted_slots():
    replay = atari_like_replay(capacity=8, frame_stack=2, n_step=2)
    steps = make_streams(1, 40, frame_stack=2, seed=8, max_episode_len=100)
    steps.add_all(replay, 0, 20)
    _, slots, _ = replay.sample(8)
    steps.add_all(replay, 20, 23)  # overwrites (and clears) some of the sampled slots
    valid_before = replay.valid_slots()
    assert not np.isin(slots, valid_before).all(), "precondition: some sampled slot was evicted"
    replay.update_priorities(slots, np.full(slots.shape, 3.0))
    np.testing.assert_array_equal(replay.valid_slots(), valid_before)
    assert_transitions_consistent(replay, replay.valid_slots(), stack=2)


# --------------------------------------------------------------------------------------------
# Checkpointing
# --------------------------------------------------------------------------------------------


def test_state_dict_round_trip_gives_identical_samples(tmp_path):
    steps = make_streams(2, 400, frame_stack=4, seed=9)
    original = atari_like_replay(capacity=128, num_streams=2, seed=11)
    steps.add_all(original, 0, 300)
    slots = original.sample(16, 0.5)[1]
    original.update_priorities(slots, np.linspace(0.1, 4.0, 16))

    path = tmp_path / "replay.npz"
    np.savez(path, **original.state_dict())
    with np.load(path, allow_pickle=False) as data:
        state = dict(data)
    restored = atari_like_replay(capacity=128, num_streams=2, seed=11)
    restored.load_state_dict(state)
    assert restored.memory_bytes() == original.memory_bytes()

    for replay in (original, restored):  # resuming continues exactly, pending steps included
        steps.add_all(replay, 300, 400)
    for _ in range(3):
        a, slots_a, weights_a = original.sample(32, 0.5)
        b, slots_b, weights_b = restored.sample(32, 0.5)
        np.testing.assert_array_equal(slots_a, slots_b)
        np.testing.assert_array_equal(weights_a, weights_b)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        original.update_priorities(slots_a, np.abs(a.r_t) + 0.1)
        restored.update_priorities(slots_b, np.abs(b.r_t) + 0.1)


def test_state_dict_rejects_a_different_configuration():
    replay = atari_like_replay(capacity=64)
    with pytest.raises(ValueError, match="config"):
        atari_like_replay(capacity=64, n_step=2).load_state_dict(replay.state_dict())


def test_malformed_add_raises_and_leaves_replay_untouched():
    steps = make_streams(1, 30, frame_stack=4, seed=10)
    replay = atari_like_replay(capacity=16)
    steps.add_all(replay, 0, 25)  # wrapped: a bad write would clear or overwrite slots
    before = replay.state_dict()
    with pytest.raises(ValueError, match="action"):
        replay.add(
            steps.observation[25],
            steps.reward[25],
            steps.discount[25],
            steps.first[25],
            steps.last[25],
            [1, 2],
        )
    with pytest.raises(ValueError, match="observation shape"):
        replay.add(
            steps.observation[25][:, :2],
            steps.reward[25],
            steps.discount[25],
            steps.first[25],
            steps.last[25],
            steps.action[25],
        )
    after = replay.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


# --------------------------------------------------------------------------------------------
# Bool frames (MinAtar's object planes): bit-packed
# --------------------------------------------------------------------------------------------

MINATAR_FRAME = (10, 10, 10)  # [C, H, W] of Seaquest, the largest MinAtar game: 125 bytes packed


def bool_steps(num_streams: int, num_steps: int, seed: int, density: float = 0.5) -> Steps:
    """Random [C, H, W] bool frames, one per step (no stack), episodes of 20 steps."""
    rng = np.random.default_rng(seed)
    shape = (num_steps, num_streams)
    step = np.arange(num_steps)[:, None].repeat(num_streams, axis=1)
    return Steps(
        observation=rng.random((*shape, *MINATAR_FRAME)) < density,
        reward=rng.integers(0, 2, shape).astype(np.float32),
        discount=np.where(step % 20 == 19, 0.0, 1.0),
        first=step % 20 == 0,
        last=step % 20 == 19,
        action=rng.integers(0, 6, shape),
    )


def test_bool_frames_are_bit_packed_and_round_trip_exactly():
    rng = np.random.default_rng(0)
    for shape in (MINATAR_FRAME, (4, 10, 10), (7, 10, 10), (13,)):
        frame = rng.random(shape) < 0.3
        packed = -(-int(np.prod(shape)) // 8)  # 8 values a byte, the last one padded
        assert frame_nbytes(shape, bool) == len(frame_to_bytes(frame)) == packed
        restored = decompress_frame(compress_frame(frame), shape, np.bool_)
        assert restored.dtype == np.bool_ and restored.shape == shape
        np.testing.assert_array_equal(restored, frame)
        rows = np.frombuffer(frame_to_bytes(frame), np.uint8)[None]
        np.testing.assert_array_equal(frames_from_rows(rows, shape, bool)[0], frame)
    # Any other dtype is stored as its raw bytes, as before.
    screen = pong_like_frame(1)
    assert frame_nbytes(screen.shape, np.uint8) == 84 * 84
    assert frame_to_bytes(screen) == screen.tobytes()


@pytest.mark.parametrize("compress", [True, False], ids=["snappy", "dense"])
def test_bool_frames_round_trip_through_transition_replay(compress):
    steps = bool_steps(num_streams=2, num_steps=70, seed=1)
    replay = TransitionReplay(
        200, 2, MINATAR_FRAME, np.bool_, 1, 1, 0.9, compress=compress, prioritized=False
    )
    steps.add_all(replay)
    slots = replay.valid_slots()
    assert len(slots) == 2 * (70 - 4)  # every step but each episode's last starts one
    batch = replay.gather(slots)
    assert batch.s_tm1.dtype == batch.s_t.dtype == np.bool_
    assert batch.s_tm1.shape == (len(slots), *MINATAR_FRAME)  # the whole [C, H, W] per step
    stream, position = np.divmod(slots, 100)
    np.testing.assert_array_equal(batch.s_tm1, steps.observation[position, stream])
    np.testing.assert_array_equal(batch.s_t, steps.observation[position + 1, stream])
    if not compress:  # stored packed in place: 125 bytes a frame
        assert replay.memory_bytes() < 200 * (125 + 64)


def test_bool_transition_replay_survives_its_state_dict():
    steps = bool_steps(num_streams=1, num_steps=50, seed=2)
    original = TransitionReplay(64, 1, MINATAR_FRAME, np.bool_, 1, 3, 0.9, True, True, seed=4)
    steps.add_all(original)
    restored = TransitionReplay(64, 1, MINATAR_FRAME, np.bool_, 1, 3, 0.9, True, True, seed=4)
    restored.load_state_dict(original.state_dict())
    slots = original.valid_slots()
    for a, b in zip(original.gather(slots), restored.gather(slots), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_minatar_step_is_stored_in_125_bytes_plus_small_overhead():
    # Random frames are the worst case (snappy cannot shrink them); real MinAtar frames are
    # mostly empty and compress to about 30 bytes (docs/results.md).
    steps = bool_steps(num_streams=1, num_steps=1000, seed=3, density=0.5)
    frame = steps.observation[0, 0]
    assert len(frame_to_bytes(frame)) == 125  # 1,000 bools
    assert len(compress_frame(frame)) <= 125 + 4  # snappy's header on incompressible bytes
    replay = TransitionReplay(1000, 1, MINATAR_FRAME, np.bool_, 1, 1, 0.99, True, True)
    steps.add_all(replay)
    assert replay.num_stored_steps == 1000
    # Each frame is a Python bytes object (its header is 33 bytes); the rest per step is the
    # action, return, discount, step counts and the sum tree.
    assert replay.bytes_per_stored_step() <= 125 + 4 + 33 + 40


def test_slot_set_tracks_members_like_a_set_and_checkpoints_as_a_sum_tree():
    rng = np.random.default_rng(0)
    slots, reference = SlotSet(50), set()
    for _ in range(300):
        indices = rng.integers(0, 50, size=rng.integers(1, 6))
        values = rng.choice([0.0, 1.0, 2.5], size=indices.shape[0])
        slots.set(indices, values)
        for index, value in zip(indices.tolist(), values.tolist(), strict=True):
            (reference.add if value > 0 else reference.discard)(index)  # the last one wins
        assert slots.num_nonzero == len(reference)
        np.testing.assert_array_equal(np.flatnonzero(slots.leaves()), sorted(reference))
    drawn = slots.sample(rng, 2_000)
    assert set(drawn.tolist()) == reference
    tree = SumTree(50)
    tree.set(np.array(sorted(reference)), np.ones(len(reference)))
    np.testing.assert_array_equal(slots.state_dict()["nodes"], tree.state_dict()["nodes"])
    restored = SlotSet(50)
    restored.load_state_dict(slots.state_dict())
    np.testing.assert_array_equal(restored.leaves(), slots.leaves())
