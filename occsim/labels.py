"""Occ3D-nuScenes semantic classes: names, ids, colours and class groups.

This module is the single source of truth for the occupancy label contract of
``docs/architecture.md``: an occupancy volume is ``uint8`` with ids ``0..17``.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "others",
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
    "free",
)
NUM_CLASSES: int = len(CLASS_NAMES)
FREE_ID: int = 17

OTHERS, BARRIER, BICYCLE, BUS, CAR, CONSTRUCTION_VEHICLE, MOTORCYCLE, PEDESTRIAN = range(8)
TRAFFIC_CONE, TRAILER, TRUCK, DRIVEABLE_SURFACE, OTHER_FLAT, SIDEWALK, TERRAIN = range(8, 15)
MANMADE, VEGETATION, FREE = 15, 16, 17

# OccWorld's visualisation colours; "others" gets a neutral grey, "free" is never drawn.
PALETTE: np.ndarray = np.array(
    [
        (128, 128, 128),
        (255, 120, 50),
        (255, 192, 203),
        (255, 255, 0),
        (0, 150, 245),
        (0, 255, 255),
        (255, 127, 0),
        (255, 0, 0),
        (255, 240, 150),
        (135, 60, 0),
        (160, 32, 240),
        (255, 0, 255),
        (139, 137, 137),
        (75, 0, 75),
        (150, 240, 80),
        (230, 230, 250),
        (0, 175, 0),
        (255, 255, 255),
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

# Classes whose voxels the ego must not enter (collision), and those it may drive on.
DYNAMIC_CLASSES: tuple[int, ...] = (
    BICYCLE,
    BUS,
    CAR,
    CONSTRUCTION_VEHICLE,
    MOTORCYCLE,
    PEDESTRIAN,
    TRAILER,
    TRUCK,
)
OBSTACLE_CLASSES: tuple[int, ...] = (
    OTHERS,
    BARRIER,
    *DYNAMIC_CLASSES,
    TRAFFIC_CONE,
    MANMADE,
    VEGETATION,
)
GROUND_CLASSES: tuple[int, ...] = (DRIVEABLE_SURFACE, OTHER_FLAT, SIDEWALK, TERRAIN)
# Ground the ego may drive on: roads and the crossings (other flat) that cut through them.
DRIVEABLE_CLASSES: tuple[int, ...] = (DRIVEABLE_SURFACE, OTHER_FLAT)
STATIC_CLASSES: tuple[int, ...] = (
    OTHERS,
    BARRIER,
    TRAFFIC_CONE,
    *GROUND_CLASSES,
    MANMADE,
    VEGETATION,
)
