"""Input checks shared by every entry point: each names what was wrong and what was expected."""

from __future__ import annotations

import math
import re
from pathlib import PurePosixPath
from typing import Any

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


# A file or folder name taken from data (a scene, a token, a split): one path component
# that cannot climb out of its root, hide as a dot file or clash with a temporary.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


def check_name(name: Any, what: str) -> str:
    """Return ``name`` if it is a plain name usable as one path component."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string, got {type(name).__name__}")
    if not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} is not a plain name: expected 1-200 letters, digits, '_', '-' "
            "or '.', not starting with '.' or '-' (no path separators)"
        )
    return name


def check_relative_path(path: Any, what: str) -> PurePosixPath:
    """``path`` as a relative POSIX path whose parts are plain names (it stays in its root)."""
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a string path, got {type(path).__name__}")
    parts = path.split("/")
    if not path or path.startswith("/") or any(not _NAME.match(part) for part in parts):
        raise ValueError(
            f"{what} {path!r} must be a relative path of plain names inside the root "
            "(no '..', no absolute path, no empty or hidden parts)"
        )
    return PurePosixPath(path)


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer (not a bool) in the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must lie in {_range(minimum, maximum)}, got {value}")
    return value


def check_float(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` in the range (``open_minimum``: excluded)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    low_fails = minimum is not None and (value <= minimum if open_minimum else value < minimum)
    if not math.isfinite(value) or low_fails or (maximum is not None and value > maximum):
        bracket = "(" if open_minimum else "["
        raise ValueError(
            f"{name} must be a finite number in {_range(minimum, maximum, bracket)}, got {value}"
        )
    return value


def _range(minimum: float | None, maximum: float | None, bracket: str = "[") -> str:
    low = "-inf" if minimum is None else f"{minimum}"
    high = "inf" if maximum is None else f"{maximum}"
    return f"{'(' if minimum is None else bracket}{low}, {high}{')' if maximum is None else ']'}"


def check_real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as an array of real numbers; complex, boolean, string and object arrays are
    refused (numpy would drop imaginary parts or parse strings silently)."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nesting
        raise ValueError(f"{name} is not a rectangular array of numbers: {error}") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (int or float), got dtype {array.dtype}")
    return array
