"""Car following in the procedural world: what is ahead of each vehicle, and the IDM.

Everything here works on arrays of all road users at once. The float operations are those of
the per-vehicle model these functions replaced (same order, Python's ``min``/``max`` tie
rules, the C library's ``pow``), so that a seed still gives the same world to the bit
(``tests/test_procedural_reference.py``).
"""

from __future__ import annotations

import numpy as np

IDM_MIN_GAP = 2.0  # m
IDM_TIME_GAP = 1.2  # s
IDM_COMFORT_BRAKE = 2.5  # m/s^2
IDM_MAX_BRAKE = 8.0  # m/s^2
LOOKAHEAD = 50.0  # m of corridor checked for a leader
CORRIDOR_MARGIN = 0.4  # m added to the half widths of two road users side by side
PROBE_STEPS = np.arange(0.5, 12.0, 1.5)  # m ahead of the front bumper
PROBE_SPAN = float(PROBE_STEPS[-1] - PROBE_STEPS[0])  # m of path from the first probe to the last
PROBE_MARGIN = 0.3  # m added to the half widths when a probe point touches a road user


def wrap(delta: np.ndarray, size: float) -> np.ndarray:
    """Offsets on the torus of period ``size``, in ``[-size / 2, size / 2)``."""
    return (delta + size / 2) % size - size / 2


def near_pairs(a: np.ndarray, b: np.ndarray, radius: float, size: float):
    """Indices ``(i, j)`` of the points ``a[i]``, ``b[j]`` that may lie within ``radius`` of
    each other on the torus.

    A box test on wrapped coordinates: it never misses a pair (callers leave a metre over
    rounding) and keeps few others, so the exact tests run on a few pairs instead of all.
    """
    a, b = a % size, b % size
    near = np.ones((len(a), len(b)), dtype=bool)
    for axis in (0, 1):
        d = np.abs(a[:, None, axis] - b[None, :, axis])
        near &= np.minimum(d, size - d) < radius
    return np.nonzero(near)


def py_min(a, b):
    """Python's ``min(a, b)`` element by element: ``a`` unless ``b`` is strictly smaller, so
    that ties (signed zeros) come out as the per-vehicle model gave them."""
    return np.where(b < a, b, a)


def py_max(a, b):
    """Python's ``max(a, b)`` element by element: ``a`` unless ``b`` is strictly larger."""
    return np.where(b > a, b, a)


def libm_pow(base: np.ndarray, exponent: int) -> np.ndarray:
    """``base ** exponent`` element by element with the C library's ``pow``, as Python floats
    compute it: numpy's array power may take SIMD or ``x * x`` paths that differ in the last
    bit, and the simulation must not change by a bit."""
    return np.array([b**exponent for b in base.tolist()], dtype=np.float64)


def corridor_leaders(
    yaw: np.ndarray,
    speeds: np.ndarray,
    centers: np.ndarray,
    lengths: np.ndarray,
    widths: np.ndarray,
    size: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Bumper gap to, and speed along the follower's heading of, the nearest road user in
    the straight corridor ahead of each vehicle (``inf`` and 0 where there is none).

    Args:
        yaw: ``(V,)`` vehicle headings; vehicles are the first ``V`` road users.
        speeds: ``(V,)`` vehicle speeds.
        centers: ``(A, 2)`` world centres of all road users (vehicles first).
        lengths: ``(A,)`` and ``widths``: ``(A,)`` their footprints.
        size: period of the toroidal world.
    """
    count = len(yaw)
    forward = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
    # A road user in the corridor is at most LOOKAHEAD ahead and a few metres aside.
    v, a = near_pairs(centers[:count], centers, LOOKAHEAD + widths.max() + 1.4, size)
    rel = wrap(centers[a] - centers[v], size)
    lon = rel[:, 0] * forward[v, 0] + rel[:, 1] * forward[v, 1]
    lat = rel[:, 1] * forward[v, 0] - rel[:, 0] * forward[v, 1]
    corridor = (lon > 0) & (lon < LOOKAHEAD) & (v != a)
    corridor &= np.abs(lat) < (widths[v] + widths[a]) / 2 + CORRIDOR_MARGIN
    v, a, lon = v[corridor], a[corridor], lon[corridor]
    gap_matrix = np.full((count, len(centers)), np.inf)
    gap_matrix[v, a] = lon - (lengths[v] + lengths[a]) / 2
    leader = np.argmin(gap_matrix, axis=1)  # the first of equal gaps, as before
    gaps = gap_matrix[np.arange(count), leader]
    leader_speeds = np.zeros(count)
    followers = np.flatnonzero(np.isfinite(gaps) & (leader < count))
    ahead = leader[followers]
    leader_speeds[followers] = speeds[ahead] * np.cos(yaw[ahead] - yaw[followers])
    return gaps, leader_speeds


def first_probe_hit(
    points: np.ndarray,
    index: np.ndarray,
    width: np.ndarray,
    centers: np.ndarray,
    widths: np.ndarray,
    size: float,
) -> np.ndarray:
    """For each probing vehicle, the first of its probe points that touches another road
    user (``len(PROBE_STEPS)`` where none does).

    Args:
        points: ``(P, K)`` world probe points along each probing vehicle's path.
        index: ``(P,)`` road-user index of each probing vehicle (it never blocks itself).
        width: ``(P,)`` their widths.
        centers: ``(A, 2)`` and ``widths`` ``(A,)``: all road users.
        size: period of the toroidal world.
    """
    # The probes lie on a continuous path within PROBE_SPAN m of arc (hence of distance)
    # of the first: only road users that near the first probe are tested probe by probe.
    radius = (width.max() + widths.max()) / 2 + PROBE_MARGIN + PROBE_SPAN + 1.0
    probe, user = near_pairs(points[:, 0], centers, radius, size)
    other = user != index[probe]
    probe, user = probe[other], user[other]
    rel = wrap(centers[user, None] - points[probe], size)  # (pairs, K, 2)
    reach = (width[probe] + widths[user]) / 2 + PROBE_MARGIN
    hit = np.linalg.norm(rel, axis=-1) < reach[:, None]
    touching = hit.any(axis=1)
    first = np.full(len(index), len(PROBE_STEPS))
    np.minimum.at(first, probe[touching], np.argmax(hit[touching], axis=1))
    return first


def idm(
    speed: np.ndarray,
    desired: np.ndarray,
    gap: np.ndarray,
    leader_speed: np.ndarray,
    acceleration: np.ndarray,
) -> np.ndarray:
    """Intelligent-driver-model acceleration of each vehicle, bounded to
    ``[-IDM_MAX_BRAKE, acceleration]``; a vehicle with no desired speed brakes gently to rest.

    Args:
        speed: current speeds; ``desired``: desired speeds (m/s).
        gap: bumper gaps to whatever is ahead (``inf``: nothing).
        leader_speed: speed of that leader along the vehicle's heading.
        acceleration: each vehicle's maximum acceleration.
    """
    driving = desired > 0.0
    free = 1.0 - libm_pow(speed / np.where(driving, desired, 1.0), 4)
    dynamic = IDM_MIN_GAP + speed * IDM_TIME_GAP
    brake = 2 * np.sqrt(acceleration * IDM_COMFORT_BRAKE)
    dynamic = dynamic + speed * (speed - leader_speed) / brake
    ratio = py_max(dynamic, IDM_MIN_GAP) / py_max(gap, 0.1)
    interaction = np.where(np.isfinite(gap), libm_pow(ratio, 2), 0.0)
    accel = py_min(py_max(acceleration * (free - interaction), -IDM_MAX_BRAKE), acceleration)
    return np.where(driving, accel, np.where(speed > 0, -IDM_COMFORT_BRAKE, 0.0))
