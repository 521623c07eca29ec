"""Replay memories: a vectorized sum tree, a prioritized slot sampler and an n-step transition
replay that stores every observation frame exactly once.

Layering:

* `SumTree` — array-based binary sum tree; every method works on a batch of leaves.
* `PrioritizedSampler` — proportional prioritized sampling (Schaul et al. 2016) over integer
  slots; knows nothing about what a slot holds, so a sequence replay can reuse it. A slot with
  priority 0 is never sampled: that is how empty, incomplete and evicted slots are excluded.
* `NStepAccumulator` — turns a stream of timesteps into n-step returns and bootstrap discounts.
* `TransitionReplay` — per-stream rings of single frames (snappy-compressed or dense), n-step
  transitions over them, frame stacks rebuilt at sample time.
* `compress_frame` / `decompress_frame` — the frame codec, exported so that actor processes can
  compress before sending.
* `ChunkBuilder` → `SequenceAssembler` → `SequenceReplay` — the recurrent agents' path: actors
  cut each environment stream into episode-aligned `Chunk`s, the learner assembles them into
  overlapping burn-in + learning `Sequence`s that share (never copy) the chunks' frames and
  recurrent states, and the replay samples time-major `SequenceBatch`es; `sequence_priorities`
  is R2D2's priority. What a step holds besides its frame is the agent's list of `Column`s.

Timestep convention (dm_env style), used by `NStepAccumulator` and `TransitionReplay.add`: the
timestep at time t carries the observation s_t, the reward r_t and the discount d_t of the
transition *into* s_t (meaningless when `first`), `first` (s_t starts an episode), `last` (the
episode ends at s_t) and the action a_t the agent chose at s_t (meaningless when `last`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import itertools
import math
import sys
from typing import NamedTuple

import numpy as np
import snappy

from frame_decoding import FrameDecoder, ProcessFrameDecoder, decode_frames_into

__all__ = [
    "Chunk",
    "ChunkBuilder",
    "Column",
    "FinishedTransitions",
    "NStepAccumulator",
    "PrioritizedSampler",
    "Sequence",
    "SequenceAssembler",
    "SequenceBatch",
    "SequenceReplay",
    "SumTree",
    "Transition",
    "TransitionReplay",
    "compress_frame",
    "decompress_frame",
    "sequence_priorities",
    "step_dtype",
]

# The step index within an episode is stored in a uint8; stacks only need to know whether the
# step is below frame_stack - 1, so saturating is lossless for that purpose.
_MAX_STEP_INDEX = np.iinfo(np.uint8).max


# --------------------------------------------------------------------------------------------
# Frame codec
# --------------------------------------------------------------------------------------------


def compress_frame(frame: np.ndarray) -> bytes:
    """Snappy-compresses the raw bytes of one frame (any shape and dtype, C order)."""
    return snappy.compress(np.ascontiguousarray(frame).tobytes())


def decompress_frame(
    data: bytes, shape: collections.abc.Sequence[int], dtype: np.dtype | type
) -> np.ndarray:
    """Inverse of `compress_frame`; returns a writable array of `shape` and `dtype`."""
    frame = np.frombuffer(snappy.decompress(data), dtype=dtype)
    return frame.reshape(shape).copy()


# --------------------------------------------------------------------------------------------
# Sum tree
# --------------------------------------------------------------------------------------------


class SumTree:
    """Binary sum tree over `capacity` non-negative leaf values, vectorized over batches.

    Layout: `nodes[1]` is the root, node i has children 2i and 2i + 1, and the leaves occupy
    `nodes[size:2 * size]` where `size` is `capacity` rounded up to a power of two (the padding
    leaves stay 0). `nodes[0]` is unused.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = int(capacity)
        self._depth = int(np.ceil(np.log2(capacity))) if capacity > 1 else 0
        self._size = 1 << self._depth
        self._nodes = np.zeros(2 * self._size, dtype=np.float64)
        self._num_nonzero = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._nodes[1])

    @property
    def num_nonzero(self) -> int:
        """Number of leaves with a nonzero value (kept incrementally: O(batch) per `set`)."""
        return self._num_nonzero

    @property
    def nbytes(self) -> int:
        return self._nodes.nbytes

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values: indices [B] int -> [B] float64."""
        indices = self._checked_indices(indices)
        return self._nodes[self._size + indices]

    def leaves(self) -> np.ndarray:
        """Read-only view of all `capacity` leaf values, [capacity] float64."""
        view = self._nodes[self._size : self._size + self._capacity]
        view.flags.writeable = False
        return view

    def set(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Sets leaves [B] to values [B] (float, finite, >= 0), then refreshes their ancestors.

        With duplicate indices the LAST occurrence wins. Ancestors are recomputed as the sum of
        their children rather than by adding deltas, so float error never accumulates.
        """
        indices = self._checked_indices(indices)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape != indices.shape:
            raise ValueError(f"{indices.shape[0]} indices but {values.shape[0]} values")
        if indices.size == 0:
            return
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError("sum tree values must be finite and >= 0")
        indices, values = _last_occurrence(indices, values)
        leaves = self._size + indices
        self._num_nonzero += int(np.count_nonzero(values)) - int(
            np.count_nonzero(self._nodes[leaves])
        )
        self._nodes[leaves] = values
        self._refresh_ancestors(leaves)

    def find_prefix_sum_index(self, targets: np.ndarray) -> np.ndarray:
        """For each target in [0, total) the leaf whose cumulative range contains it.

        targets [B] float64 -> leaf indices [B] int64. Leaf i covers
        [sum(leaves[:i]), sum(leaves[:i + 1])). Targets are clamped into [0, total) and the
        descent never enters a zero-sum child, so a zero-valued leaf is never returned even
        when rounding puts a target exactly on (or past) a boundary.
        """
        total = self.total
        if not total > 0:
            raise ValueError("cannot search a sum tree whose total is 0")
        remaining = np.asarray(targets, dtype=np.float64).reshape(-1)
        remaining = np.clip(remaining, 0.0, np.nextafter(total, 0.0))  # a fresh array
        node = np.ones(remaining.shape[0], dtype=np.int64)
        child_pairs = self._child_pairs()
        for _ in range(self._depth):
            children = child_pairs.take(node, axis=0)  # [B, 2]: left and right sums
            left_sum = children[:, 0]
            # The right child is only entered when it has mass: a target that rounding pushed
            # past the left sum must still land on a nonzero leaf.
            go_right = (remaining >= left_sum) & (children[:, 1] > 0)
            remaining -= left_sum * go_right  # exact: multiplies by 0 or 1
            node = 2 * node + go_right
        return node - self._size

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"nodes": self._nodes.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        nodes = np.asarray(state["nodes"], dtype=np.float64)
        if nodes.shape != self._nodes.shape:
            raise ValueError(f"sum tree shape {nodes.shape} != expected {self._nodes.shape}")
        self._nodes[:] = nodes
        self._num_nonzero = int(np.count_nonzero(self.leaves()))

    def _child_pairs(self) -> np.ndarray:
        """View [size, 2] whose row i is (nodes[2i], nodes[2i + 1]), the children of node i;
        one `take` then fetches both children (take/put are cheaper than fancy indexing)."""
        return self._nodes.reshape(-1, 2)

    def _refresh_ancestors(self, leaves: np.ndarray) -> None:
        # Duplicated parents in a level just write the same sum twice, so no dedup is needed.
        child_pairs = self._child_pairs()
        node = leaves >> 1
        for _ in range(self._depth):
            children = child_pairs.take(node, axis=0)
            self._nodes.put(node, children[:, 0] + children[:, 1])
            node >>= 1

    def _checked_indices(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self._capacity):
            raise IndexError(f"sum tree index out of range [0, {self._capacity})")
        return indices


def _last_occurrence(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicates indices [B] keeping the value of each index's last occurrence."""
    reversed_indices = indices[::-1]
    unique, first_in_reversed = np.unique(reversed_indices, return_index=True)
    return unique, values[::-1][first_in_reversed]


# --------------------------------------------------------------------------------------------
# Prioritized sampler
# --------------------------------------------------------------------------------------------


class PrioritizedSampler:
    """Proportional prioritized sampling over integer slots [0, capacity).

    The tree holds p_i^α per slot; P(i) = p_i^α / Σ_j p_j^α. A slot whose tree value is 0 is
    never sampled — callers `clear` slots that are empty, incomplete or evicted.

    With `uniform=True` every valid slot holds 1 whatever priority it is given, so sampling is
    uniform over valid slots and all weights are 1: the "uniform replay" of DQN.

    Priorities given to `set_priorities` are floored at `min_priority` so a TD error of exactly
    0 cannot silently turn a valid slot into an invalid one.
    """

    def __init__(
        self,
        capacity: int,
        priority_exponent: float,
        uniform: bool = False,
        seed: int = 0,
        *,
        min_priority: float = 1e-6,
    ) -> None:
        if priority_exponent < 0:
            raise ValueError(f"priority_exponent must be >= 0, got {priority_exponent}")
        if not min_priority > 0:
            raise ValueError(f"min_priority must be > 0, got {min_priority}")
        self._tree = SumTree(capacity)
        self._exponent = float(priority_exponent)
        self._uniform = bool(uniform)
        self._min_priority = float(min_priority)
        self._max_priority = 1.0
        self._rng = np.random.default_rng(seed)

    @property
    def capacity(self) -> int:
        return self._tree.capacity

    @property
    def num_valid(self) -> int:
        """Number of slots with nonzero priority (the N of the IS weights)."""
        return self._tree.num_nonzero

    @property
    def max_priority(self) -> float:
        """Largest raw (pre-exponent) priority ever set; starts at 1."""
        return self._max_priority

    @property
    def nbytes(self) -> int:
        return self._tree.nbytes

    def set_priorities(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        """Sets raw priorities [B] (e.g. |TD error|) of slots [B]; the tree stores p^α."""
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(priorities)) or np.any(priorities < 0):
            raise ValueError("priorities must be finite and >= 0")
        priorities = np.maximum(priorities, self._min_priority)
        if priorities.size:
            self._max_priority = max(self._max_priority, float(priorities.max()))
        self._tree.set(slots, self._tree_values(priorities))

    def set_max_priority(self, slots: np.ndarray) -> None:
        """Gives slots [B] the largest priority seen so far (how new items enter)."""
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        priorities = np.full(slots.shape[0], self._max_priority)
        self._tree.set(slots, self._tree_values(priorities))

    def clear(self, slots: np.ndarray) -> None:
        """Makes slots [B] unsampleable."""
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        self._tree.set(slots, np.zeros(slots.shape[0]))

    def is_valid(self, slots: np.ndarray) -> np.ndarray:
        """slots [B] -> [B] bool, whether each slot can currently be sampled."""
        return self._tree.get(slots) > 0

    def valid_slots(self) -> np.ndarray:
        """All sampleable slots, ascending, [num_valid] int64 (O(capacity))."""
        return np.flatnonzero(self._tree.leaves()).astype(np.int64)

    def probabilities(self, slots: np.ndarray) -> np.ndarray:
        """Sampling probability P(i) of slots [B] -> [B] float64."""
        total = self._tree.total
        if not total > 0:
            return np.zeros(np.asarray(slots).reshape(-1).shape[0])
        return self._tree.get(slots) / total

    def sample(
        self, batch_size: int, importance_sampling_exponent: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draws `batch_size` slots; returns (slots [B] int64, weights [B] float32).

        Stratified proportional sampling: the total mass is cut into B equal segments and one
        uniform target is drawn in each. Weights are w_i = (N · P(i))^(-β), N = `num_valid`,
        divided by the largest w in THIS batch (the dqn_zoo convention, rather than the
        largest possible weight over the whole memory), so they lie in (0, 1]. After that
        normalisation N cancels out: w_i = (P(i) / min_batch P)^(-β).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        total = self._tree.total
        if self.num_valid == 0 or not total > 0:
            raise ValueError("cannot sample: no slot has a nonzero priority (replay is empty)")
        segment = total / batch_size
        targets = (np.arange(batch_size) + self._rng.random(batch_size)) * segment
        slots = self._tree.find_prefix_sum_index(targets)
        if self._uniform:
            return slots, np.ones(batch_size, dtype=np.float32)
        probabilities = self._tree.get(slots) / total
        weights = (self.num_valid * probabilities) ** (-float(importance_sampling_exponent))
        return slots, (weights / weights.max()).astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "tree_nodes": self._tree.state_dict()["nodes"],
            "max_priority": np.array(self._max_priority),
            "rng_state": _rng_state_to_array(self._rng),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._tree.load_state_dict({"nodes": state["tree_nodes"]})
        self._max_priority = float(state["max_priority"])
        _load_rng_state(self._rng, state["rng_state"])

    def _tree_values(self, priorities: np.ndarray) -> np.ndarray:
        if self._uniform:
            return np.ones_like(priorities)
        return priorities**self._exponent


_UINT64_MASK = (1 << 64) - 1


def _rng_state_to_array(rng: np.random.Generator) -> np.ndarray:
    """PCG64 generator state as a [6] uint64 array (its 128-bit ints split in halves)."""
    state = rng.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise TypeError(f"only PCG64 generators are supported, got {state['bit_generator']}")
    inner, increment = state["state"]["state"], state["state"]["inc"]
    words = [inner >> 64, inner & _UINT64_MASK, increment >> 64, increment & _UINT64_MASK]
    return np.array([*words, state["has_uint32"], state["uinteger"]], dtype=np.uint64)


def _load_rng_state(rng: np.random.Generator, words: np.ndarray) -> None:
    hi, lo, inc_hi, inc_lo, has_uint32, uinteger = (int(w) for w in np.asarray(words))
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (hi << 64) | lo, "inc": (inc_hi << 64) | inc_lo},
        "has_uint32": has_uint32,
        "uinteger": uinteger,
    }


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
    """

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

        if self._compress:
            self._frames: np.ndarray = np.full(self._num_slots, None, dtype=object)
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
            self._frames[slots] = newest
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
            return frames
        # Decode each distinct frame once (s_tm1 and s_t stacks overlap heavily) into one buffer
        # whose row 0 is the zero frame, so absent frames become a plain gather of row 0.
        needed, inverse = np.unique(frame_slots[present], return_inverse=True)
        zero_frame = bytes(int(np.prod(self._frame_shape)) * self._dtype.itemsize)
        raw = b"".join([zero_frame, *(snappy.decompress(self._frames[s]) for s in needed)])
        decoded = np.frombuffer(raw, dtype=self._dtype).reshape(-1, *self._frame_shape)
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
        self._accumulator.load_state_dict(_sub_state(state, "accumulator."))
        self._sampler.load_state_dict(_sub_state(state, "sampler."))

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


def _sub_state(state: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------------------------
# Sequence replay (R2D2, NGU, Agent57)
# --------------------------------------------------------------------------------------------
#
# Steps are numbered from 0 within an episode. Every chunk but an episode's last holds exactly
# C = gcd(burn_in, period, sequence_length) steps, so chunk i holds steps [i·C, i·C + C) and
# every window boundary (burn-in start, learning start, full learning end) is a chunk boundary.
# Sequence j of an episode learns on [j·period, j·period + sequence_length) and burns in on
# [j·period − burn_in, j·period) (nothing for j = 0). A frame is one `bytes` object from the
# chunk that carried it; sequences hold references, so a frame seen by ~3 overlapping sequences
# is stored once, and the recurrent state is stored only at chunk starts.
#
# What a step holds besides its frame is declared by the agent as a tuple of `Column`s (R2D2:
# action, reward, discount; NGU adds intrinsic reward, policy index and μ). Chunks and
# sequences keep their steps as one numpy structured array with a field per column, and every
# part below loops over the declared columns. The recurrent state is opaque: a flat float32
# vector that the network packs and unpacks, so a pair of LSTMs needs nothing from replay.


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
    frames: tuple[bytes, ...]  # [L] newest frame per step, compress_frame()'d or raw tobytes()
    steps: np.ndarray  # [L] structured (step_dtype): the declared columns of each step
    before: np.ndarray  # [] structured: the step before the first (zeros at an episode start)
    start_state: np.ndarray  # [S] float32: packed recurrent state consumed at the first step
    last: bool  # the episode ended at this chunk's final step


class ChunkBuilder:
    """Actor side, one per environment stream: cuts the stream into episode-aligned chunks.

    Frames are encoded here (snappy when `compress`) so that actors, not the learner, pay for
    compression and only compressed bytes cross the process boundary.
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

        frame: the newest frame (e.g. [84, 84] uint8) or a whole vector observation.
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
        return np.ascontiguousarray(frame).tobytes()

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
    """

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
        self._frame_bytes = int(np.prod(self._frame_shape)) * self._dtype.itemsize
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
        decoded = decoded.view(self._dtype).reshape(-1, *self._frame_shape)
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
        self._sampler.load_state_dict(_sub_state(dict(state), "sampler."))


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
