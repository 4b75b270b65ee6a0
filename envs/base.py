"""What every occsim env shares: spaces, reward terms, views and rendering over a world
backend that resets to a scene and advances the ego by waypoints."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from occsim.envs.config import OccEnvConfig
from occsim.envs.rewards import reward_terms
from occsim.geometry import wrap_angle
from occsim.grid import FRAME_DT, OCC3D_GRID, EgoState
from occsim.labels import FREE_ID
from occsim.render import render_bev, top_visible
from occsim.validation import check_int, check_real_array

# Bounds of the ego vector: speed, yaw rate, acceleration (an action of 1 is 40 m/s).
EGO_LOW = np.array([0.0, -20.0, -500.0], dtype=np.float32)
EGO_HIGH = np.array([100.0, 20.0, 500.0], dtype=np.float32)


class WorldBackend(Protocol):
    """A world behind the env API: reset to a scene, advance the ego, return frames."""

    name: str  # shown in window titles, e.g. "procedural world"
    reset_options: tuple[str, ...]

    def reset(
        self, rng: np.random.Generator, options: dict[str, Any]
    ) -> tuple[np.ndarray, list[EgoState], int | None]:
        """The first K frames, the ego states there and the map seed (if any), drawing all
        randomness from ``rng``."""

    def advance(self, start: EgoState, waypoints: np.ndarray) -> tuple[np.ndarray, list[EgoState]]:
        """Move the ego from ``start`` through metric ``waypoints (K, 2)`` (its frame);
        returns the K new frames and the ego states there."""


class ResetNeeded(RuntimeError):
    """``step`` after a ``reset`` (or a step) that raised: the episode is gone; call ``reset``."""


def finite_action(action: Any, shape: tuple[int, int]) -> np.ndarray:
    """A validated action as float64, clipped to [-1, 1]; complex, boolean, string and
    object arrays are refused rather than converted."""
    array = check_real_array(action, "action")
    if array.shape != shape:
        raise ValueError(
            f"action must have shape {shape} (K waypoints x (x, y)), got {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("action must be finite, got NaN or inf")
    return np.clip(array, -1.0, 1.0)


def check_seed(seed: Any) -> int | None:
    """``seed`` as a non-negative ``int`` (or ``None``), as gymnasium's seeding takes it."""
    return None if seed is None else check_int(seed, "seed", 0)


class OccEnv(gym.Env):
    """Drive a 4D occupancy world: each step moves the ego through K waypoints.

    ## Action Space
    ``Box(-1, 1, (K, 2), float32)``: the next K ego positions, 0.5 s apart, in the ego frame
    at the start of the step (x forward, y left), scaled by ``config.action_scale`` (default
    20 m in x, 10 m in y). ``BicycleControl`` and ``MetaActions`` wrappers give other
    controls.

    ## Observation Space
    A ``Dict`` with the keys of ``config.observation_keys``:

    | key | space | meaning |
    |---|---|---|
    | ``occupancy`` | ``Box(0, 17, (K, 200, 200, 16), uint8)`` | the K frames of the step |
    | ``ego`` | ``Box(EGO_LOW, EGO_HIGH, (3,), float32)`` | speed, yaw rate, acceleration |
    | ``bev`` | ``Box(0, 17, (200, 200), uint8)`` | top visible class of the last frame |

    (speed in m/s, yaw rate in rad/s, acceleration in m/s^2, clipped to the box)

    ## Rewards
    A weighted sum of ``progress`` (metres along the starting heading), ``collision``,
    ``offroad`` and ``comfort`` (jerk), each reported in ``info["rewards"]``.

    ## Episode End
    Terminated on a collision (an obstacle voxel in the band the ego's body sweeps, inside
    its box) or with no driveable surface under the ego; truncated by ``max_episode_steps``
    given at registration (100 steps, 200 s).

    ## Arguments
    ``config`` (:class:`OccEnvConfig`) or its fields as keyword arguments, ``render_mode``
    (``"rgb_array"`` for BEV frames, ``"human"`` for a window).
    """

    metadata: ClassVar[dict] = {"render_modes": ["human", "rgb_array"], "render_fps": 2}
    frame_period: float = FRAME_DT  # seconds between frames

    def __init__(
        self, backend: WorldBackend, config: OccEnvConfig, render_mode: str | None = None
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        self.config, self.render_mode = config, render_mode
        self._backend = backend
        k = config.frames_per_step
        self.action_space = spaces.Box(-1.0, 1.0, (k, 2), dtype=np.float32)
        all_spaces = {
            "occupancy": spaces.Box(0, FREE_ID, (k, *OCC3D_GRID.shape), dtype=np.uint8),
            "ego": spaces.Box(EGO_LOW, EGO_HIGH, dtype=np.float32),
            "bev": spaces.Box(0, FREE_ID, OCC3D_GRID.shape[:2], dtype=np.uint8),
        }
        self.observation_space = spaces.Dict(
            {key: all_spaces[key] for key in config.observation_keys}
        )
        self._frames: np.ndarray | None = None
        self._states: list[EgoState] = []
        self._map_seed: int | None = None
        self._acceleration = 0.0
        self._window = None
        self._broken: str | None = None  # why the episode is unusable (a failed call)

    # ------------------------------------------------------------------ episode
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = check_seed(seed)
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        options = dict(options or {})
        unknown = sorted(set(options) - set(self._backend.reset_options))
        if unknown:
            raise ValueError(
                f"unknown reset options {unknown}; valid: {list(self._backend.reset_options)}"
            )
        # Checked so far: a bad argument leaves the episode as it was. From here on the
        # backend may be half-reset, so the episode is gone until a reset succeeds.
        self._broken = "reset() is running"
        try:
            super().reset(seed=seed)
            frames, states, map_seed = self._backend.reset(self.np_random, options)
        except Exception as error:
            self._broken = f"the last reset() failed ({type(error).__name__}: {error})"
            raise
        self._frames, self._states, self._acceleration = frames, states, 0.0
        self._map_seed, self._broken = map_seed, None
        if self.render_mode == "human":  # gymnasium's convention: reset shows its frame too
            self.render()
        return self._observation(), self._info({}, False, False)

    def step(self, action):
        waypoints = self._waypoints(action)
        try:
            return self._finish_step(*self._backend.advance(self.ego_state, waypoints))
        except Exception as error:
            # The world may have moved on part of the way: continuing would be a lie.
            self._broken = f"the last step() failed ({type(error).__name__}: {error})"
            raise

    def _waypoints(self, action: Any) -> np.ndarray:
        """Metric waypoints ``(K, 2)`` of a validated, clipped action."""
        self._check_usable()
        action = finite_action(action, (self.config.frames_per_step, 2))
        return action * np.asarray(self.config.action_scale)

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise ResetNeeded(f"{self._broken}; call reset() to start a new episode")
        if not self._states:
            raise RuntimeError("call reset() before step()")

    def _finish_step(self, frames: np.ndarray, states: list[EgoState]):
        """Rewards, termination, observation and info once the world moved on by K frames."""
        start = self._states[-1]
        self._frames = frames
        speeds = np.array([start.speed] + [s.speed for s in states])
        accelerations = np.diff(speeds) / self.frame_period
        jerk = float(np.abs(np.diff(np.concatenate([[self._acceleration], accelerations]))).sum())
        self._acceleration = float(accelerations[-1])
        end = states[-1]
        heading = np.array([np.cos(start.yaw), np.sin(start.yaw)])
        progress = float(np.dot([end.x - start.x, end.y - start.y], heading))
        terms, collision, off = reward_terms(frames, progress, jerk, self.config.rewards)
        self._states = self._states[-1:] + states
        observation = self._observation()
        if self.render_mode == "human":
            self.render()
        reward = float(sum(terms.values()))
        return observation, reward, collision or off, False, self._info(terms, collision, off)

    # ------------------------------------------------------------------ views
    @property
    def ego_state(self) -> EgoState:
        """The ego's pose and speed at the last frame."""
        if self._broken is not None:
            raise ResetNeeded(f"{self._broken}; call reset() to start a new episode")
        if not self._states:
            raise RuntimeError("call reset() first: the episode has no ego state yet")
        return self._states[-1]

    def _ego_vector(self) -> np.ndarray:
        last, previous = self._states[-1], self._states[-2] if len(self._states) > 1 else None
        yaw_rate = 0.0
        if previous is not None:
            yaw_rate = float(wrap_angle(last.yaw - previous.yaw)) / self.frame_period
        vector = np.array([last.speed, yaw_rate, self._acceleration], dtype=np.float32)
        return np.clip(vector, EGO_LOW, EGO_HIGH)

    def _observation(self) -> dict[str, np.ndarray]:
        views = {
            "occupancy": lambda: self._frames,
            "ego": self._ego_vector,
            "bev": lambda: top_visible(self._frames[-1])[0],
        }
        return {key: views[key]() for key in self.config.observation_keys}

    def _info(self, terms: dict[str, float], collision: bool, off: bool) -> dict[str, Any]:
        last = self._states[-1]
        return {
            "rewards": dict(terms),
            "collision": collision,
            "offroad": off,
            "ego_pose": np.array([last.x, last.y, last.yaw], dtype=np.float64),
            "frame_poses": np.array(
                [[s.x, s.y, s.yaw] for s in self._states[-self.config.frames_per_step :]]
            ),
            "map_seed": self._map_seed,
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._frames is None:
            return None
        image = render_bev(self._frames[-1], trajectory=None)
        if self.render_mode == "rgb_array":
            return image
        return self._show(image)

    def _show(self, image: np.ndarray) -> None:
        try:
            import pygame
        except ImportError as error:  # pragma: no cover - pygame is a dependency
            raise ImportError("render_mode='human' needs pygame: pip install pygame") from error
        if self._window is None:
            pygame.display.init()
            self._window = pygame.display.set_mode(image.shape[1::-1])
            pygame.display.set_caption(f"occsim: {self._backend.name}")
        pygame.event.pump()
        self._window.blit(pygame.surfarray.make_surface(image.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        return None

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
