"""Small Gymnasium environments of our own, for tests of exploration.

Importing this module registers them with Gymnasium, so every agent can train on them by id:

    python -m agents.r2d2.run_atari --environment_name=toy_envs:SparseGridRoom-v0

(Gymnasium's ``module:EnvName-v0`` form imports ``toy_envs`` first, in actor processes too.)

``SparseGridRoom``: an open ``size x size`` room without inner walls. The agent starts in the
top-left corner; the only reward, +1, is for stepping onto the goal cell (by default the
bottom-right corner), which also ends the episode. The episode is truncated after ``horizon``
steps (default: twice the corner-to-corner path). The room's border is a wall: a move into it
leaves the agent where it is.

``SparseGridRoomDetour-v0`` (10 x 10) has an inner wall along row 1 from the left wall to
one cell short of the right one, and the goal just below it at (2, 0): the agent must walk
right along the top row, through the gap, and back left below the wall (20 steps; games cut at
60). In an open room every goal is reached by moves of two kinds only (right and down), and an
untrained network's greedy policy that prefers two moves everywhere, with ε-greedy noise,
walks such a path often enough to stumble on the reward; the detour needs both right and left,
so only a policy that learned where it is, or explores where it has not been, gets there.

``SparseGridRoomDeadly-v0`` (15 x 15) is the open room whose walls kill: a move into a wall
(the border or an inner wall) ends the game with no reward. Sliding along the walls into the
goal corner, which is how an untrained ε-greedy learner sometimes stumbles on the open room's
reward, then dies at the first bump, and so does almost every random walk; a novelty-seeking
agent learns to stop bumping, because a game that ends takes its intrinsic rewards with it.

With the defaults (15 x 15, 4 moves and a no-op, horizon 56 = 2 x 28) a uniformly random policy
reaches the goal in about 9 of a million episodes (exact value: ``python -m toy_envs``), so an
undirected ε-greedy learner essentially never sees the reward, while a directed explorer only
needs to walk the 28-step diagonal once in its 56 steps.

The deceptive tasks (``DECEPTIVE_TASKS``: a corridor, an open room and a detour, in one-hot and
coordinate encodings) add a distractor next to the start: stepping on it ends the game with 0.1,
while the goal, 11 to 16 steps away, is worth 1. An agent that exploits what it knows takes the
0.1 at once; only one that explores past it finds the goal, and only one that keeps what its
exploration found goes back there.

Run ``python -m toy_envs`` to print the random-walk success probability of a room, exactly
(dynamic programming over the grid) and by Monte Carlo on the environment's own dynamics.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

__all__ = [
    "DECEPTIVE_DETOURS",
    "DECEPTIVE_TASKS",
    "OBSERVATION_KINDS",
    "SparseGridRoom",
    "bumped",
    "deceptive_corridor",
    "deceptive_detour",
    "deceptive_room",
    "detour_room",
    "move",
    "random_walk_success_estimate",
    "random_walk_success_probability",
    "shortest_path_length",
    "wall_grid",
]

# (row, column) offsets of actions 0..4: up, right, down, left, no-op.
_ACTION_OFFSETS = np.array([[-1, 0], [0, 1], [1, 0], [0, -1], [0, 0]], dtype=np.int64)
OBSERVATION_KINDS = ("one_hot", "coordinates", "pixels")
_OBSERVATION_CELL_PIXELS = 4  # "pixels" observations: 15 x 15 cells -> 60 x 60 x 3
_RENDER_CELL_PIXELS = 16  # render(): big enough to watch in a video
# Distinct grey levels too (the pixel path converts to grayscale).
_FLOOR, _AGENT, _GOAL, _WALL = (40, 40, 40), (255, 255, 255), (0, 160, 0), (140, 90, 40)
_DISTRACTOR = (200, 200, 0)


def move(
    positions: np.ndarray, actions: np.ndarray, size: int, blocked: np.ndarray | None = None
) -> np.ndarray:
    """The room's dynamics: positions [..., 2] (row, column) and actions [...] -> new positions.

    A move into the border wall, or into a cell where `blocked` [size, size] is True, leaves the
    agent in place. Shared by the environment and the random-walk computations, so they measure
    exactly these dynamics.
    """
    moved = np.clip(positions + _ACTION_OFFSETS[actions], 0, size - 1)
    if blocked is None:
        return moved
    return np.where(blocked[moved[..., 0], moved[..., 1]][..., None], positions, moved)


def bumped(positions: np.ndarray, moved: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """[...] bool: the action was a move (not the no-op) and the agent stayed where it was,
    that is, it walked into a wall. positions and moved [..., 2]; actions [...]."""
    stayed = (positions == moved).all(axis=-1)
    return stayed & _ACTION_OFFSETS[actions].any(axis=-1)


def wall_grid(size: int, walls: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """bool [size, size], True at each inner wall cell (row, column)."""
    blocked = np.zeros((size, size), dtype=bool)
    for row, column in walls:
        if not (0 <= row < size and 0 <= column < size):
            raise ValueError(f"wall cell {(row, column)} is outside the {size}x{size} room")
        blocked[row, column] = True
    return blocked


def shortest_path_length(
    size: int, goal: Sequence[int] | None = None, walls: Sequence[Sequence[int]] = ()
) -> int:
    """Steps from the top-left corner to `goal` (default: the opposite corner), around the
    walls (breadth-first search). Raises ValueError when the walls cut the goal off."""
    target, blocked = _goal_cell(size, goal), wall_grid(size, walls)
    distance = {(0, 0): 0}
    frontier = collections.deque([(0, 0)])
    while frontier:
        cell = frontier.popleft()
        if cell == target:
            return distance[cell]
        # The four moves, through the room's own dynamics (a blocked move stays: seen).
        for row, column in move(np.array(cell), np.arange(4), size, blocked).tolist():
            if (row, column) not in distance:
                distance[(row, column)] = distance[cell] + 1
                frontier.append((row, column))
    raise ValueError(f"the walls cut the goal {target} off from the start (0, 0)")


def detour_room(size: int = 10, horizon: int | None = 60, **kwargs: Any) -> SparseGridRoom:
    """SparseGridRoomDetour-v0: a wall along row 1 from the left wall to one cell short of the
    right one, the goal at (2, 0) just below it (see the module docstring)."""
    if size < 3:
        raise ValueError(f"a detour room needs size >= 3, got {size}")
    walls = tuple((1, column) for column in range(size - 1))
    return SparseGridRoom(size=size, horizon=horizon, goal=(2, 0), walls=walls, **kwargs)


def deceptive_corridor(length: int = 12, **kwargs: Any) -> SparseGridRoom:
    """A corridor along row 0 of a length x length grid, every other cell a wall but (1, 0),
    the distractor's pocket just below the start; the goal at the far end (0, length - 1)."""
    if length < 3:
        raise ValueError(f"a deceptive corridor needs length >= 3, got {length}")
    walls = [(r, c) for r in range(1, length) for c in range(length) if (r, c) != (1, 0)]
    return _deceptive(length, goal=(0, length - 1), walls=walls, distractor=(1, 0), **kwargs)


def deceptive_room(size: int = 9, **kwargs: Any) -> SparseGridRoom:
    """An open size x size room: the distractor right of the start, the goal in the far
    corner."""
    return _deceptive(size, goal=(size - 1, size - 1), walls=(), distractor=(0, 1), **kwargs)


def deceptive_detour(size: int = 7, wall_row: int = 1, **kwargs: Any) -> SparseGridRoom:
    """A wall along row `wall_row` from column 1 to one short of the right wall; the
    distractor at (1, 0), just below the start, and the goal right below the wall's left end at
    (wall_row + 1, 0): the far reward is reached by walking right above the wall, through the
    gap, and back below it."""
    if not 1 <= wall_row <= size - 2:
        raise ValueError(f"a {size}x{size} detour needs 1 <= wall_row <= {size - 2}: {wall_row}")
    walls = [(wall_row, c) for c in range(1, size - 1)]
    return _deceptive(size, goal=(wall_row + 1, 0), walls=walls, distractor=(1, 0), **kwargs)


def _deceptive(size: int, goal, walls, distractor, horizon: int | None = None, **kwargs: Any):
    path = shortest_path_length(size, goal, [*walls, distractor])  # Not through it: it ends games.
    horizon = 2 * path if horizon is None else horizon
    return SparseGridRoom(
        size=size, horizon=horizon, goal=goal, walls=walls, distractor=distractor, **kwargs
    )


# The deceptive-task family (issue 16), fixed before any agent ran on it: id -> (builder,
# keyword arguments). A distractor worth 0.1 next to the start ends the game; the goal, worth
# 1, is 11 to 16 steps away. Layouts (corridor, open room, detour) and observation encodings
# (one-hot cells, coordinates) vary.
DECEPTIVE_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "DeceptiveCorridor-v0": ("deceptive_corridor", {}),
    "DeceptiveCorridorCoordinates-v0": ("deceptive_corridor", {"observation": "coordinates"}),
    "DeceptiveRoom-v0": ("deceptive_room", {}),
    "DeceptiveRoomCoordinates-v0": ("deceptive_room", {"observation": "coordinates"}),
    "DeceptiveDetour-v0": ("deceptive_detour", {}),
}

# A declared extension (2026-12-04), fixed before any agent ran on it and after the family
# above had shown that its detour is the task that deceives R2D2 on every seed: detours of other
# lengths (12 and 16 steps), another layout (two rows above the wall) and the coordinate
# encoding. docs/results.md ("Deceptive tasks") has the declaration and every seed.
DECEPTIVE_DETOURS: dict[str, tuple[str, dict[str, Any]]] = {
    "DeceptiveDetourShort-v0": ("deceptive_detour", {"size": 6}),
    "DeceptiveDetourLong-v0": ("deceptive_detour", {"size": 8}),
    "DeceptiveDetourCoordinates-v0": ("deceptive_detour", {"observation": "coordinates"}),
    "DeceptiveDetourTwoRows-v0": ("deceptive_detour", {"wall_row": 2}),
}


def _distractor_cell(size: int, cell: Sequence[int]) -> tuple[int, int]:
    row, column = (int(c) for c in cell)
    if not (0 <= row < size and 0 <= column < size) or (row, column) == (0, 0):
        raise ValueError(
            f"distractor must be a cell of the {size}x{size} room other than the start "
            f"(0, 0), got {tuple(cell)}"
        )
    return row, column


def _goal_cell(size: int, goal: Sequence[int] | None) -> tuple[int, int]:
    """The goal's (row, column): the far corner by default; checked to lie in the room."""
    if goal is None:
        return size - 1, size - 1
    row, column = (int(g) for g in goal)
    if not (0 <= row < size and 0 <= column < size) or (row, column) == (0, 0):
        raise ValueError(
            f"goal must be a cell of the {size}x{size} room other than the start "
            f"(0, 0), got {tuple(goal)}"
        )
    return row, column


class SparseGridRoom(gym.Env):
    """A grid room with a single sparse reward, in the far corner by default (see the module
    docstring).

    Args:
        size: the room is size x size cells (>= 2).
        horizon: steps before truncation; None means twice the corner-to-corner path
            (whatever the goal).
        goal: the (row, column) of the rewarding cell; None means the bottom-right corner.
            Not the start cell.
        walls: (row, column) cells the agent cannot enter (none by default).
        observation: what the agent sees (the kind decides the torso: vectors get an MLP,
            pixels the conv net):

            * ``"one_hot"`` (default): float32 [size * size], 1 at the agent's cell. Every cell
              is its own input direction, so nothing is known about unvisited cells: an
              untrained network's greedy action is unrelated from cell to cell (no accidental
              "always down-right" flow toward the goal), RND's prediction error falls only
              where the agent has been (a per-cell visit count), and an inverse-dynamics
              embedding must learn from transitions where each cell lies relative to its
              neighbours. Episodic novelty on that embedding is then a count of the cells
              visited this episode, with a kernel that also credits nearby cells.
            * ``"coordinates"``: float32 [2], (row, column) / (size - 1) in [0, 1]. Smooth: any
              network generalises between neighbouring cells from the start, which makes
              novelty weaker (RND generalises to unvisited cells) and lets a random network
              drift toward a corner.
            * ``"pixels"``: uint8 [4 size, 4 size, 3] top-down image (agent white, goal green),
              for the image path (grayscale, resized to 84 x 84, stacked).
        noop: add a fifth action that stays in place. It slows a random walk further (4/5 of
            the steps move) at no cost to a directed agent.
        slip_probability: each step's action is replaced by a uniformly random one with this
            probability (seeded by ``reset(seed=...)``); 0 makes the dynamics deterministic.
        scrambled_controls: each cell maps the actions to its own fixed permutation of the moves
            (as bsuite's Deep Sea randomises "left" per cell). Without it, a policy that merely
            prefers "right" then "down" everywhere (an untrained network's shared biases do)
            slides along the walls into the goal corner; scrambled, such a preference walks a
            fixed arbitrary path that soon cycles, and only per-cell learning or directed
            exploration crosses the room. A uniformly random walk is unchanged.
        layout_seed: the seed of the scrambled controls (the same room for every environment).
        deadly_walls: a move into a wall (border or inner) terminates the game with reward 0,
            instead of leaving the agent in place. The no-op stays safe.
        distractor: a (row, column) cell that ends the game with `distractor_reward`: the
            deceptive tasks put it next to the start (see DECEPTIVE_TASKS).
        distractor_reward, goal_reward: the rewards of the two terminal cells.
        render_mode: None or ``"rgb_array"`` (16 pixels per cell).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        size: int = 15,
        horizon: int | None = None,
        goal: tuple[int, int] | None = None,
        walls: Sequence[Sequence[int]] = (),
        observation: str = "one_hot",
        noop: bool = True,
        slip_probability: float = 0.0,
        scrambled_controls: bool = False,
        layout_seed: int = 0,
        deadly_walls: bool = False,
        distractor: tuple[int, int] | None = None,
        distractor_reward: float = 0.1,
        goal_reward: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if size < 2:
            raise ValueError(f"size must be at least 2, got {size}")
        if observation not in OBSERVATION_KINDS:
            raise ValueError(f"observation must be one of {OBSERVATION_KINDS}, got {observation!r}")
        if not 0.0 <= slip_probability <= 1.0:
            raise ValueError(f"slip_probability must be in [0, 1], got {slip_probability}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size = int(size)
        self.horizon = 2 * shortest_path_length(size) if horizon is None else int(horizon)
        if self.horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {self.horizon}")
        self.observation_kind = observation
        self.slip_probability = float(slip_probability)
        self.deadly_walls = bool(deadly_walls)
        self.render_mode = render_mode
        self.start = np.array([0, 0], dtype=np.int64)
        self.goal = np.array(_goal_cell(size, goal), dtype=np.int64)
        self.blocked = wall_grid(size, walls)
        if self.blocked[0, 0] or self.blocked[tuple(self.goal)]:
            raise ValueError("a wall may not cover the start (0, 0) or the goal")
        self.distractor = None if distractor is None else _distractor_cell(size, distractor)
        if self.distractor is not None and (
            self.blocked[self.distractor] or self.distractor == tuple(self.goal)
        ):
            raise ValueError("the distractor must be a free cell other than the goal")
        self.distractor_reward, self.goal_reward = float(distractor_reward), float(goal_reward)
        self.walls = tuple((int(r), int(c)) for r, c in walls)
        shortest_path_length(size, tuple(self.goal), self.walls)  # the goal is reachable
        self.action_space = gym.spaces.Discrete(5 if noop else 4)
        num_actions = int(self.action_space.n)
        # controls[row, column, action] = the move that action makes in that cell.
        self.controls = np.broadcast_to(np.arange(num_actions), (size, size, num_actions))
        if scrambled_controls:
            self.controls = np.random.default_rng(layout_seed).permuted(self.controls, axis=-1)
        self.observation_space = self._observation_space()
        self._position = self.start.copy()
        self._steps = 0

    def _observation_space(self) -> gym.spaces.Box:
        if self.observation_kind == "one_hot":
            return gym.spaces.Box(0.0, 1.0, (self.size * self.size,), np.float32)
        if self.observation_kind == "coordinates":
            return gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        side = self.size * _OBSERVATION_CELL_PIXELS
        return gym.spaces.Box(0, 255, (side, side, 3), np.uint8)

    @property
    def position(self) -> tuple[int, int]:
        """The agent's (row, column)."""
        return int(self._position[0]), int(self._position[1])

    def _observe(self) -> np.ndarray:
        if self.observation_kind == "one_hot":
            one_hot = np.zeros(self.size * self.size, dtype=np.float32)
            one_hot[self._position[0] * self.size + self._position[1]] = 1.0
            return one_hot
        if self.observation_kind == "coordinates":
            return (self._position / (self.size - 1)).astype(np.float32)
        return self._draw(_OBSERVATION_CELL_PIXELS)

    def _draw(self, cell_pixels: int) -> np.ndarray:
        """Top-down RGB image [size * cell_pixels, size * cell_pixels, 3] uint8."""
        cells = np.empty((self.size, self.size, 3), dtype=np.uint8)
        cells[:] = _FLOOR
        cells[self.blocked] = _WALL
        cells[tuple(self.goal)] = _GOAL
        if self.distractor is not None:
            cells[self.distractor] = _DISTRACTOR
        cells[tuple(self._position)] = _AGENT  # Drawn last: visible on the goal too.
        return np.repeat(np.repeat(cells, cell_pixels, axis=0), cell_pixels, axis=1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = self.start.copy()
        self._steps = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        if self.slip_probability > 0 and self.np_random.random() < self.slip_probability:
            action = int(self.np_random.integers(self.action_space.n))
        row, column = self._position
        direction = self.controls[row, column, action]
        before = self._position
        self._position = move(before, direction, self.size, self.blocked)
        self._steps += 1
        reached = bool(np.array_equal(self._position, self.goal))
        distracted = self.distractor is not None and self.position == self.distractor
        died = self.deadly_walls and bool(bumped(before, self._position, direction))
        terminated = reached or distracted or died
        truncated = not terminated and self._steps >= self.horizon
        reward = self.goal_reward if reached else self.distractor_reward if distracted else 0.0
        return self._observe(), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._draw(_RENDER_CELL_PIXELS)


def _register() -> None:
    variants = {
        "SparseGridRoom-v0": {},
        "SparseGridRoomCoordinates-v0": {"observation": "coordinates"},
        "SparseGridRoomPixels-v0": {"observation": "pixels"},
        "SparseGridRoomScrambled-v0": {"scrambled_controls": True},
        "SparseGridRoomDeadly-v0": {"deadly_walls": True},
    }
    for env_id, kwargs in variants.items():
        if env_id not in gym.registry:  # `python -m toy_envs` imports the module twice.
            gym.register(id=env_id, entry_point="toy_envs:SparseGridRoom", kwargs=kwargs)
    if "SparseGridRoomDetour-v0" not in gym.registry:
        gym.register(id="SparseGridRoomDetour-v0", entry_point="toy_envs:detour_room")
    for env_id, (builder, kwargs) in (DECEPTIVE_TASKS | DECEPTIVE_DETOURS).items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"toy_envs:{builder}", kwargs=kwargs)


_register()


# --------------------------------------------------------------------------------------
# How often does a uniformly random policy reach the goal?
# --------------------------------------------------------------------------------------


def random_walk_success_probability(
    size: int,
    horizon: int,
    num_actions: int = 5,
    goal: Sequence[int] | None = None,
    walls: Sequence[Sequence[int]] = (),
    deadly_walls: bool = False,
    distractor: Sequence[int] | None = None,
) -> float:
    """Exact probability that uniformly random actions reach `goal` (default: the far corner)
    within `horizon`.

    Propagates the distribution over cells one step at a time and removes (counts) the mass
    that lands on the goal, which is absorbing. With `deadly_walls` the mass that walks into
    a wall is removed too (those games are over), and not counted.
    """
    goal, blocked = _goal_cell(size, goal), wall_grid(size, walls)
    occupancy = np.zeros((size, size))
    occupancy[0, 0] = 1.0
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    cells = np.stack([rows, cols], axis=-1)
    reached = 0.0
    for _ in range(horizon):
        following = np.zeros_like(occupancy)
        for action in range(num_actions):
            actions = np.full(cells.shape[:2], action)
            target = move(cells, actions, size, blocked)
            alive = ~bumped(cells, target, actions) if deadly_walls else True
            mass = np.where(alive, occupancy / num_actions, 0.0)
            np.add.at(following, (target[..., 0], target[..., 1]), mass)
        reached += following[goal]
        following[goal] = 0.0
        if distractor is not None:  # Those games are over, without the goal.
            following[tuple(distractor)] = 0.0
        occupancy = following
    return float(reached)


def random_walk_success_estimate(
    size: int,
    horizon: int,
    num_actions: int,
    num_episodes: int,
    seed: int,
    goal: Sequence[int] | None = None,
    walls: Sequence[Sequence[int]] = (),
    deadly_walls: bool = False,
    distractor: Sequence[int] | None = None,
) -> tuple[int, float]:
    """Monte Carlo: (episodes that reached the goal, their fraction), all walks in parallel."""
    rng = np.random.default_rng(seed)
    positions = np.zeros((num_episodes, 2), dtype=np.int64)
    reached = np.zeros(num_episodes, dtype=bool)
    dead = np.zeros(num_episodes, dtype=bool)
    goal, blocked = np.array(_goal_cell(size, goal)), wall_grid(size, walls)
    for _ in range(horizon):
        actions = rng.integers(num_actions, size=num_episodes)
        moved = move(positions, actions, size, blocked)
        if deadly_walls:
            dead |= ~reached & bumped(positions, moved, actions)
        over = reached | dead  # Episodes that terminated stay frozen.
        positions = np.where(over[:, None], positions, moved)
        reached |= ~over & (positions == goal).all(axis=1)
        if distractor is not None:
            dead |= ~reached & (positions == np.asarray(distractor)).all(axis=1)
    hits = int(reached.sum())
    return hits, hits / num_episodes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m toy_envs", description="Random-walk success probability of SparseGridRoom."
    )
    parser.add_argument(
        "--env", default="SparseGridRoom-v0", help="a registered room, e.g. SparseGridRoomDetour-v0"
    )
    parser.add_argument("--size", type=int, default=None, help="room side in cells")
    parser.add_argument("--horizon", type=int, default=None, help="steps before truncation")
    parser.add_argument("--goal", type=int, nargs=2, default=None, help="goal row and column")
    parser.add_argument("--no_noop", action="store_true", help="4 actions instead of 5")
    parser.add_argument("--episodes", type=int, default=20_000, help="Monte Carlo episodes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    overrides = {"size": args.size, "horizon": args.horizon, "goal": args.goal}
    try:
        room = gym.make(
            args.env, noop=not args.no_noop, **{k: v for k, v in overrides.items() if v is not None}
        ).unwrapped
    except (gym.error.Error, TypeError, ValueError) as error:
        parser.error(f"cannot make {args.env}: {error}")
    layout = {
        "goal": tuple(int(g) for g in room.goal),
        "walls": room.walls,
        "deadly_walls": room.deadly_walls,
        "distractor": room.distractor,
    }
    num_actions = int(room.action_space.n)
    exact = random_walk_success_probability(room.size, room.horizon, num_actions, **layout)
    hits, fraction = random_walk_success_estimate(
        room.size, room.horizon, num_actions, args.episodes, args.seed, **layout
    )
    ends = [room.distractor] if room.distractor is not None else []
    shortest = shortest_path_length(room.size, layout["goal"], [*room.walls, *ends])
    print(
        f"{args.env}: {room.size}x{room.size} room, {len(room.walls)} wall cells"
        f"{' (deadly)' if room.deadly_walls else ''}, goal {layout['goal']}, {num_actions} "
        f"actions, horizon {room.horizon} (shortest path {shortest}): a random walk reaches "
        f"the goal with probability {exact:.3g} (exact); Monte Carlo "
        f"{hits}/{args.episodes} = {fraction:.3g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
