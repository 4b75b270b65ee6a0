"""Smooth motion between generated frames: poses in between, and a frame seen from one.

The world gives a frame every 0.5 s; a viewer at 25 fps shows, between two of them, the
earlier frame moved into the ego pose of that instant, so the street glides past the car.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from occsim.geometry import local_to_world, world_to_local, wrap_angle
from occsim.grid import OCC3D_GRID, GridSpec
from occsim.labels import FREE_ID


def interpolate_pose(start: np.ndarray, end: np.ndarray, fraction: float) -> np.ndarray:
    """World pose ``(x, y, yaw)`` ``fraction`` of the way from ``start`` to ``end``
    (yaw along the shorter turn); fractions above 1 extrapolate."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    turn = float(wrap_angle(end[2] - start[2]))
    xy = start[:2] + fraction * (end[:2] - start[:2])
    return np.array([xy[0], xy[1], float(wrap_angle(start[2] + fraction * turn))])


@cache
def _column_centres(grid: GridSpec) -> np.ndarray:
    """Metric ``(x, y)`` of every voxel column, ``(X * Y, 2)`` in index order."""
    ix, iy = np.meshgrid(np.arange(grid.shape[0]), np.arange(grid.shape[1]), indexing="ij")
    centres = grid.lower[:2] + (np.stack([ix, iy], axis=-1) + 0.5) * grid.voxel_size
    return centres.reshape(-1, 2)


def view_from(
    frame: np.ndarray, frame_pose: np.ndarray, pose: np.ndarray, grid: GridSpec = OCC3D_GRID
) -> np.ndarray:
    """Occupancy ``frame (X, Y, Z)``, centred on world pose ``frame_pose``, as seen from the
    nearby world pose ``pose`` (nearest voxel column; cells it does not cover are free)."""
    frame_pose, pose = np.asarray(frame_pose, np.float64), np.asarray(pose, np.float64)
    if np.allclose(frame_pose, pose):
        return frame
    nx, ny = frame.shape[:2]
    world = local_to_world(_column_centres(grid), pose[:2], pose[2])
    source = grid.metric_to_index(world_to_local(world, frame_pose[:2], frame_pose[2]))
    inside = np.all((source >= 0) & (source < [nx, ny]), axis=-1)
    out = np.full(frame.shape, FREE_ID, dtype=frame.dtype).reshape(nx * ny, -1)
    out[inside] = frame[source[inside, 0], source[inside, 1]]
    return out.reshape(frame.shape)
