"""Tests for the R2D2 sequence path in replay.py: ChunkBuilder -> SequenceAssembler ->
SequenceReplay, and sequence_priorities."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
from scipy import stats

from frame_codec import decompress_frame
from sequence_replay import (
    Chunk,
    ChunkBuilder,
    Column,
    Sequence,
    SequenceAssembler,
    SequenceReplay,
    sequence_priorities,
)

# --------------------------------------------------------------------------------------------
# Synthetic streams whose every value says where it came from
# --------------------------------------------------------------------------------------------

# A frame is the int32 triple (stream + 1, episode + 1, step + 1): zero means padding, and any
# frame, wherever it is read, names its (stream, episode, step) exactly.
FRAME_SHAPE = (3,)
HIDDEN = 3
# R2D2's columns, declared here so that replay is tested on its own.
COLUMNS = (
    Column("action", "int16", previous_as="prev_action"),
    Column("reward", "float32", at_episode_start=0.0),
    Column("discount", "float32", at_episode_start=1.0),
)


def values(action: int, reward: float, discount: float) -> dict[str, float]:
    return {"action": action, "reward": reward, "discount": discount}


def frame_of(stream: int, episode: int, step: int) -> np.ndarray:
    return np.array([stream + 1, episode + 1, step + 1], dtype=np.int32)


def action_of(stream: int, episode: int, step: int) -> int:
    return (7 * step + 3 * episode + stream) % 11


def reward_of(stream: int, episode: int, step: int) -> float:
    return 0.0 if step == 0 else float(100 * stream + 10 * episode + step)


def state_of(stream: int, episode: int, step: int) -> np.ndarray:
    """The packed [2H] recurrent state the actor consumed at that step."""
    return np.array([stream, episode, step, -stream, -episode, -step], dtype=np.float32)


def episode_chunks(
    builder: ChunkBuilder, stream: int, episode: int, length: int, game_over: bool = True
) -> list[Chunk]:
    """Feeds one episode of `length` steps through `builder`; returns the chunks it emitted."""
    chunks = []
    for step in range(length):
        last = step == length - 1
        # At a first step the environment may still report the previous game's reward and
        # discount; the builder must not pass them on (expected: reward 0, discount 1).
        reward = reward_of(stream, episode, step) if step else 99.0
        discount = 0.0 if step == 0 or (last and game_over) else 1.0
        chunk = builder.append(
            frame_of(stream, episode, step),
            values(action_of(stream, episode, step), reward, discount),
            step == 0,
            last,
            state_of(stream, episode, step),
        )
        if chunk is not None:
            chunks.append(chunk)
    return chunks


def decode(frame: bytes | None) -> tuple[int, int, int] | None:
    """(stream, episode, step) of a stored frame, None for a zero frame."""
    if frame is None:
        return None
    stream, episode, step = decompress_frame(frame, FRAME_SHAPE, np.int32)
    return int(stream) - 1, int(episode) - 1, int(step) - 1


def steps_of(sequence: Sequence, frame_stack: int) -> list[tuple[int, int, int]]:
    """(stream, episode, step) of each of the sequence's N steps (prefix excluded)."""
    return [decode(f) for f in sequence.frames[frame_stack - 1 :]]


def assemble(assembler: SequenceAssembler, chunks: list[Chunk]) -> tuple[list[Sequence], list[int]]:
    """All sequences the chunks produce, and how many each add() returned."""
    sequences, counts = [], []
    for chunk in chunks:
        emitted = assembler.add(chunk)
        sequences += emitted
        counts.append(len(emitted))
    return sequences, counts


def make_replay(**overrides) -> SequenceReplay:
    kwargs = dict(
        capacity=64,
        burn_in=4,
        sequence_length=8,
        frame_shape=FRAME_SHAPE,
        frame_dtype=np.int32,
        frame_stack=4,
        compress=True,
        priority_exponent=1.0,
        seed=0,
        columns=COLUMNS,
    )
    return SequenceReplay(**(kwargs | overrides))


def one_episode_sequences(
    length: int, burn_in: int = 4, sequence_length: int = 8, period: int = 4, frame_stack: int = 4
) -> list[Sequence]:
    assembler = SequenceAssembler(burn_in, sequence_length, period, frame_stack)
    builder = ChunkBuilder(0, assembler.chunk_length, compress=True, columns=COLUMNS)
    return assemble(assembler, episode_chunks(builder, 0, 0, length))[0]


# --------------------------------------------------------------------------------------------
# ChunkBuilder
# --------------------------------------------------------------------------------------------


def test_chunk_builder_cuts_episode_aligned_chunks_and_chains_prev_action():
    builder = ChunkBuilder(stream=5, chunk_length=4, compress=True, columns=COLUMNS)
    chunks = episode_chunks(builder, 5, 0, 10) + episode_chunks(builder, 5, 1, 1)

    assert [len(c.frames) for c in chunks] == [4, 4, 2, 1]
    assert [(c.stream, c.episode, c.index, c.last) for c in chunks] == [
        (5, 0, 0, False),
        (5, 0, 1, False),
        (5, 0, 2, True),
        (5, 1, 0, True),
    ]
    # prev_action: 0 at an episode start, else the previous chunk's last action.
    assert [int(c.before["action"]) for c in chunks] == [
        0,
        action_of(5, 0, 3),
        action_of(5, 0, 7),
        0,
    ]
    for chunk, first_step in zip(chunks, [0, 4, 8, 0], strict=True):
        episode = chunk.episode
        steps = range(first_step, first_step + len(chunk.frames))
        assert [decode(f) for f in chunk.frames] == [(5, episode, s) for s in steps]
        np.testing.assert_array_equal(
            chunk.steps["action"], [action_of(5, episode, s) for s in steps]
        )
        np.testing.assert_array_equal(
            chunk.steps["reward"], [reward_of(5, episode, s) for s in steps]
        )
        np.testing.assert_array_equal(chunk.start_state, state_of(5, episode, first_step))
        assert chunk.start_state.dtype == np.float32 and chunk.steps["reward"].dtype == np.float32
    np.testing.assert_array_equal(chunks[2].steps["discount"], [1.0, 0.0])  # game over into step 9
    assert chunks[0].steps["reward"][0] == 0.0 and chunks[0].steps["discount"][0] == 1.0


def test_chunk_builder_first_starts_new_episode_and_drops_half_chunk():
    builder = ChunkBuilder(stream=0, chunk_length=4, compress=False, columns=COLUMNS)
    state = np.zeros(2 * HIDDEN, dtype=np.float32)
    for step in range(2):  # half a chunk, then the episode is cut off without `last`
        assert (
            builder.append(frame_of(0, 0, step), values(1, 0.0, 1.0), step == 0, False, state)
            is None
        )
    chunks = episode_chunks(builder, 0, 1, 4)
    assert len(chunks) == 1
    assert (chunks[0].episode, chunks[0].index, int(chunks[0].before["action"])) == (1, 0, 0)
    # compress=False keeps the raw bytes of each frame.
    assert chunks[0].frames[0] == frame_of(0, 1, 0).tobytes()


def test_chunk_builder_copies_the_state_it_is_given():
    builder = ChunkBuilder(stream=0, chunk_length=2, compress=True, columns=COLUMNS)
    buffer = np.ones(2 * HIDDEN, dtype=np.float32)
    builder.append(frame_of(0, 0, 0), values(1, 0.0, 1.0), True, False, buffer)
    buffer[:] = 7.0  # an actor reusing its state buffer
    chunk = builder.append(frame_of(0, 0, 1), values(1, 0.0, 1.0), False, False, buffer)
    np.testing.assert_array_equal(chunk.start_state, np.ones(2 * HIDDEN))


# --------------------------------------------------------------------------------------------
# SequenceAssembler: windows
# --------------------------------------------------------------------------------------------


def check_window(sequence: Sequence, burn_start: int, learn_start: int, end: int) -> None:
    """The sequence holds steps [burn_start, end) of stream 0 episode 0, learning from
    learn_start, with every per-step field taken from the step it claims to be."""
    steps = range(burn_start, end)
    assert steps_of(sequence, 4) == [(0, 0, s) for s in steps]
    assert sequence.burn_in_length == learn_start - burn_start
    np.testing.assert_array_equal(sequence.steps["action"], [action_of(0, 0, s) for s in steps])
    np.testing.assert_array_equal(sequence.steps["reward"], [reward_of(0, 0, s) for s in steps])
    expected_prev = 0 if burn_start == 0 else action_of(0, 0, burn_start - 1)
    assert int(sequence.before["action"]) == expected_prev


def test_burn_in_and_overlap_boundaries_period_4_sequence_8():
    # burn_in 4, sequence 8, period 4, chunk 4; one 24-step episode (6 whole chunks).
    sequences = one_episode_sequences(24)
    windows = [(0, 0, 8), (0, 4, 12), (4, 8, 16), (8, 12, 20), (12, 16, 24), (16, 20, 24)]
    assert len(sequences) == len(windows)
    for sequence, window in zip(sequences, windows, strict=True):
        check_window(sequence, *window)
    # Adjacent learning windows overlap by sequence_length − period = 4 steps.
    learn = [steps_of(s, 4)[s.burn_in_length :] for s in sequences[:5]]
    for a, b in itertools.pairwise(learn):
        assert a[4:] == b[:4]


def test_burn_in_and_overlap_boundaries_period_8_sequence_16():
    sequences = one_episode_sequences(40, burn_in=4, sequence_length=16, period=8)
    windows = [(0, 0, 16), (4, 8, 24), (12, 16, 32), (20, 24, 40), (28, 32, 40)]
    assert len(sequences) == len(windows)
    for sequence, window in zip(sequences, windows, strict=True):
        check_window(sequence, *window)


def test_sequence_is_emitted_as_soon_as_its_window_is_complete():
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=4)
    chunks = episode_chunks(ChunkBuilder(0, 4, compress=True, columns=COLUMNS), 0, 0, 20)
    _, counts = assemble(assembler, chunks)
    # Chunk i completes step 4i + 3, the last step of window i − 1; the final chunk also
    # flushes the truncated window starting at step 16.
    assert counts == [0, 1, 1, 1, 2]


def test_final_short_chunk_gives_truncated_sequences():
    sequences = one_episode_sequences(10)  # chunks of 4, 4, 2
    windows = [(0, 0, 8), (0, 4, 10), (4, 8, 10)]
    assert len(sequences) == len(windows)
    for sequence, window in zip(sequences, windows, strict=True):
        check_window(sequence, *window)


def test_one_step_final_chunk_gives_truncated_sequence_but_no_single_step_window():
    # Chunks of 4, 4, 1: window j = 2 would learn on step 8 alone (no transition).
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=4)
    chunks = episode_chunks(ChunkBuilder(0, 4, compress=True, columns=COLUMNS), 0, 0, 9)
    assert [len(c.frames) for c in chunks] == [4, 4, 1]
    sequences, counts = assemble(assembler, chunks)
    assert counts == [0, 1, 1]
    check_window(sequences[0], 0, 0, 8)
    check_window(sequences[1], 0, 4, 9)


def test_interleaved_streams_never_mix_never_duplicate_and_cover_every_step():
    rng = np.random.default_rng(0)
    burn_in, sequence_length, period, frame_stack = 4, 8, 4, 4
    assembler = SequenceAssembler(burn_in, sequence_length, period, frame_stack)
    lengths = {}  # (stream, episode) -> length
    per_stream = []
    for stream in range(3):
        builder = ChunkBuilder(stream, assembler.chunk_length, compress=True, columns=COLUMNS)
        chunks = []
        for episode in range(6):
            lengths[(stream, episode)] = int(rng.integers(1, 30))
            chunks += episode_chunks(builder, stream, episode, lengths[(stream, episode)])
        per_stream.append(chunks)
    # Interleave the streams at random, each stream's own order kept.
    order = rng.permutation(np.repeat(np.arange(3), [len(c) for c in per_stream]))
    cursors = [iter(c) for c in per_stream]
    sequences, _ = assemble(assembler, [next(cursors[s]) for s in order])

    learned: dict[tuple[int, int], set[int]] = {key: set() for key in lengths}
    starts = []
    for sequence in sequences:
        steps = steps_of(sequence, frame_stack)
        stream, episode, first = steps[0]
        assert steps == [(stream, episode, first + k) for k in range(len(steps))]
        for frame in sequence.frames[: frame_stack - 1]:  # prefix: same episode or padding
            assert frame is None or decode(frame)[:2] == (stream, episode)
        learn_start = first + sequence.burn_in_length
        assert learn_start % period == 0
        assert 2 <= len(steps) - sequence.burn_in_length <= sequence_length
        starts.append((stream, episode, learn_start))
        learned[(stream, episode)].update(s for _, _, s in steps[sequence.burn_in_length :])
    assert len(starts) == len(set(starts)), "a sequence was emitted twice"
    for key, length in lengths.items():
        expected = set(range(length)) if length >= 2 else set()
        assert learned[key] == expected, key
    assert assembler.dropped_chunks == 0


# --------------------------------------------------------------------------------------------
# SequenceAssembler: frame-stack prefix, shared frames and states, resets
# --------------------------------------------------------------------------------------------


def test_frame_stack_prefix_comes_from_earlier_chunks_and_zeros_before_episode_start():
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=6)
    chunks = episode_chunks(ChunkBuilder(0, 4, compress=True, columns=COLUMNS), 0, 0, 24)
    sequences, _ = assemble(assembler, chunks)
    frames = [f for c in chunks for f in c.frames]  # frames[step]
    for sequence in sequences:
        burn_start = steps_of(sequence, 6)[0][2]
        prefix = sequence.frames[:5]
        for lag, frame in zip(range(5, 0, -1), prefix, strict=True):
            step = burn_start - lag
            if step < 0:
                assert frame is None
            else:
                assert frame is frames[step]  # five back reaches two chunks back
    # Sequence 3 burns in from step 8: its prefix is steps 3..7, from chunks 0 and 1.
    assert [decode(f)[2] for f in sequences[3].frames[:5]] == [3, 4, 5, 6, 7]


def test_only_the_start_state_is_stored_and_overlapping_sequences_share_frames():
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=4)
    chunks = episode_chunks(ChunkBuilder(0, 4, compress=True, columns=COLUMNS), 0, 0, 24)
    sequences, _ = assemble(assembler, chunks)
    for sequence in sequences:
        first = steps_of(sequence, 4)[0][2]
        assert sequence.start_state.shape == (2 * HIDDEN,)
        np.testing.assert_array_equal(sequence.start_state, state_of(0, 0, first))
        assert sequence.start_state is chunks[first // 4].start_state  # shared, not copied
    # Sequences 0 and 1 both start at step 0 (no burn-in / burn-in from 0): one state object.
    assert sequences[0].start_state is sequences[1].start_state
    # Overlapping sequences hold the very same frame objects, not equal copies.
    for a, b in itertools.pairwise(sequences):
        a_steps = {decode(f)[2]: f for f in a.frames if f is not None}
        shared = [f for f in b.frames if f is not None and decode(f)[2] in a_steps]
        assert shared, "adjacent sequences overlap"
        assert all(f is a_steps[decode(f)[2]] for f in shared)


def test_discontinuous_chunks_reset_the_stream_and_orphans_are_dropped():
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=4)
    builder = ChunkBuilder(0, 4, compress=True, columns=COLUMNS)
    chunks = episode_chunks(builder, 0, 0, 16)  # indices 0..3
    assert assembler.add(chunks[0]) == []
    assert assembler.add(chunks[2]) == []  # chunk 1 was lost: reset, and 2 has no history
    assert assembler.add(chunks[3]) == []
    assert assembler.dropped_chunks == 2
    # A restarted actor begins again at index 0 (episode counter reset too): accepted.
    restarted = episode_chunks(ChunkBuilder(0, 4, compress=True, columns=COLUMNS), 0, 0, 8)
    sequences, _ = assemble(assembler, restarted)
    assert len(sequences) == 2 and assembler.dropped_chunks == 2


def test_assembler_rejects_burn_in_longer_than_period_and_misfit_chunks():
    with pytest.raises(ValueError, match="burn_in"):
        SequenceAssembler(burn_in=8, sequence_length=16, period=4, frame_stack=1)
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=1)
    wrong = episode_chunks(ChunkBuilder(0, 2, compress=True, columns=COLUMNS), 0, 0, 8)[
        0
    ]  # 2-step, not last
    with pytest.raises(ValueError, match="chunk_length"):
        assembler.add(wrong)


# --------------------------------------------------------------------------------------------
# SequenceReplay: batch layout
# --------------------------------------------------------------------------------------------


def test_batch_layout_burn_in_padding_mask_and_stacks():
    # Episode of 10 steps: sequences (burn-in, learn) = (0, 0..7), (0..3, 4..9), (4..7, 8..9).
    sequences = one_episode_sequences(10)
    replay = make_replay()
    replay.add(sequences)
    batch = replay.gather(np.array([0, 1, 2]))
    T = 4 + 8
    assert batch.observation.shape == (T, 3, 4, *FRAME_SHAPE)
    np.testing.assert_array_equal(batch.burn_in_length, [0, 4, 4])
    # Item 0: rows 0..3 padding, learning steps 0..7 in rows 4..11.
    # Item 1: burn-in steps 0..3 in rows 0..3, learning steps 4..9 in rows 4..9, then padding.
    # Item 2: burn-in steps 4..7 in rows 0..3, learning steps 8..9 in rows 4..5, then padding.
    row_steps = [[None] * 4 + list(range(8)), list(range(10)) + [None] * 2]
    row_steps.append(list(range(4, 10)) + [None] * 6)
    for item, steps in enumerate(row_steps):
        real = np.array([s is not None for s in steps])
        np.testing.assert_array_equal(batch.mask[:, item], real)
        for row, step in enumerate(steps):
            stack = batch.observation[row, item]
            if step is None:
                assert not stack.any() and batch.columns["discount"][row, item] == 0
                assert batch.columns["action"][row, item] == batch.columns["reward"][row, item] == 0
                continue
            # Newest frame is the step itself; older ones come from the same episode or zeros.
            for k in range(4):
                earlier = step - (3 - k)
                expected = frame_of(0, 0, earlier) if earlier >= 0 else np.zeros(3)
                np.testing.assert_array_equal(stack[k], expected)
            assert batch.columns["action"][row, item] == action_of(0, 0, step)
            assert batch.columns["reward"][row, item] == reward_of(0, 0, step)
            assert batch.columns["discount"][row, item] == (0.0 if step == 9 else 1.0)
    np.testing.assert_array_equal(batch.start_state[1], state_of(0, 0, 0))
    np.testing.assert_array_equal(batch.start_state[2], state_of(0, 0, 4))
    assert batch.columns["action"].dtype == np.int64 and batch.columns["reward"].dtype == np.float32


def test_prev_action_rows_are_the_previous_rows_actions():
    sequences = one_episode_sequences(30)
    replay = make_replay()
    replay.add(sequences)
    batch = replay.gather(np.arange(len(sequences)))
    for item, sequence in enumerate(sequences):
        rows = np.flatnonzero(batch.mask[:, item])
        assert batch.columns["prev_action"][rows[0], item] == int(sequence.before["action"])
        np.testing.assert_array_equal(
            batch.columns["prev_action"][rows[1:], item], batch.columns["action"][rows[:-1], item]
        )
        assert not batch.columns["prev_action"][~batch.mask[:, item], item].any()
    # Item 2 burns in from step 4, so its first prev_action is the action at step 3.
    assert batch.columns["prev_action"][0, 2] == action_of(0, 0, 3) != 0


def test_frame_stack_one_and_uncompressed_vector_observations():
    assembler = SequenceAssembler(burn_in=2, sequence_length=4, period=2, frame_stack=1)
    chunks = episode_chunks(ChunkBuilder(0, 2, compress=False, columns=COLUMNS), 0, 0, 6)
    sequences, _ = assemble(assembler, chunks)
    replay = make_replay(burn_in=2, sequence_length=4, frame_stack=1, compress=False)
    replay.add(sequences)
    batch = replay.gather(np.array([1]))  # burn-in steps 0, 1; learning steps 2..5
    assert batch.observation.shape == (6, 1, *FRAME_SHAPE)
    np.testing.assert_array_equal(batch.observation[:, 0], [frame_of(0, 0, s) for s in range(6)])


# --------------------------------------------------------------------------------------------
# SequenceReplay: priorities, ring, memory
# --------------------------------------------------------------------------------------------


def distinct_sequences(count: int) -> list[Sequence]:
    """`count` sequences from different streams, each identifiable by its first frame."""
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=4)
    return [
        assemble(
            assembler, episode_chunks(ChunkBuilder(s, 4, compress=True, columns=COLUMNS), s, 0, 8)
        )[0][0]
        for s in range(count)
    ]


def stream_of_items(batch) -> np.ndarray:
    """Stream id of each batch item, from its newest frame at row burn_in."""
    return batch.observation[4, :, -1, 0].astype(np.int64) - 1


def test_sampling_frequency_follows_priorities():
    capacity, alpha = 10, 0.7
    replay = make_replay(capacity=capacity, priority_exponent=alpha, seed=3)
    priorities = np.linspace(0.2, 3.0, capacity)
    replay.add(distinct_sequences(capacity), priorities)
    counts = np.zeros(capacity, dtype=np.int64)
    for _ in range(400):
        batch, keys, weights = replay.sample(100, importance_sampling_exponent=0.5)
        streams = stream_of_items(batch)
        np.testing.assert_array_equal(streams, keys % capacity)  # keys name the items returned
        counts += np.bincount(streams, minlength=capacity)
    expected = priorities**alpha / np.sum(priorities**alpha)
    _, p_value = stats.chisquare(counts, expected * counts.sum())
    assert p_value > 0.001, p_value
    # IS weights: (P_i / min P)^(-β) within a batch, the rarest item weighted 1.
    probability = expected[streams]
    np.testing.assert_allclose(weights, (probability / probability.min()) ** -0.5, rtol=1e-5)


def test_ring_overwrites_the_oldest_and_replaces_its_priority():
    replay = make_replay(capacity=4, priority_exponent=1.0)
    items = distinct_sequences(6)
    replay.add(items[:4], np.array([1.0, 2.0, 3.0, 4.0]))
    assert replay.size == len(replay) == 4
    replay.add(items[4:], np.array([10.0, 20.0]))  # overwrites items 0 and 1 (slots 0, 1)
    assert replay.size == 4
    batch = replay.gather(np.arange(4))
    np.testing.assert_array_equal(stream_of_items(batch), [4, 5, 2, 3])
    np.testing.assert_allclose(
        replay.sampler.probabilities(np.arange(4)), np.array([10, 20, 3, 4]) / 37
    )
    # New items without priorities get the max priority seen so far (20).
    replay.add(items[:1])
    np.testing.assert_allclose(replay.sampler.probabilities(np.array([2])), 20 / 54)


def test_update_priorities_ignores_items_overwritten_since_sampling():
    replay = make_replay(capacity=4, priority_exponent=1.0)
    items = distinct_sequences(6)
    replay.add(items[:4], np.ones(4))
    _, keys, _ = replay.sample(4, 0.5)
    replay.update_priorities(keys, np.full(4, 5.0))  # nothing overwritten: applied
    np.testing.assert_allclose(replay.sampler.probabilities(np.arange(4)), 0.25)
    assert replay.sampler.max_priority == 5.0
    _, keys, _ = replay.sample(4, 0.5)
    replay.add(items[4:], np.array([1.0, 1.0]))  # slots 0 and 1 now hold new items
    replay.update_priorities(keys, np.full(4, 2.0))
    slot_priorities = replay.sampler.probabilities(np.arange(4)) * 6.0  # total 1 + 1 + 2 + 2
    np.testing.assert_allclose(slot_priorities, [1.0, 1.0, 2.0, 2.0])


def test_memory_counts_each_shared_frame_and_state_once():
    sequences = one_episode_sequences(24)  # 24 steps in 6 overlapping sequences
    replay = make_replay()
    replay.add(sequences)
    assert replay.num_stored_steps() == 24
    distinct = {id(f): f for s in sequences for f in s.frames if f is not None}
    assert len(distinct) == 24
    frame_bytes = sum(sys.getsizeof(f) for f in distinct.values())
    parts = replay.memory_breakdown()
    assert parts["frames"] == frame_bytes  # 24 frames, although 6 sequences reference ~60
    # Sequences 0 and 1 share chunk 0's state: 5 distinct state arrays for 6 sequences.
    assert parts["states"] == 5 * sys.getsizeof(sequences[0].start_state)
    before = replay.memory_bytes()
    replay.add(sequences)  # the same objects again: frames and states add nothing
    after = replay.memory_breakdown()
    assert after["frames"] == parts["frames"] and after["states"] == parts["states"]
    assert replay.memory_bytes() > before  # but the per-item tuples and arrays do
    assert replay.bytes_per_stored_step() == replay.memory_bytes() / 24


# --------------------------------------------------------------------------------------------
# sequence_priorities
# --------------------------------------------------------------------------------------------


def test_sequence_priorities_hand_computed():
    abs_td = np.array([[1.0, 4.0, 2.0], [3.0, 0.0, 9.0], [9.0, 2.0, 1.0]])  # [T=3, B=3]
    mask = np.array([[True, True, False], [True, True, False], [False, True, False]])
    # Item 0: valid |δ| = 1, 3 (the 9 is padding): 0.9·3 + 0.1·2 = 2.9.
    # Item 1: valid |δ| = 4, 0, 2: 0.9·4 + 0.1·2 = 3.8.  Item 2: nothing valid -> 0.
    np.testing.assert_allclose(sequence_priorities(abs_td, mask, 0.9), [2.9, 3.8, 0.0])
    np.testing.assert_allclose(sequence_priorities(abs_td, mask, 1.0), [3.0, 4.0, 0.0])
    np.testing.assert_allclose(sequence_priorities(abs_td, mask, 0.0), [2.0, 2.0, 0.0])


def test_compact_batch_stacks_on_the_device_to_the_same_observations():
    import torch

    from agents.common.sequence_learning import sequence_batch_to_device

    replay = make_replay()
    replay.add(one_episode_sequences(10))
    slots = np.array([0, 1, 2, 1])
    full, compact = replay.gather(slots), replay.gather(slots, compact=True)
    assert compact.observation is None
    # Each distinct frame once (plus the zero frame), not frame_stack copies per step.
    assert len(compact.frames) <= 1 + 10 + 3
    on_device = sequence_batch_to_device(compact, torch.device("cpu"))["observation"]
    np.testing.assert_array_equal(on_device.numpy(), full.observation)
    np.testing.assert_array_equal(
        sequence_batch_to_device(full, torch.device("cpu"))["observation"].numpy(),
        full.observation,
    )


# --------------------------------------------------------------------------------------------
# Bool frames (MinAtar's [C, 10, 10] object planes): bit-packed by the actors' chunks
# --------------------------------------------------------------------------------------------

MINATAR_FRAME = (10, 10, 10)


def bool_episode(length: int, seed: int) -> tuple[np.ndarray, list[Chunk], list[Sequence]]:
    """Random bool frames [length, 10, 10, 10] of one episode, the chunks a compressing actor
    makes of them, and the sequences (burn-in 4, learning 8, period 4, no frame stack)."""
    frames = np.random.default_rng(seed).random((length, *MINATAR_FRAME)) < 0.5
    assembler = SequenceAssembler(burn_in=4, sequence_length=8, period=4, frame_stack=1)
    builder = ChunkBuilder(0, assembler.chunk_length, compress=True, columns=COLUMNS)
    chunks = []
    for step, frame in enumerate(frames):
        chunk = builder.append(
            frame, values(1, 0.0, 1.0), step == 0, step == length - 1, state_of(0, 0, step)
        )
        chunks += [chunk] if chunk is not None else []
    return frames, chunks, assemble(assembler, chunks)[0]


def bool_replay(**overrides) -> SequenceReplay:
    kwargs = dict(frame_shape=MINATAR_FRAME, frame_dtype=np.bool_, frame_stack=1)
    return make_replay(**(kwargs | overrides))


def test_chunks_carry_bool_frames_bit_packed():
    frames, chunks, _ = bool_episode(12, seed=0)
    assert all(len(f) <= 125 + 4 for c in chunks for f in c.frames)  # snappy of 125 bytes
    restored = decompress_frame(chunks[0].frames[0], MINATAR_FRAME, np.bool_)
    np.testing.assert_array_equal(restored, frames[0])
    raw = ChunkBuilder(0, 4, compress=False, columns=COLUMNS)
    for step in range(4):
        chunk = raw.append(frames[step], values(1, 0.0, 1.0), step == 0, False, state_of(0, 0, 0))
    assert [len(f) for f in chunk.frames] == [125] * 4  # packed even without snappy


@pytest.mark.parametrize("decoder", [False, True], ids=["here", "process"])
def test_bool_frames_round_trip_through_sequence_replay(decoder):
    frames, _, sequences = bool_episode(22, seed=1)
    replay = bool_replay()
    replay.add(sequences)
    slots = np.arange(len(sequences))
    if decoder:  # the prefetch path: a decoding process fills a shared buffer of packed bytes
        process = replay.frame_decoder_for(len(slots))
        try:
            batch = replay.batch_of(replay.items_at(slots), compact=True, decoder=process)
            observation = batch.frames[batch.frame_index]
        finally:
            process.close()
    else:
        batch = replay.gather(slots)
        observation = batch.observation
    assert observation.dtype == np.bool_
    assert observation.shape == (4 + 8, len(sequences), *MINATAR_FRAME)  # no stack axis
    for item, sequence in enumerate(sequences):
        rows = np.flatnonzero(batch.mask[:, item])
        first_step = 4 * item - sequence.burn_in_length  # sequence j learns from step 4·j
        np.testing.assert_array_equal(
            observation[rows, item], frames[first_step : first_step + len(rows)]
        )
        assert not observation[~batch.mask[:, item], item].any()  # padding: zero frames


def test_uncompressed_bool_sequences_round_trip_and_state_dict():
    frames = np.random.default_rng(2).random((6, *MINATAR_FRAME)) < 0.5
    assembler = SequenceAssembler(burn_in=2, sequence_length=4, period=2, frame_stack=1)
    builder = ChunkBuilder(0, 2, compress=False, columns=COLUMNS)
    chunks = [
        builder.append(f, values(1, 0.0, 1.0), s == 0, s == 5, state_of(0, 0, s))
        for s, f in enumerate(frames)
    ]
    sequences, _ = assemble(assembler, [c for c in chunks if c is not None])
    replay = bool_replay(burn_in=2, sequence_length=4, compress=False)
    replay.add(sequences)
    restored = bool_replay(burn_in=2, sequence_length=4, compress=False)
    restored.load_state_dict(replay.state_dict())
    for source in (replay, restored):
        batch = source.gather(np.array([1]))  # burn-in steps 0, 1; learning steps 2..5
        np.testing.assert_array_equal(batch.observation[:, 0], frames)


def test_a_minatar_step_costs_about_its_packed_frame_in_sequence_replay():
    _, _, sequences = bool_episode(400, seed=3)  # random frames: snappy cannot shrink them
    replay = bool_replay(capacity=200)
    replay.add(sequences)
    assert replay.num_stored_steps() == 400
    frames = replay.memory_breakdown()["frames"] / 400
    assert frames <= 125 + 4 + 33  # packed, snappy's header, the bytes object's header
