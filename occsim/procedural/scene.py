"""The one door from the procedural world to the learned one: an episode's opening frames.

The learned world starts from what the procedural world shows in its first frames and never
looks at it again, so this is all it imports from :mod:`occsim.procedural`.
"""

from __future__ import annotations

import functools

import numpy as np

from occsim.grid import EgoState
from occsim.procedural.config import WorldConfig
from occsim.procedural.world import ProceduralWorld


def opening_frames(
    world: ProceduralWorld, episode_seed: int, maneuver: str, frames: int
) -> tuple[np.ndarray, list[EgoState]]:
    """Reset ``world`` with ``episode_seed`` and let the ego drive ``maneuver`` itself for
    ``frames`` frames; returns the occupancy ``(frames, X, Y, Z)`` and the ego states."""
    world.reset(episode_seed, maneuver)
    occupancy, states = [], []
    for t in range(frames):
        if t:
            world.step_scripted()
        occupancy.append(world.render())
        states.append(world.ego_state)
    return np.stack(occupancy), states


@functools.lru_cache(maxsize=2)
def _world(map_seed: int, config: WorldConfig) -> ProceduralWorld:
    # Building a map takes a while; episodes on one map reuse it (reset replaces the traffic).
    return ProceduralWorld(map_seed, config)


def starting_scene(
    map_seed: int,
    episode_seed: int,
    maneuver: str = "straight",
    frames: int = 4,
    config: WorldConfig | None = None,
) -> tuple[np.ndarray, list[EgoState]]:
    """The opening frames of the procedural episode ``(map_seed, episode_seed)``: the scene
    ``occsim/Procedural-v0`` starts from with the same seeds, as occupancy and ego states."""
    return opening_frames(_world(map_seed, config or WorldConfig()), episode_seed, maneuver, frames)
