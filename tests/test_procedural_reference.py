"""The procedural world against digests recorded before its traffic and voxelizer were
vectorised (``tests/data/procedural_reference.json``).

Speed-ups must not change what a seed produces: every frame's occupancy bytes and every road
user's exact pose and speed must match. Episodes on the default 320 m world cover scripted
manoeuvres (turns at junctions, a lane change, a stop) and an ego driven by waypoints, as
``occsim/Procedural-v0`` drives it.

Re-record deliberately (after a change that is meant to alter the world) with
``python tests/test_procedural_reference.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from occsim.procedural import ProceduralWorld, WorldConfig

RECORDED = Path(__file__).parent / "data" / "procedural_reference.json"
FRAMES = 12
# Lanes of the default world are too short for the 40 m a lane change needs; these are long.
CONFIGS = {
    "default": WorldConfig(),
    "long_lanes": WorldConfig(grid_nodes=3, two_lane_probability=1.0),
}
# (config, map seed, episode seed, manoeuvre); "waypoints" drives the ego through WAYPOINTS.
EPISODES = (
    ("default", 3, 11, "left"),
    ("default", 3, 13, "right"),
    ("default", 7, 14, "accelerate"),
    ("default", 7, 22, "stop"),
    ("default", 7, 23, "waypoints"),
    ("long_lanes", 2, 4, "lane_change"),
)
# Four frames per step, as Procedural-v0 moves the ego: straight, then a gentle left.
WAYPOINTS = np.array([[4.0, 0.0], [8.0, 0.0], [12.0, 0.1], [16.0, 0.4]], dtype=np.float32)


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _agents(world: ProceduralWorld) -> np.ndarray:
    """Every road user's ``(x, y, heading, speed)`` as float64, vehicles then pedestrians."""
    rows = [(*v.position, v.heading, v.speed) for v in world.traffic.vehicles]
    rows += [(*p.position, p.heading, p.speed) for p in world.traffic.pedestrians]
    return np.array(rows, dtype=np.float64)


def _digest(world: ProceduralWorld, occupancy: np.ndarray) -> dict[str, object]:
    agents = _agents(world)
    ego = world.ego_state
    return {
        "occupancy": _sha(occupancy),
        "agents": _sha(agents),
        "agents_mm": _sha(np.round(agents, 3)),  # tells drift from a different world
        "ego": [round(ego.x, 6), round(ego.y, 6), round(ego.yaw, 6), round(ego.speed, 6)],
    }


def episode_digests(world: ProceduralWorld, episode_seed: int, maneuver: str) -> list[dict]:
    """Digest of each of ``FRAMES`` frames of one episode."""
    if maneuver == "waypoints":
        world.reset(episode_seed, "straight")
        out = [_digest(world, world.render())]
        while len(out) < FRAMES:
            frames: list[np.ndarray] = []
            world.step(WAYPOINTS, frames)
            # Road users are only visible between steps: the last frame of a step is digested
            # with them, the earlier ones by their occupancy alone.
            for frame in frames[:-1]:
                out.append({"occupancy": _sha(frame)})
            out.append(_digest(world, frames[-1]))
        return out[:FRAMES]
    world.reset(episode_seed, maneuver)
    out = [_digest(world, world.render())]
    for _ in range(FRAMES - 1):
        world.step_scripted()
        out.append(_digest(world, world.render()))
    return out


def _key(episode: tuple) -> str:
    return "-".join(str(part) for part in episode)


def _worlds() -> dict[tuple[str, int], ProceduralWorld]:
    maps = sorted({(config, seed) for config, seed, _, _ in EPISODES})
    return {(config, seed): ProceduralWorld(seed, CONFIGS[config]) for config, seed in maps}


def record() -> dict[str, list[dict]]:
    worlds = _worlds()
    return {
        _key(episode): episode_digests(worlds[episode[:2]], *episode[2:]) for episode in EPISODES
    }


@pytest.fixture(scope="module")
def recorded() -> dict[str, list[dict]]:
    return json.loads(RECORDED.read_text())


@pytest.fixture(scope="module")
def worlds() -> dict[tuple[str, int], ProceduralWorld]:
    return _worlds()


@pytest.mark.parametrize("episode", EPISODES, ids=_key)
def test_procedural_frames_are_unchanged(episode, recorded, worlds):
    expected = recorded[_key(episode)]
    actual = episode_digests(worlds[episode[:2]], *episode[2:])
    for t, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert got == want, f"frame {t} of {episode}"


if __name__ == "__main__":
    digests = record()
    RECORDED.write_text(json.dumps(digests, indent=1) + "\n")
    sys.stdout.write(f"recorded {len(digests)} episodes in {RECORDED}\n")
