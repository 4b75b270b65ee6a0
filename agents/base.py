"""The protocol every occsim agent follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from occsim.envs.kinematics import BicycleModel


@runtime_checkable
class Agent(Protocol):
    """Drives an occsim env: ``reset()`` at an episode start, then ``act(obs)`` each step,
    returning an action of the env's (unwrapped) action space: ``(K, 2)`` normalised
    waypoints."""

    def reset(self, seed: int | None = None) -> None:
        """Forget the last episode (and reseed, where the agent is random)."""

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        """The action for ``observation``."""


@dataclass(frozen=True)
class ControlSpec:
    """What an agent must know of the env it drives, read from the env itself.

    Attributes:
        frames: waypoints per action (the env's ``frames_per_step``).
        action_scale: metres that an action of 1.0 means, for waypoint ``(x, y)``.
        frame_period: seconds between waypoints.
    """

    frames: int
    action_scale: tuple[float, float]
    frame_period: float

    @classmethod
    def of(cls, env: gym.Env) -> ControlSpec:
        """The controls of an occsim env (wrapped or not)."""
        base = env.unwrapped
        config = base.config
        return cls(config.frames_per_step, tuple(config.action_scale), base.frame_period)

    @property
    def step_seconds(self) -> float:
        """Seconds of world one action covers."""
        return self.frames * self.frame_period

    def normalise(self, waypoints: np.ndarray) -> np.ndarray:
        """Metric waypoints ``(K, 2)`` -> the env's normalised action, clipped to [-1, 1]."""
        return np.clip(waypoints / np.asarray(self.action_scale), -1.0, 1.0).astype(np.float32)

    def bicycle(self, speed_margin: float = 0.95) -> BicycleModel:
        """A kinematic bicycle whose top speed keeps a step's waypoints within the action's
        reach (``speed_margin`` of ``action_scale[0]`` metres per step)."""
        max_speed = speed_margin * self.action_scale[0] / self.step_seconds
        return BicycleModel(max_speed=max_speed, frame_period=self.frame_period)
