"""Static layers of the procedural world, rasterised once in the world frame.

Every raster cell holds a ground class and at most one vertical object segment
(class, bottom and top height in metres). Rendering an ego-centric frame resamples these
rasters at the voxel centres, so static structure is exactly consistent from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from occsim import labels as L
from occsim.procedural.config import WorldConfig
from occsim.procedural.paths import Path2D
from occsim.procedural.roads import RoadNetwork

BUILDING_WALL = 0.8  # m of facade kept occupied; interiors are unobserved (free) in Occ3D


@dataclass
class StaticMap:
    """World-frame rasters of a toroidal map (indexed ``[x, y]``, wrapping at the edges)."""

    size: float
    resolution: float
    ground: np.ndarray
    object_class: np.ndarray
    object_bottom: np.ndarray
    object_top: np.ndarray
    road_distance: np.ndarray = field(repr=False)
    road_id: np.ndarray = field(repr=False)
    # Per-grid caches of what rendering derives from the rasters (see voxelize.py); the
    # rasters must not change once a frame has been rendered.
    render_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def cells(self) -> int:
        return self.ground.shape[0]

    def cell_index(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Wrapped raster indices ``(ix, iy)`` of world points ``(..., 2)``."""
        idx = np.floor(np.asarray(points) / self.resolution).astype(np.int64)
        idx -= self.cells * (idx // self.cells)  # idx % cells, done faster by numpy
        return idx[..., 0], idx[..., 1]

    def is_driveable(self, points: np.ndarray) -> np.ndarray:
        """Whether the ground under world points ``(..., 2)`` is driveable surface."""
        ix, iy = self.cell_index(points)
        return self.ground[ix, iy] == L.DRIVEABLE_SURFACE

    def blocked(self, points: np.ndarray, below: float = 2.0) -> np.ndarray:
        """Whether a static object occupies the column at ``points`` below height ``below``."""
        ix, iy = self.cell_index(points)
        return (self.object_class[ix, iy] != L.FREE) & (self.object_bottom[ix, iy] < below)


class _Painter:
    """Paints oriented boxes and discs into the wrapped rasters."""

    def __init__(self, static: StaticMap, carriageway: np.ndarray) -> None:
        self.m = static
        # Cells where traffic drives (lanes and junctions): nothing may stand there.
        self.carriageway = carriageway

    def _patch(self, center: np.ndarray, radius: float):
        res, n = self.m.resolution, self.m.cells
        lo = np.floor((center - radius) / res).astype(int)
        hi = np.ceil((center + radius) / res).astype(int)
        gx, gy = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
        pts = (np.stack([gx, gy], axis=-1) + 0.5) * res
        return pts, gx % n, gy % n

    def _box_axes(self, center: np.ndarray, yaw: float, half_length: float, half_width: float):
        """|longitudinal| and |lateral| offsets of the cells around an oriented box."""
        pts, ix, iy = self._patch(center, np.hypot(half_length, half_width))
        c, s = np.cos(yaw), np.sin(yaw)
        rel = pts - center
        lon = np.abs(rel[..., 0] * c + rel[..., 1] * s)
        lat = np.abs(-rel[..., 0] * s + rel[..., 1] * c)
        return lon, lat, ix, iy

    def box(
        self,
        center: np.ndarray,
        yaw: float,
        half_length: float,
        half_width: float,
        cls: int,
        bottom: float,
        top: float,
        only_free: bool = True,
        lots_only: bool = False,
        wall: float | None = None,
    ) -> None:
        """Fill an oriented box; with ``wall``, only a shell of that thickness and a roof.

        Buildings are shells as in Occ3D, where lidar sees facades and roofs, not interiors.
        """
        lon, lat, ix, iy = self._box_axes(center, yaw, half_length, half_width)
        mask = (lon <= half_length) & (lat <= half_width)
        if wall is None:
            self._write(mask, ix, iy, cls, bottom, top, only_free, lots_only)
            return
        shell = mask & ((lon > half_length - wall) | (lat > half_width - wall))
        self._write(shell, ix, iy, cls, bottom, top, only_free, lots_only)
        self._write(mask & ~shell, ix, iy, cls, top - 0.4, top, only_free, lots_only)

    def ground_box(
        self, center: np.ndarray, yaw: float, half_length: float, half_width: float, cls: int
    ) -> None:
        """Repaint the ground of the free lot cells in an oriented box."""
        lon, lat, ix, iy = self._box_axes(center, yaw, half_length, half_width)
        mask = (lon <= half_length) & (lat <= half_width)
        mask &= (self.m.ground[ix, iy] == L.TERRAIN) & (self.m.object_class[ix, iy] == L.FREE)
        self.m.ground[ix[mask], iy[mask]] = cls

    def disc(
        self,
        center: np.ndarray,
        radius: float,
        cls: int,
        bottom: float,
        top: float,
        only_free: bool = True,
        lots_only: bool = False,
    ) -> None:
        pts, ix, iy = self._patch(center, radius)
        mask = np.linalg.norm(pts - center, axis=-1) <= radius
        self._write(mask, ix, iy, cls, bottom, top, only_free, lots_only)

    def _write(self, mask, ix, iy, cls, bottom, top, only_free, lots_only) -> None:
        m = self.m
        if bottom < 2.0:  # tree crowns may overhang a road; nothing lower may stand on one
            mask &= ~self.carriageway[ix, iy]
        if only_free:
            mask &= m.object_class[ix, iy] == L.FREE
        if lots_only:
            mask &= m.ground[ix, iy] == L.TERRAIN
        ix, iy = ix[mask], iy[mask]
        m.object_class[ix, iy] = cls
        m.object_bottom[ix, iy] = bottom
        m.object_top[ix, iy] = top


def _rasterize_roads(network: RoadNetwork, cells: int, res: float):
    """Distance (m) from every cell to the nearest road centreline, and that road's id."""
    label = np.zeros((cells, cells), dtype=np.int32)
    for road in network.roads:
        path = Path2D(road.centerline)
        pts = path.position(np.arange(0.0, path.length, res / 2))
        ix, iy = (np.floor(pts / res).astype(np.int64) % cells).T
        label[ix, iy] = road.index + 1
    widest = max(r.outer_width + r.verge_width for r in network.roads) + 30.0
    pad = min(int(np.ceil(widest / res)), cells)
    padded = np.pad(label, pad, mode="wrap")
    distance, (jx, jy) = ndimage.distance_transform_edt(padded == 0, return_indices=True)
    nearest = padded[jx, jy][pad:-pad, pad:-pad] - 1
    return (distance[pad:-pad, pad:-pad] * res).astype(np.float32), nearest.astype(np.int32)


def _node_distance(center: np.ndarray, radius: float, cells: int, res: float):
    lo = np.floor((center - radius) / res).astype(int)
    hi = np.ceil((center + radius) / res).astype(int)
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0]), np.arange(lo[1], hi[1]), indexing="ij")
    pts = (np.stack([gx, gy], axis=-1) + 0.5) * res
    return np.linalg.norm(pts - center, axis=-1), gx % cells, gy % cells


def build_static_map(network: RoadNetwork, rng: np.random.Generator, config: WorldConfig):
    """Rasterise ground classes and static objects; returns the :class:`StaticMap`."""
    res = config.resolution
    cells = round(config.size / res)
    distance, road_id = _rasterize_roads(network, cells, res)
    roads = network.roads
    half = np.array([r.half_width for r in roads], dtype=np.float32)[road_id]
    outer = np.array([r.outer_width for r in roads], dtype=np.float32)[road_id]
    median = np.array([r.median_width for r in roads], dtype=np.float32)[road_id]

    ground = np.full((cells, cells), L.TERRAIN, dtype=np.uint8)
    ground[distance < outer] = L.SIDEWALK
    ground[distance < half] = L.DRIVEABLE_SURFACE
    shoulder = np.array([r.shoulder_width for r in roads], dtype=np.float32)[road_id]
    carriageway = distance < half - shoulder + 0.3
    median_cells = distance < median / 2
    for node in network.nodes:
        # Intersections are paved; medians stop short of them.
        d, ix, iy = _node_distance(node.position, node.radius + 8.0, cells, res)
        median_cells[ix[d < node.radius + 6.0], iy[d < node.radius + 6.0]] = False
        ground[ix[d < node.radius], iy[d < node.radius]] = L.DRIVEABLE_SURFACE
        carriageway[ix[d < node.radius + 1.0], iy[d < node.radius + 1.0]] = True
    ground[median_cells] = L.OTHER_FLAT
    for road in roads:
        if not road.has_crossings:
            continue
        for end in (road.start, road.end):
            node = network.nodes[end]
            if node.degree < 3:
                continue
            d, ix, iy = _node_distance(node.position, node.radius + 4.0, cells, res)
            strip = (d >= node.radius) & (d < node.radius + 3.0)
            strip &= (road_id[ix, iy] == road.index) & (distance[ix, iy] < road.half_width)
            ground[ix[strip], iy[strip]] = L.OTHER_FLAT

    static = StaticMap(
        size=config.size,
        resolution=res,
        ground=ground,
        object_class=np.full((cells, cells), L.FREE, dtype=np.uint8),
        object_bottom=np.zeros((cells, cells), dtype=np.float32),
        object_top=np.zeros((cells, cells), dtype=np.float32),
        road_distance=distance,
        road_id=road_id,
    )
    painter = _Painter(static, carriageway)
    for road in roads:
        _furnish_road(painter, network, road, rng, config)
    # Shrubs fill the back of the lots, as gardens and hedges do.
    for _ in range(int(config.shrub_density * config.size**2)):
        spot = rng.uniform(0.0, config.size, size=2)
        painter.disc(
            spot, rng.uniform(1.5, 4.0), L.VEGETATION, 0.0, rng.uniform(0.5, 1.6), lots_only=True
        )
    return static


def _along(road, network, margin: float) -> tuple[Path2D, float, float]:
    path = Path2D(road.centerline)
    start = network.nodes[road.start].radius + margin
    end = path.length - network.nodes[road.end].radius - margin
    return path, start, end


def _frame(path: Path2D, s: float, side: int, offset: float):
    """Point ``offset`` metres to the ``side`` (+1 left, -1 right) of the path at ``s``."""
    yaw = float(path.heading(s))
    normal = np.array([-np.sin(yaw), np.cos(yaw)])
    return path.position(s) + side * offset * normal, yaw


def _furnish_road(painter: _Painter, network, road, rng, config: WorldConfig) -> None:
    """Buildings, parks, trees, poles, parked vehicles and road works along one road."""
    path, s0, s1 = _along(road, network, margin=4.0)
    if s1 - s0 < 5.0:
        return
    lot_start = road.outer_width + road.verge_width
    for side in (1, -1):
        # Frontage: buildings of varied footprint and height, or park patches.
        s = s0 + rng.uniform(0.0, 4.0)
        while s < s1:
            frontage = rng.uniform(8.0, 28.0)
            depth = rng.uniform(10.0, 24.0)
            setback = rng.uniform(0.5, 3.0)
            center, yaw = _frame(path, s + frontage / 2, side, lot_start + setback + depth / 2)
            if rng.random() < config.building_probability:
                height = rng.uniform(3.5, 22.0)
                painter.box(
                    center,
                    yaw,
                    frontage / 2,
                    depth / 2,
                    L.MANMADE,
                    0.0,
                    height,
                    lots_only=True,
                    wall=BUILDING_WALL,
                )
            elif rng.random() < config.parking_lot_probability:
                _parking_lot(painter, center, yaw, frontage, depth, rng, config)
            else:
                for _ in range(rng.integers(2, 6)):
                    spot = center + rng.uniform(-1, 1, 2) * [frontage / 2, depth / 2]
                    _tree(painter, spot, rng, lots_only=True)
                for _ in range(rng.integers(1, 4)):
                    spot = center + rng.uniform(-1, 1, 2) * [frontage / 2, depth / 2]
                    painter.disc(
                        spot,
                        rng.uniform(1.0, 2.5),
                        L.VEGETATION,
                        0.0,
                        rng.uniform(0.6, 1.6),
                        lots_only=True,
                    )
            s += frontage + rng.uniform(1.0, 6.0)

        # Verge trees (on the verge if there is one, else at the back of the sidewalk).
        tree_offset = road.outer_width + road.verge_width / 2
        if road.verge_width < 1.0:
            tree_offset = road.outer_width - 0.8
        s = s0 + rng.uniform(0.0, config.tree_spacing)
        while s < s1:
            if rng.random() < 0.7:
                spot, _ = _frame(path, s, side, tree_offset)
                _tree(painter, spot, rng)
            s += config.tree_spacing * rng.uniform(0.6, 1.4)

        # Street lights at the kerb, and some clutter (bins, benches: "others").
        s = s0 + rng.uniform(0.0, 10.0)
        while s < s1:
            spot, _ = _frame(path, s, side, road.half_width + 0.5)
            painter.disc(spot, 0.2, L.MANMADE, 0.0, 7.5)
            if road.sidewalk_width >= 3.0 and rng.random() < 0.4:
                spot, yaw = _frame(path, s + 5.0, side, road.outer_width - 0.4)
                painter.box(spot, yaw, 0.8, 0.3, L.OTHERS, 0.0, 1.0)
            s += rng.uniform(20.0, 35.0)

    if road.shoulder_width < 2.0:
        return
    works_side, works = 0, (0.0, 0.0)
    if rng.random() < config.works_probability:
        works_side = int(rng.choice([-1, 1]))
        start = rng.uniform(s0 + 4.0, max(s0 + 4.0, s1 - 30.0))
        works = (start, min(start + rng.uniform(12.0, 30.0), s1 - 4.0))
    for side in (1, -1):
        if side == works_side:
            _road_works(painter, path, road, side, works, rng)
        shoulder = road.half_width - road.shoulder_width / 2
        s = s0 + 4.0 + rng.uniform(0.0, 4.0)
        while s < s1 - 4.0:
            in_works = side == works_side and works[0] - 6.0 < s < works[1] + 6.0
            if not in_works and rng.random() < config.parked_probability:
                center, yaw = _frame(path, s, side, shoulder)
                if rng.random() < 0.85:
                    painter.box(center, yaw, 2.2, 0.95, L.CAR, 0.0, rng.uniform(1.4, 1.8))
                else:
                    painter.box(center, yaw, 3.2, 1.1, L.TRUCK, 0.0, rng.uniform(2.4, 3.2))
            s += rng.uniform(6.5, 9.0)


def _road_works(painter, path, road, side, works, rng) -> None:
    """A closed shoulder: a barrier line, cones and sometimes a construction vehicle."""
    barrier_offset = road.half_width - road.shoulder_width + 0.25
    s = works[0]
    while s < works[1]:
        center, yaw = _frame(path, s, side, barrier_offset)
        painter.box(center, yaw, 0.5, 0.15, L.BARRIER, 0.0, 1.0)
        s += 1.0
    for s in (works[0] - 3.0, works[0] - 1.5, works[1] + 1.5):
        center, _ = _frame(path, s, side, barrier_offset + 0.3)
        painter.disc(center, 0.25, L.TRAFFIC_CONE, 0.0, 0.8)
    if rng.random() < 0.5:
        center, yaw = _frame(path, (works[0] + works[1]) / 2, side, road.half_width - 1.1)
        painter.box(center, yaw, 2.8, 0.9, L.CONSTRUCTION_VEHICLE, 0.0, 2.8)


def _parking_lot(painter, center, yaw, frontage, depth, rng, config: WorldConfig) -> None:
    """A paved lot with two rows of cars parked across its frontage."""
    painter.ground_box(center, yaw, frontage / 2, depth / 2, L.DRIVEABLE_SURFACE)
    along = np.array([np.cos(yaw), np.sin(yaw)])
    across = np.array([-along[1], along[0]])
    for row in (-1, 1):
        if depth < 11.0:
            row = 0
        for slot in np.arange(-frontage / 2 + 1.5, frontage / 2 - 1.2, 2.7):
            if rng.random() < config.parked_probability * 1.8:
                spot = center + slot * along + row * (depth / 2 - 2.6) * across
                painter.box(
                    spot,
                    yaw + np.pi / 2,
                    2.2,
                    0.95,
                    L.CAR,
                    0.0,
                    rng.uniform(1.4, 1.8),
                    lots_only=False,
                )
        if row == 0:
            break


def _tree(painter: _Painter, spot: np.ndarray, rng, lots_only: bool = False) -> None:
    crown_bottom = rng.uniform(2.0, 3.0)  # clear of a car's roof
    top = rng.uniform(5.0, 11.0)
    painter.disc(spot, 0.3, L.VEGETATION, 0.0, top, lots_only=lots_only)
    painter.disc(spot, rng.uniform(1.5, 3.2), L.VEGETATION, crown_bottom, top, lots_only=lots_only)
