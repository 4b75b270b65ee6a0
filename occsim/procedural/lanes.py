"""Lane graph of a road network: directed lanes, and connectors through intersections.

Traffic drives on the right. Each lane ends before its intersection (behind the crossing
if there is one); connectors are cubic Bezier curves from a lane's end to the start of a
lane of another road, classified as a left turn, right turn or straight on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from occsim.geometry import wrap_angle
from occsim.procedural.paths import Path2D, PathTable, cubic_bezier, offset_polyline
from occsim.procedural.roads import Road, RoadNetwork

TURN_THRESHOLD = 0.5  # rad of heading change that makes a connector a turn
CROSSING_CLEARANCE = 3.5  # m kept free for a pedestrian crossing in front of a stop line


@dataclass
class Lane:
    """A directed lane along one road."""

    index: int
    road: int
    direction: int
    lane: int
    start_node: int
    end_node: int
    path: Path2D
    connectors: list[int] = field(default_factory=list)


@dataclass
class Connector:
    """A path through intersection ``node`` from ``from_lane`` to ``to_lane``."""

    index: int
    node: int
    from_lane: int
    to_lane: int
    path: Path2D
    turn: str
    offset: np.ndarray  # add to ``to_lane`` coordinates to continue this path seamlessly


@dataclass
class Walkway:
    """A sidewalk strip along one side of a road (``side`` +1 left of its centreline)."""

    road: int
    side: int
    path: Path2D
    crossing_at_start: Path2D | None
    crossing_at_end: Path2D | None


@dataclass
class LaneGraph:
    lanes: list[Lane]
    connectors: list[Connector]
    walkways: list[Walkway]

    @functools.cached_property
    def pieces(self) -> PathTable:
        """Every path a vehicle drives on: the lanes, then the connectors (connector ``c`` is
        piece ``len(lanes) + c``); built once per map."""
        return PathTable([lane.path for lane in self.lanes] + [c.path for c in self.connectors])

    @functools.cached_property
    def connector_turns(self) -> np.ndarray:
        """Whether each connector turns (bool, by connector index)."""
        return np.array([c.turn != "straight" for c in self.connectors], dtype=bool)

    @functools.cached_property
    def connector_to_lane(self) -> np.ndarray:
        """The lane each connector leads to (by connector index)."""
        return np.array([c.to_lane for c in self.connectors], dtype=np.int64)

    @functools.cached_property
    def connector_offsets(self) -> np.ndarray:
        """``(C, 2)`` shift each connector adds to continue on its lane (see ``Connector``)."""
        return np.array([c.offset for c in self.connectors], dtype=np.float64).reshape(-1, 2)

    @functools.cached_property
    def walkway_paths(self) -> PathTable:
        """The walkways' paths (walkway ``w`` is row ``w``); built once per map."""
        return PathTable([walkway.path for walkway in self.walkways])


def _wrap(delta: np.ndarray, size: float) -> np.ndarray:
    return (delta + size / 2) % size - size / 2


def _trimmed(points: np.ndarray, start: np.ndarray, end: np.ndarray, r0: float, r1: float):
    keep = (np.linalg.norm(points - start, axis=1) > r0) & (
        np.linalg.norm(points - end, axis=1) > r1
    )
    return points[keep]


def _clearance(network: RoadNetwork, road: Road, node: int) -> float:
    crossing = road.has_crossings and network.nodes[node].degree >= 3
    return network.nodes[node].radius + (CROSSING_CLEARANCE if crossing else 1.0)


def build_lane_graph(network: RoadNetwork) -> LaneGraph:
    """Lanes of every road in both directions, connectors at every node, and walkways."""
    lanes: list[Lane] = []
    for road in network.roads:
        for direction in (1, -1):
            center = road.centerline if direction == 1 else road.centerline[::-1]
            start_node, end_node = (road.start, road.end)[::direction]
            r0 = _clearance(network, road, start_node)
            r1 = _clearance(network, road, end_node)
            for k in range(road.lanes_per_direction):
                points = _trimmed(
                    offset_polyline(center, -road.lane_offset(k)), center[0], center[-1], r0, r1
                )
                if len(points) < 2:
                    continue
                lanes.append(
                    Lane(len(lanes), road.index, direction, k, start_node, end_node, Path2D(points))
                )

    connectors: list[Connector] = []
    outgoing: dict[int, list[Lane]] = {}
    for lane in lanes:
        outgoing.setdefault(lane.start_node, []).append(lane)
    for lane in lanes:
        node = network.nodes[lane.end_node]
        n_in = network.roads[lane.road].lanes_per_direction
        options = [o for o in outgoing.get(lane.end_node, []) if o.road != lane.road]
        chosen = []
        for out in options:
            n_out = network.roads[out.road].lanes_per_direction
            turn_angle = wrap_angle(out.path.heading(0.0) - lane.path.heading(lane.path.length))
            turn = "straight"
            if turn_angle > TURN_THRESHOLD:
                turn = "left"
            elif turn_angle < -TURN_THRESHOLD:
                turn = "right"
            if node.degree == 2 or turn == "straight":
                ok = out.lane == min(lane.lane, n_out - 1)
            elif turn == "left":
                ok = lane.lane == 0 and out.lane == 0
            else:
                ok = lane.lane == n_in - 1 and out.lane == n_out - 1
            if ok:
                chosen.append((out, turn))
        if not chosen:  # odd geometry: allow any lane-compatible link rather than a dead end
            chosen = [
                (o, "straight")
                for o in options
                if o.lane == min(lane.lane, network.roads[o.road].lanes_per_direction - 1)
            ]
        for out, turn in chosen:
            p0 = lane.path.points[-1]
            p3_local = out.path.points[0]
            p3 = p0 + _wrap(p3_local - p0, network.size)
            h0, h3 = lane.path.heading(lane.path.length), out.path.heading(0.0)
            reach = max(np.linalg.norm(p3 - p0) / 2.5, 1.0)
            p1 = p0 + reach * np.array([np.cos(h0), np.sin(h0)])
            p2 = p3 - reach * np.array([np.cos(h3), np.sin(h3)])
            connector = Connector(
                index=len(connectors),
                node=lane.end_node,
                from_lane=lane.index,
                to_lane=out.index,
                path=Path2D(cubic_bezier(p0, p1, p2, p3, 30)),
                turn=turn,
                offset=p3 - p3_local,
            )
            connectors.append(connector)
            lane.connectors.append(connector.index)

    walkways = []
    for road in network.roads:
        center = road.centerline
        r0 = _clearance(network, road, road.start) + 0.5
        r1 = _clearance(network, road, road.end) + 0.5
        offset = road.half_width + road.sidewalk_width / 2
        sides = {}
        for side in (1, -1):
            points = _trimmed(offset_polyline(center, side * offset), center[0], center[-1], r0, r1)
            if len(points) >= 2:
                sides[side] = points
        if len(sides) < 2:
            continue
        crossings = {}
        for end, node_id in ((0, road.start), (-1, road.end)):
            if not (road.has_crossings and network.nodes[node_id].degree >= 3):
                continue
            # Across the road through the middle of the crossing strip, between the two
            # walkway ends: a pedestrian walks [left end, strip, strip, right end].
            radius = network.nodes[node_id].radius
            gap = np.abs(np.linalg.norm(center - center[end], axis=1) - (radius + 1.5))
            index = int(np.argmin(gap))
            tangent = center[min(index + 1, len(center) - 1)] - center[max(index - 1, 0)]
            tangent /= np.linalg.norm(tangent)
            normal = np.array([-tangent[1], tangent[0]])
            mid = center[index]
            crossings[end] = np.stack(
                [sides[1][end], mid + offset * normal, mid - offset * normal, sides[-1][end]]
            )
        for side, points in sides.items():
            ends = []
            for end in (0, -1):
                route = crossings.get(end)
                ends.append(None if route is None else Path2D(route if side == 1 else route[::-1]))
            walkways.append(Walkway(road.index, side, Path2D(points), ends[0], ends[1]))
    return LaneGraph(lanes, connectors, walkways)
