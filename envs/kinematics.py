"""Ego kinematics: the learned world's ego following its waypoints, window trajectories, and
the kinematic bicycle that turns controls into waypoints."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class BicycleModel:
    """Kinematic bicycle (rear-axle reference), integrated in ``substeps`` per frame.

    Attributes:
        wheelbase: metres between the axles.
        max_acceleration: m/s^2 of an acceleration command of +1.
        max_deceleration: m/s^2 of braking at -1.
        max_steering: front-wheel angle (rad) of a steering command of +-1 (+ is left).
        max_speed: speed cap in m/s.
        substeps: integration steps per frame.
        frame_period: seconds between the frames it returns.
    """

    wheelbase: float = 2.7
    max_acceleration: float = 3.0
    max_deceleration: float = 6.0
    max_steering: float = 0.5
    max_speed: float = 20.0
    substeps: int = 5
    frame_period: float = FRAME_DT

    def waypoints(
        self, speed: float, acceleration: float, steering: float, frames: int
    ) -> np.ndarray:
        """``(frames, 2)`` positions one frame period apart in the current ego frame for normalised
        commands in [-1, 1] held over the step."""
        return self.rollout(speed, np.tile([acceleration, steering], (frames, 1)))[:, :2]

    def rollout(self, speed: float, commands: np.ndarray) -> np.ndarray:
        """``(frames, 4)`` states ``(x, y, yaw, speed)`` a frame apart in the current ego frame
        for one normalised ``(acceleration, steering)`` command ``(frames, 2)`` per frame."""
        commands = np.clip(np.asarray(commands, dtype=np.float64), -1.0, 1.0)
        dt = self.frame_period / self.substeps
        x = y = yaw = 0.0
        out = np.zeros((len(commands), 4))
        for k, (acceleration, steering) in enumerate(commands):
            scale = self.max_acceleration if acceleration >= 0 else self.max_deceleration
            turn = np.tan(steering * self.max_steering) / self.wheelbase
            for _ in range(self.substeps):
                speed = float(np.clip(speed + acceleration * scale * dt, 0.0, self.max_speed))
                x += speed * np.cos(yaw) * dt
                y += speed * np.sin(yaw) * dt
                yaw += speed * turn * dt
            out[k] = x, y, yaw, speed
        return out
