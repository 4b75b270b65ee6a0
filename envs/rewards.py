"""Reward terms computed from the occupancy around the ego: the same for every world."""

from __future__ import annotations

import numpy as np

from occsim.grid import OCC3D_GRID, GridSpec
from occsim.labels import DRIVEABLE_CLASSES, OBSTACLE_CLASSES


def collides(frame: np.ndarray, grid: GridSpec = OCC3D_GRID) -> bool:
    """Whether an obstacle voxel lies inside the ego box (in the band its body sweeps)."""
    body = frame[grid.ego_footprint()][:, grid.ego_body_band]
    return bool(np.isin(body, OBSTACLE_CLASSES).any())


def offroad(frame: np.ndarray, grid: GridSpec = OCC3D_GRID) -> bool:
    """Whether no driveable surface (or crossing) lies under the ego box."""
    ground = frame[grid.ego_footprint()][:, grid.ground_index]
    return not bool(np.isin(ground, DRIVEABLE_CLASSES).any())


def reward_terms(
    occupancy: np.ndarray,
    forward_progress: float,
    jerk: float,
    weights,
    grid: GridSpec = OCC3D_GRID,
) -> tuple[dict[str, float], bool, bool]:
    """Weighted reward terms of one step, and whether it ended in a collision and off road
    (either terminates the episode).

    Args:
        occupancy: ``(K, X, Y, Z)`` frames of the step; the last one is judged.
        forward_progress: metres driven along the heading at the start of the step.
        jerk: summed absolute change of acceleration over the step (m/s^2).
        weights: a :class:`~occsim.envs.config.RewardWeights`.
        grid: the grid the frames are in.
    """
    last = occupancy[-1]
    hit, off = collides(last, grid), offroad(last, grid)
    terms = {
        "progress": weights.progress * float(forward_progress),
        "collision": weights.collision * float(hit),
        "offroad": weights.offroad * float(off),
        "comfort": weights.comfort * float(jerk),
    }
    return terms, hit, off
