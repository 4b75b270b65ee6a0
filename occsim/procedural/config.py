"""Parameters of the procedural world; every number that shapes the world lives here."""

from __future__ import annotations

from dataclasses import dataclass

LANE_WIDTH: float = 3.5
SIMULATION_DT: float = 0.25  # traffic sub-step (s); frames are 0.5 s apart


@dataclass(frozen=True)
class WorldConfig:
    """How a procedural world is generated.

    Attributes:
        size: period of the toroidal world in metres (the map repeats beyond it).
        resolution: cell size of the static map rasters in metres (finer than the 0.4 m
            voxels so that resampling after ego motion is stable).
        grid_nodes: intersections per axis before some roads are removed.
        node_jitter: random displacement of intersections, as a fraction of their spacing.
        road_removal_probability: chance each road is removed (keeping every node at
            degree >= 2 and the network connected); removals create T-junctions and bends.
        curve_probability: chance a road is a curve rather than straight.
        two_lane_probability: chance a road has two lanes per direction.
        shoulder_probability: chance a road has 2.5 m parking shoulders.
        crossing_probability: chance a road has pedestrian crossings at its ends.
        building_probability: chance a frontage slot holds a building.
        parking_lot_probability: chance a frontage slot without a building is a parking lot
            (else a park).
        tree_spacing: mean distance between verge trees in metres.
        parked_probability: chance a shoulder slot holds a parked vehicle.
        works_probability: chance a road has road works (barriers and cones) on a shoulder.
        shrub_density: shrub patches per square metre of map, placed on free lot terrain.
        vehicles: moving vehicles in the world.
        pedestrians: pedestrians in the world.
    """

    size: float = 320.0
    resolution: float = 0.2
    grid_nodes: int = 6
    node_jitter: float = 0.12
    road_removal_probability: float = 0.3
    curve_probability: float = 0.3
    two_lane_probability: float = 0.5
    shoulder_probability: float = 0.7
    crossing_probability: float = 0.5
    building_probability: float = 0.55
    parking_lot_probability: float = 0.6
    tree_spacing: float = 9.0
    parked_probability: float = 0.25
    works_probability: float = 0.25
    shrub_density: float = 0.004
    vehicles: int = 70
    pedestrians: int = 60

    def __post_init__(self) -> None:
        if self.grid_nodes < 3:
            raise ValueError(f"grid_nodes must be >= 3, got {self.grid_nodes}")
        cells = self.size / self.resolution
        if self.size <= 0 or abs(cells - round(cells)) > 1e-6:
            raise ValueError(
                f"size ({self.size}) must be a positive multiple of resolution ({self.resolution})"
            )
        if self.vehicles < 0 or self.pedestrians < 0:
            raise ValueError("vehicles and pedestrians must be >= 0")
