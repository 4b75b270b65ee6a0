"""Planar rigid transforms between ego frames (x forward, y left, yaw counter-clockwise)."""

from __future__ import annotations

import numpy as np


def quaternion_to_yaw(quaternion: np.ndarray) -> np.ndarray:
    """Yaw (rotation about z, radians) of ``(..., 4)`` quaternions in nuScenes ``(w, x, y, z)``."""
    q = np.asarray(quaternion, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"quaternion must end in 4 values (w, x, y, z), got shape {q.shape}")
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to ``[-pi, pi)``."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def rotation_2d(yaw: float) -> np.ndarray:
    """The 2x2 rotation matrix of ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s], [s, c]])


def world_to_local(points: np.ndarray, origin_xy: np.ndarray, origin_yaw: float) -> np.ndarray:
    """World points ``(..., 2)`` in the frame at ``origin_xy`` heading ``origin_yaw``."""
    offset = np.asarray(points, dtype=np.float64) - np.asarray(origin_xy, dtype=np.float64)
    return offset @ rotation_2d(origin_yaw)


def local_to_world(points: np.ndarray, origin_xy: np.ndarray, origin_yaw: float) -> np.ndarray:
    """Inverse of :func:`world_to_local`."""
    local = np.asarray(points, dtype=np.float64)
    return local @ rotation_2d(origin_yaw).T + np.asarray(origin_xy, dtype=np.float64)


def poses_to_trajectory(positions_xy: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """Trajectory ``(T, 3)`` float32: each pose ``(x, y, yaw)`` in the first pose's ego frame.

    Args:
        positions_xy: ``(T, 2)`` world positions.
        yaws: ``(T,)`` world headings in radians.
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    yaws = np.asarray(yaws, dtype=np.float64)
    local_xy = world_to_local(positions_xy, positions_xy[0], float(yaws[0]))
    local_yaw = wrap_angle(yaws - yaws[0])
    return np.concatenate([local_xy, local_yaw[:, None]], axis=1).astype(np.float32)
