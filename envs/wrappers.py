"""Other controls of the occsim envs: a kinematic bicycle and discrete meta-actions."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from occsim.grid import FRAME_DT

META_ACTIONS = ("keep", "accelerate", "brake", "left", "right", "stop")
# (acceleration, steering) commands of each meta-action, held for the step.
META_COMMANDS = {
    "keep": (0.0, 0.0),
    "accelerate": (0.5, 0.0),
    "brake": (-0.5, 0.0),
    "left": (0.0, 0.3),
    "right": (0.0, -0.3),
    "stop": (-1.0, 0.0),
}


@dataclass(frozen=True)
class BicycleModel:
    """Kinematic bicycle (rear-axle reference), integrated in ``substeps`` per frame.

    Attributes:
        wheelbase: metres between the axles.
        max_acceleration: m/s^2 of an acceleration command of +1.
        max_deceleration: m/s^2 of braking at -1.
        max_steering: front-wheel angle (rad) of a steering command of +-1 (+ is left).
        max_speed: speed cap in m/s.
        substeps: integration steps per 0.5 s frame.
    """

    wheelbase: float = 2.7
    max_acceleration: float = 3.0
    max_deceleration: float = 6.0
    max_steering: float = 0.5
    max_speed: float = 20.0
    substeps: int = 5

    def waypoints(
        self, speed: float, acceleration: float, steering: float, frames: int
    ) -> np.ndarray:
        """``(frames, 2)`` positions 0.5 s apart in the current ego frame for normalised
        commands in [-1, 1] held over the step."""
        return self.rollout(speed, np.tile([acceleration, steering], (frames, 1)))[:, :2]

    def rollout(self, speed: float, commands: np.ndarray) -> np.ndarray:
        """``(frames, 4)`` states ``(x, y, yaw, speed)`` 0.5 s apart in the current ego frame
        for one normalised ``(acceleration, steering)`` command ``(frames, 2)`` per frame."""
        commands = np.clip(np.asarray(commands, dtype=np.float64), -1.0, 1.0)
        dt = FRAME_DT / self.substeps
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


def _normalised(env: gym.Env, waypoints: np.ndarray) -> np.ndarray:
    scale = np.asarray(env.unwrapped.config.action_scale)
    return np.clip(waypoints / scale, -1.0, 1.0).astype(np.float32)


class BicycleControl(gym.ActionWrapper):
    """Action ``Box(-1, 1, (2,))``: (acceleration, steering), held for the step and turned
    into the env's K waypoints by a :class:`BicycleModel` from the current speed."""

    def __init__(self, env: gym.Env, model: BicycleModel | None = None) -> None:
        super().__init__(env)
        self.model = model or BicycleModel()
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def action(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite (acceleration, steering), got {action!r}")
        frames = self.env.unwrapped.config.frames_per_step
        speed = self.env.unwrapped.ego_state.speed
        return _normalised(self.env, self.model.waypoints(speed, *action, frames))


class MetaActions(gym.ActionWrapper):
    """Action ``Discrete(6)``: ``keep``, ``accelerate``, ``brake``, ``left``, ``right``,
    ``stop`` (index order of :data:`META_ACTIONS`), driven through a bicycle model."""

    def __init__(self, env: gym.Env, model: BicycleModel | None = None) -> None:
        super().__init__(env)
        self.model = model or BicycleModel()
        self.action_space = spaces.Discrete(len(META_ACTIONS))

    def action(self, action: int) -> np.ndarray:
        if not self.action_space.contains(int(action)):
            raise ValueError(f"meta-action must be an int in 0..{len(META_ACTIONS) - 1}")
        acceleration, steering = META_COMMANDS[META_ACTIONS[int(action)]]
        frames = self.env.unwrapped.config.frames_per_step
        speed = self.env.unwrapped.ego_state.speed
        return _normalised(self.env, self.model.waypoints(speed, acceleration, steering, frames))
