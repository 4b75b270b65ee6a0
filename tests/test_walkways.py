"""Pedestrians walk along their sidewalk (occsim/walkways.py) and the tracks follow it."""

from __future__ import annotations

import numpy as np
import pytest

from occsim.geometry import wrap_angle
from occsim.grid import OCC3D_GRID
from occsim.labels import DRIVEABLE_SURFACE, FREE_ID, PEDESTRIAN, SIDEWALK, TERRAIN
from occsim.road_user_tracks import RoadUserTracks
from occsim.walkways import Sidewalks, along_route

G = OCC3D_GRID.ground_index
STRIP = np.radians(20.0)  # the sidewalk's direction in the frame


def _offsets() -> np.ndarray:
    """Signed distance (m) of every column centre from the strip's middle line, which
    passes through (0, -3) m at STRIP."""
    shape = OCC3D_GRID.shape[:2]
    columns = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1).reshape(-1, 2)
    centres = OCC3D_GRID.index_to_metric(columns) - np.array([0.0, -3.0])
    normal = np.array([-np.sin(STRIP), np.cos(STRIP)])
    return (centres @ normal).reshape(shape)


def _street() -> np.ndarray:
    """Terrain, a road, and between them a sidewalk 4 m wide along STRIP."""
    frame = np.full(OCC3D_GRID.shape, FREE_ID, dtype=np.uint8)
    offsets = _offsets()
    frame[:, :, G] = np.where(offsets < -2.0, DRIVEABLE_SURFACE, TERRAIN)
    frame[np.abs(offsets) < 2.0, G] = SIDEWALK
    return frame


def _offset_at(point: np.ndarray) -> float:
    normal = np.array([-np.sin(STRIP), np.cos(STRIP)])
    return float((point - np.array([0.0, -3.0])) @ normal)


def test_a_walker_heading_off_its_sidewalk_turns_along_it_to_its_middle():
    sidewalks = Sidewalks(_street(), np.zeros(3))
    # 1 m off the middle, heading 12 degrees off the strip (a fitted heading's error).
    start = np.array([0.0, -3.0]) + np.array([-np.sin(STRIP), np.cos(STRIP)])
    route = sidewalks.route(start, STRIP + np.radians(12.0), length=20.0)
    offsets = [_offset_at(p) for p in route]
    # Straight on, it would be 1 + 20 sin(12 deg) = 5.2 m off the middle: off the sidewalk.
    assert max(abs(o) for o in offsets) < 2.0
    assert abs(offsets[-1]) < 0.3
    final = np.arctan2(*(route[-1] - route[-5])[::-1])
    assert abs(wrap_angle(final - STRIP)) < np.radians(3.0)
    assert np.hypot(*(route[-1] - route[0])) == pytest.approx(20.0, abs=0.5)


def test_a_walker_crossing_the_sidewalk_keeps_its_way():
    sidewalks = Sidewalks(_street(), np.zeros(3))
    heading = STRIP + np.pi / 2  # across the strip, towards the terrain
    route = sidewalks.route(np.array([0.0, -3.0]), heading, length=8.0)
    direction = route[-1] - route[0]
    assert abs(wrap_angle(np.arctan2(direction[1], direction[0]) - heading)) < np.radians(1.0)


def test_a_route_is_read_by_distance_and_goes_straight_on_past_its_end():
    route = np.array([[0.0, 0.0], [0.4, 0.0], [0.8, 0.0], [0.8, 0.4]])
    point, direction = along_route(route, 0.6)
    np.testing.assert_allclose(point, [0.6, 0.0])
    np.testing.assert_allclose(direction, [1.0, 0.0])
    point, direction = along_route(route, 2.0)
    np.testing.assert_allclose(point, [0.8, 1.2])
    np.testing.assert_allclose(direction, [0.0, 1.0])
    np.testing.assert_allclose(along_route(route, -1.0)[0], [0.0, 0.0])


def _walking(heading: float) -> RoadUserTracks:
    """Tracks of four real frames (0.5 s apart) of a pedestrian on the strip's middle
    walking 1.2 m/s at world ``heading``."""
    tracks = RoadUserTracks()
    start = np.array([-4.0, -3.0 - 4.0 * np.tan(STRIP)])
    for k in range(4):
        frame = _street()
        centre = start + 0.6 * k * np.array([np.cos(heading), np.sin(heading)])
        ix, iy = OCC3D_GRID.metric_to_index(centre[None])[0]
        frame[ix, iy, G + 1 : G + 5] = PEDESTRIAN
        tracks.observe(frame, np.zeros(3), observed=True)
    return tracks


def test_a_tracked_pedestrian_walks_on_along_its_sidewalk():
    # Its blob's centroids are measured 10 degrees off the strip.
    tracks = _walking(STRIP + np.radians(10.0))
    (walker,) = tracks.objects
    assert walker.route is not None
    # 10 s on (12 m), it is still on the sidewalk, where straight on it would be 2 m off.
    predicted = tracks.predict(np.zeros(3), frames_ahead=20)
    columns = np.argwhere((predicted == PEDESTRIAN).any(axis=2))
    assert len(columns)
    centre = OCC3D_GRID.index_to_metric(columns).mean(axis=0)
    assert abs(_offset_at(centre)) < 1.0
    assert np.hypot(*(centre - walker.centroid)) == pytest.approx(12.0, abs=1.0)


def test_a_walker_carries_its_route_through_the_tracks_own_frames():
    tracks = _walking(STRIP)
    (walker,) = tracks.objects
    route, pace = walker.route, float(np.hypot(*walker.velocity))
    for step in range(1, 3):  # two steps of 4 frames, each observing its own last frame
        predicted = tracks.predict(np.zeros(3), frames_ahead=4)
        frame = np.where(predicted == PEDESTRIAN, np.uint8(PEDESTRIAN), _street())
        tracks.observe(frame.astype(np.uint8), np.zeros(3), frames_since=4)
        (walker,) = tracks.objects
        assert walker.route is route
        assert walker.route_at == pytest.approx(2.0 * pace * step, abs=0.45)
        assert np.hypot(*walker.velocity) == pytest.approx(pace)


def test_a_route_of_one_point_stands_and_a_short_walk_has_two():
    np.testing.assert_allclose(along_route(np.array([[1.0, 2.0]]), 3.0)[0], [1.0, 2.0])
    assert len(Sidewalks(_street(), np.zeros(3)).route(np.zeros(2), 0.0, length=0.1)) == 2
