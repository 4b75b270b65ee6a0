"""Ego motion of the learned world: the ego follows its waypoints exactly."""

from __future__ import annotations

import numpy as np

from occsim.geometry import local_to_world, poses_to_trajectory
from occsim.grid import FRAME_DT, EgoState

MIN_HEADING_DISTANCE = 0.05  # metres; below this the heading is kept (standing still)


def follow_waypoints(start: EgoState, waypoints: np.ndarray) -> list[EgoState]:
    """Ego states at each waypoint ``(K, 2)`` given in ``start``'s ego frame, 0.5 s apart:
    heading along the direction of motion, speed from the distance covered."""
    origin = np.array([start.x, start.y])
    world_xy = local_to_world(np.asarray(waypoints, dtype=np.float64), origin, start.yaw)
    states, previous, yaw = [], origin, start.yaw
    for target in world_xy:
        motion = target - previous
        distance = float(np.hypot(*motion))
        if distance > MIN_HEADING_DISTANCE:
            yaw = float(np.arctan2(motion[1], motion[0]))
        states.append(EgoState(float(target[0]), float(target[1]), yaw, distance / FRAME_DT))
        previous = target
    return states


def window_trajectory(states: list[EgoState]) -> np.ndarray:
    """``(T, 3)`` poses of ``states`` in the first one's ego frame (the DiT's condition)."""
    xy = np.array([[s.x, s.y] for s in states])
    return poses_to_trajectory(xy, np.array([s.yaw for s in states]))


def states_from_trajectory(trajectory: np.ndarray) -> list[EgoState]:
    """Ego states of a ``(T, 2|3)`` trajectory given in its own first frame; without a yaw
    column the heading follows the direction of motion (the first pose takes the second's)."""
    trajectory = np.asarray(trajectory, dtype=np.float64)
    motion = np.diff(trajectory[:, :2], axis=0)
    speeds = np.hypot(motion[:, 0], motion[:, 1]) / FRAME_DT
    speeds = np.r_[speeds[:1], speeds] if len(speeds) else np.zeros(1)
    if trajectory.shape[1] == 2:
        yaws = np.arctan2(motion[:, 1], motion[:, 0])
        yaws = np.r_[yaws[:1], yaws] if len(yaws) else np.zeros(1)
        trajectory = np.c_[trajectory, yaws]
    return [EgoState(*map(float, pose), float(v)) for pose, v in zip(trajectory, speeds)]
