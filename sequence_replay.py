"""Sequence replay for the recurrent agents (R2D2, NGU, Agent57).

`ChunkBuilder` → `SequenceAssembler` → `SequenceReplay`: actors cut each environment stream
into episode-aligned `Chunk`s, the learner assembles them into overlapping burn-in + learning
`Sequence`s that share (never copy) the chunks' frames and recurrent states, and the replay
samples time-major `SequenceBatch`es with `replay.PrioritizedSampler`; `sequence_priorities` is
R2D2's priority. What a step holds besides its frame is the agent's list of `Column`s.

Steps are numbered from 0 within an episode. Every chunk but an episode's last holds exactly
C = gcd(burn_in, period, sequence_length) steps, so chunk i holds steps [i·C, i·C + C) and
every window boundary (burn-in start, learning start, full learning end) is a chunk boundary.
Sequence j of an episode learns on [j·period, j·period + sequence_length) and burns in on
[j·period − burn_in, j·period) (nothing for j = 0). A frame is one `bytes` object from the
chunk that carried it; sequences hold references, so a frame seen by ~3 overlapping sequences
is stored once, and the recurrent state is stored only at chunk starts.

What a step holds besides its frame is declared by the agent as a tuple of `Column`s (R2D2:
action, reward, discount; NGU adds intrinsic reward, policy index and μ). Chunks and
sequences keep their steps as one numpy structured array with a field per column, and every
part below loops over the declared columns. The recurrent state is opaque: a flat float32
vector that the network packs and unpacks, so a pair of LSTMs needs nothing from replay.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import itertools
import math
import sys
from typing import NamedTuple

import numpy as np

from distributed.frame_decoding import FrameDecoder, ProcessFrameDecoder, decode_frames_into
from frame_codec import compress_frame, frame_nbytes, frame_to_bytes, frames_from_rows
from prioritized_sampler import PrioritizedSampler
from replay import sub_state

__all__ = [
    "Chunk",
    "ChunkBuilder",
    "Column",
    "Sequence",
    "SequenceAssembler",
    "SequenceBatch",
    "SequenceReplay",
    "sequence_priorities",
    "step_dtype",
]


@dataclasses.dataclass(frozen=True)
class Column:
    """One per-step value an agent stores beside each frame.

    name: its key in chunks, sequences and batches.
    dtype: numpy dtype name of the stored value ("int16" for actions, "float32" for rewards).
    at_episode_start: the value forced at an episode's first step, for quantities that lead
      INTO an observation (reward 0, discount 1): nothing leads into a first observation.
      None keeps the value the actor gave.
    previous_as: batches also carry the previous step's value under this name (R2D2 feeds its
      network the previous action); it is 0 before an episode's first step.
    """

    name: str
    dtype: str
    at_episode_start: float | None = None
    previous_as: str | None = None


def step_dtype(columns: collections.abc.Sequence[Column]) -> np.dtype:
    """The structured dtype of one step: a field per column, in declaration order."""
    names = [c.name for c in columns] + [c.previous_as for c in columns if c.previous_as]
    if len(set(names)) != len(names):
        raise ValueError(f"column names must be unique, got {names}")
    return np.dtype([(c.name, c.dtype) for c in columns])


class Chunk(NamedTuple):
    """Up to chunk_length consecutive steps of ONE episode of ONE stream (L steps)."""

    stream: int  # unique id of the (actor, environment) stream
    episode: int  # episode counter within the stream
    index: int  # chunk number within the episode: 0, 1, 2, ...
    frames: tuple[bytes, ...]  # [L] newest frame per step, compress_frame()'d or frame_to_bytes()
    steps: np.ndarray  # [L] structured (step_dtype): the declared columns of each step
    before: np.ndarray  # [] structured: the step before the first (zeros at an episode start)
    start_state: np.ndarray  # [S] float32: packed recurrent state consumed at the first step
    last: bool  # the episode ended at this chunk's final step


class ChunkBuilder:
    """Actor side, one per environment stream: cuts the stream into episode-aligned chunks.

    Frames are encoded here (bool frames bit-packed, then snappy when `compress`) so that
    actors, not the learner, pay for compression and only compressed bytes cross the process
    boundary.
    """

    def __init__(
        self,
        stream: int,
        chunk_length: int,
        compress: bool,
        columns: collections.abc.Sequence[Column],
    ) -> None:
        if chunk_length < 1:
            raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
        self._stream = int(stream)
        self._chunk_length = int(chunk_length)
        self._compress = bool(compress)
        self._dtype = step_dtype(columns)
        self._names = self._dtype.names
        self._episode_start_values = [
            (c.name, c.at_episode_start) for c in columns if c.at_episode_start is not None
        ]
        self._episode = -1
        self._index = 0
        self._in_episode = False  # a step was seen since the last `last`
        self._latest = np.zeros((), self._dtype)  # the latest step: the next chunk's `before`
        self._buffer = np.zeros(self._chunk_length, self._dtype)
        self._frames: list[bytes] = []
        self._start_state: np.ndarray | None = None
        self._before = self._latest.copy()

    @property
    def episode(self) -> int:
        """Current episode number (-1 before the first step)."""
        return self._episode

    def append(
        self,
        frame: np.ndarray,
        values: collections.abc.Mapping[str, float],
        first: bool,
        last: bool,
        state: np.ndarray,
    ) -> Chunk | None:
        """Adds one step; returns a chunk when one is finished (chunk_length steps, or `last`).

        frame: the newest frame ([84, 84] uint8) or a whole observation (vector, MinAtar's).
        values: a value for every declared column (a mapping name -> scalar).
        state: [S], the packed recurrent state the network consumed at this step.
        A step after `last` (or the stream's very first step) starts an episode even if
        `first` is not set.
        """
        if first or not self._in_episode:
            self._start_episode()
        position = len(self._frames)
        if position == 0:
            state = np.array(state, dtype=np.float32)  # a copy: actors reuse their buffers
            if state.ndim != 1:
                raise ValueError(f"state must be a flat [S] vector, got shape {state.shape}")
            self._start_state = state
            self._before = self._latest.copy()
        record = self._buffer[position]  # a view into the buffer
        try:
            for name in self._names:
                record[name] = values[name]
        except KeyError as missing:
            raise ValueError(f"step values lack column {missing}; expected {self._names}") from None
        if self._index == 0 and position == 0:
            for name, value in self._episode_start_values:
                record[name] = value
        self._latest = record.copy()
        self._frames.append(self._encode(frame))
        if last:
            self._in_episode = False
        if last or len(self._frames) == self._chunk_length:
            return self._flush(bool(last))
        return None

    def _start_episode(self) -> None:
        # A half-built chunk of the previous episode (no `last` seen) is dropped.
        self._episode += 1
        self._index = 0
        self._in_episode = True
        self._latest = np.zeros((), self._dtype)
        self._frames = []

    def _encode(self, frame: np.ndarray) -> bytes:
        if self._compress:
            return compress_frame(frame)
        return frame_to_bytes(frame)

    def _flush(self, last: bool) -> Chunk:
        chunk = Chunk(
            stream=self._stream,
            episode=self._episode,
            index=self._index,
            frames=tuple(self._frames),
            steps=self._buffer[: len(self._frames)].copy(),
            before=self._before,
            start_state=self._start_state,
            last=last,
        )
        self._index += 1
        self._frames = []
        return chunk


class Sequence(NamedTuple):
    """One stored item: N = burn_in_length + learn length consecutive steps of one episode.

    (Shadows `collections.abc.Sequence` in this module; that one is spelled out in full.)
    """

    frames: tuple[bytes | None, ...]  # [frame_stack − 1 + N]; None = zero frame (pre-episode)
    steps: np.ndarray  # [N] structured: the declared columns
    before: np.ndarray  # [] structured: the step before the first (the chunk's own record)
    start_state: np.ndarray  # [S], at the first of the N steps (the chunk's own array)
    burn_in_length: int  # 0 (starts at the episode start) or burn_in


class _EpisodeHistory:
    """What the assembler keeps of one stream's current episode."""

    def __init__(self, episode: int) -> None:
        self.episode = episode
        self.next_index = 0  # the chunk index that continues the history
        self.chunks: dict[int, Chunk] = {}  # chunk index -> chunk, only those still needed
        self.next_sequence = 0  # j of the next sequence to emit

    def continues(self, chunk: Chunk) -> bool:
        return chunk.episode == self.episode and chunk.index == self.next_index


class SequenceAssembler:
    """Learner side: turns each stream's chunks into overlapping burn-in + learning sequences.

    Per stream it keeps the current episode's chunks still needed by the next sequence (its
    burn-in, learning window and frame-stack prefix) and emits each sequence exactly once, as
    soon as its window is complete, or truncated when the episode ends.
    """

    def __init__(self, burn_in: int, sequence_length: int, period: int, frame_stack: int) -> None:
        if burn_in < 0 or sequence_length < 1 or period < 1 or frame_stack < 1:
            raise ValueError("need burn_in >= 0 and sequence_length, period, frame_stack >= 1")
        if burn_in > period:
            # Then a burn-in never reaches before the episode start: it is empty or whole.
            raise ValueError(f"burn_in ({burn_in}) must not exceed period ({period})")
        self.burn_in = int(burn_in)
        self.sequence_length = int(sequence_length)
        self.period = int(period)
        self.frame_stack = int(frame_stack)
        self.chunk_length = math.gcd(self.burn_in, self.period, self.sequence_length)
        self.dropped_chunks = 0  # chunks that could not continue any history
        self._streams: dict[int, _EpisodeHistory] = {}

    def add(self, chunk: Chunk) -> list[Sequence]:
        """Consumes one chunk; returns the sequences it completed (possibly none)."""
        self._check_length(chunk)
        history = self._streams.get(chunk.stream)
        if history is None or not history.continues(chunk):
            # A gap, a repeat or an actor restart: whatever was pending is unusable.
            self._streams.pop(chunk.stream, None)
            if chunk.index != 0:
                self.dropped_chunks += 1
                return []
            history = self._streams[chunk.stream] = _EpisodeHistory(chunk.episode)
        history.chunks[chunk.index] = chunk
        history.next_index = chunk.index + 1
        num_steps = chunk.index * self.chunk_length + len(chunk.frames)
        sequences = self._emit_complete(history, num_steps)
        if chunk.last:
            sequences += self._emit_final(history, num_steps)
            del self._streams[chunk.stream]
        else:
            self._forget_unneeded(history)
        return sequences

    def _check_length(self, chunk: Chunk) -> None:
        length = len(chunk.frames)
        if len(chunk.steps) != length:
            raise ValueError(f"chunk of {length} frames but {len(chunk.steps)} steps")
        # Only an episode's final chunk may be short: window boundaries rely on it.
        if not (length == self.chunk_length or (chunk.last and 1 <= length < self.chunk_length)):
            raise ValueError(
                f"chunk of {length} steps (last={chunk.last}) does not fit chunk_length "
                f"{self.chunk_length}: actors and learner disagree on the configuration"
            )

    def _emit_complete(self, history: _EpisodeHistory, num_steps: int) -> list[Sequence]:
        """Sequences whose whole learning window has arrived."""
        sequences = []
        while self._learn_start(history.next_sequence) + self.sequence_length <= num_steps:
            end = self._learn_start(history.next_sequence) + self.sequence_length
            sequences.append(self._sequence(history, history.next_sequence, end))
            history.next_sequence += 1
        return sequences

    def _emit_final(self, history: _EpisodeHistory, num_steps: int) -> list[Sequence]:
        """At the episode end: the remaining windows holding at least one transition."""
        sequences = []
        while self._learn_start(history.next_sequence) + 2 <= num_steps:
            sequences.append(self._sequence(history, history.next_sequence, num_steps))
            history.next_sequence += 1
        return sequences

    def _learn_start(self, j: int) -> int:
        return j * self.period

    def _burn_in_start(self, j: int) -> int:
        return max(0, j * self.period - self.burn_in)

    def _sequence(self, history: _EpisodeHistory, j: int, end: int) -> Sequence:
        """Sequence j covering steps [burn-in start, end), from references into the chunks."""
        start = self._burn_in_start(j)
        size = self.chunk_length
        chunks = [history.chunks[i] for i in range(start // size, (end - 1) // size + 1)]
        # `start` is a chunk boundary and `end` is one too or the episode end, so the chunks
        # hold exactly the steps [start, end).
        if sum(len(c.frames) for c in chunks) != end - start:
            raise AssertionError("sequence window is not aligned to chunks")
        lag = range(start - self.frame_stack + 1, start)
        prefix = tuple(self._frame_at(history, step) for step in lag)
        return Sequence(
            frames=prefix + tuple(itertools.chain.from_iterable(c.frames for c in chunks)),
            steps=np.concatenate([c.steps for c in chunks]),
            before=chunks[0].before,
            start_state=chunks[0].start_state,
            burn_in_length=self._learn_start(j) - start,
        )

    def _frame_at(self, history: _EpisodeHistory, step: int) -> bytes | None:
        if step < 0:
            return None  # before the episode's first frame: zero padding
        return history.chunks[step // self.chunk_length].frames[step % self.chunk_length]

    def _forget_unneeded(self, history: _EpisodeHistory) -> None:
        # The next sequence reads from its frame-stack prefix onwards; older chunks are done.
        first_needed = self._burn_in_start(history.next_sequence) - (self.frame_stack - 1)
        first_index = max(0, first_needed) // self.chunk_length
        for index in [i for i in history.chunks if i < first_index]:
            del history.chunks[index]


class SequenceBatch(NamedTuple):
    """Time-major batch of B sequences, T = burn_in + sequence_length rows, padded.

    Rows [0, burn_in) are the burn-in region and rows [burn_in, T) the learning region. An item
    with a burn-in fills rows [0, burn_in) with it; an item without one (it starts at its
    episode's start) leaves them as padding. Learning steps start at row burn_in and are padded
    after a truncated (episode-end) window. Padding: zero frames, every column 0, mask False.
    """

    # [T, B, frame_stack, *frame]; [T, B, *frame] when the replay has no stack axis (vectors).
    observation: np.ndarray | None
    # [T, B] per declared column (integers as int64, the rest float32), plus each column's
    # `previous_as` view: the value at t − 1 (the item's `before` record at its first step).
    columns: dict[str, np.ndarray]
    mask: np.ndarray  # [T, B] bool, real steps
    burn_in_length: np.ndarray  # [B] int64, 0 or burn_in
    start_state: np.ndarray  # [B, S] float32, the packed state at each item's first real row
    # Compact form (gather(..., compact=True)): `observation` is None and the stacks are
    # frames[frame_index], done on the learner's device so each distinct frame crosses to it
    # once instead of frame_stack times.
    frames: np.ndarray | None = None  # [D + 1, *frame_shape], row 0 a zero frame
    frame_index: np.ndarray | None = None  # [T, B, frame_stack] ([T, B] if no stack axis) int64


class _FlatSteps(NamedTuple):
    """Where the concatenated steps of a batch's items go: all arrays [M], M = Σ N_i."""

    rows: np.ndarray  # batch row of each step
    cols: np.ndarray  # batch column (item) of each step
    first: np.ndarray  # [B] flat index of each item's first step


def _batch_dtype(dtype: np.dtype) -> type:
    """Integers (actions, policy indices) become int64 indices; everything else float32."""
    return np.int64 if np.issubdtype(dtype, np.integer) else np.float32


class SequenceReplay:
    """Prioritized ring of `Sequence`s (capacity in sequences) with frame stacks rebuilt, and
    frames decoded, at sample time.

    Items are written in order into ring slot w mod capacity, w being the write counter, so the
    oldest item is the one overwritten. `sample` returns write counters ("keys") as its slots:
    key mod capacity is the ring slot, and a key older than the last `capacity` writes names an
    item that has since been overwritten, which lets `update_priorities` skip it exactly.

    Bool frames (MinAtar's) stay bit-packed, as the chunks carried them, through the decoding
    processes; they are unpacked when a batch is laid out.
    """

    ITEMS = "sequences"  # What one stored item is, for log lines.

    def __init__(
        self,
        capacity: int,
        burn_in: int,
        sequence_length: int,
        frame_shape: tuple[int, ...],
        frame_dtype: np.dtype | type,
        frame_stack: int,
        compress: bool,
        priority_exponent: float,
        seed: int,
        columns: collections.abc.Sequence[Column],
        stack_axis: bool | None = None,
    ) -> None:
        """stack_axis: whether observations have a frame-stack axis (images: [stack, H, W],
        even with one frame); default: only when frame_stack > 1."""
        if capacity < 1 or burn_in < 0 or sequence_length < 1 or frame_stack < 1:
            raise ValueError("need capacity, sequence_length, frame_stack >= 1 and burn_in >= 0")
        self._capacity = int(capacity)
        self._burn_in = int(burn_in)
        self._sequence_length = int(sequence_length)
        self._frame_shape = tuple(int(d) for d in frame_shape)
        self._dtype = np.dtype(frame_dtype)
        self._frame_bytes = frame_nbytes(self._frame_shape, self._dtype)  # Bool: bit-packed.
        self._frame_stack = int(frame_stack)
        self._stack_axis = self._frame_stack > 1 if stack_axis is None else bool(stack_axis)
        if self._frame_stack > 1 and not self._stack_axis:
            raise ValueError("a frame stack needs a stack axis")
        self._compress = bool(compress)
        self._columns = tuple(columns)
        self._step_dtype = step_dtype(self._columns)
        self._items = np.full(self._capacity, None, dtype=object)
        self._num_writes = 0
        self._sampler = PrioritizedSampler(self._capacity, priority_exponent, seed=seed)

    # -- sizes ----------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def size(self) -> int:
        """Number of sequences stored."""
        return min(self._num_writes, self._capacity)

    def __len__(self) -> int:
        return self.size

    @property
    def columns(self) -> tuple[Column, ...]:
        return self._columns

    @property
    def sampler(self) -> PrioritizedSampler:
        """The slot sampler (ring slots, not keys); for tests and diagnostics."""
        return self._sampler

    def memory_breakdown(self) -> dict[str, int]:
        """Estimated resident bytes by part; shared objects are counted once (by id()).

        frames: sys.getsizeof of each distinct frame `bytes` object (payload + header).
        states: each distinct start_state array (header + data).
        arrays: every item's steps array and each distinct `before` record (header + data).
        items: every item's Sequence tuple and frames tuple (the per-frame pointers).
        index: the ring's object array of item pointers and the sampler's sum tree.
        Small ints (burn_in_length) are CPython's cached singletons: 0 bytes.
        """
        items = self._stored_items()
        states = {id(item.start_state): item.start_state for item in items}
        befores = {id(item.before): item.before for item in items}
        return {
            "frames": sum(map(sys.getsizeof, self._distinct_frames(items).values())),
            "states": sum(_array_bytes(state) for state in states.values()),
            "arrays": sum(_array_bytes(item.steps) for item in items)
            + sum(_array_bytes(before) for before in befores.values()),
            "items": sum(sys.getsizeof(item) + sys.getsizeof(item.frames) for item in items),
            "index": self._items.nbytes + self._sampler.nbytes,
        }

    def memory_bytes(self) -> int:
        """Estimated resident bytes (see `memory_breakdown`); O(stored frame references)."""
        return sum(self.memory_breakdown().values())

    def num_stored_steps(self) -> int:
        """Distinct agent steps held: distinct frame objects referenced (zero frames aside)."""
        return len(self._distinct_frames(self._stored_items()))

    def bytes_per_stored_step(self) -> float:
        """memory_bytes() / num_stored_steps() (nan while nothing is stored)."""
        steps = self.num_stored_steps()
        return self.memory_bytes() / steps if steps else float("nan")

    def frame_decoder_for(self, batch_size: int) -> FrameDecoder | None:
        """A decoding process for batches of up to `batch_size` items (see prefetch.py), or
        None when frames are stored uncompressed (nothing to decode)."""
        if not self._compress:
            return None
        steps = self._burn_in + self._sequence_length + self._frame_stack - 1
        return ProcessFrameDecoder(self._frame_bytes, batch_size * steps)

    def _stored_items(self) -> list[Sequence]:
        return [item for item in self._items if item is not None]

    @staticmethod
    def _distinct_frames(items: list[Sequence]) -> dict[int, bytes]:
        frames = {id(f): f for f in itertools.chain.from_iterable(i.frames for i in items)}
        frames.pop(id(None), None)
        return frames

    # -- writing --------------------------------------------------------------------------------

    def add(self, sequences: list[Sequence], priorities: np.ndarray | None = None) -> None:
        """Appends sequences, overwriting the oldest ones once full.

        priorities: [len(sequences)] raw priorities, or None for the sampler's max priority.
        """
        if not sequences:
            return
        for sequence in sequences:
            self._check(sequence)
        if priorities is not None:
            priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
            if priorities.shape[0] != len(sequences):
                raise ValueError(f"{len(sequences)} sequences but {priorities.shape[0]} priorities")
        slots = (self._num_writes + np.arange(len(sequences))) % self._capacity
        for slot, sequence in zip(slots, sequences, strict=True):
            self._items[slot] = sequence
        self._num_writes += len(sequences)
        # The tree keeps the last of duplicate slots, like the ring (more items than capacity).
        if priorities is None:
            self._sampler.set_max_priority(slots)
        else:
            self._sampler.set_priorities(slots, priorities)

    def _check(self, sequence: Sequence) -> None:
        steps = len(sequence.steps)
        learn = steps - sequence.burn_in_length
        if sequence.burn_in_length not in (0, self._burn_in):
            raise ValueError(
                f"burn_in_length {sequence.burn_in_length} not in (0, {self._burn_in})"
            )
        if not 1 <= learn <= self._sequence_length:
            raise ValueError(f"learning length {learn} not in [1, {self._sequence_length}]")
        if sequence.steps.dtype != self._step_dtype:
            raise ValueError(
                f"sequence columns {sequence.steps.dtype} != declared {self._step_dtype}"
            )
        if len(sequence.frames) != self._frame_stack - 1 + steps:
            raise ValueError(
                f"{len(sequence.frames)} frames for {steps} steps and frame_stack "
                f"{self._frame_stack}: expected {self._frame_stack - 1 + steps}"
            )
        if np.ndim(sequence.start_state) != 1:
            raise ValueError(f"start_state must be flat [S], got {np.shape(sequence.start_state)}")

    # -- reading --------------------------------------------------------------------------------

    def sample(
        self, batch_size: int, importance_sampling_exponent: float, compact: bool = False
    ) -> tuple[SequenceBatch, np.ndarray, np.ndarray]:
        """Samples B sequences: (batch, keys [B] int64, IS weights [B] float32)."""
        slots, weights = self._sampler.sample(batch_size, importance_sampling_exponent)
        return self.gather(slots, compact), self._keys(slots), weights

    def sample_items(
        self, batch_size: int, importance_sampling_exponent: float
    ) -> tuple[list[Sequence], np.ndarray, np.ndarray]:
        """The cheap half of `sample`: B stored items (immutable, so any thread may turn them
        into a batch later with `batch_of`), their keys [B] and IS weights [B]."""
        slots, weights = self._sampler.sample(batch_size, importance_sampling_exponent)
        return self.items_at(slots), self._keys(slots), weights

    def items_at(self, slots: np.ndarray) -> list[Sequence]:
        """The items in ring slots [B], which must hold items."""
        items = [self._items[slot] for slot in np.asarray(slots, dtype=np.int64).reshape(-1)]
        if any(item is None for item in items):
            raise IndexError("gather of an empty slot")
        return items

    def gather(self, slots: np.ndarray, compact: bool = False) -> SequenceBatch:
        """The batch of the items in ring slots [B] (which must hold items); `compact` leaves
        the stacking to the consumer (see SequenceBatch.frames)."""
        return self.batch_of(self.items_at(slots), compact)

    def batch_of(
        self, items: list[Sequence], compact: bool = False, decoder: FrameDecoder | None = None
    ) -> SequenceBatch:
        """The time-major batch of `items`: decoding and layout, the expensive half of
        sampling. Reads nothing mutable, so it is safe beside `add` in another thread.

        decoder: decodes the distinct compressed frames elsewhere (e.g. a
          frame_decoding.ProcessFrameDecoder); its buffer is then the compact batch's `frames`,
          valid until the decoder's next call. None decodes here.
        """
        layout = self._layout(items)
        shape = (self._burn_in + self._sequence_length, len(items))
        mask = np.zeros(shape, dtype=bool)
        mask[layout.rows, layout.cols] = True
        frames, frame_index = self._stack_indices(items, layout, shape, decoder)
        return SequenceBatch(
            observation=None if compact else np.take(frames, frame_index, axis=0),
            frames=frames if compact else None,
            frame_index=frame_index if compact else None,
            columns=self._column_arrays(items, layout, shape),
            mask=mask,
            burn_in_length=np.array([item.burn_in_length for item in items], dtype=np.int64),
            start_state=np.stack([item.start_state for item in items]).astype(np.float32),
        )

    def _column_arrays(
        self, items: list[Sequence], layout: _FlatSteps, shape: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        """[T, B] per column (and per `previous_as`), scattered into the padded layout."""
        steps = np.concatenate([item.steps for item in items])
        befores = np.stack([item.before for item in items])

        def scatter(values: np.ndarray) -> np.ndarray:
            out = np.zeros(shape, dtype=_batch_dtype(values.dtype))
            out[layout.rows, layout.cols] = values
            return out

        arrays = {}
        for column in self._columns:
            values = steps[column.name]
            arrays[column.name] = scatter(values)
            if column.previous_as:
                previous = np.empty_like(values)
                previous[1:] = values[:-1]  # within an item, the previous step's value ...
                previous[layout.first] = befores[column.name]  # ... else the item's `before`
                arrays[column.previous_as] = scatter(previous)
        return arrays

    def update_priorities(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Sets raw priorities [B] of the items with keys [B] (as `sample` returned them);
        keys of items overwritten since they were sampled are ignored."""
        keys = np.asarray(slots, dtype=np.int64).reshape(-1)
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        if keys.shape != priorities.shape:
            raise ValueError(f"{keys.shape[0]} keys but {priorities.shape[0]} priorities")
        if np.any(keys >= self._num_writes) or np.any(keys < 0):
            raise IndexError("key of an item never written")
        live = keys >= self._num_writes - self._capacity
        self._sampler.set_priorities(keys[live] % self._capacity, priorities[live])

    def _keys(self, slots: np.ndarray) -> np.ndarray:
        """Ring slots [B] -> write counters [B] of the items they now hold."""
        newest = self._num_writes - 1
        return newest - (newest - slots) % self._capacity

    def _layout(self, items: list[Sequence]) -> _FlatSteps:
        """Rows and columns of the items' concatenated steps (burn-in ends at row burn_in)."""
        lengths = np.array([len(item.steps) for item in items], dtype=np.int64)
        burn_in = np.array([item.burn_in_length for item in items], dtype=np.int64)
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        cols = np.repeat(np.arange(len(items)), lengths)
        step = np.arange(lengths.sum()) - first[cols]
        rows = (self._burn_in - burn_in)[cols] + step
        return _FlatSteps(rows=rows, cols=cols, first=first)

    def _stack_indices(
        self,
        items: list[Sequence],
        layout: _FlatSteps,
        shape: tuple[int, int],
        decoder: FrameDecoder | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decoded distinct frames [D + 1, *frame_shape] and the index [T, B, frame_stack]
        ([T, B] without a stack axis) of each stacked observation's frames: a sliding window of
        frame_stack over each item's (prefix + N) frames; padding points at the zero frame."""
        frames = list(itertools.chain.from_iterable(item.frames for item in items))
        decoded, frame_rows = self._decode_distinct(frames, decoder)
        # Item i's frames start at flat position first_i + i·(frame_stack − 1); the stack of its
        # step s is the window of frame_stack frames starting s positions later.
        windows = np.lib.stride_tricks.sliding_window_view(frame_rows, self._frame_stack)
        starts = np.arange(len(layout.rows)) + layout.cols * (self._frame_stack - 1)
        stack_rows = np.zeros((*shape, self._frame_stack), dtype=np.int64)  # row 0: zero frame
        stack_rows[layout.rows, layout.cols] = windows[starts]
        return decoded, stack_rows if self._stack_axis else stack_rows[:, :, 0]

    def _decode_distinct(
        self, frames: list[bytes | None], decoder: FrameDecoder | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decodes each distinct frame object once: returns (decoded [D + 1, *frame_shape] with
        a zero frame at row 0, the row of each of `frames` [F] int64).

        Each frame is decompressed straight into its row of one buffer (no intermediate bytes,
        no join): the copies were half the time.
        """
        ids = np.fromiter(map(id, frames), dtype=np.uint64, count=len(frames))
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        distinct = [frames[index] for index in first.tolist()]
        if decoder is not None and self._compress:
            decoded = decoder.decode(distinct)
        else:
            decoded = np.zeros((len(distinct) + 1, self._frame_bytes), dtype=np.uint8)
            self._decode_here(distinct, decoded)
        decoded = frames_from_rows(decoded, self._frame_shape, self._dtype)
        return decoded, inverse.reshape(-1).astype(np.int64) + 1

    def _decode_here(self, distinct: list[bytes | None], out: np.ndarray) -> None:
        """Writes the frames' bytes into rows 1.. of `out` (uint8 [D + 1, frame_bytes])."""
        if self._compress:
            decode_frames_into(distinct, out)
            return
        for row, frame in enumerate(distinct, start=1):
            if frame is None:
                continue
            source = np.frombuffer(frame, dtype=np.uint8)
            if source.size != self._frame_bytes:
                raise ValueError(f"a stored frame does not decode to {self._frame_bytes} bytes")
            out[row] = source

    # -- checkpointing --------------------------------------------------------------------------

    def _config_array(self) -> np.ndarray:
        return np.array(
            [self._capacity, self._burn_in, self._sequence_length, self._frame_stack,
             self._frame_bytes],
            dtype=np.int64,
        )  # fmt: skip

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything stored, as plain numpy arrays (np.savez-able, loadable with
        allow_pickle=False). Each distinct frame is written once; sharing is restored."""
        slots = np.array([s for s, item in enumerate(self._items) if item is not None], np.int64)
        items = [self._items[s] for s in slots]
        distinct = self._distinct_frames(items)
        number = {frame_id: k for k, frame_id in enumerate(distinct)}
        frame_refs = [number[id(f)] if f is not None else -1 for i in items for f in i.frames]
        payloads = list(distinct.values())
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        steps = np.concatenate([i.steps for i in items]) if items else np.zeros(0, self._step_dtype)
        befores = np.stack([i.before for i in items]) if items else np.zeros(0, self._step_dtype)
        state = {
            "config": self._config_array(),
            "num_writes": np.array(self._num_writes, dtype=np.int64),
            "slots": slots,
            "frame_buffer": np.frombuffer(b"".join(payloads), dtype=np.uint8).copy(),
            "frame_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "frame_refs": np.array(frame_refs, dtype=np.int64),
            "step_counts": np.array([len(i.steps) for i in items], dtype=np.int64),
            "burn_in_lengths": np.array([i.burn_in_length for i in items], dtype=np.int64),
            "start_states": np.stack([i.start_state for i in items]).astype(np.float32)
            if items
            else np.zeros((0, 0), np.float32),
        }
        for name in self._step_dtype.names:
            state[f"steps.{name}"] = np.ascontiguousarray(steps[name])
            state[f"before.{name}"] = np.ascontiguousarray(befores[name])
        state |= {f"sampler.{k}": v for k, v in self._sampler.state_dict().items()}
        return state

    def load_state_dict(self, state: collections.abc.Mapping[str, np.ndarray]) -> None:
        """Restores `state_dict()`'s arrays; raises ValueError if they do not fit this replay."""
        if not np.array_equal(state["config"], self._config_array()):
            raise ValueError(
                f"replay file config {state['config'].tolist()} != this run's "
                f"{self._config_array().tolist()} (capacity, burn-in, length, stack, frame bytes)"
            )
        missing = [n for n in self._step_dtype.names if f"steps.{n}" not in state]
        if missing:
            raise ValueError(f"replay file lacks columns {missing}")
        buffer = np.asarray(state["frame_buffer"], dtype=np.uint8).tobytes()
        offsets = np.asarray(state["frame_offsets"], dtype=np.int64).tolist()
        frames = [buffer[a:b] for a, b in itertools.pairwise(offsets)]
        steps = np.zeros(len(state[f"steps.{self._step_dtype.names[0]}"]), self._step_dtype)
        befores = np.zeros(len(state["slots"]), self._step_dtype)
        for name in self._step_dtype.names:
            steps[name] = state[f"steps.{name}"]
            befores[name] = state[f"before.{name}"]
        refs = np.asarray(state["frame_refs"], dtype=np.int64).tolist()
        counts = np.asarray(state["step_counts"], dtype=np.int64)
        step_starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
        frame_starts = np.concatenate([[0], np.cumsum(counts + self._frame_stack - 1)]).tolist()
        start_states = np.asarray(state["start_states"], dtype=np.float32)
        self._items[:] = None
        for k, slot in enumerate(np.asarray(state["slots"], dtype=np.int64).tolist()):
            item_refs = refs[frame_starts[k] : frame_starts[k + 1]]
            self._items[slot] = Sequence(
                frames=tuple(frames[r] if r >= 0 else None for r in item_refs),
                steps=steps[step_starts[k] : step_starts[k + 1]].copy(),
                before=befores[k].copy(),
                start_state=start_states[k].copy(),
                burn_in_length=int(state["burn_in_lengths"][k]),
            )
        self._num_writes = int(state["num_writes"])
        self._sampler.load_state_dict(sub_state(dict(state), "sampler."))


def _array_bytes(array: np.ndarray) -> int:
    """Header plus data bytes of an array (a view's data is counted too, as if it owned it)."""
    return sys.getsizeof(array) + (0 if array.flags.owndata else array.nbytes)


def sequence_priorities(abs_td: np.ndarray, mask: np.ndarray, eta: float = 0.9) -> np.ndarray:
    """R2D2's priority p = η·max_t|δ_t| + (1 − η)·mean_t|δ_t| over each sequence's valid steps.

    abs_td: [T, B] |TD errors|; mask: [T, B] bool, valid steps. Returns [B] float64; a sequence
    with no valid step gets 0.
    """
    abs_td = np.abs(np.asarray(abs_td, dtype=np.float64))
    mask = np.asarray(mask, dtype=bool)
    if abs_td.shape != mask.shape:
        raise ValueError(f"abs_td shape {abs_td.shape} != mask shape {mask.shape}")
    masked = np.where(mask, abs_td, 0.0)  # |δ| >= 0, so zeros never raise the max
    count = mask.sum(axis=0)
    mean = masked.sum(axis=0) / np.maximum(count, 1)
    return np.where(count > 0, eta * masked.max(axis=0, initial=0.0) + (1 - eta) * mean, 0.0)
