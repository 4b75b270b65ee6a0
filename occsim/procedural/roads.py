"""Seeded road network on a torus: a jittered grid of intersections joined by roads.

The world wraps around with period ``WorldConfig.size`` on both axes, so a car can drive
forever through a finite map. Nodes of degree 4 are crossroads, 3 T-junctions and 2 bends;
some roads are gently curved. Coordinates of a road's centreline are *unwrapped*: they run
continuously from its start node to the nearest image of its end node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from occsim.procedural.config import LANE_WIDTH, WorldConfig
from occsim.procedural.paths import resample


@dataclass
class Road:
    """One road between two nodes, with its cross-section from the centreline outwards."""

    index: int
    start: int
    end: int
    centerline: np.ndarray
    lanes_per_direction: int
    median_width: float
    shoulder_width: float
    sidewalk_width: float
    verge_width: float
    has_crossings: bool

    @property
    def half_width(self) -> float:
        """Distance from the centreline to the kerb (edge of the driveable surface)."""
        return self.median_width / 2 + self.lanes_per_direction * LANE_WIDTH + self.shoulder_width

    @property
    def outer_width(self) -> float:
        """Distance from the centreline to the back of the sidewalk."""
        return self.half_width + self.sidewalk_width

    def lane_offset(self, lane: int) -> float:
        """Distance of lane ``lane`` (0 = innermost) right of the centreline, per direction."""
        return self.median_width / 2 + (lane + 0.5) * LANE_WIDTH


@dataclass
class Node:
    """An intersection (degree 3-4) or a bend (degree 2)."""

    index: int
    position: np.ndarray
    roads: list[int] = field(default_factory=list)
    radius: float = 0.0

    @property
    def degree(self) -> int:
        return len(self.roads)


@dataclass
class RoadNetwork:
    """Nodes and roads of one world."""

    size: float
    nodes: list[Node]
    roads: list[Road]


def _connected(num_nodes: int, edges: set[tuple[int, int]]) -> bool:
    neighbours: dict[int, list[int]] = {i: [] for i in range(num_nodes)}
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    seen, stack = {0}, [0]
    while stack:
        for nxt in neighbours[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return len(seen) == num_nodes


def generate_road_network(rng: np.random.Generator, config: WorldConfig) -> RoadNetwork:
    """Build the road graph and each road's geometry and cross-section."""
    n, size = config.grid_nodes, config.size
    spacing = size / n
    jitter = config.node_jitter * spacing
    positions = {}
    for i in range(n):
        for j in range(n):
            base = np.array([(i + 0.5) * spacing, (j + 0.5) * spacing])
            positions[(i, j)] = base + rng.uniform(-jitter, jitter, size=2)
    ids = {key: k for k, key in enumerate(sorted(positions))}
    nodes = [Node(index=ids[key], position=positions[key]) for key in sorted(positions)]

    # Each node links to its right and upper neighbour; wrap-around edges close the torus.
    candidates = []
    for i in range(n):
        for j in range(n):
            candidates.append((ids[(i, j)], ids[((i + 1) % n, j)], np.array([1.0, 0.0])))
            candidates.append((ids[(i, j)], ids[(i, (j + 1) % n)], np.array([0.0, 1.0])))
    edges = {(a, b) for a, b, _ in candidates}
    degree = {k: 0 for k in range(len(nodes))}
    for a, b in edges:
        degree[a] += 1
        degree[b] += 1
    for order in rng.permutation(len(candidates)):
        a, b, _ = candidates[order]
        if rng.random() >= config.road_removal_probability:
            continue
        if degree[a] <= 2 or degree[b] <= 2:
            continue
        trial = edges - {(a, b)}
        if _connected(len(nodes), trial):
            edges = trial
            degree[a] -= 1
            degree[b] -= 1

    roads: list[Road] = []
    for a, b, direction in candidates:
        if (a, b) not in edges:
            continue
        start = nodes[a].position
        end = nodes[b].position.copy()
        # Unwrap: the end node's image nearest to the start along this edge's direction.
        end += direction * size * np.round(((start - end) @ direction) / size)
        end += direction * size * ((end - start) @ direction < 0)
        if rng.random() < config.curve_probability:
            mid = (start + end) / 2
            tangent = (end - start) / np.linalg.norm(end - start)
            normal = np.array([-tangent[1], tangent[0]])
            bulge = rng.uniform(0.08, 0.16) * np.linalg.norm(end - start) * rng.choice([-1, 1])
            control = mid + normal * bulge
            t = np.linspace(0, 1, 200)[:, None]
            curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        else:
            curve = np.stack([start, end])
        lanes = 2 if rng.random() < config.two_lane_probability else 1
        road = Road(
            index=len(roads),
            start=a,
            end=b,
            centerline=resample(curve, 1.0),
            lanes_per_direction=lanes,
            median_width=float(rng.choice([0.0, 2.0])) if lanes == 2 else 0.0,
            shoulder_width=2.5 if rng.random() < config.shoulder_probability else 0.5,
            sidewalk_width=float(rng.uniform(2.5, 5.0)),
            verge_width=float(rng.uniform(0.0, 3.0)),
            has_crossings=bool(rng.random() < config.crossing_probability),
        )
        roads.append(road)
        nodes[a].roads.append(road.index)
        nodes[b].roads.append(road.index)
    for node in nodes:
        widest = max(roads[r].half_width for r in node.roads)
        node.radius = widest + (2.0 if node.degree >= 3 else 0.5)
    return RoadNetwork(size=size, nodes=nodes, roads=roads)
