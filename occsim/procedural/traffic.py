"""Road users of the procedural world: vehicles following lanes, pedestrians on walkways.

Vehicles follow an intelligent-driver model (IDM): they keep a time gap to whatever is in
the corridor ahead (vehicles, pedestrians, the ego), stop at an intersection held by
another vehicle, slow for turns and choose a connector at every intersection. Pedestrians
walk along sidewalks and cross at crossings when no vehicle is near.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from occsim import labels as L
from occsim.procedural.lanes import LaneGraph, Walkway

IDM_MIN_GAP = 2.0  # m
IDM_TIME_GAP = 1.2  # s
IDM_COMFORT_BRAKE = 2.5  # m/s^2
IDM_MAX_BRAKE = 8.0  # m/s^2
TURN_SPEED = 5.5  # m/s on turning connectors
LOOKAHEAD = 50.0  # m of corridor checked for a leader
RESERVE_DISTANCE = 25.0  # m before the stop line at which a vehicle asks for the junction
CHANGE_DURATION = 3.0  # s for a lane change
PROBE_RANGE = 12.0  # m before a junction from which a vehicle probes its path
PROBE_STEPS = np.arange(0.5, 12.0, 1.5)  # m ahead of the front bumper


@dataclass(frozen=True)
class VehicleType:
    name: str
    cls: int
    length: float
    width: float
    height: float
    speed: tuple[float, float]
    acceleration: float
    weight: float
    trailer: bool = False


VEHICLE_TYPES: tuple[VehicleType, ...] = (
    VehicleType("car", L.CAR, 4.5, 1.9, 1.6, (8.0, 13.0), 1.8, 0.62),
    VehicleType("truck", L.TRUCK, 7.5, 2.5, 3.2, (7.0, 10.0), 1.2, 0.08),
    VehicleType("bus", L.BUS, 11.0, 2.8, 3.3, (6.0, 9.0), 1.0, 0.05),
    VehicleType("tractor_trailer", L.TRUCK, 16.0, 2.5, 3.4, (7.0, 9.0), 1.0, 0.04, trailer=True),
    VehicleType("construction", L.CONSTRUCTION_VEHICLE, 6.5, 2.7, 3.0, (5.0, 8.0), 1.0, 0.03),
    VehicleType("bicycle", L.BICYCLE, 1.8, 0.7, 1.7, (3.0, 5.5), 1.0, 0.08),
    VehicleType("motorcycle", L.MOTORCYCLE, 2.1, 0.8, 1.5, (8.0, 12.0), 2.5, 0.10),
)
CAB_LENGTH = 5.5  # a tractor-trailer is one 16 m vehicle drawn as a cab and a trailer
EGO_TYPE = VehicleType("ego", L.FREE, 4.08, 1.85, 1.56, (8.0, 12.0), 2.0, 0.0)


@dataclass
class Box:
    """An oriented box to stamp into occupancy: centre (world), yaw, size and class."""

    center: np.ndarray
    yaw: float
    length: float
    width: float
    height: float
    cls: int


@dataclass
class Vehicle:
    """A vehicle on a lane (``connector is None``) or crossing an intersection."""

    kind: VehicleType
    lane: int
    s: float
    speed: float
    desired_speed: float
    shift: np.ndarray
    connector: int | None = None
    plan: int | None = None
    reserved: int | None = None
    is_ego: bool = False
    turn_preference: str | None = None
    stop_at: float | None = None  # remaining distance to a scripted stop
    change_to: int | None = None
    change_progress: float = 0.0
    change_direction: int = 0
    position: np.ndarray = field(default_factory=lambda: np.zeros(2))
    heading: float = 0.0


@dataclass
class Pedestrian:
    walkway: int
    s: float
    direction: int
    speed: float
    crossing: int | None = None  # 0: the walkway's start crossing, -1: its end crossing
    crossing_s: float = 0.0
    position: np.ndarray = field(default_factory=lambda: np.zeros(2))
    heading: float = 0.0


def _wrap(delta: np.ndarray, size: float) -> np.ndarray:
    return (delta + size / 2) % size - size / 2


class Traffic:
    """All road users of one world, stepped together."""

    def __init__(self, graph: LaneGraph, size: float, rng: np.random.Generator) -> None:
        self.graph, self.size, self.rng = graph, size, rng
        self.vehicles: list[Vehicle] = []
        self.pedestrians: list[Pedestrian] = []
        self.reservations: dict[int, int] = {}  # node -> id(vehicle)

    # ----------------------------------------------------------------- placement
    def add_vehicle(self, kind: VehicleType, lane: int, s: float, speed: float, **kw) -> Vehicle:
        """Place a vehicle on ``lane`` at arc length ``s``; returns it."""
        desired = kw.pop("desired_speed", None)
        if desired is None:
            desired = float(self.rng.uniform(*kind.speed))
        vehicle = Vehicle(kind, lane, s, speed, desired, np.zeros(2), **kw)
        self._choose_plan(vehicle)
        self._update_pose(vehicle)
        self.vehicles.append(vehicle)
        return vehicle

    def populate(self, vehicles: int, pedestrians: int, keep_clear: list[np.ndarray]) -> None:
        """Spawn vehicles on random lanes and pedestrians on random walkways."""
        weights = np.array([k.weight for k in VEHICLE_TYPES])
        lanes = self.graph.lanes
        for _ in range(vehicles * 4):
            if sum(not v.is_ego for v in self.vehicles) >= vehicles:
                break
            kind = VEHICLE_TYPES[self.rng.choice(len(VEHICLE_TYPES), p=weights / weights.sum())]
            lane = int(self.rng.integers(len(lanes)))
            length = lanes[lane].path.length
            if length < kind.length + 4:
                continue
            s = float(self.rng.uniform(kind.length, length - 2))
            point = lanes[lane].path.position(s)
            others = [v.position for v in self.vehicles] + keep_clear
            if (
                others
                and np.min(np.linalg.norm(_wrap(np.array(others) - point, self.size), axis=1))
                < 12.0 + kind.length
            ):
                continue
            self.add_vehicle(kind, lane, s, speed=float(self.rng.uniform(0.0, kind.speed[0])))
        for _ in range(pedestrians):
            walkway = int(self.rng.integers(len(self.graph.walkways)))
            path = self.graph.walkways[walkway].path
            ped = Pedestrian(
                walkway=walkway,
                s=float(self.rng.uniform(0, path.length)),
                direction=int(self.rng.choice([-1, 1])),
                speed=float(self.rng.uniform(0.8, 1.6)),
            )
            self._update_pedestrian_pose(ped)
            self.pedestrians.append(ped)

    # ----------------------------------------------------------------- geometry
    def _piece(self, v: Vehicle):
        return self._piece_of(v.connector, v.lane)

    def _update_pose(self, v: Vehicle) -> None:
        path = self._piece(v)
        x, y, heading = path.pose(v.s)
        position = np.array([x + v.shift[0], y + v.shift[1]])
        if v.change_to is not None:
            target = self.graph.lanes[v.change_to].path
            tx, ty, _ = target.pose(v.s * target.length / path.length)
            alpha = v.change_progress**2 * (3 - 2 * v.change_progress)
            lateral = _wrap(np.array([tx, ty]) + v.shift - position, self.size)
            # d(alpha)/dt of the smoothstep times the lateral distance gives the sideways speed.
            alpha_rate = 6 * v.change_progress * (1 - v.change_progress) / CHANGE_DURATION
            lateral_rate = alpha_rate * float(np.hypot(*lateral))
            heading += v.change_direction * float(np.arctan2(lateral_rate, max(v.speed, 0.5)))
            position = position + alpha * lateral
        v.position, v.heading = position, heading

    def _update_pedestrian_pose(self, p: Pedestrian) -> None:
        walkway = self.graph.walkways[p.walkway]
        if p.crossing is not None:
            x, y, p.heading = self._crossing(walkway, p.crossing).pose(p.crossing_s)
            p.position = np.array([x, y])
            return
        x, y, heading = walkway.path.pose(p.s)
        p.position = np.array([x, y])
        p.heading = heading + (np.pi if p.direction < 0 else 0.0)

    @staticmethod
    def _crossing(walkway: Walkway, end: int):
        return walkway.crossing_at_start if end == 0 else walkway.crossing_at_end

    # ----------------------------------------------------------------- decisions
    def _choose_plan(self, v: Vehicle) -> None:
        """Pick the connector to take at the end of the current lane."""
        options = self.graph.lanes[v.lane].connectors
        if not options:
            v.plan = None
            return
        if v.turn_preference is not None:
            preferred = [c for c in options if self.graph.connectors[c].turn == v.turn_preference]
            if not preferred:
                preferred = [c for c in options if self.graph.connectors[c].turn == "straight"]
            options = preferred or options
        v.plan = int(options[self.rng.integers(len(options))])

    def start_lane_change(self, v: Vehicle, direction: int) -> bool:
        """Begin a lane change to the left (+1) or right (-1) if that lane exists and is clear."""
        lane = self.graph.lanes[v.lane]
        if v.connector is not None or v.change_to is not None:
            return False
        target_index = lane.lane - direction  # lane 0 is innermost, i.e. leftmost
        candidates = [
            other
            for other in self.graph.lanes
            if other.road == lane.road
            and other.direction == lane.direction
            and other.lane == target_index
        ]
        if not candidates:
            return False
        target = candidates[0]
        point = target.path.position(v.s * target.path.length / lane.path.length) + v.shift
        for other in self.vehicles:
            if other is not v and np.linalg.norm(_wrap(other.position - point, self.size)) < 15.0:
                return False
        if lane.path.length - v.s < 40.0:
            return False
        v.change_to, v.change_progress, v.change_direction = target.index, 0.0, direction
        return True

    # ----------------------------------------------------------------- stepping
    def step(self, dt: float, obstacles: list[Box] | None = None, ego_fixed: bool = False) -> None:
        """Advance every road user by ``dt`` seconds.

        Args:
            dt: time step in seconds.
            obstacles: extra boxes vehicles must not run into (an externally driven ego).
            ego_fixed: the ego vehicle in ``vehicles`` (if any) is moved by someone else.
        """
        gaps, leader_speeds = self._leaders(self._agent_boxes(obstacles or []))
        accelerations = [
            0.0 if (v.is_ego and ego_fixed) else self._idm(v, gaps[i], leader_speeds[i])
            for i, v in enumerate(self.vehicles)
        ]
        for v, accel in zip(self.vehicles, accelerations):
            if v.is_ego and ego_fixed:
                continue
            v.speed = max(0.0, v.speed + accel * dt)
            self._advance(v, v.speed * dt)
            if v.stop_at is not None:
                v.stop_at = max(0.0, v.stop_at - v.speed * dt)
            if v.change_to is not None:
                v.change_progress += dt / CHANGE_DURATION
                if v.change_progress >= 1.0:
                    ratio = self.graph.lanes[v.change_to].path.length / self._piece(v).length
                    v.lane, v.s, v.change_to = v.change_to, v.s * ratio, None
                    self._choose_plan(v)
            self._update_pose(v)
        for p in self.pedestrians:
            self._walk(p, dt)

    def _agent_boxes(self, obstacles: list[Box]):
        centers = [v.position for v in self.vehicles] + [p.position for p in self.pedestrians]
        centers += [b.center for b in obstacles]
        lengths = [v.kind.length for v in self.vehicles] + [0.6] * len(self.pedestrians)
        lengths += [b.length for b in obstacles]
        widths = [v.kind.width for v in self.vehicles] + [0.6] * len(self.pedestrians)
        widths += [b.width for b in obstacles]
        return (
            np.array(centers).reshape(-1, 2),
            np.array(lengths),
            np.array(widths),
        )

    def _leaders(self, agents) -> tuple[np.ndarray, np.ndarray]:
        """Bumper gap to, and speed of, the nearest road user in each vehicle's corridor."""
        centers, lengths, widths = agents
        count = len(self.vehicles)
        gaps, speeds = np.full(count, np.inf), np.zeros(count)
        if count == 0:
            return gaps, speeds
        positions = centers[:count]
        yaw = np.array([v.heading for v in self.vehicles])
        forward = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
        own_length = lengths[:count]
        own_width = widths[:count]
        rel = _wrap(centers[None, :, :] - positions[:, None, :], self.size)  # (V, A, 2)
        lon = np.einsum("vad,vd->va", rel, forward)
        lat = rel[..., 1] * forward[:, None, 0] - rel[..., 0] * forward[:, None, 1]
        corridor = (lon > 0) & (lon < LOOKAHEAD)
        corridor &= np.abs(lat) < (own_width[:, None] + widths[None, :]) / 2 + 0.4
        corridor[np.arange(count), np.arange(count)] = False
        gap_matrix = np.where(corridor, lon - (own_length[:, None] + lengths[None, :]) / 2, np.inf)
        leader = np.argmin(gap_matrix, axis=1)
        gaps = gap_matrix[np.arange(count), leader]
        vehicle_speeds = np.array([v.speed for v in self.vehicles])
        for i in np.flatnonzero(np.isfinite(gaps) & (leader < count)):
            j = leader[i]
            speeds[i] = vehicle_speeds[j] * np.cos(yaw[j] - yaw[i])
        # Through junctions the straight corridor misses what is round the bend: probe the
        # path itself a few metres ahead for vehicles turning or about to turn.
        for i, v in enumerate(self.vehicles):
            piece = self._piece(v)
            if v.connector is None and piece.length - v.s > PROBE_RANGE:
                continue
            ahead = v.kind.length / 2 + PROBE_STEPS
            points = self._future_points(v, ahead)
            dist = np.linalg.norm(_wrap(centers[None] - points[:, None], self.size), axis=2)
            hit = dist < (v.kind.width + widths[None, :]) / 2 + 0.3
            hit[:, i] = False
            rows = np.flatnonzero(hit.any(axis=1))
            if len(rows):
                probe_gap = PROBE_STEPS[rows[0]] - 1.0
                if probe_gap < gaps[i]:
                    gaps[i], speeds[i] = probe_gap, 0.0
        return gaps, speeds

    def _future_points(self, v: Vehicle, distances: np.ndarray) -> np.ndarray:
        """World points ``distances`` metres ahead of ``v`` along its lane and planned turn."""
        path = self._piece(v)
        s = v.s + distances
        points = path.position(s) + v.shift
        beyond = s > path.length
        if not beyond.any():
            return points
        if v.connector is not None:
            connector = self.graph.connectors[v.connector]
            following = self.graph.lanes[connector.to_lane].path
            shift = v.shift + connector.offset
        elif v.plan is not None:
            following, shift = self.graph.connectors[v.plan].path, v.shift
        else:
            return points
        points[beyond] = following.position(s[beyond] - path.length) + shift
        return points

    def _piece_of(self, connector: int | None, lane: int):
        if connector is not None:
            return self.graph.connectors[connector].path
        return self.graph.lanes[lane].path

    def _idm(self, v: Vehicle, gap: float, leader_speed: float) -> float:
        desired = v.desired_speed
        path = self._piece(v)
        to_end = path.length - v.s - v.kind.length / 2
        if v.connector is not None:
            if self.graph.connectors[v.connector].turn != "straight":
                desired = min(desired, TURN_SPEED)
        elif v.plan is not None:
            plan = self.graph.connectors[v.plan]
            if plan.turn != "straight" and to_end < 25.0:
                desired = min(desired, TURN_SPEED + 0.1 * to_end)
            holder = self.reservations.get(plan.node)
            if to_end < RESERVE_DISTANCE and holder is None:
                self.reservations[plan.node] = id(v)
                v.reserved, holder = plan.node, id(v)
            if holder != id(v):
                gap, leader_speed = min(gap, to_end - 0.5), 0.0
        if v.stop_at is not None:
            gap, leader_speed = min(gap, v.stop_at), 0.0
        if desired <= 0.0:
            return -IDM_COMFORT_BRAKE if v.speed > 0 else 0.0
        a = v.kind.acceleration
        free = 1.0 - (v.speed / desired) ** 4
        interaction = 0.0
        if np.isfinite(gap):
            dynamic = IDM_MIN_GAP + v.speed * IDM_TIME_GAP
            dynamic += v.speed * (v.speed - leader_speed) / (2 * np.sqrt(a * IDM_COMFORT_BRAKE))
            interaction = (max(dynamic, IDM_MIN_GAP) / max(gap, 0.1)) ** 2
        return min(max(a * (free - interaction), -IDM_MAX_BRAKE), a)

    def _advance(self, v: Vehicle, distance: float) -> None:
        v.s += distance
        while v.s > self._piece(v).length:
            old_path = self._piece(v)
            v.s -= old_path.length
            if v.connector is not None:
                connector = self.graph.connectors[v.connector]
                v.shift = v.shift + connector.offset
                v.connector, v.lane = None, connector.to_lane
                if self.reservations.get(connector.node) == id(v):
                    del self.reservations[connector.node]
                v.reserved = None
                self._choose_plan(v)
            elif v.plan is not None:
                v.connector = v.plan
            else:
                v.s = old_path.length
                v.speed = 0.0
                return

    def _walk(self, p: Pedestrian, dt: float) -> None:
        walkway = self.graph.walkways[p.walkway]
        if p.crossing is not None:
            path = self._crossing(walkway, p.crossing)
            p.crossing_s += p.speed * dt
            if p.crossing_s >= path.length:
                # Arrived on the other side of the road: walk away from the junction there.
                other = next(
                    i
                    for i, w in enumerate(self.graph.walkways)
                    if w.road == walkway.road and w.side == -walkway.side
                )
                p.walkway = other
                other_path = self.graph.walkways[other].path
                p.s = 0.0 if p.crossing == 0 else other_path.length
                p.direction = 1 if p.crossing == 0 else -1
                p.crossing = None
            self._update_pedestrian_pose(p)
            return
        p.s += p.direction * p.speed * dt
        at_end = p.s >= walkway.path.length if p.direction > 0 else p.s <= 0.0
        if at_end:
            p.s = float(np.clip(p.s, 0.0, walkway.path.length))
            end = -1 if p.direction > 0 else 0
            crossing = self._crossing(walkway, end)
            if crossing is not None and self.rng.random() < 0.6 and self._crossing_clear(crossing):
                p.crossing, p.crossing_s = end, 0.0
            else:
                p.direction = -p.direction
        self._update_pedestrian_pose(p)

    def _crossing_clear(self, crossing) -> bool:
        middle = crossing.position(crossing.length / 2)
        for v in self.vehicles:
            if np.linalg.norm(_wrap(v.position - middle, self.size)) < 15.0:
                return False
        return True

    # ----------------------------------------------------------------- output
    def boxes(self, include_ego: bool = False) -> list[Box]:
        """Oriented boxes of every road user (the ego only if asked)."""
        out = []
        for v in self.vehicles:
            if v.is_ego and not include_ego:
                continue
            kind = v.kind
            if not kind.trailer:
                out.append(
                    Box(v.position, v.heading, kind.length, kind.width, kind.height, kind.cls)
                )
                continue
            forward = np.array([np.cos(v.heading), np.sin(v.heading)])
            trailer = kind.length - CAB_LENGTH - 0.5
            cab_center = v.position + (kind.length - CAB_LENGTH) / 2 * forward
            trailer_center = v.position - (kind.length - trailer) / 2 * forward
            out.append(Box(cab_center, v.heading, CAB_LENGTH, kind.width, kind.height, kind.cls))
            out.append(Box(trailer_center, v.heading, trailer, kind.width, 3.6, L.TRAILER))
        for p in self.pedestrians:
            out.append(Box(p.position, p.heading, 0.6, 0.6, 1.8, L.PEDESTRIAN))
        return out
