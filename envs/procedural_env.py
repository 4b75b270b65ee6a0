"""``occsim/Procedural-v0``: the exact procedural world behind the occsim env API."""

from __future__ import annotations

from typing import Any

import numpy as np

from occsim.envs.base import OccEnv
from occsim.envs.config import OccEnvConfig
from occsim.grid import EgoState
from occsim.procedural import MANEUVERS, ProceduralWorld, WorldConfig, opening_frames


class ProceduralBackend:
    """The procedural world as an env backend: exact frames for any waypoints, with traffic
    that reacts to the ego. One map is kept while episodes reuse its seed."""

    name = "procedural world"
    reset_options = ("maneuver",)

    def __init__(self, config: OccEnvConfig, world_config: WorldConfig) -> None:
        self.config, self.world_config = config, world_config
        self._world: ProceduralWorld | None = None
        self._map_seed: int | None = None

    def reset(
        self, rng: np.random.Generator, options: dict[str, Any]
    ) -> tuple[np.ndarray, list[EgoState], int]:
        maneuver = options.get("maneuver", "straight")
        if maneuver not in MANEUVERS:
            raise ValueError(f"maneuver {maneuver!r} not in {MANEUVERS}")
        map_seed = self.config.map_seed
        if map_seed is None:
            map_seed = int(rng.integers(2**31))
        if self._world is None or map_seed != self._map_seed:
            self._world, self._map_seed = ProceduralWorld(map_seed, self.world_config), map_seed
        episode_seed = int(rng.integers(2**31))
        frames, states = opening_frames(
            self._world, episode_seed, maneuver, self.config.frames_per_step
        )
        return frames, states, map_seed

    def advance(self, start: EgoState, waypoints: np.ndarray) -> tuple[np.ndarray, list[EgoState]]:
        if self._world is None:
            raise RuntimeError("call reset() before step()")
        frames: list[np.ndarray] = []
        states = self._world.step(waypoints, frames)
        return np.stack(frames), states


class ProceduralEnv(OccEnv):
    """Drive the exact procedural world: each step moves the ego through K waypoints and
    the traffic reacts (see :class:`~occsim.envs.base.OccEnv` for spaces, rewards and
    episode ends).

    ## Starting State
    A procedural map (``config.map_seed`` or drawn from the seed), the ego on a lane with
    traffic around; the first observation holds K frames of the ego driving itself
    (``options={"maneuver": ...}``, default ``"straight"``).

    ## Arguments
    ``config`` (:class:`OccEnvConfig`) or its fields as keyword arguments, ``render_mode``,
    ``world_config`` (:class:`~occsim.procedural.WorldConfig`).
    """

    def __init__(
        self,
        config: OccEnvConfig | None = None,
        render_mode: str | None = None,
        world_config: WorldConfig | None = None,
        **kwargs: Any,
    ) -> None:
        config = OccEnvConfig.from_kwargs(config, **kwargs)
        backend = ProceduralBackend(config, world_config or WorldConfig())
        super().__init__(backend, config, render_mode)
