"""The planner makes progress on an open road and does not drive into a slower car ahead
(issue #22).

The planner sees only what the env observes: the step's K occupancy frames (it forecasts
road users from the last two) and the ego vector (speed, yaw rate, acceleration).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from occsim.agents import ConstantSpeedAgent, PlannerAgent
from occsim.agents.planner import PlannerCosts
from occsim.envs import OccEnvConfig, ProceduralEnv
from occsim.envs.base import OccEnv
from occsim.envs.kinematics import follow_waypoints
from occsim.geometry import local_to_world
from occsim.grid import FRAME_DT, OCC3D_GRID, EgoState
from occsim.labels import BARRIER, CAR, DRIVEABLE_SURFACE, FREE_ID, TERRAIN
from occsim.procedural import WorldConfig

# A procedural map of straight roads with nothing on them: no traffic, no parked cars or
# road works, no curved or removed roads.
OPEN_ROADS = WorldConfig(
    size=192.0,
    grid_nodes=3,
    vehicles=0,
    pedestrians=0,
    curve_probability=0.0,
    road_removal_probability=0.0,
    parked_probability=0.0,
    works_probability=0.0,
)
STEPS = 4  # 8 s of driving


def drive(env, agent, seed: int, steps: int = STEPS) -> list[dict]:
    """Run ``agent`` for up to ``steps`` steps; each step's info (with ``terminated``)."""
    observation, _ = env.reset(seed=seed)
    agent.reset(seed)
    infos = []
    for _ in range(steps):
        observation, _, terminated, _, info = env.step(agent.act(observation))
        infos.append({**info, "terminated": terminated, "speed": float(observation["ego"][0])})
        if terminated:
            break
    return infos


def metres_ahead(info: dict) -> float:
    """Metres along the starting heading driven in the step (the progress term / 0.1)."""
    return info["rewards"]["progress"] / 0.1


def test_planner_keeps_driving_along_an_open_straight_road():
    env = ProceduralEnv(map_seed=4, world_config=OPEN_ROADS)
    # The road ahead is open and straight for 8 s at 7 m/s: driving straight at constant
    # speed covers 4 x 14 m = 56 m without an incident.
    steady = drive(env, ConstantSpeedAgent(env, 7.0), seed=1)
    assert len(steady) == STEPS and not any(i["terminated"] for i in steady)
    assert sum(map(metres_ahead, steady)) == pytest.approx(56.0, abs=0.01)

    infos = drive(env, PlannerAgent(env, seed=0), seed=1)
    assert len(infos) == STEPS and not any(i["terminated"] for i in infos)
    # The planner's progress pays up to its target speed (7 m/s, 14 m a step). On an open
    # road it must keep at least 5 m/s, i.e. 10 m every step (braking to a stop from the
    # start speed of about 7 m/s at up to 6 m/s^2 covers about 4 m in total).
    assert PlannerCosts().target_speed == 7.0
    ahead = [metres_ahead(i) for i in infos]
    assert min(ahead) >= 10.0, ahead
    assert sum(ahead) >= 40.0 and infos[-1]["speed"] >= 5.0, (ahead, infos[-1]["speed"])


# ---------------------------------------------------------------- a slower car ahead

ROAD_HALF_WIDTH = 2.8  # metres of driveable surface either side of the centreline (y = 0)
BARRIER_WIDTH = 0.4  # a barrier along each edge: no way round the car
CAR_HALF_LENGTH, CAR_HALF_WIDTH = 2.2, 0.9


class CarAheadWorld:
    """A straight road along the world x axis between two barriers, and one car in the
    ego's lane driving at ``car_speed`` from ``car_start`` metres ahead of the ego. The ego
    follows its waypoints exactly (as in the learned world)."""

    name = "car-ahead world"
    reset_options = ()

    def __init__(self, ego_speed: float, car_start: float, car_speed: float) -> None:
        self.ego_speed, self.car_start, self.car_speed = ego_speed, car_start, car_speed
        self.time = 0.0

    def car_x(self, time: float) -> float:
        return self.car_start + self.car_speed * time

    def frame(self, state: EgoState, time: float) -> np.ndarray:
        centres = OCC3D_GRID.bev_centers().reshape(-1, 2)
        x, y = local_to_world(centres, [state.x, state.y], state.yaw).T
        frame = np.full((200 * 200, 16), FREE_ID, dtype=np.uint8)
        frame[:, 2] = np.where(np.abs(y) <= ROAD_HALF_WIDTH, DRIVEABLE_SURFACE, TERRAIN)
        edge = (np.abs(y) > ROAD_HALF_WIDTH) & (np.abs(y) <= ROAD_HALF_WIDTH + BARRIER_WIDTH)
        frame[edge, 3:5] = BARRIER
        car = (np.abs(x - self.car_x(time)) <= CAR_HALF_LENGTH) & (np.abs(y) <= CAR_HALF_WIDTH)
        frame[car, 3:6] = CAR
        return frame.reshape(200, 200, 16)

    def reset(self, rng: np.random.Generator, options: dict[str, Any]):
        # Four opening frames, the last at t = 0 with the ego at the origin.
        self.time = 0.0
        states = [
            EgoState(self.ego_speed * FRAME_DT * k, 0.0, 0.0, self.ego_speed)
            for k in (-3, -2, -1, 0)
        ]
        times = [FRAME_DT * k for k in (-3, -2, -1, 0)]
        return np.stack([self.frame(s, t) for s, t in zip(states, times)]), states, None

    def advance(self, start: EgoState, waypoints: np.ndarray):
        states = follow_waypoints(start, waypoints)
        frames = []
        for state in states:
            self.time += FRAME_DT
            frames.append(self.frame(state, self.time))
        return np.stack(frames), states


def car_ahead_env() -> OccEnv:
    # Ego at 8 m/s, the car 20 m ahead (centre to centre) at 3 m/s: the gap closes at
    # 5 m/s, and the boxes touch when the centres are 2.04 + 2.2 = 4.24 m apart, after
    # (20 - 4.24) / 5 = 3.2 s; at the end of step 2 (t = 4 s) the centres coincide.
    return OccEnv(CarAheadWorld(ego_speed=8.0, car_start=20.0, car_speed=3.0), OccEnvConfig())


def test_a_car_ahead_at_constant_speed_is_hit_when_ignored():
    env = car_ahead_env()
    infos = drive(env, ConstantSpeedAgent(env, 8.0), seed=0)
    assert len(infos) == 2 and infos[-1]["terminated"] and infos[-1]["collision"]


def test_planner_does_not_drive_into_a_slower_car_ahead():
    env = car_ahead_env()
    infos = drive(env, PlannerAgent(env, seed=0), seed=0)
    assert len(infos) == STEPS, "the episode ended early"
    assert not any(i["collision"] or i["offroad"] for i in infos)
    # Still behind the car after 8 s (it is at 20 + 3 x 8 = 44 m), and on the road.
    ego_x, ego_y = infos[-1]["ego_pose"][:2]
    assert ego_x < 44.0 - 4.24 and abs(ego_y) < ROAD_HALF_WIDTH
