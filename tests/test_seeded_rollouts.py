"""Seeded rollouts of both envs against arrays recorded before the restructure that gave the
learned world's rollout its own home (``tests/data/seeded_rollouts.npz``).

A refactor must not change what a seed and a list of actions produce. The procedural world
must match bit for bit. The learned world (the bundled model) matched bit for bit when
recorded and re-checked on the project's machines; on other CPUs, float sums in another
order may flip an arg-max tie, so a handful of voxels in a million may differ there.

Re-record deliberately (after a change that is meant to alter the worlds) with
``python tests/test_seeded_rollouts.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import occsim  # noqa: F401  (registers the environments)

RECORDED = Path(__file__).parent / "data" / "seeded_rollouts.npz"
ENV_IDS = {"procedural": "occsim/Procedural-v0", "learned": "occsim/OccSora-v0"}
# The recorded arrays predate the scene memory and the one-step sampler: they pin the
# memory-less rollout with the sampler they were recorded with (DDIM, 4 "leading" steps).
OPTIONS = {"procedural": {}, "learned": {"scene_memory": False, "num_inference_steps": 4}}
SEEDS = (10000, 10001)
# Straight, a gentle left and a gentle right step, 6-12 m/s (normalised waypoints).
ACTIONS = np.array(
    [
        [[0.15, 0.0], [0.3, 0.0], [0.45, 0.0], [0.6, 0.0]],
        [[0.15, 0.01], [0.3, 0.04], [0.44, 0.09], [0.58, 0.16]],
        [[0.15, -0.01], [0.3, -0.03], [0.45, -0.06], [0.6, -0.1]],
    ],
    dtype=np.float32,
)


def make_env(world: str) -> gym.Env:
    options = dict(OPTIONS[world])
    if world == "learned":
        from occsim.world_model import load_world_model

        options["pipeline"] = load_world_model(timestep_spacing="leading")
    return gym.make(ENV_IDS[world], **options)


def rollout_arrays(world: str, seed: int, env: gym.Env | None = None) -> dict[str, np.ndarray]:
    """Occupancy of every observation, ego poses and rewards of one seeded rollout."""
    env = env or make_env(world)
    observation, info = env.reset(seed=seed)
    frames, poses, rewards = [observation["occupancy"]], [info["ego_pose"]], []
    for action in ACTIONS:
        observation, reward, terminated, _, info = env.step(action)
        frames.append(observation["occupancy"])
        poses.append(info["ego_pose"])
        rewards.append(reward)
        if terminated:
            break
    return {
        f"{world}_{seed}_occupancy": np.stack(frames),
        f"{world}_{seed}_poses": np.stack(poses),
        f"{world}_{seed}_rewards": np.array(rewards),
    }


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(RECORDED) as data:
        return dict(data)


@pytest.mark.parametrize("world", ["procedural", "learned"])
def test_seeded_rollouts_are_unchanged(world, recorded):
    env = make_env(world)
    for seed in SEEDS:
        for key, value in rollout_arrays(world, seed, env).items():
            expected = recorded[key]
            assert value.shape == expected.shape, key
            if key.endswith("occupancy") and world == "learned":
                assert np.mean(value != expected) < 1e-5, key
            else:
                np.testing.assert_array_equal(value, expected, err_msg=key)


if __name__ == "__main__":
    arrays: dict[str, np.ndarray] = {}
    for name in ENV_IDS:
        for s in SEEDS:
            arrays.update(rollout_arrays(name, s))
    np.savez_compressed(RECORDED, **arrays)
    sys.stdout.write(f"recorded {len(arrays)} arrays in {RECORDED}\n")
