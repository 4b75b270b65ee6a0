"""Ego-centric occupancy frames of the procedural world, in the Occ3D contract.

Static rasters are resampled at the BEV voxel centres (nearest cell of the finer world
raster); road users are stamped as oriented boxes standing on the ground. The static part is
one look-up per BEV cell: each raster cell's voxel column is worked out once per map.
"""

from __future__ import annotations

import functools

import numpy as np

from occsim.grid import GROUND_HEIGHT, OCC3D_GRID, GridSpec
from occsim.labels import FREE, NUM_CLASSES
from occsim.procedural.static_map import StaticMap
from occsim.procedural.traffic import Box


@functools.lru_cache(maxsize=4)
def _grid_geometry(grid: GridSpec):
    centers = grid.bev_centers().reshape(-1, 2)
    z_centers = grid.lower[2] + (np.arange(grid.shape[2]) + 0.5) * grid.voxel_size
    return centers, z_centers, grid.ground_index


def _static_columns(static: StaticMap, grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each raster cell's voxel column as an index into a table of the few distinct columns:
    ``(codes (cells, cells), table (n, Z) uint8)``, built once per map and grid.

    A column is the ground class at the ground layer, overwritten by the object class on the
    layers whose centres lie in ``[ground + bottom, ground + top)``; the layer range comes
    from the very comparisons a per-frame test would make, so frames are unchanged.
    """
    cached = static.render_cache.get(grid)
    if cached is not None:
        return cached
    _, z_centers, ground_index = _grid_geometry(grid)
    layers = len(z_centers) + 1  # values of a layer bound, 0..Z
    ground = static.ground.ravel()
    rows = np.flatnonzero(static.object_class.ravel() != FREE)
    # First layer at or above each bound: z >= ground + bottom, and not z >= ground + top.
    bottom = np.searchsorted(z_centers, GROUND_HEIGHT + static.object_bottom.ravel()[rows])
    top = np.searchsorted(z_centers, GROUND_HEIGHT + static.object_top.ravel()[rows])
    shown = bottom < top  # an object segment between two layer centres shows nowhere
    rows, bottom, top = rows[shown], bottom[shown], top[shown]
    # A column's key: (ground, object class, bottom, top); ground alone for every class.
    key = ground[rows].astype(np.int64) * NUM_CLASSES + static.object_class.ravel()[rows]
    key = (key * layers + bottom) * layers + top
    plain = np.arange(NUM_CLASSES) * NUM_CLASSES * layers**2
    present = np.zeros(NUM_CLASSES**2 * layers**2, dtype=bool)
    present[plain] = present[key] = True
    compact = np.cumsum(present) - 1  # key -> row of the table
    codes = compact[plain].astype(np.uint16 if compact[-1] < 2**16 else np.int64)[ground]
    codes[rows] = compact[key]
    codes = codes.reshape(static.ground.shape)
    distinct = np.flatnonzero(present)
    table = np.full((len(distinct), len(z_centers)), FREE, dtype=np.uint8)
    column_ground, rest = np.divmod(distinct, NUM_CLASSES * layers**2)
    column_class, rest = np.divmod(rest, layers**2)
    lo, hi = np.divmod(rest, layers)
    table[:, ground_index] = column_ground
    layer = np.arange(len(z_centers))
    inside = (layer >= lo[:, None]) & (layer < hi[:, None])
    table[inside] = np.broadcast_to(column_class[:, None], inside.shape)[inside]
    static.render_cache[grid] = codes, table
    return codes, table


def voxelize_frame(
    static: StaticMap,
    ego_xy: np.ndarray,
    ego_yaw: float,
    boxes: list[Box],
    grid: GridSpec = OCC3D_GRID,
) -> np.ndarray:
    """Occupancy ``(X, Y, Z)`` uint8 seen from the ego pose ``(ego_xy, ego_yaw)`` (world)."""
    centers = _grid_geometry(grid)[0]
    nx, ny, nz = grid.shape
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    world = centers @ np.array([[c, s], [-s, c]]) + ego_xy
    ix, iy = static.cell_index(world)
    codes, table = _static_columns(static, grid)
    volume = np.take(table, codes[ix, iy], axis=0)  # take: many times faster than table[...]
    volume = volume.reshape(nx, ny, nz)
    if boxes:
        # Only boxes that can touch the grid are stamped (most of the city is out of view).
        centers = np.array([box.center for box in boxes])
        delta = (centers - ego_xy + static.size / 2) % static.size - static.size / 2
        local = delta @ np.array([[c, -s], [s, c]])
        sizes = np.array([(box.length, box.width, box.height, box.yaw, box.cls) for box in boxes])
        radius = np.hypot(sizes[:, 0], sizes[:, 1]) / 2
        reach = np.abs(local) - radius[:, None]
        visible = np.flatnonzero(np.all(reach < np.abs(grid.upper[:2]), axis=1))
        if len(visible):
            _stamp_boxes(volume, sizes[visible], local[visible], radius[visible], ego_yaw, grid)
    return volume


def _stamp_boxes(volume, sizes, local, radius, ego_yaw: float, grid: GridSpec) -> None:
    """Stamp boxes ``sizes`` rows ``(length, width, height, yaw, class)`` centred at ``local``
    (ego frame) into ``volume``, all at once; where boxes overlap, the later one wins as if
    they were stamped one by one."""
    _, z_centers, _ = _grid_geometry(grid)
    nx, ny, nz = volume.shape
    lo = np.maximum(grid.metric_to_index(local - radius[:, None]), 0)
    hi = np.minimum(grid.metric_to_index(local + radius[:, None]) + 1, (nx, ny))
    span = np.maximum(hi - lo, 0)  # the patch of cells around each box
    box, offset = _ranges(span[:, 0] * span[:, 1])
    gx = lo[box, 0] + offset // span[box, 1]
    gy = lo[box, 1] + offset % span[box, 1]
    pts = grid.index_to_metric(np.stack([gx, gy], axis=-1)) - local[box]
    yaw = sizes[:, 3] - ego_yaw
    cy, sy = np.cos(yaw)[box], np.sin(yaw)[box]
    lon = pts[:, 0] * cy + pts[:, 1] * sy
    lat = -pts[:, 0] * sy + pts[:, 1] * cy
    inside = (np.abs(lon) <= sizes[box, 0] / 2) & (np.abs(lat) <= sizes[box, 1] / 2)
    box, gx, gy = box[inside], gx[inside], gy[inside]
    # Layers whose centres lie in [ground, ground + height).
    bottom = np.searchsorted(z_centers, GROUND_HEIGHT)
    top = np.searchsorted(z_centers, GROUND_HEIGHT + sizes[:, 2])
    cell, layer = _ranges(np.maximum(top[box] - bottom, 0))
    flat = (gx[cell] * ny + gy[cell]) * nz + bottom + layer
    last = len(flat) - 1 - np.unique(flat[::-1], return_index=True)[1]  # later boxes win
    volume.reshape(-1)[flat[last]] = sizes[box[cell[last]], 4]


def _ranges(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, k)`` for ``k in range(counts[owner])`` of every owner, concatenated."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
