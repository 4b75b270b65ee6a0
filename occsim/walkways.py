"""Where a pedestrian walks: on along the sidewalk it is on, in the middle of it.

A pedestrian's heading, fitted to the centroids of a blob of one to four columns, is off by
a few degrees, and a sidewalk curves with its road: walking straight on, a pedestrian the
reset frames saw drifts off its sidewalk, into the road or a building, half a metre in ten
seconds. A real frame's sidewalk columns give the way: the direction of the strip (the
structure tensor of its edges, as `road_user_tracks` reads a road's) and its middle (the
ridge of the distance to its edges). :meth:`Sidewalks.route` walks that way from a
pedestrian's place and heading, turning no more than the strip does and never onto a
heading far from its own (one crossing a road keeps crossing it).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from occsim.geometry import world_to_local, wrap_angle
from occsim.grid import OCC3D_GRID, GridSpec, column_any
from occsim.labels import SIDEWALK

ROUTE_STEP = 0.4  # m between the points of a route
ROUTE_LENGTH = 40.0  # m of route (a walker at 1.6 m/s walks it in 25 s); straight on after
TENSOR_SIGMA = 3.0  # m: the scale the strip's direction is read at
MIN_COHERENCE = 0.5  # edges agreeing less (a corner, a plaza) give no direction
MAX_ALIGN = np.radians(30.0)  # a heading farther from the strip's keeps its own way
CENTRE_RATE = 0.25  # share of the way to the strip's middle taken at each route step


class Sidewalks:
    """The sidewalk columns of a ``frame (X, Y, Z)`` seen from ``pose (x, y, yaw)``: the
    strip's direction and the distance to its edges at every column."""

    def __init__(self, frame: np.ndarray, pose: np.ndarray, grid: GridSpec = OCC3D_GRID) -> None:
        self.grid, self.pose = grid, np.asarray(pose, dtype=np.float64)
        walk = column_any(np.asarray(frame) == SIDEWALK)
        gx, gy = np.gradient(ndimage.gaussian_filter(walk.astype(np.float64), 1.0))
        sigma = TENSOR_SIGMA / grid.voxel_size
        xx = ndimage.gaussian_filter(gx * gx, sigma)
        yy = ndimage.gaussian_filter(gy * gy, sigma)
        xy = ndimage.gaussian_filter(gx * gy, sigma)
        strength = xx + yy
        coherent = (np.hypot(xx - yy, 2 * xy) >= MIN_COHERENCE * strength) & (strength > 1e-6)
        # The edges' normal, turned a quarter: the strip's direction in the frame (mod pi).
        self._direction = np.where(coherent, 0.5 * np.arctan2(2 * xy, xx - yy) + np.pi / 2, np.nan)
        self._depth = ndimage.distance_transform_edt(walk) * grid.voxel_size
        self._walk = walk

    def _index(self, world: np.ndarray) -> np.ndarray | None:
        local = world_to_local(np.asarray(world, np.float64)[None], self.pose[:2], self.pose[2])
        index = self.grid.metric_to_index(local)[0]
        return index if self.grid.contains(index[None])[0] else None

    def _depth_at(self, world: np.ndarray) -> float:
        index = self._index(world)
        return 0.0 if index is None else float(self._depth[index[0], index[1]])

    def route(self, start: np.ndarray, heading: float, length: float = ROUTE_LENGTH) -> np.ndarray:
        """World points ``(n, 2)``, about :data:`ROUTE_STEP` apart, of a walk from ``start`` at
        world ``heading`` (rad): along the sidewalk while it is on one, turning with it, and
        towards its middle; straight on elsewhere (off a sidewalk, where its edges do not
        agree, or across one). At least two points."""
        point = np.asarray(start, dtype=np.float64).copy()
        points = [point.copy()]
        for _ in range(max(round(length / ROUTE_STEP), 1)):
            index = self._index(point)
            along = np.nan
            if index is not None and self._walk[index[0], index[1]]:
                along = self._direction[index[0], index[1]] + self.pose[2]
            # The strip is undirected: the nearer way along it.
            turn = (along - heading + np.pi / 2) % np.pi - np.pi / 2
            if abs(turn) <= MAX_ALIGN:  # False where the strip gives no direction (NaN)
                heading = float(wrap_angle(heading + turn))
                normal = np.array([-np.sin(heading), np.cos(heading)])
                # Towards the middle: where the distance to the edges rises across the way.
                rise = self._depth_at(point + normal * ROUTE_STEP) - self._depth_at(
                    point - normal * ROUTE_STEP
                )
                pull = float(np.clip(rise / 2, -ROUTE_STEP, ROUTE_STEP)) * CENTRE_RATE
                point = point + normal * pull
            point = point + ROUTE_STEP * np.array([np.cos(heading), np.sin(heading)])
            points.append(point.copy())
        return np.array(points)


def along_route(route: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The point ``(2,)`` ``distance`` metres along ``route (n, 2)`` (straight on past its
    end) and the unit direction there (zero for a route of one point)."""
    if len(route) < 2:
        return np.asarray(route[0], dtype=np.float64), np.zeros(2)
    lengths = np.hypot(*np.diff(route, axis=0).T)
    ends = np.cumsum(lengths)
    i = min(int(np.searchsorted(ends, distance)), len(lengths) - 1)
    direction = (route[i + 1] - route[i]) / max(float(lengths[i]), 1e-9)
    start = ends[i] - lengths[i]
    return route[i] + direction * max(distance - start, 0.0), direction
