"""Tests for toy_envs.SparseGridRoom: registration, walls, the sparse reward, termination,
truncation at the horizon, observations, seeding, and the random-walk success probability."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import toy_envs
from toy_envs import SparseGridRoom

UP, RIGHT, DOWN, LEFT, NOOP = range(5)


def _walk(env: SparseGridRoom, actions: list[int]) -> list[tuple]:
    """(position, reward, terminated, truncated) after each action."""
    out = []
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        out.append((env.position, reward, terminated, truncated))
    return out


def test_registered_ids_make_the_room_through_the_module_prefix():
    env = gym.make("toy_envs:SparseGridRoom-v0")
    assert env.action_space == gym.spaces.Discrete(5)
    assert env.observation_space.shape == (15 * 15,)
    assert env.unwrapped.horizon == 56
    coordinates = gym.make("toy_envs:SparseGridRoomCoordinates-v0", size=7)
    assert coordinates.observation_space.shape == (2,)
    pixels = gym.make("toy_envs:SparseGridRoomPixels-v0")
    assert pixels.observation_space.shape == (60, 60, 3)
    assert pixels.observation_space.dtype == np.uint8


def test_each_action_moves_one_cell_and_walls_block():
    env = SparseGridRoom(size=4)
    env.reset(seed=0)
    assert env.position == (0, 0)
    # Up and left from the top-left corner run into the wall; no-op stays.
    assert [p for p, *_ in _walk(env, [UP, LEFT, NOOP])] == [(0, 0)] * 3
    assert [p for p, *_ in _walk(env, [RIGHT, DOWN, LEFT, UP])] == [(0, 1), (1, 1), (1, 0), (0, 0)]
    # Along the right wall: further right is blocked.
    assert [p for p, *_ in _walk(env, [RIGHT] * 4)] == [(0, 1), (0, 2), (0, 3), (0, 3)]


def test_only_the_far_corner_rewards_and_terminates():
    env = SparseGridRoom(size=5, horizon=100)
    env.reset(seed=0)
    path = [RIGHT] * 4 + [DOWN] * 3
    steps = _walk(env, path)
    assert all(reward == 0.0 and not term and not trunc for _, reward, term, trunc in steps)
    assert steps[-1][0] == (3, 4)
    position, reward, terminated, truncated = _walk(env, [DOWN])[0]
    assert position == (4, 4) and reward == 1.0 and terminated and not truncated
    # The shortest path is 2 (size - 1) steps.
    assert len(path) + 1 == toy_envs.shortest_path_length(5)


def test_truncates_exactly_at_the_horizon_and_reset_restarts():
    env = SparseGridRoom(size=5, horizon=6)
    env.reset(seed=0)
    steps = _walk(env, [NOOP] * 6)
    assert [trunc for *_, trunc in steps] == [False] * 5 + [True]
    assert not any(term for _, _, term, _ in steps)
    assert all(reward == 0.0 for _, reward, _, _ in steps)
    env.reset()
    assert env.position == (0, 0)
    assert not _walk(env, [RIGHT])[0][3]  # The step counter restarted.


def test_reaching_the_goal_on_the_last_step_is_termination_not_truncation():
    env = SparseGridRoom(size=3, horizon=4)
    env.reset(seed=0)
    *_, last = _walk(env, [RIGHT, RIGHT, DOWN, DOWN])
    assert last == ((2, 2), 1.0, True, False)


def test_default_horizon_is_twice_the_shortest_path():
    assert SparseGridRoom(size=15).horizon == 56
    assert SparseGridRoom(size=6).horizon == 20
    assert SparseGridRoom(size=6, horizon=9).horizon == 9


def test_observations_locate_the_agent():
    one_hot = SparseGridRoom(size=4, observation="one_hot")
    observation, _ = one_hot.reset(seed=0)
    observation, *_ = one_hot.step(DOWN)  # (1, 0)
    assert observation.dtype == np.float32 and observation.shape == (16,)
    assert np.flatnonzero(observation).tolist() == [4] and observation.sum() == 1.0

    coordinates = SparseGridRoom(size=5, observation="coordinates")
    coordinates.reset(seed=0)
    observation, *_ = coordinates.step(RIGHT)  # (0, 1)
    np.testing.assert_allclose(observation, [0.0, 0.25])

    pixels = SparseGridRoom(size=5, observation="pixels")
    pixels.reset(seed=0)
    image, *_ = pixels.step(RIGHT)
    assert image.shape == (20, 20, 3) and image.dtype == np.uint8
    assert pixels.observation_space.contains(image)
    assert (image[0:4, 4:8] == 255).all()  # The agent's cell is white.
    assert (image[16:, 16:] == [0, 160, 0]).all()  # The goal's cell is green.
    assert (image[0:4, 0:4] == 40).all()  # The cell it left is floor again.


def test_render_gives_a_bigger_rgb_frame():
    env = SparseGridRoom(size=5, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (80, 80, 3) and frame.dtype == np.uint8
    assert SparseGridRoom(size=5).render() is None


def _slippery_trajectory(seed: int) -> list[tuple[int, int]]:
    env = SparseGridRoom(size=9, horizon=200, slip_probability=0.5)
    env.reset(seed=seed)
    return [p for p, *_ in _walk(env, [RIGHT, DOWN] * 30)]


def test_seeded_slips_are_reproducible_and_differ_between_seeds():
    assert _slippery_trajectory(3) == _slippery_trajectory(3)
    assert _slippery_trajectory(3) != _slippery_trajectory(4)
    # Without slips the dynamics ignore the seed.
    env = SparseGridRoom(size=9)
    env.reset(seed=1)
    first = [p for p, *_ in _walk(env, [RIGHT, DOWN] * 5)]
    env.reset(seed=2)
    assert [p for p, *_ in _walk(env, [RIGHT, DOWN] * 5)] == first == [
        (0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 4), (4, 4), (4, 5), (5, 5)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 1}, {"horizon": 0}, {"observation": "rgb"}, {"slip_probability": 1.5}],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        SparseGridRoom(**kwargs)


def test_invalid_action_raises():
    env = SparseGridRoom(size=3, noop=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(NOOP)


# --------------------------------------------------------------------------------------
# Random-walk success probability
# --------------------------------------------------------------------------------------


def test_exact_probability_by_hand_on_a_two_by_two_room():
    # From (0, 0) the goal (1, 1) needs right-then-down or down-then-right.
    assert toy_envs.random_walk_success_probability(2, 1, 5) == 0.0
    assert toy_envs.random_walk_success_probability(2, 2, 5) == pytest.approx(2 / 25)
    assert toy_envs.random_walk_success_probability(2, 2, 4) == pytest.approx(2 / 16)


def test_exact_probability_matches_random_play_in_the_environment():
    size, horizon, episodes = 4, 20, 3000
    env = SparseGridRoom(size=size, horizon=horizon)
    rng = np.random.default_rng(0)
    successes = 0
    for _ in range(episodes):
        env.reset()
        terminated = truncated = False
        while not (terminated or truncated):
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(5)))
        successes += reward == 1.0
    exact = toy_envs.random_walk_success_probability(size, horizon, 5)
    standard_error = np.sqrt(exact * (1 - exact) / episodes)
    assert 0.05 < exact < 0.95
    assert abs(successes / episodes - exact) < 4 * standard_error


def test_vectorised_estimate_matches_the_exact_probability():
    exact = toy_envs.random_walk_success_probability(5, 16, 5)
    hits, fraction = toy_envs.random_walk_success_estimate(5, 16, 5, 50_000, seed=1)
    assert hits == round(fraction * 50_000)
    assert abs(fraction - exact) < 4 * np.sqrt(exact * (1 - exact) / 50_000)


def test_default_room_is_out_of_reach_of_a_random_walk():
    env = SparseGridRoom()
    exact = toy_envs.random_walk_success_probability(env.size, env.horizon, env.action_space.n)
    assert exact < 2e-5
    assert toy_envs.shortest_path_length(env.size) <= env.horizon // 2


def test_scrambled_controls_permute_the_moves_per_cell_and_fix_them_by_layout_seed():
    env = gym.make("toy_envs:SparseGridRoomScrambled-v0").unwrapped
    controls = env.controls
    # Every cell maps the 5 actions to the 5 moves, one each.
    assert (np.sort(controls, axis=-1) == np.arange(5)).all()
    # Not one shared mapping: the cells disagree (a fixed "right" no longer drifts).
    assert len({tuple(c) for c in controls.reshape(-1, 5)}) > 50
    assert (controls == SparseGridRoom(scrambled_controls=True).controls).all()
    assert not (controls == SparseGridRoom(scrambled_controls=True, layout_seed=1).controls).all()
    env.reset(seed=0)
    for action in range(5):  # from (0, 0), each action makes the move its cell maps it to
        env.reset(seed=0)
        expected = toy_envs.move(np.zeros(2, np.int64), np.asarray(controls[0, 0, action]), 15)
        env.step(action)
        assert env.position == tuple(expected)
    assert (SparseGridRoom().controls == np.arange(5)).all()  # plain room: identity


def test_detour_room_needs_both_right_and_left_and_walls_block():
    env = gym.make("toy_envs:SparseGridRoomDetour-v0").unwrapped
    assert (env.size, env.horizon, tuple(env.goal)) == (10, 60, (2, 0))
    assert env.walls == tuple((1, column) for column in range(9))
    env.reset(seed=0)
    # Straight down from the start runs into the wall; so does down anywhere along it.
    assert [p for p, *_ in _walk(env, [DOWN, RIGHT, DOWN])] == [(0, 0), (0, 1), (0, 1)]
    # Right and down only (any path an untrained two-move preference walks) never rewards.
    env.reset(seed=0)
    steps = _walk(env, [RIGHT] * 9 + [DOWN] * 9)
    assert steps[-1][0] == (9, 9) and all(reward == 0.0 for _, reward, *_ in steps)
    env.reset(seed=0)
    *_, last = _walk(env, [RIGHT] * 9 + [DOWN] * 2 + [LEFT] * 9)
    assert last == ((2, 0), 1.0, True, False)
    assert toy_envs.shortest_path_length(10, (2, 0), env.walls) == 20
    pixels = gym.make("toy_envs:SparseGridRoomDetour-v0", observation="pixels").unwrapped
    pixels.reset(seed=0)
    image = pixels._draw(1)
    assert (image[1, 0] != image[0, 5]).any() and (image[1, 0] == image[1, 8]).all()


def test_walls_that_cut_off_the_goal_or_cover_it_are_refused():
    with pytest.raises(ValueError, match="cut the goal"):
        SparseGridRoom(size=5, walls=[(1, c) for c in range(5)])
    with pytest.raises(ValueError, match="start"):
        SparseGridRoom(size=5, walls=[(0, 0)])
    with pytest.raises(ValueError, match="outside"):
        SparseGridRoom(size=5, walls=[(5, 1)])


def test_goal_outside_the_room_or_on_the_start_is_refused():
    for goal in [(15, 3), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="goal must be a cell"):
            SparseGridRoom(size=15, goal=goal)


def test_exact_probability_with_an_interior_goal_by_hand_and_by_play():
    # 3 x 3 room, goal (1, 1): right-then-down or down-then-right, nothing shorter.
    assert toy_envs.random_walk_success_probability(3, 2, 5, goal=(1, 1)) == pytest.approx(2 / 25)
    exact = toy_envs.random_walk_success_probability(5, 10, 5, goal=(2, 2))
    _, fraction = toy_envs.random_walk_success_estimate(5, 10, 5, 50_000, seed=2, goal=(2, 2))
    assert 0.05 < exact < 0.95
    assert abs(fraction - exact) < 4 * np.sqrt(exact * (1 - exact) / 50_000)


def test_exact_probability_around_walls_matches_the_monte_carlo_estimate():
    walls = [(1, 0), (1, 1), (1, 2)]
    exact = toy_envs.random_walk_success_probability(4, 60, 5, goal=(2, 0), walls=walls)
    _, fraction = toy_envs.random_walk_success_estimate(4, 60, 5, 50_000, 3, (2, 0), walls)
    assert 0.05 < exact < 0.95
    assert abs(fraction - exact) < 4 * np.sqrt(exact * (1 - exact) / 50_000)
    # Without the wall the same goal is far likelier: the wall is a real detour.
    assert toy_envs.random_walk_success_probability(4, 60, 5, goal=(2, 0)) > exact + 0.5
    # The detour room: a random walk gets there in about 3 of 100,000 games.
    room = toy_envs.detour_room()
    probability = toy_envs.random_walk_success_probability(
        room.size, room.horizon, 5, tuple(room.goal), room.walls
    )
    assert 1e-5 < probability < 5e-5
    small = gym.make("toy_envs:SparseGridRoomDetour-v0", size=8, horizon=40).unwrapped
    assert small.walls == tuple((1, column) for column in range(7))
    assert toy_envs.random_walk_success_probability(8, 40, 5, (2, 0), small.walls) == pytest.approx(
        3.86e-5, rel=0.01
    )


def test_deadly_walls_end_the_game_at_the_first_bump_and_the_no_op_is_safe():
    env = gym.make("toy_envs:SparseGridRoomDeadly-v0", size=4, horizon=20).unwrapped
    env.reset(seed=0)
    # Along the top wall and standing still are safe; pushing into the wall is not.
    steps = _walk(env, [RIGHT, RIGHT, NOOP, RIGHT])
    assert [s[0] for s in steps] == [(0, 1), (0, 2), (0, 2), (0, 3)]
    assert not any(term or trunc for _, _, term, trunc in steps)
    assert _walk(env, [RIGHT]) == [((0, 3), 0.0, True, False)]
    # An inner wall kills as well; the goal still rewards.
    inner = SparseGridRoom(size=4, walls=[(1, 0)], deadly_walls=True)
    inner.reset(seed=0)
    assert _walk(inner, [DOWN]) == [((0, 0), 0.0, True, False)]
    inner.reset(seed=0)
    assert _walk(inner, [RIGHT] * 3 + [DOWN] * 3)[-1] == ((3, 3), 1.0, True, False)
    # The same bump in an ordinary room just stays put.
    assert _walk(SparseGridRoom(size=4), [UP]) == [((0, 0), 0.0, False, False)]


def test_exact_probability_with_deadly_walls_by_hand_and_by_play():
    # 2 x 2 room, horizon 3 (worked by hand): the games that bump into a wall end, so
    # 14/125 of random walks reach (1, 1), against 22/125 when a bump just stays put.
    assert toy_envs.random_walk_success_probability(2, 3, 5) == pytest.approx(22 / 125)
    assert toy_envs.random_walk_success_probability(2, 3, 5, deadly_walls=True) == pytest.approx(
        14 / 125
    )
    size, horizon, episodes = 4, 12, 20_000
    exact = toy_envs.random_walk_success_probability(size, horizon, 5, deadly_walls=True)
    _, fraction = toy_envs.random_walk_success_estimate(
        size, horizon, 5, episodes, seed=4, deadly_walls=True
    )
    assert 0.01 < exact < 0.95
    assert abs(fraction - exact) < 4 * np.sqrt(exact * (1 - exact) / episodes)
    # Random play in the environment itself dies and succeeds at the same rates.
    env = SparseGridRoom(size=size, horizon=horizon, deadly_walls=True)
    rng, successes = np.random.default_rng(5), 0
    for _ in range(episodes // 4):
        env.reset()
        terminated = truncated = False
        while not (terminated or truncated):
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(5)))
        successes += reward == 1.0
    played = episodes // 4
    assert abs(successes / played - exact) < 4 * np.sqrt(exact * (1 - exact) / played)
    # The 15 x 15 deadly room is further out of a random walk's reach than the open one.
    deadly = gym.make("toy_envs:SparseGridRoomDeadly-v0").unwrapped
    assert toy_envs.random_walk_success_probability(
        15, deadly.horizon, 5, deadly_walls=True
    ) < 0.2 * toy_envs.random_walk_success_probability(15, deadly.horizon, 5)


def test_the_distractor_ends_the_game_with_its_small_reward_and_the_goal_with_one():
    env = gym.make("toy_envs:DeceptiveCorridor-v0").unwrapped
    env.reset(seed=0)
    assert _walk(env, [DOWN]) == [((1, 0), 0.1, True, False)]
    env.reset(seed=0)
    steps = _walk(env, [RIGHT] * 11)
    assert steps[-1] == ((0, 11), 1.0, True, False)
    assert all(reward == 0.0 and not done for _, reward, done, _ in steps[:-1])
    env.reset(seed=0)
    assert _walk(env, [UP] * env.horizon)[-1] == ((0, 0), 0.0, False, True)  # Truncated.


@pytest.mark.parametrize(
    "env_id", sorted(toy_envs.DECEPTIVE_TASKS) + sorted(toy_envs.DECEPTIVE_DETOURS)
)
def test_every_deceptive_task_has_its_distractor_next_to_the_start_and_a_far_goal(env_id):
    env = gym.make(f"toy_envs:{env_id}").unwrapped
    distractor, goal = env.distractor, tuple(int(g) for g in env.goal)
    assert abs(distractor[0]) + abs(distractor[1]) == 1  # One move from the start (0, 0).
    path = toy_envs.shortest_path_length(env.size, goal, [*env.walls, distractor])
    assert 11 <= path <= 16 and env.horizon == 2 * path
    assert (env.distractor_reward, env.goal_reward) == (0.1, 1.0)


@pytest.mark.parametrize(
    ("env_id", "path"),
    [
        ("DeceptiveDetour-v0", 14),
        ("DeceptiveDetourShort-v0", 12),
        ("DeceptiveDetourLong-v0", 16),
        ("DeceptiveDetourCoordinates-v0", 14),
        ("DeceptiveDetourTwoRows-v0", 15),
    ],
)
def test_the_detours_goal_lies_below_the_walls_left_end_behind_the_distractor(env_id, path):
    env = gym.make(f"toy_envs:{env_id}").unwrapped
    (wall_row,) = {row for row, _ in env.walls}
    assert tuple(env.goal) == (wall_row + 1, 0) and env.distractor == (1, 0)
    assert sorted(column for _, column in env.walls) == list(range(1, env.size - 1))
    assert toy_envs.shortest_path_length(env.size, env.goal, [*env.walls, env.distractor]) == path


def test_a_detour_wall_must_leave_a_row_above_and_below_it():
    with pytest.raises(ValueError, match="wall_row"):
        toy_envs.deceptive_detour(size=7, wall_row=6)


def test_random_walk_probability_counts_the_distractor_as_a_game_end():
    room = gym.make("toy_envs:DeceptiveRoom-v0").unwrapped
    layout = dict(goal=tuple(room.goal), distractor=room.distractor)
    with_distractor = toy_envs.random_walk_success_probability(room.size, room.horizon, **layout)
    without = toy_envs.random_walk_success_probability(
        room.size, room.horizon, goal=tuple(room.goal)
    )
    assert 0 < with_distractor < without
    hits, fraction = toy_envs.random_walk_success_estimate(
        room.size, room.horizon, 5, 400_000, seed=0, **layout
    )
    standard_error = np.sqrt(with_distractor * (1 - with_distractor) / 400_000)
    assert abs(fraction - with_distractor) < 4 * standard_error, (hits, with_distractor)


def test_a_distractor_on_the_start_a_wall_or_the_goal_is_refused():
    with pytest.raises(ValueError, match="distractor must be a cell"):
        SparseGridRoom(size=5, distractor=(0, 0))
    with pytest.raises(ValueError, match="distractor must be a free cell"):
        SparseGridRoom(size=5, distractor=(4, 4))
    with pytest.raises(ValueError, match="distractor must be a free cell"):
        SparseGridRoom(size=5, walls=[(1, 1)], distractor=(1, 1))
