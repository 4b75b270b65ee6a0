"""Scripted agents: random actions, constant speed, and the paper's Figure 10 manoeuvres."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from gymnasium import spaces

from occsim.envs.wrappers import BicycleModel

# (acceleration, steering) held by each manoeuvre, normalised as in BicycleControl.
MANEUVER_COMMANDS: dict[str, tuple[float, float]] = {
    "straight": (0.0, 0.0),
    "left": (0.0, 0.35),
    "right": (0.0, -0.35),
    "stop": (-0.6, 0.0),
    "accelerate": (0.5, 0.0),
}
DEFAULT_ACTION_SCALE = (20.0, 10.0)


def normalise(waypoints: np.ndarray, action_scale=DEFAULT_ACTION_SCALE) -> np.ndarray:
    """Metric waypoints ``(K, 2)`` -> the env's normalised action, clipped to [-1, 1]."""
    return np.clip(waypoints / np.asarray(action_scale), -1.0, 1.0).astype(np.float32)


class RandomAgent:
    """Uniform samples of the action space (seeded)."""

    def __init__(self, action_space: spaces.Space, seed: int | None = None) -> None:
        self.action_space = copy.deepcopy(action_space)  # its own random stream
        self.action_space.seed(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.action_space.seed(seed)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return self.action_space.sample()


class ConstantSpeedAgent:
    """Straight ahead at a fixed speed (m/s)."""

    def __init__(
        self, speed: float = 8.0, frames: int = 4, action_scale=DEFAULT_ACTION_SCALE
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 m/s, got {speed}")
        x = speed * 0.5 * np.arange(1, frames + 1)
        self._action = normalise(np.stack([x, np.zeros(frames)], axis=1), action_scale)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return self._action.copy()


class ManeuverAgent:
    """Drives one manoeuvre (``straight``, ``left``, ``right``, ``stop``, ``accelerate``)
    through a kinematic bicycle from the observed speed (``observation["ego"][0]``)."""

    def __init__(
        self,
        maneuver: str = "straight",
        frames: int = 4,
        initial_speed: float = 6.0,
        model: BicycleModel | None = None,
        action_scale=DEFAULT_ACTION_SCALE,
    ) -> None:
        if maneuver not in MANEUVER_COMMANDS:
            raise ValueError(f"maneuver {maneuver!r} not in {sorted(MANEUVER_COMMANDS)}")
        self.maneuver, self.frames, self.initial_speed = maneuver, frames, initial_speed
        self.model, self.action_scale = model or BicycleModel(), action_scale

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        speed = float(observation["ego"][0]) if "ego" in observation else self.initial_speed
        acceleration, steering = MANEUVER_COMMANDS[self.maneuver]
        waypoints = self.model.waypoints(speed, acceleration, steering, self.frames)
        return normalise(waypoints, self.action_scale)
