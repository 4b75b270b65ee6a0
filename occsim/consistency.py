"""Temporal consistency of occupancy: do static voxels stay put after ego-motion compensation?"""

from __future__ import annotations

import numpy as np

from occsim.grid import OCC3D_GRID, GridSpec
from occsim.labels import STATIC_CLASSES
from occsim.validation import check_occupancy


def warp_to_next_frame(
    occupancy: np.ndarray,
    pose: np.ndarray,
    next_pose: np.ndarray,
    grid: GridSpec = OCC3D_GRID,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of every voxel of a frame in the next frame's grid.

    Args:
        occupancy: ``(X, Y, Z)`` frame at ``pose``.
        pose, next_pose: ``(x, y, yaw)`` of the two frames in any common frame.

    Returns:
        ``(indices, inside)``: ``(X, Y, 2)`` int BEV indices in the next frame and a boolean
        ``(X, Y)`` mask of those that fall inside its grid.
    """
    pose, next_pose = np.asarray(pose, np.float64), np.asarray(next_pose, np.float64)
    centers = grid.bev_centers()
    c0, s0 = np.cos(pose[2]), np.sin(pose[2])
    common = centers @ np.array([[c0, s0], [-s0, c0]]) + pose[:2]
    c1, s1 = np.cos(next_pose[2]), np.sin(next_pose[2])
    local = (common - next_pose[:2]) @ np.array([[c1, -s1], [s1, c1]])
    indices = grid.metric_to_index(local)
    return indices, grid.contains(indices)


def static_agreement(
    occupancy: np.ndarray,
    next_occupancy: np.ndarray,
    pose: np.ndarray,
    next_pose: np.ndarray,
    grid: GridSpec = OCC3D_GRID,
    classes: tuple[int, ...] = STATIC_CLASSES,
    tolerance: int = 0,
) -> float:
    """Fraction of static-class voxels of a frame whose class the next frame repeats.

    Every voxel of ``occupancy`` whose class is in ``classes`` and which lands inside the
    next frame's grid (nearest voxel after ego-motion compensation) counts; it agrees when
    the next frame holds the same class there, or, with ``tolerance`` k > 0, anywhere within
    k voxels in x and y at the same height. Re-voxelising a rotated 0.4 m grid moves class
    boundaries by up to a voxel, so ``tolerance=1`` separates that aliasing from real change.
    Returns NaN if no voxel counts.
    """
    occupancy = check_occupancy(occupancy, "occupancy", ndim=3, spatial_shape=grid.shape)
    next_occupancy = check_occupancy(
        next_occupancy, "next_occupancy", ndim=3, spatial_shape=grid.shape
    )
    indices, inside = warp_to_next_frame(occupancy, pose, next_pose, grid)
    source = occupancy[inside]  # (N, Z)
    ix, iy = indices[inside].T
    counted = np.isin(source, classes)
    if not counted.any():
        return float("nan")
    agree = np.zeros(source.shape, dtype=bool)
    nx, ny, _ = grid.shape
    for dx in range(-tolerance, tolerance + 1):
        for dy in range(-tolerance, tolerance + 1):
            jx, jy = np.clip(ix + dx, 0, nx - 1), np.clip(iy + dy, 0, ny - 1)
            agree |= next_occupancy[jx, jy] == source
    return float(agree[counted].mean())
