"""Bird's-eye view of occupancy in numpy: the top visible class of each column, shaded by height.

Images are drawn with the ego's forward (+x) pointing up and its left (+y) to the left.
"""

from __future__ import annotations

import numpy as np

from occsim.grid import OCC3D_GRID, GridSpec
from occsim.labels import FREE_ID, PALETTE
from occsim.validation import check_occupancy

BACKGROUND = np.array([24, 24, 28], dtype=np.uint8)
EGO_COLOR = np.array([255, 255, 255], dtype=np.uint8)
TRAJECTORY_COLOR = np.array([255, 40, 40], dtype=np.uint8)


def top_visible(occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ``(X, Y)`` uint8 and height index ``(X, Y)`` of the highest occupied voxel.

    Columns with no occupied voxel get class 17 (free) and height -1.
    """
    occupancy = check_occupancy(occupancy, "occupancy", ndim=3)
    occupied = occupancy != FREE_ID
    nz = occupancy.shape[-1]
    top = nz - 1 - np.argmax(occupied[..., ::-1], axis=-1)
    any_occupied = occupied.any(axis=-1)
    classes = np.take_along_axis(occupancy, top[..., None], axis=-1)[..., 0]
    classes = np.where(any_occupied, classes, FREE_ID).astype(np.uint8)
    return classes, np.where(any_occupied, top, -1)


def render_bev(
    occupancy: np.ndarray,
    scale: int = 2,
    shade: bool = True,
    draw_ego: bool = True,
    trajectory: np.ndarray | None = None,
    grid: GridSpec = OCC3D_GRID,
) -> np.ndarray:
    """RGB image ``(X*scale, Y*scale, 3)`` uint8 of one occupancy frame ``(X, Y, Z)``.

    Args:
        occupancy: class ids of one frame.
        scale: pixels per voxel.
        shade: darken lower surfaces so that height reads at a glance.
        draw_ego: outline the ego footprint at the grid centre.
        trajectory: optional ``(K, 2+)`` waypoints in metres of this frame, drawn as dots.
        grid: the grid of ``occupancy``.
    """
    classes, height = top_visible(occupancy)
    image = PALETTE[classes].astype(np.float32)
    if shade:
        factor = 0.55 + 0.45 * np.clip(height, 0, None) / max(occupancy.shape[-1] - 1, 1)
        image *= factor[..., None]
    image = image.astype(np.uint8)
    image[classes == FREE_ID] = BACKGROUND
    if draw_ego:
        footprint = grid.ego_footprint()
        edge = footprint & ~(
            np.roll(footprint, 1, 0)
            & np.roll(footprint, -1, 0)
            & np.roll(footprint, 1, 1)
            & np.roll(footprint, -1, 1)
        )
        image[footprint] = (0.5 * image[footprint] + 0.5 * EGO_COLOR).astype(np.uint8)
        image[edge] = EGO_COLOR
    # Rows run along -x (forward is up), columns along -y (left is left).
    image = image[::-1, ::-1]
    image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    if trajectory is not None:
        points = np.asarray(trajectory, dtype=np.float64)[:, :2]
        rows = ((grid.upper[0] - points[:, 0]) / grid.voxel_size * scale).astype(int)
        cols = ((grid.upper[1] - points[:, 1]) / grid.voxel_size * scale).astype(int)
        radius = max(scale, 2)
        for r, c in zip(rows, cols):
            image[max(r - radius, 0) : r + radius, max(c - radius, 0) : c + radius] = (
                TRAJECTORY_COLOR
            )
    return np.ascontiguousarray(image)
