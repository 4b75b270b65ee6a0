"""Does the world stay as it was? Two drives whose answer the exact world knows.

- **Standing still**: zero waypoints for N steps. Nothing static may change and nothing may
  end the episode (the exact world keeps 99.6 % of its static voxels over 10 steps).
- **Out and back**: drive forward for a few steps, then back to the start (the ego turns
  round: its heading follows its motion). The static structure of the final frame must
  agree with the first frame's where the two views overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from occsim.consistency import static_agreement


@dataclass
class PersistenceScores:
    """Per seed: ``still_terminated`` (the standing-still episode ended), ``still_static``
    (share of step 1's static voxels unchanged at the last step), ``back_static`` (share of
    the first frame's static voxels the final frame of the out-and-back drive repeats, on
    the overlap; with a one-voxel tolerance in ``back_static_tolerant``)."""

    seed: int
    still_terminated: bool
    still_static: float
    back_static: float
    back_static_tolerant: float


def _straight(env: gym.Env, speed: float) -> np.ndarray:
    """Normalised waypoints at ``speed`` m/s straight ahead (negative: backwards)."""
    config = env.unwrapped.config
    frames, scale = config.frames_per_step, np.asarray(config.action_scale)
    x = speed * env.unwrapped.frame_period * np.arange(1, frames + 1)
    return (np.stack([x, np.zeros(frames)], axis=1) / scale).astype(np.float32)


def stand_still(env: gym.Env, seed: int, steps: int) -> tuple[bool, float]:
    """Whether zero waypoints for ``steps`` steps end the episode, and the share of the
    first step's static voxels that the last step repeats."""
    env.reset(seed=seed)
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    observation, _, terminated, _, info = env.step(zero)
    first, pose = observation["occupancy"][-1], info["ego_pose"]
    for _ in range(steps - 1):
        observation, _, done, _, info = env.step(zero)
        terminated |= done
    last = observation["occupancy"][-1]
    return bool(terminated), static_agreement(first, last, pose, info["ego_pose"])


def out_and_back(env: gym.Env, seed: int, steps: int, speed: float = 4.0) -> tuple[float, float]:
    """Static agreement (exact voxel, and within one voxel) of the first frame and the final
    frame after ``steps`` steps forward and as many back to the start."""
    observation, info = env.reset(seed=seed)
    first, pose = observation["occupancy"][-1], info["ego_pose"]
    for action in [_straight(env, speed)] * steps + [_straight(env, -speed)] * steps:
        observation, *_, info = env.step(action)
    last, last_pose = observation["occupancy"][-1], info["ego_pose"]
    return (
        static_agreement(first, last, pose, last_pose),
        static_agreement(first, last, pose, last_pose, tolerance=1),
    )


def evaluate_persistence(
    env: gym.Env, seeds: list[int], still_steps: int = 10, out_steps: int = 3, progress=True
) -> list[PersistenceScores]:
    """Both drives for every seed."""
    scores = []
    for seed in tqdm(seeds, desc="persistence", disable=not progress):
        terminated, still = stand_still(env, seed, still_steps)
        back, tolerant = out_and_back(env, seed, out_steps)
        scores.append(PersistenceScores(seed, terminated, still, back, tolerant))
    return scores
