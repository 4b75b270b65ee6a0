"""The procedural driving world: map, traffic and ego, rendered as Occ3D-style occupancy."""

from __future__ import annotations

import numpy as np

from occsim import labels as L
from occsim.geometry import local_to_world, poses_to_trajectory, wrap_angle
from occsim.grid import (
    EGO_HEIGHT,
    EGO_LENGTH,
    EGO_WIDTH,
    FRAME_DT,
    OCC3D_GRID,
    EgoState,
    GridSpec,
)
from occsim.procedural.config import SIMULATION_DT, WorldConfig
from occsim.procedural.lanes import build_lane_graph
from occsim.procedural.roads import generate_road_network
from occsim.procedural.static_map import build_static_map
from occsim.procedural.traffic import EGO_TYPE, Box, Traffic, Vehicle
from occsim.procedural.voxelize import voxelize_frame
from occsim.validation import check_trajectory

MANEUVERS: tuple[str, ...] = (
    "straight",
    "left",
    "right",
    "lane_change",
    "stop",
    "accelerate",
    "motionless",
)
SUBSTEPS = round(FRAME_DT / SIMULATION_DT)
WARMUP_SECONDS = 4.0


class ProceduralWorld:
    """A seeded city with traffic, seen from an ego vehicle as 4D occupancy at 2 Hz.

    The map is generated from ``map_seed`` alone; ``reset`` places the ego and the traffic
    from its own seed, so one map serves many episodes. The ego either drives itself
    (:meth:`step_scripted`, with a manoeuvre) or follows waypoints (:meth:`step`).

    Args:
        map_seed: seed of the road network and static scenery.
        config: world generation parameters.
        grid: the occupancy grid frames are rendered in.
    """

    def __init__(
        self, map_seed: int, config: WorldConfig | None = None, grid: GridSpec = OCC3D_GRID
    ) -> None:
        self.config = config or WorldConfig()
        self.grid = grid
        rng = np.random.default_rng([map_seed, 0])
        self.network = generate_road_network(rng, self.config)
        self.static = build_static_map(self.network, rng, self.config)
        self.lanes = build_lane_graph(self.network)
        self.traffic: Traffic | None = None
        self.ego: Vehicle | None = None
        self.maneuver = "straight"
        self.external_control = False
        self.time = 0.0

    # ----------------------------------------------------------------- episode
    def reset(self, seed: int, maneuver: str = "straight") -> EgoState:
        """Place the ego and the traffic anew; returns the ego state.

        Args:
            seed: seed of the placement of ego, vehicles and pedestrians.
            maneuver: one of :data:`MANEUVERS` for :meth:`step_scripted`.
        """
        if maneuver not in MANEUVERS:
            raise ValueError(f"unknown maneuver {maneuver!r}; expected one of {MANEUVERS}")
        rng = np.random.default_rng([seed, 1])
        self.traffic = Traffic(self.lanes, self.config.size, rng)
        self.maneuver, self.external_control, self.time = maneuver, False, 0.0
        longest = max(ln.path.length for ln in self.lanes.lanes)
        threshold = min(50.0, 0.6 * longest)
        long_lanes = [ln.index for ln in self.lanes.lanes if ln.path.length >= threshold]
        lane = int(rng.choice(long_lanes))
        length = self.lanes.lanes[lane].path.length
        speed = float(rng.uniform(4.0, 10.0))
        desired = float(rng.uniform(*EGO_TYPE.speed))
        if maneuver == "accelerate":
            speed, desired = float(rng.uniform(0.0, 2.0)), float(rng.uniform(12.0, 14.0))
        elif maneuver == "motionless":
            speed, desired = 0.0, 0.0
        preference = maneuver if maneuver in ("left", "right", "straight") else "straight"
        start = float(rng.uniform(15.0, max(15.0, length - 45.0)))
        if maneuver in ("left", "right"):
            start = max(15.0, length - float(rng.uniform(10.0, 30.0)))  # turn within a clip
        self.ego = self.traffic.add_vehicle(
            EGO_TYPE,
            lane,
            start,
            speed,
            desired_speed=desired,
            is_ego=True,
            turn_preference=preference,
        )
        if maneuver == "stop":
            self.ego.stop_at = max(6.0, speed * float(rng.uniform(2.0, 3.0)))
        self.traffic.populate(self.config.vehicles, self.config.pedestrians, [self.ego.position])
        for _ in range(round(WARMUP_SECONDS / SIMULATION_DT)):
            self.traffic.step(SIMULATION_DT, ego_fixed=True)
        return self.ego_state

    @property
    def ego_state(self) -> EgoState:
        """Current ego pose and speed."""
        ego = self._require_ego()
        return EgoState(float(ego.position[0]), float(ego.position[1]), ego.heading, ego.speed)

    def _require_ego(self) -> Vehicle:
        if self.ego is None or self.traffic is None:
            raise RuntimeError("call reset() before stepping or rendering the world")
        return self.ego

    # ----------------------------------------------------------------- stepping
    def step_scripted(self) -> EgoState:
        """Advance one frame (0.5 s) with the ego driving its scripted manoeuvre."""
        ego = self._require_ego()
        if self.external_control:
            raise RuntimeError("the ego is under external control since step(); reset() first")
        if self.maneuver == "lane_change" and ego.change_to is None and self.time >= 1.0:
            for direction in (1, -1):
                if self.traffic.start_lane_change(ego, direction):
                    break
        for _ in range(SUBSTEPS):
            self.traffic.step(SIMULATION_DT)
        self.time += FRAME_DT
        return self.ego_state

    def step(self, waypoints: np.ndarray, frames: list | None = None) -> list[EgoState]:
        """Move the ego through ``waypoints`` ``(K, 2|3)`` given in the current ego frame.

        Waypoints are 0.5 s apart (the first is reached 0.5 s from now); an optional third
        column is the yaw there, else the heading follows the direction of motion. Traffic
        reacts to the ego as an obstacle. Returns the ego state after each waypoint; if a
        list is given as ``frames``, the occupancy at each waypoint is appended to it.
        """
        ego = self._require_ego()
        waypoints = check_trajectory(np.asarray(waypoints)[None], "waypoints")[0]
        if not self.external_control:
            self.external_control = True
            if ego.reserved is not None:
                self.traffic.reservations.pop(ego.reserved, None)
                ego.reserved = None
        origin, origin_yaw = ego.position.copy(), ego.heading
        world_xy = local_to_world(waypoints[:, :2], origin, origin_yaw)
        states = []
        previous, previous_yaw = origin, origin_yaw
        for k, target in enumerate(world_xy):
            motion = target - previous
            distance = float(np.linalg.norm(motion))
            if waypoints.shape[1] == 3:
                target_yaw = origin_yaw + float(waypoints[k, 2])
            elif distance > 0.05:
                target_yaw = float(np.arctan2(motion[1], motion[0]))
            else:
                target_yaw = previous_yaw
            turn = float(wrap_angle(target_yaw - previous_yaw))
            for i in range(1, SUBSTEPS + 1):
                frac = i / SUBSTEPS
                ego.position = previous + frac * motion
                ego.heading = previous_yaw + frac * turn
                self.traffic.step(SIMULATION_DT, ego_fixed=True)
            ego.speed = distance / FRAME_DT
            previous, previous_yaw = target, previous_yaw + turn
            self.time += FRAME_DT
            states.append(self.ego_state)
            if frames is not None:
                frames.append(self.render())
        return states

    # ----------------------------------------------------------------- output
    def render(self) -> np.ndarray:
        """Occupancy ``(200, 200, 16)`` uint8 of the current frame around the ego."""
        ego = self._require_ego()
        return voxelize_frame(
            self.static, ego.position, ego.heading, self.traffic.boxes(), self.grid
        )

    def ego_box(self) -> Box:
        """The ego's footprint as a box in the world frame."""
        ego = self._require_ego()
        return Box(ego.position, ego.heading, EGO_LENGTH, EGO_WIDTH, EGO_HEIGHT, L.FREE)

    def rollout(self, num_frames: int) -> dict[str, np.ndarray]:
        """Render the current frame and ``num_frames - 1`` scripted steps.

        Returns ``occupancy (T, 200, 200, 16)`` uint8, ``trajectory (T, 3)`` float32 in the
        first frame's ego frame and ``poses (T, 3)`` world ``(x, y, yaw)``.
        """
        frames, poses = [], []
        for t in range(num_frames):
            if t:
                self.step_scripted()
            state = self.ego_state
            frames.append(self.render())
            poses.append((state.x, state.y, state.yaw))
        poses_array = np.array(poses, dtype=np.float64)
        return {
            "occupancy": np.stack(frames),
            "trajectory": poses_to_trajectory(poses_array[:, :2], poses_array[:, 2]),
            "poses": poses_array,
        }
