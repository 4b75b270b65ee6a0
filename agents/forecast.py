"""Constant-velocity forecast of the obstacles around the ego from its last two frames.

A single occupancy frame shows where road users were, not where they will be. Each moving
object (a connected blob of dynamic classes in the ego's height band) of the last frame is
matched to the nearest blob of the frame before it, after compensating the ego's own
motion between the two; the displacement gives its velocity, and the forecast moves the
blob along it. Static obstacles stay where they are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from occsim.geometry import world_to_local
from occsim.grid import OCC3D_GRID
from occsim.labels import DRIVEABLE_CLASSES, DYNAMIC_CLASSES, OBSTACLE_CLASSES

STATIC_OBSTACLES = tuple(c for c in OBSTACLE_CLASSES if c not in DYNAMIC_CLASSES)
MAX_MATCH_DISTANCE = 6.0  # metres between two frames: faster than any road user here
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Boolean ``(X, Y)`` mask grown by ``radius`` cells (square neighbourhood)."""
    if radius <= 0:
        return mask
    return ndimage.binary_dilation(mask, np.ones((2 * radius + 1,) * 2, dtype=bool))


def body_masks(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(static, moving, driveable)`` boolean ``(X, Y)`` maps of one frame, with the height
    bands of the env's collision and off-road checks."""
    body = frame[:, :, OCC3D_GRID.ego_body_band]
    static = np.isin(body, STATIC_OBSTACLES).any(axis=-1)
    moving = np.isin(body, DYNAMIC_CLASSES).any(axis=-1)
    driveable = np.isin(frame[:, :, OCC3D_GRID.ground_index], DRIVEABLE_CLASSES)
    return static, moving, driveable


def _blobs(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Labels, count and metric centroids ``(n, 2)`` of the 8-connected blobs of a mask."""
    labels, count = ndimage.label(mask, _EIGHT_CONNECTED)
    if count == 0:
        return labels, 0, np.zeros((0, 2))
    index = np.array(ndimage.center_of_mass(mask, labels, np.arange(1, count + 1)))
    return labels, count, OCC3D_GRID.index_to_metric(index)


def blob_velocities(
    previous: np.ndarray, current: np.ndarray, speed: float, yaw_rate: float, frame_period: float
) -> tuple[np.ndarray, int, np.ndarray]:
    """Labels and count of the moving blobs of ``current`` and their velocities ``(n, 2)``
    (m/s, current ego frame), from the ``previous`` frame's moving mask ``frame_period``
    seconds earlier.

    The ego drove ``speed * dt`` along its new heading and turned by ``yaw_rate * dt``
    between the frames (it follows its waypoints, heading along the motion). Unmatched blobs
    get zero velocity.
    """
    labels, count, centroids = _blobs(current)
    velocities = np.zeros((count, 2))
    _, previous_count, previous_centroids = _blobs(previous)
    if count == 0 or previous_count == 0:
        return labels, count, velocities
    turn = yaw_rate * frame_period
    origin = speed * frame_period * np.array([np.cos(turn), np.sin(turn)])
    previous_centroids = world_to_local(previous_centroids, origin, turn)
    distances = np.linalg.norm(centroids[:, None] - previous_centroids[None], axis=-1)
    nearest = distances.argmin(axis=1)
    matched = distances[np.arange(count), nearest] <= MAX_MATCH_DISTANCE
    displacement = centroids[matched] - previous_centroids[nearest[matched]]
    velocities[matched] = displacement / frame_period
    return labels, count, velocities


def forecast_obstacles(
    frames: np.ndarray,
    speed: float,
    yaw_rate: float,
    horizon: int,
    frame_period: float,
    margin: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Obstacle maps ``(horizon, X, Y)`` one, two, ... frame periods ahead and the
    driveable map.

    Args:
        frames: ``(K, X, Y, Z)`` observed occupancy, each frame in its own ego frame; the
            forecast is in the last one's. With one frame, road users are taken as still.
        speed, yaw_rate: the ego's motion between the last two frames (the ``ego``
            observation).
        horizon: frames to forecast.
        frame_period: seconds between frames.
        margin: cells added around moving blobs (their size, and speed, are estimates).
    """
    static, moving, driveable = body_masks(frames[-1])
    if len(frames) > 1:
        labels, count, velocities = blob_velocities(
            body_masks(frames[-2])[1], moving, speed, yaw_rate, frame_period
        )
    else:
        labels, count = ndimage.label(moving, _EIGHT_CONNECTED)
        velocities = np.zeros((count, 2))
    size = np.array(moving.shape)
    cells = [np.argwhere(labels == n + 1) for n in range(count)]
    obstacles = np.zeros((horizon, *moving.shape), dtype=bool)
    for j in range(horizon):
        future = np.zeros_like(moving)
        for blob, velocity in zip(cells, velocities):
            step = velocity * frame_period * (j + 1)
            shift = np.round(step / OCC3D_GRID.voxel_size).astype(int)
            moved = blob + shift
            moved = moved[((moved >= 0) & (moved < size)).all(axis=1)]
            future[moved[:, 0], moved[:, 1]] = True
        obstacles[j] = static | dilate(future, margin)
    return obstacles, driveable
