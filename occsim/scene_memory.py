"""Scene memory: a world-frame voxel map of the static structure an episode has seen.

Frames come in ego frames; the memory keeps their static voxels (ground, buildings,
vegetation, barriers, ... and free space) in square tiles of a world-aligned grid finer than
the voxels (so that a frame written at one pose and read at another is resampled without
holes), evicts tiles beyond a radius of the ego, and re-projects what it knows into any ego
pose with an exact rigid transform. Voxels it has not seen, and voxels that held road users
when it saw them, stay :data:`UNKNOWN`.

It is the persistent half of the learned world (what was seen stays as it was) and, filled
with one frame only, the frozen-copy reference a world model has to beat.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from occsim.geometry import local_to_world, world_to_local
from occsim.grid import OCC3D_GRID, GridSpec, column_any
from occsim.labels import (
    DRIVEABLE_SURFACE,
    DYNAMIC_CLASSES,
    FREE_ID,
    GROUND_CLASSES,
    ClassMask,
    class_lookup,
)

UNKNOWN: int = 255  # a voxel the memory knows nothing about
NO_SAMPLE: int = 255  # sample rank of a cell no real frame has written
# A cell's sample rank: the squared distance between its centre and the voxel centre it
# sampled (in voxels^2, at most 0.5, in steps of 1/250), doubled, plus one where that voxel
# centre lies outside the cell (of two samples as near, the one inside the cell is its own).
_RANK_STEPS = 250


_DYNAMIC = class_lookup(DYNAMIC_CLASSES)
_GROUND = class_lookup(GROUND_CLASSES)
_FREE_OR_GROUND = class_lookup((FREE_ID, *GROUND_CLASSES))
_ROOM_FOR_USER = ClassMask((FREE_ID, *GROUND_CLASSES, *DYNAMIC_CLASSES))  # may take one
_GROUND_INDEX = OCC3D_GRID.ground_index


class SceneMemory:
    """Static structure and free space in world coordinates, in tiles around the ego.

    Args:
        grid: the ego-frame grid of the frames written and read.
        cell_size: metres of a memory cell (half a voxel by default: written frames are
            resampled without holes and read back at their own pose exactly).
        tile_cells: cells along a tile's side.
        radius: metres from the ego beyond which tiles are evicted (bounded memory).
    """

    def __init__(
        self,
        grid: GridSpec = OCC3D_GRID,
        cell_size: float | None = None,
        tile_cells: int = 128,
        radius: float = 80.0,
    ) -> None:
        self.grid = grid
        self.cell_size = grid.voxel_size / 2 if cell_size is None else float(cell_size)
        if self.cell_size <= 0 or tile_cells < 1 or radius <= 0:
            raise ValueError(
                f"cell_size, tile_cells and radius must be positive, got "
                f"{self.cell_size}, {tile_cells}, {radius}"
            )
        self.tile_cells, self.radius = tile_cells, float(radius)
        # Tiles live in one pool, slot 0 an all-unknown tile that is never written: a view
        # is then one gather over slot, row and column, whatever tiles it crosses.
        self._pool = np.full((1, tile_cells, tile_cells, grid.shape[2]), UNKNOWN, np.uint8)
        # Per cell, the rank of the sample it holds (how far from its centre lay the voxel
        # centre it was read from): a nearer sample is a truer one, a farther one never
        # replaces it.
        self._rank = np.full((1, tile_cells, tile_cells), NO_SAMPLE, np.uint8)
        self._slots: dict[tuple[int, int], int] = {}
        self._free: list[int] = []
        self._centres = grid.bev_centers().reshape(-1, 2)
        # The view's corner cells: its cells' extremes lie there (the pose is rigid).
        nx, ny = grid.shape[:2]
        self._corners = np.array([0, ny - 1, (nx - 1) * ny, nx * ny - 1])

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        """Tiles held."""
        return len(self._slots)

    @property
    def nbytes(self) -> int:
        """Bytes of storage allocated (voxels and sample ranks): the tiles held, slots
        freed by eviction for the next tiles, and the all-unknown tile."""
        return self._pool.nbytes + self._rank.nbytes

    def tile_keys(self) -> Iterator[tuple[int, int]]:
        """Indices ``(tx, ty)`` of the tiles held."""
        return iter(self._slots)

    def clear(self) -> None:
        """Forget everything (the storage stays allocated for the next episode)."""
        self._free.extend(self._slots.values())
        self._slots.clear()

    def _new_tile(self, key: tuple[int, int]) -> int:
        """A slot for tile ``key``, all unknown: a freed one, else a pool twice as large."""
        if not self._free:
            grown = len(self._pool)
            self._pool = np.concatenate([self._pool, np.full_like(self._pool, UNKNOWN)])
            self._rank = np.concatenate([self._rank, np.full_like(self._rank, NO_SAMPLE)])
            self._free.extend(range(2 * grown - 1, grown - 1, -1))
        slot = self._free.pop()
        self._pool[slot] = UNKNOWN
        self._rank[slot] = NO_SAMPLE
        self._slots[key] = slot
        return slot

    # ------------------------------------------------------------------ geometry
    def _cells_of(self, world_xy: np.ndarray) -> np.ndarray:
        return np.floor(world_xy / self.cell_size).astype(np.int64)

    # ------------------------------------------------------------------ writing
    def insert(self, frame: np.ndarray, pose: np.ndarray, only_unknown: bool = False) -> None:
        """Write the static voxels and free space of ``frame (X, Y, Z)`` seen from ``pose``
        ``(x, y, yaw)`` (world frame); voxels of road users leave what the memory had.
        With ``only_unknown``, voxels the memory knows stay as they are (a generated frame
        adds what is new; writing back what it re-projected would blur the known world a
        little with every resampling). Then evict tiles farther than :attr:`radius`.
        Real frames come first (a rollout writes its context frames after :meth:`clear`):
        what a generated frame adds is kept against a later real frame's farther sample."""
        frame = np.asarray(frame)
        if frame.shape != self.grid.shape or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 {self.grid.shape}, got {frame.dtype} {frame.shape}"
            )
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (3,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"pose must be finite (x, y, yaw), got {pose!r}")
        # Every memory cell whose centre falls inside the view samples its nearest voxel.
        # The cells of the view's bounding box form a rectangle, and a cell's voxel index is
        # separable in the cell's row and column, so the indices are outer sums.
        c, si = np.cos(pose[2]), np.sin(pose[2])
        half = np.abs(self.grid.lower[:2]).max(), np.abs(self.grid.upper[:2]).max()
        extent = max(half) * (abs(c) + abs(si))
        low = self._cells_of(pose[:2] - extent)
        high = self._cells_of(pose[:2] + extent) + 1
        ax = (np.arange(low[0], high[0]) + 0.5) * self.cell_size - pose[0]
        ay = (np.arange(low[1], high[1]) + 0.5) * self.cell_size - pose[1]
        voxel, lower = self.grid.voxel_size, self.grid.lower
        u = ((c * ax)[:, None] + (si * ay)[None, :] - lower[0]) / voxel
        v = ((-si * ax)[:, None] + (c * ay)[None, :] - lower[1]) / voxel
        ix, iy = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        rank = None if only_unknown else self._sample_rank(ix + 0.5 - u, iy + 0.5 - v, c, si)
        nx, ny = self.grid.shape[:2]
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        for tile in self._tiles_between(low, high):
            origin = np.array(tile) * self.tile_cells
            first = np.maximum(origin, low)
            last = np.minimum(origin + self.tile_cells, high)
            rows = slice(first[0] - low[0], last[0] - low[0])
            cols = slice(first[1] - low[1], last[1] - low[1])
            mask = inside[rows, cols]
            if not mask.any():
                continue
            slot = self._slots.get(tile)
            slot = self._new_tile(tile) if slot is None else slot
            within = (
                slice(first[0] - origin[0], last[0] - origin[0]),
                slice(first[1] - origin[1], last[1] - origin[1]),
            )
            region = self._pool[slot][within]
            if only_unknown:
                # Only columns with a voxel the memory does not know can change (most of a
                # generated frame's view is known): the rest are neither read nor written.
                mask = mask & column_any(region == UNKNOWN)
            mi, mj = np.nonzero(mask)
            old = region[mi, mj]  # (n, Z)
            columns = frame[ix[rows, cols][mi, mj], iy[rows, cols][mi, mj]]
            if only_unknown:
                keep = _DYNAMIC[columns] | (old != UNKNOWN)
            else:
                # A frame's voxel grid samples the world at its voxel centres: a cell keeps
                # the sample whose centre lay closest to its own, from whichever frame, so
                # thin structure seen at several offsets stays as sharp as the nearest view.
                ranks = self._rank[slot][within]
                new = rank[rows, cols][mi, mj]
                closer = new <= ranks[mi, mj]
                ranks[mi, mj] = np.minimum(ranks[mi, mj], new)
                keep = _DYNAMIC[columns] | ((old != UNKNOWN) & ~closer[:, None])
            region[mi, mj] = np.where(keep, old, columns)
        self.evict(pose)

    def _sample_rank(self, du: np.ndarray, dv: np.ndarray, c: float, si: float) -> np.ndarray:
        """Ranks (uint8, see ``_RANK_STEPS``) of cells whose sampled voxel centre lies
        ``(du, dv)`` voxels from the cell's centre along the frame's axes, the frame turned
        by ``(cos, sin)`` = ``(c, si)`` against the world."""
        distance = np.floor((du**2 + dv**2) * _RANK_STEPS)
        # The same offset in the world's axes, in cells: inside the cell within half a cell.
        scale = self.grid.voxel_size / self.cell_size
        wx, wy = (c * du - si * dv) * scale, (si * du + c * dv) * scale
        outside = (wx < -0.5) | (wx >= 0.5) | (wy < -0.5) | (wy >= 0.5)
        return (2 * distance + outside).astype(np.uint8)

    def _tiles_between(self, low: np.ndarray, high: np.ndarray) -> list[tuple[int, int]]:
        first, last = low // self.tile_cells, (high - 1) // self.tile_cells
        return [
            (int(tx), int(ty))
            for tx in range(first[0], last[0] + 1)
            for ty in range(first[1], last[1] + 1)
        ]

    def evict(self, pose: np.ndarray) -> None:
        """Drop tiles whose nearest point lies farther than :attr:`radius` from ``pose``."""
        size = self.tile_cells * self.cell_size
        for key in list(self._slots):
            lower = np.array(key) * size
            nearest = np.clip(pose[:2], lower, lower + size)
            if np.hypot(*(nearest - pose[:2])) > self.radius:
                self._free.append(self._slots.pop(key))

    # ------------------------------------------------------------------ reading
    def project(self, pose: np.ndarray) -> np.ndarray:
        """What the memory knows seen from ``pose (x, y, yaw)``: classes ``(X, Y, Z)`` uint8,
        :data:`UNKNOWN` where it knows nothing."""
        pose = np.asarray(pose, dtype=np.float64)
        cells = self._cells_of(local_to_world(self._centres, pose[:2], pose[2]))
        tiles = cells // self.tile_cells
        cells -= tiles * self.tile_cells  # within its tile
        # Slot of each tile the view crosses (0: not held), from a table over their span.
        # A cell's coordinates rise or fall steadily along the view's rows and columns, so
        # the corners bound them; a tile of slack covers float rounding between the two.
        first = tiles[self._corners].min(axis=0) - 1
        span = tiles[self._corners].max(axis=0) + 2 - first
        table = np.zeros(span, dtype=np.int64)
        for key, slot in self._slots.items():
            tx, ty = key[0] - first[0], key[1] - first[1]
            if 0 <= tx < span[0] and 0 <= ty < span[1]:
                table[tx, ty] = slot
        tiles -= first
        slots = table[tiles[:, 0], tiles[:, 1]]
        rows = (slots * self.tile_cells + cells[:, 0]) * self.tile_cells + cells[:, 1]
        # A column's voxels as one opaque item: taking 40,000 of them is one memcpy each.
        nz = self.grid.shape[2]
        columns = self._pool.reshape(-1, nz).view(np.dtype((np.void, nz))).ravel()
        return columns.take(rows).view(np.uint8).reshape(*self.grid.shape[:2], nz)


def known_mask(projected: np.ndarray) -> np.ndarray:
    """Boolean mask of the voxels a projection knows."""
    return projected != UNKNOWN


def reproject(
    frame: np.ndarray, frame_pose: np.ndarray, pose: np.ndarray, grid: GridSpec = OCC3D_GRID
) -> np.ndarray:
    """``frame (X, Y, Z)`` seen from ``frame_pose`` resampled (nearest voxel) into the ego
    frame at ``pose`` (both ``(x, y, yaw)`` in one world frame); :data:`UNKNOWN` where the
    new view reaches beyond the old one."""
    frame_pose = np.asarray(frame_pose, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    centres = grid.bev_centers().reshape(-1, 2)
    world = local_to_world(centres, pose[:2], pose[2])
    index = grid.metric_to_index(world_to_local(world, frame_pose[:2], frame_pose[2]))
    inside = grid.contains(index)
    out = np.full((len(centres), grid.shape[2]), UNKNOWN, dtype=np.uint8)
    out[inside] = np.asarray(frame)[index[inside, 0], index[inside, 1]]
    return out.reshape(grid.shape)


def view_overlap(
    frame_pose: np.ndarray, pose: np.ndarray, grid: GridSpec = OCC3D_GRID
) -> np.ndarray:
    """Boolean ``(X, Y)``: the columns of the view at ``pose`` that the view at
    ``frame_pose`` also covers."""
    centres = grid.bev_centers()
    pose, frame_pose = np.asarray(pose, np.float64), np.asarray(frame_pose, np.float64)
    world = local_to_world(centres, pose[:2], pose[2])
    local = world_to_local(world, frame_pose[:2], frame_pose[2])
    return grid.contains(grid.metric_to_index(local))


def frozen_copy(frame: np.ndarray, frame_pose: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The frozen-copy reference: ``frame`` seen from ``frame_pose`` re-projected into
    ``pose`` with road users frozen where they were and unknown space free (the figure a
    world model has to beat)."""
    projected = reproject(frame, frame_pose, pose)
    return np.where(projected == UNKNOWN, np.uint8(FREE_ID), projected)


def compose(
    generated: np.ndarray,
    projected: np.ndarray,
    predicted: np.ndarray | None = None,
    parked: np.ndarray | None = None,
) -> np.ndarray:
    """A generated frame on top of what the memory knows (``projected``, from
    :meth:`SceneMemory.project`): known voxels keep the memory's class.

    Road users: without ``predicted``, the generated ones stay where they stand on space
    the memory knows to be free or ground (road users move in; they never replace a
    building). With ``predicted`` (road users the world has seen, moved on, as
    :meth:`~occsim.road_user_tracks.RoadUserTracks.predict` gives them; 255 elsewhere),
    seen columns show only those, and generated road users remain only in columns the
    memory has never seen; voxels of seen columns the memory does not know (a road user
    stood there) become free space over ground. A predicted road user takes free space or
    ground only (it never drives into structure), except in voxels ``parked`` (boolean,
    :meth:`~occsim.road_user_tracks.RoadUserTracks.predict_with_parked`): a vehicle the real
    frames saw parked where it stands keeps its voxels even where it overlaps structure the
    memory holds from a farther sample, as a renderer draws a road user over what it
    overlaps."""
    known = projected != UNKNOWN
    if predicted is None:
        user_on_open_space = _DYNAMIC[generated] & _FREE_OR_GROUND[projected]
        return np.where(known & ~user_on_open_space, projected, generated).astype(
            np.uint8, copy=False
        )
    seen_column = column_any(known)[:, :, None]
    out = np.where(known, projected, generated)
    # In a seen column the memory misses only voxels a road user stood in when it was seen;
    # road users move on, and what they leave is free space over ground. Whatever the frame
    # generated there (a road user, or structure that would then stay) is replaced: free,
    # and on the ground layer the generated ground class, else road.
    stale = seen_column & ~known
    out[stale] = FREE_ID
    ground = out[:, :, _GROUND_INDEX]
    under = stale[:, :, _GROUND_INDEX]
    generated_ground = generated[:, :, _GROUND_INDEX]
    ground[under] = np.where(
        _GROUND[generated_ground[under]], generated_ground[under], DRIVEABLE_SURFACE
    )
    room = _ROOM_FOR_USER(out)
    if parked is not None:
        room |= parked
    placed = (predicted != UNKNOWN) & room
    out[placed] = predicted[placed]
    return out.astype(np.uint8, copy=False)
