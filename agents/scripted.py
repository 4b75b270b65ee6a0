"""Scripted agents: random actions, constant speed, and the paper's Figure 10 manoeuvres."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from occsim.agents.base import ControlSpec
from occsim.envs.kinematics import BicycleModel

# (acceleration, steering) held by each manoeuvre, normalised as in BicycleControl.
MANEUVER_COMMANDS: dict[str, tuple[float, float]] = {
    "straight": (0.0, 0.0),
    "left": (0.0, 0.35),
    "right": (0.0, -0.35),
    "stop": (-0.6, 0.0),
    "accelerate": (0.5, 0.0),
}


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
    """Straight ahead at a fixed speed (m/s) in ``env``."""

    def __init__(self, env: gym.Env, speed: float = 8.0) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 m/s, got {speed}")
        controls = ControlSpec.of(env)
        x = speed * controls.frame_period * np.arange(1, controls.frames + 1)
        self._action = controls.normalise(np.stack([x, np.zeros(controls.frames)], axis=1))

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        return self._action.copy()


class ManeuverAgent:
    """Drives one manoeuvre (``straight``, ``left``, ``right``, ``stop``, ``accelerate``) in
    ``env`` through a kinematic bicycle from the observed speed (``observation["ego"][0]``)."""

    def __init__(
        self,
        env: gym.Env,
        maneuver: str = "straight",
        initial_speed: float = 6.0,
        model: BicycleModel | None = None,
    ) -> None:
        if maneuver not in MANEUVER_COMMANDS:
            raise ValueError(f"maneuver {maneuver!r} not in {sorted(MANEUVER_COMMANDS)}")
        self.maneuver, self.initial_speed = maneuver, initial_speed
        self.controls = ControlSpec.of(env)
        self.model = model or BicycleModel(frame_period=self.controls.frame_period)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        speed = float(observation["ego"][0]) if "ego" in observation else self.initial_speed
        acceleration, steering = MANEUVER_COMMANDS[self.maneuver]
        waypoints = self.model.waypoints(speed, acceleration, steering, self.controls.frames)
        return self.controls.normalise(waypoints)
