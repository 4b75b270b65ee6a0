"""Input checks shared by every entry point: each names what was wrong and what was expected."""

from __future__ import annotations

import numpy as np

from occsim.labels import NUM_CLASSES


def check_occupancy(
    occupancy: np.ndarray,
    name: str = "occupancy",
    *,
    ndim: int | tuple[int, ...] = (3, 4, 5),
    spatial_shape: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Return ``occupancy`` if it is an integer array of class ids ``0..17`` of a valid rank.

    Args:
        occupancy: ``(..., X, Y, Z)`` array of class ids.
        name: what to call the array in error messages (an argument or a file name).
        ndim: accepted rank or ranks.
        spatial_shape: if given, the required trailing ``(X, Y, Z)``.
    """
    if not isinstance(occupancy, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(occupancy).__name__}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if occupancy.ndim not in ranks:
        raise ValueError(
            f"{name} must have rank {' or '.join(map(str, ranks))} (..., X, Y, Z), "
            f"got shape {occupancy.shape}"
        )
    if not np.issubdtype(occupancy.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids (uint8), got dtype {occupancy.dtype}")
    if spatial_shape is not None and tuple(occupancy.shape[-3:]) != tuple(spatial_shape):
        raise ValueError(
            f"{name} must end in spatial shape {tuple(spatial_shape)}, got {occupancy.shape}"
        )
    if occupancy.size:
        low, high = int(occupancy.min()), int(occupancy.max())
        if low < 0 or high >= NUM_CLASSES:
            raise ValueError(
                f"{name} holds class ids in [{low}, {high}], expected 0..{NUM_CLASSES - 1}"
            )
    return occupancy


def check_trajectory(
    trajectory: np.ndarray, name: str = "trajectory", *, length: int | None = None
) -> np.ndarray:
    """Return ``trajectory`` as float32 if it is a finite ``(..., T, 2|3)`` array."""
    array = np.asarray(trajectory)
    if array.ndim < 2 or array.shape[-1] not in (2, 3):
        raise ValueError(f"{name} must have shape (..., T, 2) or (..., T, 3), got {array.shape}")
    if length is not None and array.shape[-2] != length:
        raise ValueError(f"{name} must have {length} waypoints, got {array.shape[-2]}")
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return array.astype(np.float32, copy=False)
