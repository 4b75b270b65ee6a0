"""What a road user's real frames tell of its motion: a steady walker's pace, a vehicle's
braking, its turn, and the direction of the road it turns onto.

Each reads the displacements of an object's centroid between real frames (as velocities,
one frame period apart) or a real frame's driveable columns; the tracks
(:mod:`occsim.road_user_tracks`) carry what they find on through generated frames.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from occsim.geometry import world_to_local
from occsim.grid import GridSpec

REAL_INTERVALS = 3  # real-frame displacements that braking and the line fit look back over
MIN_BRAKING = 0.5  # m/s^2 of steady slowing that counts as braking (above centroid jitter)
# A vehicle whose heading turned the same way, at MIN_YAW_RATE or more, over every real
# interval is taking a turn (a junction's quarter turn): it keeps turning at its rate for
# part of what is left of it (see turn_of).
MIN_YAW_RATE = np.radians(8.0)  # rad/s; a straight car's heading jitters by a few degrees
TURN_SPEED = 1.5  # m/s from which a centroid's heading is told from its jitter
QUARTER_TURN = np.pi / 2
# A turn ends where the road does: the direction of the road around a turning vehicle is
# read from the real frame's driveable surface (its structure tensor within ROAD_WINDOW),
# where its edges agree (coherence at least ROAD_COHERENCE; a junction's do not).
ROAD_WINDOW = 8.0  # m
ROAD_COHERENCE = 0.5


def turn_of(velocities: tuple[tuple[float, float], ...], elapsed: float) -> tuple[float, float]:
    """The yaw rate (rad/s) of a vehicle whose real displacements (as ``velocities``,
    ``elapsed`` seconds apart) turned the same way by :data:`MIN_YAW_RATE` or more every
    time, and the turn (rad) they show, from the first frame to the end of the last
    interval; ``(0, 0)`` for one going straight, or too slow to tell. A turn is taken to be
    a quarter turn: one whose start the frames may have missed turns on for half of what
    would be left had it begun at the first frame (the mean, were every point of the turn
    as likely)."""
    v = np.asarray(velocities, dtype=np.float64).reshape(-1, 2)
    if len(v) < REAL_INTERVALS or np.hypot(*v.T).min() < TURN_SPEED:
        return 0.0, 0.0
    headings = np.unwrap(np.arctan2(v[:, 1], v[:, 0]))
    changes = np.diff(headings)
    if not (np.all(changes > 0) or np.all(changes < 0)):
        return 0.0, 0.0
    if np.abs(changes).min() < MIN_YAW_RATE * elapsed:
        return 0.0, 0.0
    rate = (headings[-1] - headings[0]) / ((len(v) - 1) * elapsed)
    # The headings are the intervals' means: from the first frame to the end of the last
    # interval it has turned half an interval more at each end.
    return float(rate), float(abs(headings[-1] - headings[0]) + abs(rate) * elapsed)


def road_direction(
    road: np.ndarray, pose: np.ndarray, centre: np.ndarray, grid: GridSpec
) -> float | None:
    """The world direction (rad, modulo pi) of the road around world point ``centre``: the
    dominant orientation of the edges of driveable columns ``road (X, Y)`` of a frame seen
    from ``pose`` within :data:`ROAD_WINDOW`, turned a quarter; ``None`` where the edges do
    not agree (a junction, open space) or the window holds no edge."""
    index = grid.metric_to_index(world_to_local(np.asarray(centre)[None], pose[:2], pose[2]))[0]
    reach = round(ROAD_WINDOW / grid.voxel_size)
    low = np.maximum(index - reach, 0)
    high = np.minimum(index + reach + 1, road.shape)
    if np.any(high - low < 3):
        return None
    patch = ndimage.gaussian_filter(road[low[0] : high[0], low[1] : high[1]].astype(float), 1.5)
    gx, gy = np.gradient(patch)
    xx, yy, xy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    if xx + yy < 1e-9:
        return None
    if np.hypot(xx - yy, 2 * xy) < ROAD_COHERENCE * (xx + yy):
        return None
    across = 0.5 * np.arctan2(2 * xy, xx - yy)  # the edges' normal, in the frame
    return float(across + np.pi / 2 + pose[2])


def heading_of(velocity: np.ndarray | tuple[float, float]) -> float:
    """The world heading (rad) of a velocity ``(2,)``."""
    return float(np.arctan2(velocity[1], velocity[0]))


def line_fit(velocities: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The velocity ``(2,)`` of a least-squares line through the centroids whose successive
    displacements (as velocities, one frame period apart) are ``velocities``: a weighted
    mean that trusts the middle intervals most, the ones a centroid's jitter at either end
    touches once. With three intervals it is about three quarters as noisy as the newest
    displacement weighted half."""
    n = len(velocities)
    weights = np.arange(1, n + 1) * np.arange(n, 0, -1)
    return weights @ np.asarray(velocities) / weights.sum()


def braking_of(speeds: np.ndarray, elapsed: float) -> float:
    """The steady braking (m/s^2) of an object whose last :data:`REAL_INTERVALS` measured
    ``speeds``, ``elapsed`` seconds apart, fell every time by :data:`MIN_BRAKING` on
    average or more; 0 otherwise (a constant speed, or jitter)."""
    if len(speeds) < REAL_INTERVALS or np.any(np.diff(speeds) >= 0):
        return 0.0
    braking = (speeds[0] - speeds[-1]) / ((len(speeds) - 1) * elapsed)
    return float(braking) if braking >= MIN_BRAKING else 0.0
