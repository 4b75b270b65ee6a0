"""The planner makes progress on an open road and does not drive into a slower car ahead
(issue #22).

The planner sees only what the env observes: the step's K occupancy frames (it forecasts
road users from the last two) and the ego vector (speed, yaw rate, acceleration).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import occsim.agents.planner as planner_module
from occsim.agents import ConstantSpeedAgent, PlannerAgent
from occsim.agents.planner import PlannerCosts, bev_maps, offroad_share, pose_costs
from occsim.envs import OccEnvConfig, ProceduralEnv
from occsim.envs.base import OccEnv
from occsim.envs.kinematics import BicycleModel, follow_waypoints
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


# ---------------------------------------------------------------- unit checks of the planner
# (mutation testing of agents/planner.py: hand-derived expectations on tiny inputs)


def stub_env(frames: int = 4, frame_period: float = 0.5, scale: float = 20.0):
    """The little of an env that the planner reads: 4 waypoints 0.5 s apart (a 2 s step)."""
    config = SimpleNamespace(frames_per_step=frames, action_scale=(scale, scale))
    return SimpleNamespace(unwrapped=SimpleNamespace(config=config, frame_period=frame_period))


def open_road_observation(speed: float = 5.0, ego: bool = True) -> dict:
    """Two empty frames whose ground is driveable everywhere."""
    frames = np.full((2, 200, 200, 16), FREE_ID, dtype=np.uint8)
    frames[:, :, :, OCC3D_GRID.ground_index] = DRIVEABLE_SURFACE
    observation = {"occupancy": frames}
    if ego:
        observation["ego"] = np.array([speed, 0.0, 0.0])
    return observation


def small_planner(**kwargs) -> PlannerAgent:
    options = {"population": 8, "elites": 2, "iterations": 2, "lookahead": 2, **kwargs}
    return PlannerAgent(stub_env(), **options)


def test_planner_defaults_and_initial_state():
    agent = PlannerAgent(stub_env())
    assert (agent.population, agent.elites, agent.iterations) == (64, 8, 3)
    assert (agent.lookahead, agent.moving_margin) == (4, 4)
    assert agent.costs == PlannerCosts() and agent.scorer == "occupancy"
    assert agent.frames == 4 and agent.last_plan is None


def test_planner_rejects_bad_arguments_with_exact_messages():
    with pytest.raises(ValueError, match=r"^scorer must be 'occupancy' or 'world_model', got 'x'$"):
        PlannerAgent(stub_env(), scorer="x")
    # "world_model" is a known scorer, but only for the learned env.
    message = r"^scorer='world_model' needs the learned env \(occsim/OccSora-v0\)$"
    with pytest.raises(ValueError, match=message):
        PlannerAgent(stub_env(), scorer="world_model")
    for elites, population in ((0, 4), (5, 4), (-1, 4)):
        expected = rf"^need 0 < elites <= population, got {elites} and {population}$"
        with pytest.raises(ValueError, match=expected):
            PlannerAgent(stub_env(), population=population, elites=elites)
    # The bounds are inclusive of one elite and of elites == population.
    assert PlannerAgent(stub_env(), population=4, elites=1).elites == 1
    assert PlannerAgent(stub_env(), population=4, elites=4).elites == 4


def test_planner_act_needs_occupancy_with_exact_message():
    with pytest.raises(ValueError, match=r"^PlannerAgent needs the 'occupancy' observation key$"):
        small_planner(seed=0).act({"ego": np.zeros(3)})


def test_planner_with_one_candidate_keeps_speed_and_heading():
    # Population 1: the only candidate is the incumbent (zero acceleration and steering),
    # so the plan is the step at constant speed straight ahead: 2.5 m a waypoint at 5 m/s,
    # over an action scale of 20 m.
    agent = small_planner(population=1, elites=1, iterations=1, seed=0)
    action = agent.act(open_road_observation(5.0))
    expected = np.array([[2.5, 0.0], [5.0, 0.0], [7.5, 0.0], [10.0, 0.0]])
    np.testing.assert_allclose(action, expected / 20.0, atol=1e-6)
    np.testing.assert_allclose(agent.last_plan, expected, atol=1e-6)
    # Without an ego vector the speed is taken as 0: the ego stays put.
    still = small_planner(population=1, elites=1, iterations=1, seed=0)
    np.testing.assert_allclose(still.act(open_road_observation(ego=False)), 0.0, atol=1e-9)


def test_planner_same_seed_same_plan_and_reset_reseeds():
    observation = open_road_observation(5.0)
    first = small_planner(seed=3).act(observation)
    np.testing.assert_array_equal(small_planner(seed=3).act(observation), first)
    assert not np.array_equal(small_planner(seed=4).act(observation), first)

    # reset(seed) restarts the stream whatever the construction seed; reset() keeps it.
    a, b = small_planner(seed=1), small_planner(seed=2)
    a.reset(seed=7)
    b.reset(seed=7)
    np.testing.assert_array_equal(a.act(observation), b.act(observation))
    assert a.last_plan is not None
    a.reset()
    assert a.last_plan is None
    c, d = small_planner(seed=5), small_planner(seed=5)
    c.reset()
    d.reset()
    np.testing.assert_array_equal(c.act(observation), d.act(observation))


def score_agent() -> PlannerAgent:
    # Speed capped at 5 m/s, the start speed: acceleration changes nothing, so both
    # candidates below drive x = 2.5 (j + 1) m, y = 0 at pose j (horizon 4 + 2 = 6).
    model = BicycleModel(max_speed=5.0, frame_period=0.5)
    return PlannerAgent(stub_env(), lookahead=2, model=model, seed=0)


# (acceleration, steering) for the step, then for the look-ahead.
CANDIDATES = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.5, 0.0]])


def test_score_open_road_is_progress_plus_effort():
    # Progress: 10 m in the 2 s step (under the cap of 7 m/s x 2 s = 14 m), at -1 a metre.
    # Effort: 0.5 x (1^2 + 0^2) for the second candidate; its look-ahead command is free.
    scores = score_agent()._score(
        np.zeros((6, 200, 200), bool), np.ones((200, 200), bool), 5.0, CANDIDATES
    )
    np.testing.assert_allclose(scores, [-10.0, -9.5])


def test_score_weights_collisions_in_the_step_fully_and_in_the_look_ahead_half():
    obstacles = np.zeros((6, 200, 200), bool)
    obstacles[3] = True  # the step's last pose (weight 1)
    obstacles[4] = True  # the look-ahead's first pose (weight 0.5)
    scores = score_agent()._score(obstacles, np.ones((200, 200), bool), 5.0, CANDIDATES)
    # 200 x (1 + 0.5) - 10, plus the second candidate's effort 0.5.
    np.testing.assert_allclose(scores, [290.0, 290.5])


def test_score_offroad_and_edge_terms():
    # Driveable only at x < 8 m (cells 0..119). Box points lie every 0.46 m from -1.84 to
    # 1.84 m along x (4 across): the pose at 7.5 m has 6 of 9 columns on the road (up to
    # 7.96 m), 1/3 off; the poses at 10, 12.5 and 15 m are entirely off the road.
    driveable = np.zeros((200, 200), bool)
    driveable[:120] = True
    scores = score_agent()._score(np.zeros((6, 200, 200), bool), driveable, 5.0, CANDIDATES)
    offroad = 100.0 * (1 + 0.5 + 0.5)
    edge = 10.0 * (1 / 3 + 1 + 0.5 + 0.5)
    np.testing.assert_allclose(scores, [offroad + edge - 10.0, offroad + edge - 9.5])


def single_cell(x: float, y: float) -> np.ndarray:
    """A BEV map with only the cell holding metric point (x, y) set."""
    grid = np.zeros((200, 200), bool)
    grid[int(np.floor((x + 40.0) / 0.4)), int(np.floor((y + 40.0) / 0.4))] = True
    return grid


def test_box_cells_of_a_rotated_pose():
    # Yaw 30 degrees (cos 0.866, sin 0.5) at the origin. The outer box points
    # (+-1.84, +-0.725) land at (1.231, 1.548), (1.956, 0.292), (-1.956, -0.292) and
    # (-1.231, -1.548); the mirrored cells around (1.4, -1.4) and (-1.4, 1.4) lie over
    # 1.6 m sideways of the box axis (half width 0.925 m): not under it.
    pose = np.array([[0.0, 0.0, np.pi / 6]])
    road = np.ones((200, 200), bool)
    for x, y in ((1.231, 1.548), (1.956, 0.292), (-1.956, -0.292), (-1.231, -1.548)):
        assert pose_costs(pose, single_cell(x, y), road)[0].tolist() == [True], (x, y)
    for x, y in ((1.4, -1.4), (-1.4, 1.4)):
        assert pose_costs(pose, single_cell(x, y), road)[0].tolist() == [False], (x, y)


def test_box_cells_across_the_grid_edges():
    road = np.ones((200, 200), bool)
    # Ego at x = 39 m: points at 39.92 m fall in the last column (199), those at 40.38
    # and 40.84 m outside the grid (free).
    column = np.zeros((200, 200), bool)
    column[199] = True
    assert pose_costs(np.array([[39.0, 0.0, 0.0]]), column, road)[0].tolist() == [True]
    # Ego at x = -39 m: points at -39.92 m fall in the first column (0).
    column = np.zeros((200, 200), bool)
    column[0] = True
    assert pose_costs(np.array([[-39.0, 0.0, 0.0]]), column, road)[0].tolist() == [True]
    # Ego at y = +-39.5 m: points at +-39.742 m fall in the last / first row.
    row = np.zeros((200, 200), bool)
    row[:, 199] = True
    assert pose_costs(np.array([[0.0, 39.5, 0.0]]), row, road)[0].tolist() == [True]
    row = np.zeros((200, 200), bool)
    row[:, 0] = True
    assert pose_costs(np.array([[0.0, -39.5, 0.0]]), row, road)[0].tolist() == [True]
    # Half of the box off the grid at x = 40 m counts as driveable: no share off the road.
    nothing = np.zeros((200, 200), bool)
    off = offroad_share(np.array([[40.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), nothing)
    np.testing.assert_allclose(off, [4 / 9, 1.0])


def test_pose_costs_keep_leading_dimensions():
    poses = np.zeros((2, 3, 3))
    poses[1, 2] = [30.0, 0.0, 0.0]
    obstacle = single_cell(0.5, 0.3)  # under the box at the origin (point (0.46, 0.24))
    hit, off = pose_costs(poses, obstacle, np.ones((200, 200), bool))
    assert hit.shape == off.shape == (2, 3)
    assert hit.tolist() == [[True] * 3, [True, True, False]] and not off.any()


def test_bev_maps_grows_moving_users_only_when_asked():
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[100, 100, 3:6] = CAR
    obstacle, driveable = bev_maps(frame)
    assert obstacle.sum() == 1 and obstacle[100, 100] and not driveable.any()
    assert bev_maps(frame, moving_margin=1)[0].sum() > 1


def test_act_forecasts_with_the_ego_motion_period_and_margin(monkeypatch):
    calls = []

    def spy(frames, speed, yaw_rate, horizon, frame_period, margin=2):
        calls.append((frames.shape, speed, yaw_rate, horizon, frame_period, margin))
        return np.zeros((horizon, 200, 200), bool), np.ones((200, 200), bool)

    monkeypatch.setattr(planner_module, "forecast_obstacles", spy)
    observation = open_road_observation()
    observation["ego"] = np.array([5.0, 0.3, -2.0])  # speed, yaw rate, acceleration
    small_planner(moving_margin=3, seed=0).act(observation)
    # Horizon: the step's 4 frames and a look-ahead of 2; frames 0.5 s apart.
    assert calls == [((2, 200, 200, 16), 5.0, 0.3, 6, 0.5, 3)]


def test_act_samples_clipped_controls_around_the_elite_mean():
    agent = PlannerAgent(stub_env(), population=64, elites=8, iterations=2, lookahead=2, seed=0)
    seen = []

    def score(obstacles, driveable, speed, controls):
        seen.append(controls.copy())
        return -controls[:, 0] - controls[:, 1]  # prefers full acceleration and left

    agent._score = score
    agent.act(open_road_observation())
    assert len(seen) == 2
    # The first incumbent is the zero command; the second the mean of the 8 best first.
    np.testing.assert_array_equal(seen[0][0], np.zeros(4))
    first_scores = -seen[0][:, 0] - seen[0][:, 1]
    elite = seen[0][np.argsort(first_scores)[:8]]
    np.testing.assert_allclose(seen[1][0], elite.mean(axis=0))
    assert not np.allclose(seen[1][0], seen[1][0][0])
    # Samples are clipped to [-1, 1]; 256 draws of sd 0.6-0.7 reach past both bounds.
    assert seen[0].min() == -1.0 and seen[0].max() == 1.0
