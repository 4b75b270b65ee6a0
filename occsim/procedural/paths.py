"""Arc-length parameterised 2D polylines: lanes, connectors and walkways are all ``Path2D``."""

from __future__ import annotations

import bisect

import numpy as np


class Path2D:
    """A polyline with positions and headings looked up by arc length ``s``.

    Args:
        points: ``(M, 2)`` vertices, ``M >= 2``, consecutive vertices distinct.
    """

    def __init__(self, points: np.ndarray) -> None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"a path needs (M>=2, 2) points, got shape {points.shape}")
        steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
        keep = np.concatenate([[True], steps > 1e-9])
        self.points = points[keep]
        if len(self.points) < 2:
            raise ValueError("a path needs two distinct points")
        seg = np.diff(self.points, axis=0)
        self.segment_lengths = np.linalg.norm(seg, axis=1)
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.segment_lengths)])
        self.segment_headings = np.arctan2(seg[:, 1], seg[:, 0])
        # Plain Python copies for scalar look-ups, ten times faster than numpy on scalars.
        self._cumulative = self.cumulative.tolist()
        self._lengths = self.segment_lengths.tolist()
        self._headings = self.segment_headings.tolist()
        self._points = self.points.tolist()
        self._length = float(self.cumulative[-1])

    @property
    def length(self) -> float:
        """Total arc length in metres."""
        return self._length

    def _locate(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.minimum(np.maximum(s, 0.0), self._length)
        i = np.searchsorted(self.cumulative, s, side="right") - 1
        i = np.minimum(np.maximum(i, 0), len(self._lengths) - 1)
        frac = (s - self.cumulative[i]) / self.segment_lengths[i]
        return i, frac

    def position(self, s: float | np.ndarray) -> np.ndarray:
        """Point(s) at arc length ``s`` (clamped to the path), shape ``(..., 2)``."""
        i, frac = self._locate(np.asarray(s, dtype=np.float64))
        return self.points[i] + (self.points[i + 1] - self.points[i]) * np.asarray(frac)[..., None]

    def heading(self, s: float | np.ndarray) -> np.ndarray:
        """Heading(s) in radians at arc length ``s``."""
        i, _ = self._locate(np.asarray(s, dtype=np.float64))
        return self.segment_headings[i]

    def pose(self, s: float) -> tuple[float, float, float]:
        """``(x, y, heading)`` at a scalar arc length; the fast path for simulation loops."""
        s = min(max(float(s), 0.0), self._length)
        i = min(max(bisect.bisect_right(self._cumulative, s) - 1, 0), len(self._headings) - 1)
        frac = (s - self._cumulative[i]) / self._lengths[i]
        (x0, y0), (x1, y1) = self._points[i], self._points[i + 1]
        return x0 + (x1 - x0) * frac, y0 + (y1 - y0) * frac, self._headings[i]

    def project(self, point: np.ndarray) -> float:
        """Arc length of the point of the path nearest to ``point``."""
        a, b = self.points[:-1], self.points[1:]
        ab = b - a
        t = np.clip(np.einsum("ij,ij->i", point - a, ab) / self.segment_lengths**2, 0.0, 1.0)
        closest = a + ab * t[:, None]
        i = int(np.argmin(np.linalg.norm(closest - point, axis=1)))
        return float(self.cumulative[i] + t[i] * self.segment_lengths[i])


class PathTable:
    """Many ``Path2D`` in padded arrays, to look up positions on many paths in one call.

    Each position is computed with the same float operations as :meth:`Path2D.position`, so
    the results are bit-identical; only the Python loop over paths is gone.

    Args:
        paths: the paths; path ``k`` of the table is ``paths[k]``.
    """

    def __init__(self, paths: list[Path2D]) -> None:
        width = max(len(path.points) for path in paths)
        # Padding: +inf arc lengths are never <= s, unit segments never divide by zero.
        self.cumulative = np.full((len(paths), width), np.inf)
        segment_lengths = np.ones((len(paths), width))
        segment_headings = np.zeros((len(paths), width))
        points = np.zeros((len(paths), width, 2))
        for k, path in enumerate(paths):
            count = len(path.points)
            self.cumulative[k, :count] = path.cumulative
            segment_lengths[k, : count - 1] = path.segment_lengths
            segment_headings[k, : count - 1] = path.segment_headings
            points[k, :count] = path.points
        self.lengths = np.array([path.cumulative[-1] for path in paths])
        self.last_segment = np.array([len(path.segment_lengths) - 1 for path in paths])
        # Flat copies: vertex i of path k is item k * width + i (np.take beats fancy indexing).
        self._width = width
        self._cumulative = self.cumulative.ravel()
        self._segment_lengths = segment_lengths.ravel()
        self._segment_headings = segment_headings.ravel()
        self._x, self._y = points[..., 0].ravel(), points[..., 1].ravel()

    def pose(self, path: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points ``(..., 2)`` and headings ``(...)`` at arc lengths ``s`` on paths ``path``
        (broadcast together), as :meth:`Path2D.position` and :meth:`Path2D.heading` give."""
        s = np.minimum(np.maximum(s, 0.0), self.lengths[path])
        # searchsorted(side="right") - 1, row by row: how many vertices lie at or before s.
        i = np.count_nonzero(self.cumulative[path] <= s[..., None], axis=-1) - 1
        at = path * self._width + np.minimum(np.maximum(i, 0), self.last_segment[path])
        frac = (s - self._cumulative.take(at)) / self._segment_lengths.take(at)
        x, y = self._x.take(at), self._y.take(at)
        x = x + (self._x.take(at + 1) - x) * frac
        y = y + (self._y.take(at + 1) - y) * frac
        return np.stack([x, y], axis=-1), self._segment_headings.take(at)

    def position(self, path: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Points ``(..., 2)`` at arc lengths ``s`` on paths ``path`` (broadcast together)."""
        return self.pose(path, s)[0]


def resample(points: np.ndarray, step: float) -> np.ndarray:
    """Vertices every ``step`` metres along the polyline ``points`` (ends kept)."""
    path = Path2D(points)
    count = max(int(np.ceil(path.length / step)), 1)
    return path.position(np.linspace(0.0, path.length, count + 1))


def offset_polyline(points: np.ndarray, offset: float) -> np.ndarray:
    """The polyline shifted ``offset`` metres to its left (negative: right)."""
    points = np.asarray(points, dtype=np.float64)
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    return points + offset * normal


def cubic_bezier(
    p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, n: int
) -> np.ndarray:
    """``n`` points of the cubic Bezier curve with control points ``p0..p3``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
