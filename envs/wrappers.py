"""Other controls of the occsim envs: (acceleration, steering) and discrete meta-actions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from occsim.envs.kinematics import BicycleModel

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
