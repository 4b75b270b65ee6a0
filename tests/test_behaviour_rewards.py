"""Reward terms, termination and truncation on hand-built frames (issue #22).

Every expected number is worked out from the definitions in ``docs/architecture.md`` and
``occsim/grid.py``, not read off the code:

- grid: 200 x 200 x 16 voxels of 0.4 m from (-40, -40, -1) m; the centre of cell i is
  ``-40 + 0.4 (i + 0.5)``, so cells 99 and 100 have centres -0.2 m and +0.2 m.
- ego box 4.08 m x 1.85 m centred on the origin: cells whose centre has ``|x| <= 2.04``
  are 95..104 (centres -1.8 .. +1.8; 2.2 is outside) and ``|y| <= 0.925`` are 98..101
  (centres -0.6 .. +0.6; 1.0 is outside): 10 x 4 = 40 columns.
- ground layer z = floor((0 - (-1)) / 0.4) = 2; the body band is z 3..6 (0.2 m to 1.8 m
  above the ground: (1.8 + 1) / 0.4 = 7 is the first index above it).
- default weights: progress +0.1 per metre, collision -10, off-road -5, comfort -0.02 per
  m/s^2 of acceleration change.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import occsim  # noqa: F401  (registers the environments)
from occsim.envs import OccEnvConfig, RewardWeights
from occsim.envs.base import OccEnv
from occsim.envs.rewards import collides, offroad, reward_terms
from occsim.grid import EgoState, GridSpec
from occsim.labels import (
    BARRIER,
    CAR,
    DRIVEABLE_SURFACE,
    FREE_ID,
    OTHER_FLAT,
    PEDESTRIAN,
    SIDEWALK,
    TERRAIN,
    VEGETATION,
)
from occsim.procedural import WorldConfig

BOX_X = range(95, 105)  # the ego box's cells along x (see the module docstring)
BOX_Y = range(98, 102)  # and along y
GROUND, BODY = 2, range(3, 7)
SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)


def road(ground: int = DRIVEABLE_SURFACE) -> np.ndarray:
    """An empty world: ``ground`` at z = 2 everywhere, free above."""
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[:, :, GROUND] = ground
    return frame


# ---------------------------------------------------------------- collision


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ((104, 101, 3), True),  # front-left corner cell of the box, lowest body layer
        ((95, 98, 6), True),  # rear-right corner, top body layer (1.4-1.8 m)
        ((100, 100, 5), True),  # the middle
        ((105, 101, 3), False),  # one cell ahead of the box (centre x = 2.2 m > 2.04)
        ((104, 102, 3), False),  # one cell left of the box (centre y = 1.0 m > 0.925)
        ((94, 97, 4), False),  # diagonally behind-right
        ((100, 100, 7), False),  # above the body band (1.8-2.2 m): an overhanging crown
    ],
)
def test_one_obstacle_voxel_collides_exactly_inside_the_box_and_band(cell, expected):
    frame = road()
    frame[cell] = CAR
    assert collides(frame) is expected


@pytest.mark.parametrize("obstacle", [CAR, PEDESTRIAN, BARRIER, VEGETATION])
def test_every_obstacle_class_collides_and_ground_classes_do_not(obstacle):
    frame = road()
    frame[100, 100, 4] = obstacle
    assert collides(frame)
    # Ground classes standing in the body band (a kerb, a raised crossing) are no obstacle.
    for ground in (DRIVEABLE_SURFACE, OTHER_FLAT, SIDEWALK, TERRAIN, FREE_ID):
        frame[100, 100, 4] = ground
        assert not collides(frame), ground


# ---------------------------------------------------------------- off road


def test_offroad_is_no_driveable_ground_under_the_whole_box():
    """The documented definition (``rewards.offroad``, ``PlannerCosts.edge``): the env
    fails a box *entirely* off the driveable surface; a wheel over the kerb is not off
    road (the planner's soft ``edge`` cost keeps it away from that)."""
    assert not offroad(road(DRIVEABLE_SURFACE))
    assert not offroad(road(OTHER_FLAT))  # a crossing is driveable
    assert offroad(road(TERRAIN)) and offroad(road(SIDEWALK))

    # Right wheels on the sidewalk: columns y = 98 (centre -0.6 m) of the box are sidewalk.
    wheel_off = road()
    wheel_off[:, :99, GROUND] = SIDEWALK
    assert not offroad(wheel_off)
    # The whole box on the sidewalk but for one column ahead of it: still off road.
    almost = road(SIDEWALK)
    almost[105, 100, GROUND] = DRIVEABLE_SURFACE
    assert offroad(almost)
    # One driveable cell under the box (its rear-left corner) is enough to be on the road.
    one_cell = road(TERRAIN)
    one_cell[95, 101, GROUND] = DRIVEABLE_SURFACE
    assert not offroad(one_cell)
    # Only the ground layer counts: road surface in the body band is no road under the ego.
    raised = road(TERRAIN)
    raised[:, :, 3] = DRIVEABLE_SURFACE
    assert offroad(raised)


# ---------------------------------------------------------------- reward terms


def test_reward_terms_weigh_each_term_and_judge_the_last_frame():
    weights = RewardWeights()
    hit = road()
    hit[100, 100, 4] = CAR
    off = road(TERRAIN)
    # Collision in the last frame: -10; 16 m forward: 0.1 * 16 = 1.6; jerk 3: -0.02 * 3.
    terms, collision, is_off = reward_terms(np.stack([road(), hit]), 16.0, 3.0, weights)
    assert (collision, is_off) == (True, False)
    assert terms == pytest.approx(
        {"progress": 1.6, "collision": -10.0, "offroad": 0.0, "comfort": -0.06}
    )
    # Off road: -5; a collision in an earlier frame of the step is not the last frame's.
    terms, collision, is_off = reward_terms(np.stack([hit, off]), 0.0, 0.0, weights)
    assert (collision, is_off) == (False, True)
    assert terms == pytest.approx(
        {"progress": 0.0, "collision": 0.0, "offroad": -5.0, "comfort": 0}
    )
    # Both at once; custom weights scale each term on its own.
    both = off.copy()
    both[100, 100, 4] = CAR
    custom = RewardWeights(progress=1.0, collision=-3.0, offroad=-2.0, comfort=-0.5)
    terms, collision, is_off = reward_terms(both[None], -2.0, 4.0, custom)
    assert (collision, is_off) == (True, True)
    assert terms == pytest.approx(
        {"progress": -2.0, "collision": -3.0, "offroad": -2.0, "comfort": -2.0}
    )


def test_reward_terms_judge_the_ego_box_of_the_grid_they_are_given():
    """A grid of the same 200 x 200 x 16 voxels that reaches 60 m behind the ego and 20 m
    ahead: the centre of cell i along x is ``-60 + 0.4 (i + 0.5)``, so the box's cells along
    x are 145..154 (centres -1.8 .. +1.8), not 95..104; y and z are as on the default grid.
    With a car and the only road under that box, the step collides and stays on the road;
    under the default grid's box there is neither (a grid left out would say the opposite)."""
    behind = GridSpec(point_cloud_range=(-60.0, -40.0, -1.0, 20.0, 40.0, 5.4), voxel_size=0.4)
    frame = road(TERRAIN)
    frame[145:155, 98:102, GROUND] = DRIVEABLE_SURFACE
    frame[150, 100, 4] = CAR
    terms, collision, is_off = reward_terms(frame[None], 0.0, 0.0, RewardWeights(), behind)
    assert (collision, is_off) == (True, False)
    assert terms == pytest.approx(
        {"progress": 0.0, "collision": -10.0, "offroad": 0.0, "comfort": 0.0}
    )
    # The same frame judged on the default grid: terrain and no car under cells 95..104.
    assert reward_terms(frame[None], 0.0, 0.0, RewardWeights())[1:] == (False, True)


# ---------------------------------------------------------------- the env on a scripted world


class ScriptedWorld:
    """A world backend that replays hand-made steps: each ``advance`` returns the next
    ``(frames, states)`` pair regardless of the waypoints."""

    name = "scripted world"
    reset_options = ()

    def __init__(self, opening: tuple[np.ndarray, list[EgoState]], steps: list) -> None:
        self.opening, self.steps, self.index = opening, steps, 0

    def reset(self, rng: np.random.Generator, options: dict[str, Any]):
        self.index = 0
        return self.opening[0], self.opening[1], None

    def advance(self, start: EgoState, waypoints: np.ndarray):
        frames, states = self.steps[self.index]
        self.index += 1
        return frames, states


def states(xs, ys, yaw: float, speeds) -> list[EgoState]:
    return [EgoState(float(x), float(y), yaw, float(v)) for x, y, v in zip(xs, ys, speeds)]


def frames(*last: np.ndarray) -> np.ndarray:
    """Four frames of a step: a plain road, then ``last`` (the judged frame) at the end."""
    return np.stack([road()] * (4 - len(last)) + list(last))


def test_env_rewards_progress_along_the_starting_heading_and_jerk():
    # Reset: the ego at (0, 0) heading +y (90 degrees), last speed 4 m/s.
    north = np.pi / 2
    opening = (frames(), states([0] * 4, [-6, -4, -2, 0], north, [4, 4, 4, 4]))
    steps = [
        # Speeds 5, 6, 6, 7 after 4: accelerations (5-4)/0.5 = 2, 2, 0, 2; the previous
        # acceleration is 0 after a reset, so jerk = |2-0| + |2-2| + |0-2| + |2-0| = 6.
        # The ego ends at (3, 10): along the starting heading (0, 1) that is 10 m, although
        # it moved 3 m sideways as well (progress is not distance, nor x).
        (frames(), states([0, 1, 2, 3], [2.5, 5.5, 8, 10], north, [5, 6, 6, 7])),
        # Speeds 7, 7, 7, 7: accelerations 0 after the last step's 2: jerk 2; 14 m ahead.
        (frames(), states([3] * 4, [13.5, 17, 20.5, 24], north, [7, 7, 7, 7])),
        # Braking to 5: accelerations -4, 0, 0, 0 after 0: jerk |-4| + |0 - (-4)| = 8.
        (frames(), states([3] * 4, [26.5, 29, 31.5, 34], north, [5, 5, 5, 5])),
    ]
    env = OccEnv(ScriptedWorld(opening, steps), OccEnvConfig())
    env.reset(seed=0)
    action = np.zeros((4, 2), dtype=np.float32)
    expected = [
        # (progress m, jerk m/s^2, the step's last acceleration in the ego observation)
        (10.0, 6.0, 2.0),
        (14.0, 2.0, 0.0),
        (10.0, 8.0, 0.0),
    ]
    for progress, jerk, acceleration in expected:
        observation, reward, terminated, truncated, info = env.step(action)
        assert info["rewards"] == pytest.approx(
            {"progress": 0.1 * progress, "collision": 0.0, "offroad": 0.0, "comfort": -0.02 * jerk}
        )
        assert reward == pytest.approx(0.1 * progress - 0.02 * jerk)
        assert not terminated and not truncated
        assert observation["ego"][2] == pytest.approx(acceleration)


def test_a_collision_ends_the_episode_and_costs_the_collision_weight():
    opening = (frames(), states([-6, -4, -2, 0], [0] * 4, 0.0, [4] * 4))
    hit = road()
    hit[104, 100, 3] = CAR  # the bumper cell of the box
    steps = [
        (frames(), states([2, 4, 6, 8], [0] * 4, 0.0, [4] * 4)),
        (frames(hit), states([10, 12, 14, 16], [0] * 4, 0.0, [4] * 4)),
    ]
    env = OccEnv(ScriptedWorld(opening, steps), OccEnvConfig())
    env.reset(seed=0)
    action = np.zeros((4, 2), dtype=np.float32)
    _, reward, terminated, truncated, info = env.step(action)
    assert not terminated and not truncated and not info["collision"]
    assert reward == pytest.approx(0.1 * 8.0)  # 8 m ahead at constant speed
    _, reward, terminated, truncated, info = env.step(action)
    assert terminated is True and truncated is False
    assert info["collision"] is True and info["offroad"] is False
    assert info["rewards"]["collision"] == pytest.approx(-10.0)
    assert reward == pytest.approx(0.1 * 8.0 - 10.0)


def test_leaving_the_road_ends_the_episode_but_a_wheel_over_the_kerb_does_not():
    opening = (frames(), states([-6, -4, -2, 0], [0] * 4, 0.0, [4] * 4))
    wheel = road()
    wheel[:, :99, GROUND] = SIDEWALK  # right wheels on the sidewalk
    steps = [
        (frames(wheel), states([2, 4, 6, 8], [0] * 4, 0.0, [4] * 4)),
        (frames(road(TERRAIN)), states([10, 12, 14, 16], [0] * 4, 0.0, [4] * 4)),
    ]
    env = OccEnv(ScriptedWorld(opening, steps), OccEnvConfig())
    env.reset(seed=0)
    action = np.zeros((4, 2), dtype=np.float32)
    _, _, terminated, _, info = env.step(action)
    assert not terminated and info["rewards"]["offroad"] == 0.0
    _, reward, terminated, truncated, info = env.step(action)
    assert terminated is True and truncated is False and info["offroad"] is True
    assert info["rewards"]["offroad"] == pytest.approx(-5.0)
    assert reward == pytest.approx(0.1 * 8.0 - 5.0)


def test_the_time_limit_truncates_without_terminating():
    env = gym.make("occsim/Procedural-v0", map_seed=4, world_config=SMALL, max_episode_steps=2)
    env.reset(seed=1)
    # 8 m/s straight ahead: 4, 8, 12, 16 m over the step (an action of 1 is 20 m).
    action = np.stack([np.arange(1, 5) * 4.0 / 20.0, np.zeros(4)], 1).astype(np.float32)
    _, _, terminated, truncated, info = env.step(action)
    assert (terminated, truncated) == (False, False)
    assert info["rewards"]["progress"] == pytest.approx(1.6, rel=1e-6)
    _, _, terminated, truncated, _ = env.step(action)
    assert (terminated, truncated) == (False, True)
