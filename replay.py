"""Transition replay: an n-step transition replay that stores every observation frame exactly
once, sampled uniformly or by priority (prioritized_sampler.py).

Layering:

* `SumTree`, `PrioritizedSampler` — from prioritized_sampler.py, re-exported here.
* `NStepAccumulator` — turns a stream of timesteps into n-step returns and bootstrap discounts.
* `TransitionReplay` — per-stream rings of single frames (snappy-compressed or dense), n-step
  transitions over them, frame stacks rebuilt at sample time.
* `compress_frame` / `decompress_frame` — the frame codec (frame_codec.py, which also
  bit-packs bool frames), exported here too so that actor processes can compress before sending.

The recurrent agents' sequence replay, built on `PrioritizedSampler` and the frame codec, is in
`sequence_replay.py`.

Timestep convention (dm_env style), used by `NStepAccumulator` and `TransitionReplay.add`: the
timestep at time t carries the observation s_t, the reward r_t and the discount d_t of the
transition *into* s_t (meaningless when `first`), `first` (s_t starts an episode), `last` (the
episode ends at s_t) and the action a_t the agent chose at s_t (meaningless when `last`).
"""

from __future__ import annotations

import collections.abc
import itertools
import sys
from typing import NamedTuple

import numpy as np
import snappy

from frame_codec import (
    compress_frame,
    decompress_frame,
    frame_nbytes,
    frames_from_rows,
    pack_frames,
)
from prioritized_sampler import (
    PrioritizedSampler,
    SumTree,
)

__all__ = [
    "FinishedTransitions",
    "NStepAccumulator",
    "PrioritizedSampler",
    "SumTree",
    "Transition",
    "TransitionReplay",
    "compress_frame",
    "decompress_frame",
]

# The step index within an episode is stored in a uint8; stacks only need to know whether the
# step is below frame_stack - 1, so saturating is lossless for that purpose.
_MAX_STEP_INDEX = np.iinfo(np.uint8).max


# --------------------------------------------------------------------------------------------
# n-step accumulation
# --------------------------------------------------------------------------------------------


class FinishedTransitions(NamedTuple):
    """Transitions completed by one `NStepAccumulator.step`, all arrays [F]."""

    slots: np.ndarray  # int64, the slot of each transition's first observation
    returns: np.ndarray  # float32, R
    discounts: np.ndarray  # float32, bootstrap discount γ^k Π d
    steps: np.ndarray  # int64, k: the bootstrap observation is k steps after the first


class NStepAccumulator:
    """Accumulates n-step returns for E parallel streams of timesteps.

    A transition starting at observation s_0 and bootstrapping from s_k (1 <= k <= n) has

        R = Σ_{j=1..k} γ^(j-1) (Π_{i=1..j-1} d_i) r_j,      bootstrap discount = γ^k Π_{i=1..k} d_i

    where (r_j, d_j) are the reward and discount of the timestep j steps after s_0. It is
    finished when k = n; when d_k = 0 (life loss treated as terminal, or game over: bootstrap
    discount 0, although after a life loss the episode continues and new transitions start);
    or when s_k is `last` (a time-limit truncation with d_k = 1 keeps bootstrap discount γ^k).
    No transition starts at a `last` observation. A `first` timestep abandons anything still
    pending in its stream (the previous episode was cut off without a `last`).

    Pending transitions live in [E, n] arrays: the one started at call t sits in column t mod n,
    which is always free again by then because a transition finishes after at most n steps.
    """

    def __init__(self, num_streams: int, n_step: int, discount: float) -> None:
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        self._num_streams = int(num_streams)
        self._n = int(n_step)
        self._gamma = float(discount)
        shape = (self._num_streams, self._n)
        self._slot = np.full(shape, -1, dtype=np.int64)
        self._return = np.zeros(shape, dtype=np.float64)
        self._scale = np.ones(shape, dtype=np.float64)  # γ^k Π d, the weight of the next reward
        self._steps = np.zeros(shape, dtype=np.int64)
        self._pending = np.zeros(shape, dtype=bool)
        self._num_calls = 0

    @property
    def num_pending(self) -> int:
        return int(self._pending.sum())

    @property
    def nbytes(self) -> int:
        arrays = (self._slot, self._return, self._scale, self._steps, self._pending)
        return sum(a.nbytes for a in arrays)

    def step(
        self,
        reward: np.ndarray,
        discount: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        slots: np.ndarray,
    ) -> FinishedTransitions:
        """Consumes one timestep per stream (all arrays [E]); `slots` is where each new
        observation is stored. Returns the transitions this timestep finished."""
        reward = self._checked(reward, np.float64, "reward")
        discount = self._checked(discount, np.float64, "discount")
        first, last = self._checked(first, bool, "first"), self._checked(last, bool, "last")
        slots = self._checked(slots, np.int64, "slots")
        self._drop_overwritten(slots)
        self._pending[first] = False
        finished = self._accumulate(reward, discount, first, last)
        self._start(slots, ~last)
        self._num_calls += 1
        return finished

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "slot": self._slot.copy(),
            "return": self._return.copy(),
            "scale": self._scale.copy(),
            "steps": self._steps.copy(),
            "pending": self._pending.copy(),
            "num_calls": np.array(self._num_calls, dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for name in ("slot", "return", "scale", "steps", "pending"):
            target = getattr(self, f"_{name}")
            if state[name].shape != target.shape:
                raise ValueError(f"accumulator {name} shape {state[name].shape} != {target.shape}")
            target[:] = state[name]
        self._num_calls = int(state["num_calls"])

    def _checked(self, values: np.ndarray, dtype: type, name: str) -> np.ndarray:
        array = _as_stream_array(values, dtype)
        if array.shape != (self._num_streams,):
            raise ValueError(f"{name} must have {self._num_streams} entries, got {array.shape}")
        return array

    def _drop_overwritten(self, slots: np.ndarray) -> None:
        # A ring shorter than n can overwrite the first frame of a still-pending transition.
        self._pending &= self._slot != slots[:, None]

    def _accumulate(
        self, reward: np.ndarray, discount: np.ndarray, first: np.ndarray, last: np.ndarray
    ) -> FinishedTransitions:
        active = self._pending & ~first[:, None]
        self._return += np.where(active, self._scale * reward[:, None], 0.0)
        self._scale = np.where(active, self._scale * self._gamma * discount[:, None], self._scale)
        self._steps += active
        episode_cut = (discount == 0) | last
        done = active & ((self._steps >= self._n) | episode_cut[:, None])
        self._pending &= ~done
        return FinishedTransitions(
            slots=self._slot[done],
            returns=self._return[done].astype(np.float32),
            discounts=self._scale[done].astype(np.float32),
            steps=self._steps[done],
        )

    def _start(self, slots: np.ndarray, starting: np.ndarray) -> None:
        column = self._num_calls % self._n
        self._slot[starting, column] = slots[starting]
        self._return[starting, column] = 0.0
        self._scale[starting, column] = 1.0
        self._steps[starting, column] = 0
        self._pending[starting, column] = True


def _as_stream_array(values: np.ndarray, dtype: type) -> np.ndarray:
    return np.asarray(values).astype(dtype, copy=False).reshape(-1)


# --------------------------------------------------------------------------------------------
# Transition replay
# --------------------------------------------------------------------------------------------


class Transition(NamedTuple):
    """A batch of n-step transitions (numpy arrays, leading dim B).

    s_tm1 and s_t are [B, frame_stack, *frame_shape], or [B, *frame_shape] when frame_stack is 1.
    """

    s_tm1: np.ndarray
    a_tm1: np.ndarray  # [B] int64
    r_t: np.ndarray  # [B] float32, n-step return
    discount_t: np.ndarray  # [B] float32, bootstrap discount including γ^k
    s_t: np.ndarray


class TransitionReplay:
    """n-step transition replay over E streams, each frame stored once.

    Stream e owns the ring of flat slots [e * R, (e + 1) * R), R = capacity // num_streams, and
    writes call t's frame at position t mod R. A slot holds the newest frame of the observation
    seen at that step, its episode step index (saturated at 255), the action taken there and,
    once finished, the n-step return, bootstrap discount and k of the transition starting there.
    Stacks are rebuilt at sample time from the ring's previous positions, with zeros in place of
    frames from before the episode's first frame (as the environment pads).

    Eviction: overwriting position p loses the frame of the oldest stored step. The transitions
    that could reference it are the one at p and those at p+1 .. p+frame_stack-1 (their s_tm1
    stacks); all of them are cleared (conservatively, even when an episode boundary means the
    lost frame would have been zero-padded out). s_t stacks never need it: the transitions that
    bootstrap across p start at or after p. R >= n_step + frame_stack is required so that no
    pending transition is ever among the cleared slots.

    A frame (`observation_shape`) is what one step adds: a 2-D screen of an Atari stack
    [frame_stack, 84, 84], or a whole observation when there is no stack (a vector [D], a
    MinAtar [C, 10, 10]; environments.observations.frame_layout tells which). Bool frames are stored
    bit-packed, then snappy-compressed when `compress`, and come back as bool.
    """

    ITEMS = "transitions"  # What one stored item is, for log lines.

    def __init__(
        self,
        capacity: int,
        num_streams: int,
        observation_shape: collections.abc.Sequence[int],
        observation_dtype: np.dtype | type,
        frame_stack: int,
        n_step: int,
        discount: float,
        compress: bool,
        prioritized: bool,
        priority_exponent: float = 0.6,
        seed: int = 0,
    ) -> None:
        if num_streams < 1 or frame_stack < 1 or n_step < 1:
            raise ValueError("num_streams, frame_stack and n_step must be >= 1")
        if frame_stack > _MAX_STEP_INDEX or n_step > _MAX_STEP_INDEX:
            raise ValueError(f"frame_stack and n_step must be <= {_MAX_STEP_INDEX}")
        ring_size = capacity // num_streams
        if ring_size < n_step + frame_stack:
            raise ValueError(
                f"capacity // num_streams = {ring_size} must be >= n_step + frame_stack "
                f"= {n_step + frame_stack}"
            )
        self._num_streams = int(num_streams)
        self._ring_size = int(ring_size)
        self._num_slots = self._ring_size * self._num_streams
        self._frame_shape = tuple(int(d) for d in observation_shape)
        self._dtype = np.dtype(observation_dtype)
        self._frame_stack = int(frame_stack)
        self._compress = bool(compress)
        self._config = np.array(
            [capacity, num_streams, frame_stack, n_step, int(compress), *self._frame_shape],
            dtype=np.int64,
        )
        self._gamma = float(discount)

        self._bits = self._dtype == np.bool_  # Bool frames are stored bit-packed.
        self._frame_nbytes = frame_nbytes(self._frame_shape, self._dtype)
        if self._compress:
            self._frames: np.ndarray = np.full(self._num_slots, None, dtype=object)
        elif self._bits:
            self._frames = np.zeros((self._num_slots, self._frame_nbytes), dtype=np.uint8)
        else:
            self._frames = np.zeros((self._num_slots, *self._frame_shape), dtype=self._dtype)
        self._frame_payload_bytes = 0  # sys.getsizeof of every stored compressed frame
        self._actions = np.zeros(self._num_slots, dtype=np.int16)
        self._returns = np.zeros(self._num_slots, dtype=np.float32)
        self._discounts = np.zeros(self._num_slots, dtype=np.float32)
        self._steps = np.zeros(self._num_slots, dtype=np.uint8)
        self._step_index = np.zeros(self._num_slots, dtype=np.uint8)
        self._stream_step = np.full(self._num_streams, -1, dtype=np.int64)
        self._num_adds = 0

        self._accumulator = NStepAccumulator(num_streams, n_step, discount)
        self._sampler = PrioritizedSampler(
            self._num_slots, priority_exponent, uniform=not prioritized, seed=seed
        )

    # -- sizes ----------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of sampleable (finished, not evicted) transitions."""
        return self._sampler.num_valid

    def __len__(self) -> int:
        return self.size

    @property
    def num_stored_steps(self) -> int:
        """Number of frames currently held (one per stream per step, up to the capacity)."""
        return min(self._num_adds, self._ring_size) * self._num_streams

    @property
    def sampler(self) -> PrioritizedSampler:
        return self._sampler

    def memory_bytes(self) -> int:
        """Estimated resident bytes: compressed frames as Python bytes objects (payload plus
        object header, via sys.getsizeof), plus the nbytes of every numpy array, the slot
        pointers of the object array and the sum tree included. Fixed per-instance overheads
        (a few hundred bytes) are ignored."""
        arrays = (
            self._frames,
            self._actions,
            self._returns,
            self._discounts,
            self._steps,
            self._step_index,
            self._stream_step,
        )
        numpy_bytes = sum(a.nbytes for a in arrays)
        return (
            self._frame_payload_bytes
            + numpy_bytes
            + self._sampler.nbytes
            + self._accumulator.nbytes
        )

    def bytes_per_stored_step(self) -> float:
        """memory_bytes() / num_stored_steps (nan while nothing is stored)."""
        stored = self.num_stored_steps
        return self.memory_bytes() / stored if stored else float("nan")

    # -- writing --------------------------------------------------------------------------------

    def add(
        self,
        observation: np.ndarray,
        reward: np.ndarray,
        discount: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        action: np.ndarray,
    ) -> None:
        """Adds one timestep for all E streams.

        observation: [E, frame_stack, *frame_shape] (or [E, *frame_shape] if frame_stack is 1);
        only its newest frame observation[:, -1] is stored. reward, discount: [E] float, of the
        transition into this observation. first, last: [E] bool. action: [E] int, chosen at
        this observation (ignored where last).
        """
        newest = self._newest_frames(observation)
        fields = self._checked_fields(reward, discount, first, last, action)
        slots = self._begin_step()
        if self._compress:
            self._write_compressed(slots, [compress_frame(frame) for frame in newest])
        else:
            self._frames[slots] = pack_frames(newest) if self._bits else newest
        self._end_step(slots, *fields)

    def add_compressed(
        self,
        frames: collections.abc.Sequence[bytes],
        reward: np.ndarray,
        discount: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        action: np.ndarray,
    ) -> None:
        """Like `add`, with each stream's newest frame already encoded by `compress_frame`
        (as actor processes send them). Requires compress=True."""
        if not self._compress:
            raise ValueError("add_compressed needs a replay built with compress=True")
        if len(frames) != self._num_streams:
            raise ValueError(f"expected {self._num_streams} frames, got {len(frames)}")
        fields = self._checked_fields(reward, discount, first, last, action)
        slots = self._begin_step()
        self._write_compressed(slots, list(frames))
        self._end_step(slots, *fields)

    def _newest_frames(self, observation: np.ndarray) -> np.ndarray:
        observation = np.asarray(observation)
        stacked = (self._num_streams, self._frame_stack, *self._frame_shape)
        unstacked = (self._num_streams, *self._frame_shape)
        if observation.shape == stacked:
            newest = observation[:, -1]
        elif self._frame_stack == 1 and observation.shape == unstacked:
            newest = observation
        else:
            raise ValueError(f"observation shape {observation.shape} does not match {stacked}")
        return newest.astype(self._dtype, copy=False)

    def _begin_step(self) -> np.ndarray:
        """Flat slots [E] of this step's frames, with every transition that needs the frames
        they overwrite cleared."""
        position = self._num_adds % self._ring_size
        stream_base = np.arange(self._num_streams, dtype=np.int64) * self._ring_size
        if self._num_adds >= self._ring_size:
            # The overwritten frame is referenced by the slot itself and by the stacks of the
            # next frame_stack - 1 positions (see the class docstring).
            offsets = (position + np.arange(self._frame_stack)) % self._ring_size
            self._sampler.clear((stream_base[:, None] + offsets[None, :]).reshape(-1))
        return stream_base + position

    def _write_compressed(self, slots: np.ndarray, frames: list[bytes]) -> None:
        for slot, data in zip(slots, frames, strict=True):
            previous = self._frames[slot]
            if previous is not None:
                self._frame_payload_bytes -= sys.getsizeof(previous)
            self._frames[slot] = data
            self._frame_payload_bytes += sys.getsizeof(data)

    def _checked_fields(
        self,
        reward: np.ndarray,
        discount: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        action: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        """Validates the [E] per-stream fields before anything is written, so a bad call
        leaves the replay untouched."""
        fields = (
            _as_stream_array(reward, np.float64),
            _as_stream_array(discount, np.float64),
            _as_stream_array(first, bool),
            _as_stream_array(last, bool),
            _as_stream_array(action, np.int64),
        )
        names = ("reward", "discount", "first", "last", "action")
        for name, values in zip(names, fields, strict=True):
            if values.shape != (self._num_streams,):
                raise ValueError(
                    f"{name} must have {self._num_streams} entries, got {values.shape}"
                )
        action = np.where(fields[3], 0, fields[4])  # no transition starts at a last observation
        if action.min() < np.iinfo(np.int16).min or action.max() > np.iinfo(np.int16).max:
            raise ValueError("actions must fit in int16")
        return (*fields[:4], action)

    def _end_step(
        self,
        slots: np.ndarray,
        reward: np.ndarray,
        discount: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        action: np.ndarray,
    ) -> None:
        # A stream's very first timestep starts an episode even if not flagged `first`.
        starts = first | (self._stream_step < 0)
        self._stream_step = np.where(starts, 0, np.minimum(self._stream_step + 1, _MAX_STEP_INDEX))
        self._step_index[slots] = self._stream_step
        self._actions[slots] = action
        finished = self._accumulator.step(reward, discount, starts, last, slots)
        self._returns[finished.slots] = finished.returns
        self._discounts[finished.slots] = finished.discounts
        self._steps[finished.slots] = finished.steps
        self._sampler.set_max_priority(finished.slots)
        self._num_adds += 1

    # -- reading --------------------------------------------------------------------------------

    def sample(
        self, batch_size: int, importance_sampling_exponent: float = 0.0
    ) -> tuple[Transition, np.ndarray, np.ndarray]:
        """Samples B transitions: (Transition, slots [B] int64, IS weights [B] float32)."""
        slots, weights = self._sampler.sample(batch_size, importance_sampling_exponent)
        return self.gather(slots), slots, weights

    def gather(self, slots: np.ndarray) -> Transition:
        """The transitions starting at slots [B] (which must be valid)."""
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        stream, position = np.divmod(slots, self._ring_size)
        steps = self._steps[slots].astype(np.int64)
        bootstrap_slots = stream * self._ring_size + (position + steps) % self._ring_size
        stacks = self._stacks(np.concatenate([slots, bootstrap_slots]))
        s_tm1, s_t = stacks[: slots.shape[0]], stacks[slots.shape[0] :]
        if self._frame_stack == 1:
            s_tm1, s_t = s_tm1[:, 0], s_t[:, 0]
        return Transition(
            s_tm1=s_tm1,
            a_tm1=self._actions[slots].astype(np.int64),
            r_t=self._returns[slots].copy(),
            discount_t=self._discounts[slots].copy(),
            s_t=s_t,
        )

    def valid_slots(self) -> np.ndarray:
        """Every sampleable slot, ascending (O(capacity); for tests and diagnostics)."""
        return self._sampler.valid_slots()

    def update_priorities(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Sets raw priorities (|TD| values) [B] of sampled slots [B]. Slots evicted since they
        were sampled are skipped, so a late update cannot resurrect an evicted transition. (A
        slot evicted AND refilled in between takes the stale priority, as in dqn_zoo.)"""
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        live = self._sampler.is_valid(slots)
        self._sampler.set_priorities(slots[live], priorities[live])

    def _stacks(self, slots: np.ndarray) -> np.ndarray:
        """Frame stacks ending at slots [M] -> [M, frame_stack, *frame_shape], oldest first."""
        stream, position = np.divmod(slots, self._ring_size)
        lag = np.arange(self._frame_stack - 1, -1, -1)  # steps back from the newest frame
        ring_positions = (position[:, None] - lag) % self._ring_size
        frame_slots = stream[:, None] * self._ring_size + ring_positions
        in_episode = self._step_index[slots].astype(np.int64)[:, None] >= lag
        return self._read_frames(frame_slots, in_episode)

    def _read_frames(self, frame_slots: np.ndarray, present: np.ndarray) -> np.ndarray:
        """frame_slots [M, S], present [M, S] bool -> [M, S, *frame_shape], zeros where absent."""
        if not self._compress:
            frames = self._frames[frame_slots]
            frames[~present] = 0
            if self._bits:
                return frames_from_rows(frames, self._frame_shape, self._dtype)
            return frames
        # Decode each distinct frame once (s_tm1 and s_t stacks overlap heavily) into one buffer
        # whose row 0 is the zero frame, so absent frames become a plain gather of row 0.
        needed, inverse = np.unique(frame_slots[present], return_inverse=True)
        zero_frame = bytes(self._frame_nbytes)
        raw = b"".join([zero_frame, *(snappy.decompress(self._frames[s]) for s in needed)])
        rows_of_bytes = np.frombuffer(raw, dtype=np.uint8).reshape(-1, self._frame_nbytes)
        decoded = frames_from_rows(rows_of_bytes, self._frame_shape, self._dtype)
        rows = np.zeros(frame_slots.shape, dtype=np.int64)
        rows[present] = inverse.reshape(-1) + 1
        return decoded[rows]

    # -- checkpointing --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Full state as plain numpy arrays (np.savez-able, loadable with allow_pickle=False)."""
        state = {
            "config": self._config.copy(),
            "actions": self._actions.copy(),
            "returns": self._returns.copy(),
            "discounts": self._discounts.copy(),
            "steps": self._steps.copy(),
            "step_index": self._step_index.copy(),
            "stream_step": self._stream_step.copy(),
            "num_adds": np.array(self._num_adds, dtype=np.int64),
        }
        state |= self._frames_state()
        state |= {f"accumulator.{k}": v for k, v in self._accumulator.state_dict().items()}
        state |= {f"sampler.{k}": v for k, v in self._sampler.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if not np.array_equal(state["config"], self._config):
            raise ValueError(f"checkpoint config {state['config']} != replay config {self._config}")
        for name in ("actions", "returns", "discounts", "steps", "step_index", "stream_step"):
            getattr(self, f"_{name}")[:] = state[name]
        self._num_adds = int(state["num_adds"])
        self._load_frames_state(state)
        self._accumulator.load_state_dict(sub_state(state, "accumulator."))
        self._sampler.load_state_dict(sub_state(state, "sampler."))

    def _frames_state(self) -> dict[str, np.ndarray]:
        if not self._compress:
            return {"frames": self._frames.copy()}
        # A snappy stream is never empty, so length 0 encodes "no frame stored".
        payloads = [b"" if data is None else data for data in self._frames]
        lengths = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        buffer = np.frombuffer(b"".join(payloads), dtype=np.uint8).copy()
        return {"frame_buffer": buffer, "frame_offsets": offsets}

    def _load_frames_state(self, state: dict[str, np.ndarray]) -> None:
        if not self._compress:
            self._frames[:] = state["frames"]
            return
        buffer = np.asarray(state["frame_buffer"], dtype=np.uint8).tobytes()
        offsets = np.asarray(state["frame_offsets"], dtype=np.int64)
        if offsets.shape != (self._num_slots + 1,):
            raise ValueError(f"frame_offsets shape {offsets.shape} != ({self._num_slots + 1},)")
        self._frame_payload_bytes = 0
        for slot, (start, end) in enumerate(itertools.pairwise(offsets.tolist())):
            data = buffer[start:end] if end > start else None
            self._frames[slot] = data
            if data is not None:
                self._frame_payload_bytes += sys.getsizeof(data)


def sub_state(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
