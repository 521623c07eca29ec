"""Proportional prioritized sampling (Schaul et al. 2016) over integer slots, shared by both
replays (replay.TransitionReplay, sequence_replay.SequenceReplay).

* `SumTree` — array-based binary sum tree; every method works on a batch of leaves.
* `PrioritizedSampler` — samples slots in proportion to priority^α and gives their
  importance-sampling weights; it knows nothing about what a slot holds. A slot with priority 0
  is never sampled: that is how empty, incomplete and evicted slots are excluded.
"""

from __future__ import annotations

import numpy as np

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
        return _checked_indices(indices, self._capacity)


class SlotSet:
    """The valid slots of a uniform sampler: the part of SumTree's interface that uniform
    sampling needs, in O(1) per slot instead of O(log capacity), with uniform draws by index.

    Every leaf is 1 (valid) or 0. Members are kept densely in `_members[:count]`, each slot's
    index there in `_position` (-1: not a member); removal swaps the last member into the gap.
    `state_dict` writes the SumTree of the same leaves, so a checkpoint is the same either way.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = int(capacity)
        self._members = np.zeros(capacity, dtype=np.int64)
        self._position = np.full(capacity, -1, dtype=np.int64)
        self._count = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def total(self) -> float:
        return float(self._count)

    @property
    def num_nonzero(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._members.nbytes + self._position.nbytes

    def get(self, indices: np.ndarray) -> np.ndarray:
        return (self._position[self._checked_indices(indices)] >= 0).astype(np.float64)

    def leaves(self) -> np.ndarray:
        return (self._position >= 0).astype(np.float64)

    def set(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Slots [B] with a value > 0 become members, with 0 stop being members (the last
        occurrence of a duplicate wins, as in SumTree.set)."""
        indices = self._checked_indices(indices)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape != indices.shape:
            raise ValueError(f"{indices.shape[0]} indices but {values.shape[0]} values")
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError("sum tree values must be finite and >= 0")
        if indices.size > 1:
            indices, values = _last_occurrence(indices, values)
        member = self._position[indices] >= 0
        for slot in indices[(values == 0) & member].tolist():
            self._remove(slot)
        added = indices[(values > 0) & ~member]
        end = self._count + added.shape[0]
        self._members[self._count : end] = added
        self._position[added] = np.arange(self._count, end)
        self._count = end

    def sample(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """batch_size members drawn uniformly, with replacement."""
        return self._members[rng.integers(0, self._count, batch_size)]

    def state_dict(self) -> dict[str, np.ndarray]:
        tree = SumTree(self._capacity)
        tree.set(self._members[: self._count], np.ones(self._count))
        return tree.state_dict()

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        tree = SumTree(self._capacity)
        tree.load_state_dict(state)
        self._position[:] = -1
        members = np.flatnonzero(tree.leaves() > 0)
        self._count = members.shape[0]
        self._members[: self._count] = members
        self._position[members] = np.arange(self._count)

    def _remove(self, slot: int) -> None:
        position, last = self._position[slot], self._members[self._count - 1]
        self._members[position] = last
        self._position[last] = position
        self._position[slot] = -1
        self._count -= 1

    def _checked_indices(self, indices: np.ndarray) -> np.ndarray:
        return _checked_indices(indices, self._capacity)


def _checked_indices(indices: np.ndarray, capacity: int) -> np.ndarray:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= capacity):
        raise IndexError(f"sum tree index out of range [0, {capacity})")
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
    uniform over valid slots (with replacement, not stratified) and all weights are 1: the
    "uniform replay" of DQN. It keeps a SlotSet instead of the tree.

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
        # Uniform sampling needs only the set of valid slots, not the sums.
        self._tree = SlotSet(capacity) if uniform else SumTree(capacity)
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
        if self._uniform:
            return self._tree.sample(self._rng, batch_size), np.ones(batch_size, np.float32)
        segment = total / batch_size
        targets = (np.arange(batch_size) + self._rng.random(batch_size)) * segment
        slots = self._tree.find_prefix_sum_index(targets)
        probabilities = self._tree.get(slots) / total
        weights = (self.num_valid * probabilities) ** (-float(importance_sampling_exponent))
        return slots, (weights / weights.max()).astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "tree_nodes": self._tree.state_dict()["nodes"],
            "max_priority": np.array(self._max_priority),
            "rng_state": rng_state_to_array(self._rng),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._tree.load_state_dict({"nodes": state["tree_nodes"]})
        self._max_priority = float(state["max_priority"])
        load_rng_state(self._rng, state["rng_state"])

    def _tree_values(self, priorities: np.ndarray) -> np.ndarray:
        if self._uniform:
            return np.ones_like(priorities)
        return priorities**self._exponent


_UINT64_MASK = (1 << 64) - 1


def rng_state_to_array(rng: np.random.Generator) -> np.ndarray:
    """PCG64 generator state as a [6] uint64 array (its 128-bit ints split in halves)."""
    state = rng.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise TypeError(f"only PCG64 generators are supported, got {state['bit_generator']}")
    inner, increment = state["state"]["state"], state["state"]["inc"]
    words = [inner >> 64, inner & _UINT64_MASK, increment >> 64, increment & _UINT64_MASK]
    return np.array([*words, state["has_uint32"], state["uinteger"]], dtype=np.uint64)


def load_rng_state(rng: np.random.Generator, words: np.ndarray) -> None:
    hi, lo, inc_hi, inc_lo, has_uint32, uinteger = (int(w) for w in np.asarray(words))
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (hi << 64) | lo, "inc": (inc_hi << 64) | inc_lo},
        "has_uint32": has_uint32,
        "uinteger": uinteger,
    }
