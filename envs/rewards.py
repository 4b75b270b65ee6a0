"""Reward terms computed from the occupancy around the ego: the same for every world."""

from __future__ import annotations

import numpy as np

from occsim.grid import OCC3D_GRID, GridSpec
from occsim.labels import DRIVEABLE_SURFACE, OBSTACLE_CLASSES, OTHER_FLAT

EGO_HEIGHT_VOXELS = slice(3, 7)  # z from 0.2 m to 1.8 m: what the ego's body sweeps


def collides(frame: np.ndarray, grid: GridSpec = OCC3D_GRID) -> bool:
    """Whether an obstacle voxel lies inside the ego box (between ground and roof)."""
    footprint = grid.ego_footprint()
    return bool(np.isin(frame[footprint][:, EGO_HEIGHT_VOXELS], OBSTACLE_CLASSES).any())


def offroad(frame: np.ndarray, grid: GridSpec = OCC3D_GRID) -> bool:
    """Whether no driveable surface (or crossing) lies under the ego box."""
    ground = frame[grid.ego_footprint()][:, 2]
    return not bool(np.isin(ground, (DRIVEABLE_SURFACE, OTHER_FLAT)).any())


def reward_terms(
    occupancy: np.ndarray,
    forward_progress: float,
    jerk: float,
    weights,
) -> tuple[dict[str, float], bool]:
    """Weighted reward terms of one step and whether the episode terminates.

    Args:
        occupancy: ``(K, X, Y, Z)`` frames of the step; the last one is judged.
        forward_progress: metres driven along the heading at the start of the step.
        jerk: summed absolute change of acceleration over the step (m/s^2).
        weights: a :class:`~occsim.envs.config.RewardWeights`.
    """
    last = occupancy[-1]
    hit, off = collides(last), offroad(last)
    terms = {
        "progress": weights.progress * float(forward_progress),
        "collision": weights.collision * float(hit),
        "offroad": weights.offroad * float(off),
        "comfort": weights.comfort * float(jerk),
    }
    return terms, hit or off
