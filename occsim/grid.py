"""Voxel grid geometry: the metric extent of an occupancy volume and conversions to voxels.

The default grid is Occ3D-nuScenes': ``[-40, -40, -1, 40, 40, 5.4]`` m at 0.4 m, giving
``(200, 200, 16)`` voxels indexed ``[x, y, z]`` in the ego frame (x forward, y left, z up)
with the ego at the centre of the x-y plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_DT: float = 0.5  # seconds between frames: Occ3D keyframes at 2 Hz

# nuScenes ego vehicle (Renault Zoe) box, metres.
EGO_LENGTH: float = 4.08
EGO_WIDTH: float = 1.85
EGO_HEIGHT: float = 1.56
GROUND_HEIGHT: float = 0.0  # the road surface in the ego frame (the ego origin stands on it)
EGO_BODY_TOP: float = 1.8  # metres above the ground that the ego's body sweeps (with margin)


def column_any(mask: np.ndarray) -> np.ndarray:
    """``(X, Y)``: whether any voxel of each column of a boolean ``mask (X, Y, Z)`` is set.
    A C-ordered column of Z = 8k booleans is read as k 64-bit words (30x faster than
    ``mask.any(axis=-1)``, which a step calls on every frame)."""
    if mask.dtype != np.bool_ or not mask.flags.c_contiguous or mask.shape[-1] % 8:
        return mask.any(axis=-1)
    words = mask.view(np.uint64)
    out = words[..., 0].copy()
    for k in range(1, words.shape[-1]):
        out |= words[..., k]
    return out != 0


@dataclass(frozen=True)
class EgoState:
    """The ego's pose in a world frame (metres, radians) and its speed (m/s)."""

    x: float
    y: float
    yaw: float
    speed: float


@dataclass(frozen=True)
class GridSpec:
    """Axis-aligned voxel grid in the ego frame.

    Attributes:
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in metres.
        voxel_size: edge length of a cubic voxel in metres.
    """

    point_cloud_range: tuple[float, float, float, float, float, float] = (
        -40.0,
        -40.0,
        -1.0,
        40.0,
        40.0,
        5.4,
    )
    voxel_size: float = 0.4

    def __post_init__(self) -> None:
        if len(self.point_cloud_range) != 6:
            raise ValueError(
                f"point_cloud_range must have 6 values (x_min, y_min, z_min, x_max, y_max, "
                f"z_max), got {len(self.point_cloud_range)}"
            )
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")
        extent = np.asarray(self.point_cloud_range[3:]) - np.asarray(self.point_cloud_range[:3])
        cells = extent / self.voxel_size
        if np.any(extent <= 0) or not np.allclose(cells, np.round(cells), atol=1e-6):
            raise ValueError(
                f"point_cloud_range {self.point_cloud_range} must span a positive whole number "
                f"of voxels of {self.voxel_size} m on every axis"
            )

    @property
    def lower(self) -> np.ndarray:
        """Minimum corner ``(x, y, z)`` in metres."""
        return np.asarray(self.point_cloud_range[:3], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        """Maximum corner ``(x, y, z)`` in metres."""
        return np.asarray(self.point_cloud_range[3:], dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of voxels along ``(x, y, z)``."""
        cells = np.round((self.upper - self.lower) / self.voxel_size).astype(int)
        return (int(cells[0]), int(cells[1]), int(cells[2]))

    def metric_to_index(self, points: np.ndarray) -> np.ndarray:
        """Voxel indices (``int64``, same leading shape) of metric points ``(..., k)``, k <= 3.

        Points outside the grid get indices outside ``[0, shape)``; see :meth:`contains`.
        """
        points = np.asarray(points, dtype=np.float64)
        k = points.shape[-1]
        if not 1 <= k <= 3:
            raise ValueError(f"points must end in 1..3 coordinates, got shape {points.shape}")
        return np.floor((points - self.lower[:k]) / self.voxel_size).astype(np.int64)

    def index_to_metric(self, indices: np.ndarray) -> np.ndarray:
        """Metric centres (``float64``) of voxel indices ``(..., k)``, k <= 3."""
        indices = np.asarray(indices, dtype=np.float64)
        k = indices.shape[-1]
        if not 1 <= k <= 3:
            raise ValueError(f"indices must end in 1..3 coordinates, got shape {indices.shape}")
        return self.lower[:k] + (indices + 0.5) * self.voxel_size

    def contains(self, indices: np.ndarray) -> np.ndarray:
        """Boolean mask of which voxel indices ``(..., k)`` lie inside the grid."""
        indices = np.asarray(indices)
        k = indices.shape[-1]
        upper = np.asarray(self.shape[:k])
        return np.all((indices >= 0) & (indices < upper), axis=-1)

    @property
    def ground_index(self) -> int:
        """z index of the voxel layer that holds the ground (the ego stands on it)."""
        return int(np.floor((GROUND_HEIGHT - self.lower[2]) / self.voxel_size))

    @property
    def ego_body_band(self) -> slice:
        """z indices above the ground layer up to :data:`EGO_BODY_TOP`: what the ego's body
        sweeps, where an obstacle voxel is a collision."""
        # The top lies on a voxel boundary; round so that 2.8 / 0.4 is 7, not 6.9999.
        top = round((GROUND_HEIGHT + EGO_BODY_TOP - self.lower[2]) / self.voxel_size)
        return slice(self.ground_index + 1, top)

    def bev_centers(self) -> np.ndarray:
        """Metric ``(x, y)`` centres of every BEV cell, shape ``(X, Y, 2)``."""
        nx, ny, _ = self.shape
        ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
        return self.index_to_metric(np.stack([ix, iy], axis=-1))

    def ego_footprint(
        self, length: float = EGO_LENGTH, width: float = EGO_WIDTH, margin: float = 0.0
    ) -> np.ndarray:
        """Boolean ``(X, Y)`` mask of BEV cells whose centre lies in the ego box.

        The box is centred on the ego origin, aligned with x (forward), grown by ``margin``.
        """
        centers = self.bev_centers()
        half_l, half_w = length / 2 + margin, width / 2 + margin
        return (np.abs(centers[..., 0]) <= half_l) & (np.abs(centers[..., 1]) <= half_w)


OCC3D_GRID = GridSpec()
