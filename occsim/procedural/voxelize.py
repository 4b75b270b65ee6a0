"""Ego-centric occupancy frames of the procedural world, in the Occ3D contract.

Static rasters are resampled at the BEV voxel centres (nearest cell of the finer world
raster); road users are stamped as oriented boxes standing on the ground.
"""

from __future__ import annotations

import functools

import numpy as np

from occsim.grid import GROUND_HEIGHT, OCC3D_GRID, GridSpec
from occsim.labels import FREE
from occsim.procedural.static_map import StaticMap
from occsim.procedural.traffic import Box


@functools.lru_cache(maxsize=4)
def _grid_geometry(grid: GridSpec):
    centers = grid.bev_centers().reshape(-1, 2)
    z_centers = grid.lower[2] + (np.arange(grid.shape[2]) + 0.5) * grid.voxel_size
    return centers, z_centers, grid.ground_index


def voxelize_frame(
    static: StaticMap,
    ego_xy: np.ndarray,
    ego_yaw: float,
    boxes: list[Box],
    grid: GridSpec = OCC3D_GRID,
) -> np.ndarray:
    """Occupancy ``(X, Y, Z)`` uint8 seen from the ego pose ``(ego_xy, ego_yaw)`` (world)."""
    centers, z_centers, ground_index = _grid_geometry(grid)
    nx, ny, nz = grid.shape
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    world = centers @ np.array([[c, s], [-s, c]]) + ego_xy
    ix, iy = static.cell_index(world)
    volume = np.full((nx * ny, nz), FREE, dtype=np.uint8)
    volume[:, ground_index] = static.ground[ix, iy]
    cls = static.object_class[ix, iy]
    has_object = cls != FREE
    rows = np.flatnonzero(has_object)
    bottom = static.object_bottom[ix[rows], iy[rows]]
    top = static.object_top[ix[rows], iy[rows]]
    inside = (z_centers >= GROUND_HEIGHT + bottom[:, None]) & (
        z_centers < GROUND_HEIGHT + top[:, None]
    )
    sub = volume[rows]
    sub[inside] = np.broadcast_to(cls[rows, None], inside.shape)[inside]
    volume[rows] = sub
    volume = volume.reshape(nx, ny, nz)
    if boxes:
        # Only boxes that can touch the grid are stamped (most of the city is out of view).
        centers = np.array([box.center for box in boxes])
        delta = (centers - ego_xy + static.size / 2) % static.size - static.size / 2
        local = delta @ np.array([[c, -s], [s, c]])
        radius = np.array([np.hypot(box.length, box.width) / 2 for box in boxes])
        reach = np.abs(local) - radius[:, None]
        visible = np.all(reach < np.abs(grid.upper[:2]), axis=1)
        for i in np.flatnonzero(visible):
            _stamp_box(volume, boxes[i], local[i], radius[i], ego_yaw, grid, z_centers)
    return volume


def _stamp_box(volume, box: Box, local, radius, ego_yaw, grid: GridSpec, z_centers) -> None:
    lo = np.maximum(grid.metric_to_index(local - radius), 0)
    hi = np.minimum(grid.metric_to_index(local + radius) + 1, volume.shape[:2])
    if np.any(hi <= lo):
        return
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    pts = grid.index_to_metric(np.stack([gx, gy], axis=-1)) - local
    yaw = box.yaw - ego_yaw
    cy, sy = np.cos(yaw), np.sin(yaw)
    lon = pts[..., 0] * cy + pts[..., 1] * sy
    lat = -pts[..., 0] * sy + pts[..., 1] * cy
    inside = (np.abs(lon) <= box.length / 2) & (np.abs(lat) <= box.width / 2)
    if not inside.any():
        return
    z = np.flatnonzero((z_centers >= GROUND_HEIGHT) & (z_centers < GROUND_HEIGHT + box.height))
    cells = volume[gx[inside], gy[inside]]
    cells[:, z] = box.cls
    volume[gx[inside], gy[inside]] = cells
