"""Keyboard driving: pygame events -> held (acceleration, steering) -> waypoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from occsim.agents.base import ControlSpec
from occsim.envs.kinematics import BicycleModel


@dataclass
class KeyboardState:
    """What the keys currently ask for, and requests the driving loop acts on."""

    throttle: float = 0.0
    steering: float = 0.0
    brake: bool = False
    reset: bool = False
    pause: bool = False
    quit: bool = False
    held: set = field(default_factory=set)


class KeyboardAgent:
    """Arrows / WASD steer and accelerate, space brakes, R resets, P pauses, Esc quits;
    drives ``env`` (its action scale and frame period).

    :meth:`process_event` is pure (a pygame event in, the state updated), so tests feed
    it synthetic events; :meth:`act` turns the held keys into the env's waypoints through
    a kinematic bicycle. The car holds the speed the driver gave it, and an episode starts
    standing still (whatever speed the env's opening frames had): no key, no motion.
    """

    def __init__(self, env: gym.Env, model: BicycleModel | None = None) -> None:
        self.controls = ControlSpec.of(env)
        self.model = model or self.controls.bicycle()
        self.state = KeyboardState()
        self.speed = 0.0  # m/s the driver holds: the end speed of the last action

    def reset(self, seed: int | None = None) -> None:
        """A new episode: standing still, not paused (keys still held stay held)."""
        self.state = KeyboardState(held=set(self.state.held))
        self._update_commands()
        self.speed = 0.0

    def process_event(self, event: Any) -> KeyboardState:
        """Update the state from one pygame event (KEYDOWN / KEYUP / QUIT)."""
        import pygame

        if event.type == pygame.QUIT:
            self.state.quit = True
        elif event.type == pygame.KEYDOWN:
            key = event.key
            if key == pygame.K_ESCAPE:
                self.state.quit = True
            elif key == pygame.K_r:
                self.state.reset = True
            elif key == pygame.K_p:
                self.state.pause = not self.state.pause
            else:
                self.state.held.add(key)
        elif event.type == pygame.KEYUP:
            self.state.held.discard(event.key)
        self._update_commands()
        return self.state

    def _update_commands(self) -> None:
        import pygame

        held = self.state.held
        up = bool(held & {pygame.K_UP, pygame.K_w})
        down = bool(held & {pygame.K_DOWN, pygame.K_s})
        left = bool(held & {pygame.K_LEFT, pygame.K_a})
        right = bool(held & {pygame.K_RIGHT, pygame.K_d})
        self.state.brake = pygame.K_SPACE in held
        self.state.throttle = -1.0 if self.state.brake else 0.6 * (up - down)
        self.state.steering = 0.6 * (left - right)

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        """The next step's waypoints for the keys held now (the observation is not needed:
        the speed is the one the driver holds, which the env's ego follows exactly)."""
        commands = np.tile([self.state.throttle, self.state.steering], (self.controls.frames, 1))
        states = self.model.rollout(self.speed, commands)
        self.speed = float(states[-1, 3])
        return self.controls.normalise(states[:, :2])
