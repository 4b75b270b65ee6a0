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
from occsim.procedural.following import (
    PROBE_STEPS,
    corridor_leaders,
    first_probe_hit,
    idm,
    py_min,
    wrap,
)
from occsim.procedural.lanes import LaneGraph, Walkway

TURN_SPEED = 5.5  # m/s on turning connectors
RESERVE_DISTANCE = 25.0  # m before the stop line at which a vehicle asks for the junction
CHANGE_DURATION = 3.0  # s for a lane change
PROBE_RANGE = 12.0  # m before a junction from which a vehicle probes its path


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


@dataclass
class _Fleet:
    """The vehicles' state as arrays, in the order of ``Traffic.vehicles``."""

    moving: np.ndarray  # bool: False for an ego moved by someone else
    speed: np.ndarray
    desired: np.ndarray
    s: np.ndarray
    connector: np.ndarray  # -1: on a lane
    piece: np.ndarray  # lane index, or len(lanes) + connector index (LaneGraph.pieces)
    plan: np.ndarray  # -1: none
    stop_at: np.ndarray  # nan: no scripted stop
    changing: np.ndarray  # bool: changing lanes
    progress: np.ndarray  # of the lane change
    half_length: np.ndarray
    acceleration: np.ndarray


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
                and np.min(np.linalg.norm(wrap(np.array(others) - point, self.size), axis=1))
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
            lateral = wrap(np.array([tx, ty]) + v.shift - position, self.size)
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
            if other is not v and np.linalg.norm(wrap(other.position - point, self.size)) < 15.0:
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
        fleet = self._fleet(ego_fixed)
        gaps, leader_speeds = self._leaders(fleet, obstacles or [])
        self._drive(fleet, self._accelerations(fleet, gaps, leader_speeds), dt)
        self._walk_all(dt)

    def _fleet(self, ego_fixed: bool) -> _Fleet:
        vehicles, lanes = self.vehicles, len(self.graph.lanes)
        connector = np.array(
            [-1 if v.connector is None else v.connector for v in vehicles], dtype=np.int64
        )
        lane = np.array([v.lane for v in vehicles], dtype=np.int64)
        return _Fleet(
            moving=np.array([not (v.is_ego and ego_fixed) for v in vehicles], dtype=bool),
            speed=np.array([v.speed for v in vehicles], dtype=np.float64),
            desired=np.array([v.desired_speed for v in vehicles], dtype=np.float64),
            s=np.array([v.s for v in vehicles], dtype=np.float64),
            connector=connector,
            piece=np.where(connector >= 0, lanes + connector, lane),
            plan=np.array([-1 if v.plan is None else v.plan for v in vehicles], dtype=np.int64),
            stop_at=np.array([np.nan if v.stop_at is None else v.stop_at for v in vehicles]),
            changing=np.array([v.change_to is not None for v in vehicles], dtype=bool),
            progress=np.array([v.change_progress for v in vehicles], dtype=np.float64),
            half_length=np.array([v.kind.length / 2 for v in vehicles]),
            acceleration=np.array([v.kind.acceleration for v in vehicles]),
        )

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

    def _leaders(self, fleet: _Fleet, obstacles: list[Box]) -> tuple[np.ndarray, np.ndarray]:
        """Bumper gap to, and speed of, the nearest road user ahead of each vehicle."""
        count = len(self.vehicles)
        if count == 0:
            return np.full(0, np.inf), np.zeros(0)
        centers, lengths, widths = self._agent_boxes(obstacles)
        yaw = np.array([v.heading for v in self.vehicles])
        gaps, leader_speeds = corridor_leaders(
            yaw, fleet.speed, centers, lengths, widths, self.size
        )
        # Through junctions the straight corridor misses what is round the bend: probe the
        # path itself a few metres ahead for road users turning or about to turn.
        index, points = self._probe_points(fleet)
        if len(index):
            width = widths[index]
            first = first_probe_hit(points, index, width, centers, widths, self.size)
            hit = np.flatnonzero(first < len(PROBE_STEPS))
            probe_gap = PROBE_STEPS[first[hit]] - 1.0
            closer = probe_gap < gaps[index[hit]]
            gaps[index[hit[closer]]] = probe_gap[closer]
            leader_speeds[index[hit[closer]]] = 0.0
        return gaps, leader_speeds

    def _probe_points(self, fleet: _Fleet) -> tuple[np.ndarray, np.ndarray]:
        """The vehicles in or near a junction and their probe points ``(P, K, 2)``: PROBE_STEPS
        ahead of the front bumper along the piece they are on and the one they go on to."""
        table, graph = self.graph.pieces, self.graph
        on_connector = fleet.connector >= 0
        near = on_connector | (table.lengths[fleet.piece] - fleet.s <= PROBE_RANGE)
        index = np.flatnonzero(near)
        connector, plan = fleet.connector[index], fleet.plan[index]
        on_connector = on_connector[index]
        following = np.where(
            on_connector,
            graph.connector_to_lane[connector],
            np.where(plan >= 0, len(graph.lanes) + plan, -1),
        )
        shift = np.array([self.vehicles[i].shift for i in index.tolist()]).reshape(-1, 2)
        following_shift = np.where(
            on_connector[:, None], shift + graph.connector_offsets[connector], shift
        )
        piece = fleet.piece[index]
        s = fleet.s[index, None] + (fleet.half_length[index, None] + PROBE_STEPS)
        return index, self._future_points(piece, s, shift, following, following_shift)

    def _future_points(self, piece, s, shift, following, following_shift) -> np.ndarray:
        """World points at arc lengths ``s`` ``(P, K)`` along each vehicle's piece and, past its
        end, the piece it continues on (a piece ``-1`` ends there)."""
        table = self.graph.pieces
        points = table.position(piece[:, None], s) + shift[:, None]
        beyond = (s > table.lengths[piece][:, None]) & (following >= 0)[:, None]
        rows, cols = np.nonzero(beyond)
        if len(rows):
            rest = s[rows, cols] - table.lengths[piece[rows]]
            points[rows, cols] = table.position(following[rows], rest) + following_shift[rows]
        return points

    def _piece_of(self, connector: int | None, lane: int):
        if connector is not None:
            return self.graph.connectors[connector].path
        return self.graph.lanes[lane].path

    def _accelerations(
        self, fleet: _Fleet, gaps: np.ndarray, leader_speeds: np.ndarray
    ) -> np.ndarray:
        """Acceleration of every vehicle (0 for one moved by someone else): the IDM towards
        its leader, slowed for turns, held at a junction another vehicle holds, and stopped
        where its script says. Asks for the junction ahead for vehicles that reach it."""
        to_end = self.graph.pieces.lengths[fleet.piece] - fleet.s - fleet.half_length
        turning = self.graph.connector_turns
        on_connector = fleet.connector >= 0
        planning = ~on_connector & (fleet.plan >= 0)
        desired = fleet.desired
        slow = on_connector & turning[fleet.connector]
        desired = np.where(slow, py_min(desired, TURN_SPEED), desired)
        slow = planning & turning[fleet.plan] & (to_end < 25.0)
        desired = np.where(slow, py_min(desired, TURN_SPEED + 0.1 * to_end), desired)
        held = self._reserve(np.flatnonzero(planning & fleet.moving), fleet.plan, to_end)
        gap = np.where(held, py_min(gaps, to_end - 0.5), gaps)
        leader_speed = np.where(held, 0.0, leader_speeds)
        stopping = ~np.isnan(fleet.stop_at)
        gap = np.where(stopping, py_min(gap, fleet.stop_at), gap)
        leader_speed = np.where(stopping, 0.0, leader_speed)
        accel = idm(fleet.speed, desired, gap, leader_speed, fleet.acceleration)
        return np.where(fleet.moving, accel, 0.0)

    def _reserve(self, candidates: np.ndarray, plan: np.ndarray, to_end: np.ndarray):
        """Junction reservations, vehicle by vehicle in order (the first to come within
        RESERVE_DISTANCE of a free junction takes it); True where a vehicle must wait."""
        held = np.zeros(len(plan), dtype=bool)
        distance = to_end.tolist()
        for i in candidates.tolist():
            v = self.vehicles[i]
            node = self.graph.connectors[plan[i]].node
            holder = self.reservations.get(node)
            if distance[i] < RESERVE_DISTANCE and holder is None:
                self.reservations[node] = id(v)
                v.reserved, holder = node, id(v)
            held[i] = holder != id(v)
        return held

    def _drive(self, fleet: _Fleet, accelerations: np.ndarray, dt: float) -> None:
        """Move the vehicles: speed, arc length, scripted stop, lane-change progress, pose.

        The few that leave their lane or connector or finish a lane change this step (they
        draw a new plan from the rng) go one by one in order; the others move as arrays.
        """
        speed = fleet.speed + accelerations * dt
        speed = np.where(fleet.moving, np.where(speed > 0.0, speed, 0.0), fleet.speed)
        s = fleet.s + speed * dt
        stop_at = fleet.stop_at - speed * dt
        stop_at = np.where(stop_at > 0.0, stop_at, 0.0)
        progress = fleet.progress + dt / CHANGE_DURATION
        ends = s > self.graph.pieces.lengths[fleet.piece]
        events = fleet.moving & (ends | (fleet.changing & (progress >= 1.0)))
        values = zip(speed.tolist(), s.tolist(), stop_at.tolist(), progress.tolist())
        for i, (v, (v_speed, v_s, v_stop, v_progress)) in enumerate(zip(self.vehicles, values)):
            if not fleet.moving[i]:
                continue
            v.speed = v_speed
            if events[i]:
                self._move(v, dt)
                continue
            v.s = v_s
            if v.stop_at is not None:
                v.stop_at = v_stop
            if v.change_to is not None:
                v.change_progress = v_progress
        self._update_poses(np.flatnonzero(fleet.moving))

    def _update_poses(self, indices: np.ndarray) -> None:
        """Poses of the vehicles ``indices`` on their pieces, all at once; a vehicle changing
        lanes blends towards its target lane (:meth:`_update_pose`)."""
        vehicles = [self.vehicles[i] for i in indices.tolist()]
        if not vehicles:
            return
        lanes = len(self.graph.lanes)
        piece = [v.lane if v.connector is None else lanes + v.connector for v in vehicles]
        s = np.array([v.s for v in vehicles], dtype=np.float64)
        points, headings = self.graph.pieces.pose(np.array(piece), s)
        positions = points + np.array([v.shift for v in vehicles])
        for v, position, heading in zip(vehicles, positions, headings.tolist()):
            if v.change_to is not None:
                self._update_pose(v)
            else:
                v.position, v.heading = position, heading

    def _move(self, v: Vehicle, dt: float) -> None:
        """One vehicle's move after its speed is set, through lane and junction changes."""
        self._advance(v, v.speed * dt)
        if v.stop_at is not None:
            v.stop_at = max(0.0, v.stop_at - v.speed * dt)
        if v.change_to is not None:
            v.change_progress += dt / CHANGE_DURATION
            if v.change_progress >= 1.0:
                ratio = self.graph.lanes[v.change_to].path.length / self._piece(v).length
                v.lane, v.s, v.change_to = v.change_to, v.s * ratio, None
                self._choose_plan(v)

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

    def _walk_all(self, dt: float) -> None:
        """Move the pedestrians: those crossing or reaching a walkway's end (who may draw from
        the rng) one by one in order, the others as arrays."""
        pedestrians = self.pedestrians
        if not pedestrians:
            return
        walkway = np.array([p.walkway for p in pedestrians])
        direction = np.array([p.direction for p in pedestrians])
        speed = np.array([p.speed for p in pedestrians], dtype=np.float64)
        s = np.array([p.s for p in pedestrians], dtype=np.float64) + direction * speed * dt
        table = self.graph.walkway_paths
        length = table.lengths[walkway]
        at_end = np.where(direction > 0, s >= length, s <= 0.0)
        walking = []
        for i, (p, p_s) in enumerate(zip(pedestrians, s.tolist())):
            if p.crossing is not None or at_end[i]:
                self._walk(p, dt)
            else:
                p.s = p_s
                walking.append(i)
        points, headings = table.pose(walkway[walking], s[walking])
        headings = headings + np.where(direction[walking] < 0, np.pi, 0.0)
        for i, point, heading in zip(walking, points, headings.tolist()):
            pedestrians[i].position, pedestrians[i].heading = point, heading

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
            if np.linalg.norm(wrap(v.position - middle, self.size)) < 15.0:
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
