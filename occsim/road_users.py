"""Road users as objects: generated frames keep a blob of a road-user class only where it is
a plausible object, never a few stray voxels.

A road user is a connected blob (8-connected columns in the bird's-eye view, any road-user
class) that stands on the ground, is no taller and no longer than its class can be, holds at
least a fraction of the voxels of its class's smallest body and stands on ground a road user
can use (road, crossing, sidewalk, parking). It takes the class most of its voxels have.
Anything else is speckle (or a smear): its voxels become free, or the surrounding ground on
the ground layer.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from occsim.grid import OCC3D_GRID, GridSpec, column_any
from occsim.labels import (
    BICYCLE,
    BUS,
    CAR,
    CONSTRUCTION_VEHICLE,
    DRIVEABLE_SURFACE,
    DYNAMIC_CLASSES,
    FREE_ID,
    GROUND_CLASSES,
    MOTORCYCLE,
    OTHER_FLAT,
    PEDESTRIAN,
    SIDEWALK,
    TRAILER,
    TRUCK,
    ClassMask,
    class_lookup,
)
from occsim.nearest_cell import nearest_set_cell

# Fewest voxels a blob of the class must hold: about half of the smallest body of the class
# at 0.4 m (a pedestrian 0.6 x 0.6 x 1.8 m covers 2-4 columns of 5 voxels).
MIN_VOXELS: dict[int, int] = {
    PEDESTRIAN: 6,
    BICYCLE: 12,
    MOTORCYCLE: 12,
    CAR: 40,
    TRAILER: 40,
    TRUCK: 60,
    BUS: 60,
    CONSTRUCTION_VEHICLE: 60,
}
# Tallest body of the class in metres, with a voxel of slack.
MAX_HEIGHT: dict[int, float] = {
    PEDESTRIAN: 2.4,
    BICYCLE: 2.4,
    MOTORCYCLE: 2.4,
    CAR: 2.4,
    TRAILER: 4.4,
    TRUCK: 4.4,
    BUS: 4.4,
    CONSTRUCTION_VEHICLE: 4.4,
}
# Longest footprint of a blob of the class in metres (the diagonal of its box in the
# bird's-eye view), with slack for neighbours that touch: parked cars in a row, a truck and
# its trailer. The exact procedural world's longest blobs (120 maps): car 11.9, truck 9.4,
# trailer 18.1, bus 13.6, construction vehicle 10.2, motorcycle 2.9, bicycle 2.3, pedestrian
# 1.8. A streak far longer is what a generated frame draws where it smears a road user.
MAX_LENGTH: dict[int, float] = {
    PEDESTRIAN: 3.0,
    BICYCLE: 4.0,
    MOTORCYCLE: 4.0,
    CAR: 14.0,
    CONSTRUCTION_VEHICLE: 16.0,
    TRAILER: 24.0,
    TRUCK: 24.0,
    BUS: 24.0,
}
USABLE_GROUND: tuple[int, ...] = (DRIVEABLE_SURFACE, OTHER_FLAT, SIDEWALK)
_CONNECTIVITY = np.ones((3, 3), dtype=bool)


_ROAD_USER = ClassMask(DYNAMIC_CLASSES)
_USABLE = class_lookup(USABLE_GROUND)
_GROUND = class_lookup(GROUND_CLASSES)


def _table_of(values: dict[int, float]) -> np.ndarray:
    table = np.full(256, np.inf)
    for cls, value in values.items():
        table[cls] = value
    return table


_MIN_VOXELS = _table_of(MIN_VOXELS)
_MAX_HEIGHT = _table_of(MAX_HEIGHT)
_MAX_LENGTH = _table_of(MAX_LENGTH)


def keep_road_users(frame: np.ndarray, grid: GridSpec = OCC3D_GRID) -> np.ndarray:
    """``frame (X, Y, Z)`` with only plausible road users: each blob of road-user voxels
    that passes the checks takes its majority class; the rest become free (the ground layer
    takes the nearest ground). A new array; the input is not changed."""
    frame = np.asarray(frame)
    users = _ROAD_USER(frame)
    out = frame.copy()
    if not users.any():
        return out
    # Blobs are 8-connected in the bird's-eye view: road users stand on the ground, and
    # labelling 200 x 200 columns costs a tenth of labelling the volume.
    columns = column_any(users)
    labels, count = ndimage.label(columns, _CONNECTIVITY)
    # The voxels of the columns that hold any, in np.nonzero's order (a tenth of the time).
    cx, cy = np.nonzero(columns)
    k, z = np.nonzero(users[cx, cy])
    x, y = cx[k], cy[k]
    blob = labels[x, y]
    classes = frame[x, y, z]
    size = np.bincount(blob, minlength=count + 1)
    votes = np.bincount(blob * 256 + classes, minlength=(count + 1) * 256).reshape(-1, 256)
    majority = votes.argmax(axis=1)
    bottom, top = _bounds(blob, z, count)
    # Usable ground within two cells of a voxel's column (the ground under a road user is
    # its own class in the frame; the ground around it tells where it stands).
    g = grid.ground_index
    ground = frame[:, :, g]
    usable = ndimage.maximum_filter(_USABLE[ground] & ~users[:, :, g], size=5, mode="constant")
    on_usable = np.bincount(blob, weights=usable[x, y], minlength=count + 1) / np.maximum(size, 1)
    height = (top + 1 - g) * grid.voxel_size
    spans = [high + 1 - low for low, high in (_bounds(blob, x, count), _bounds(blob, y, count))]
    length = np.hypot(*spans) * grid.voxel_size
    # A road user cut by the edge of the view shows only part of its body.
    edge = (x == 0) | (y == 0) | (x == frame.shape[0] - 1) | (y == frame.shape[1] - 1)
    cut = np.bincount(blob, weights=edge, minlength=count + 1) > 0
    plausible = (
        ((size >= _MIN_VOXELS[majority]) | cut)
        & (bottom <= g + 1)
        & (height <= _MAX_HEIGHT[majority])
        & (length <= _MAX_LENGTH[majority])
        & (on_usable >= 0.5)
    )
    keep = plausible[blob]
    # One object, one class (a trailer keeps its own class behind a truck).
    target = majority[blob]
    relabel = keep & ~((target == TRUCK) & (classes == TRAILER))
    out[x[relabel], y[relabel], z[relabel]] = target[relabel]
    drop = ~keep
    if drop.any():
        out[x[drop], y[drop], z[drop]] = FREE_ID
        floor = drop & (z == g)
        if floor.any():
            # Dropped voxels on the ground layer take the nearest ground class.
            known = _GROUND[ground] & ~users[:, :, g]
            if known.any():
                fx, fy = x[floor], y[floor]
                out[fx, fy, g] = ground[nearest_set_cell(known, fx, fy)]
    return out


def _bounds(blob: np.ndarray, coordinate: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest ``coordinate`` of each of ``count + 1`` blobs (every blob the
    labels name has a voxel, so both are set for them)."""
    low = np.full(count + 1, np.iinfo(np.int64).max)
    high = np.full(count + 1, -1)
    np.minimum.at(low, blob, coordinate)
    np.maximum.at(high, blob, coordinate)
    return low, high
