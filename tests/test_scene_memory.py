"""Scene memory, road users as objects and the composition of generated frames, on
hand-built scenes whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from occsim.grid import OCC3D_GRID
from occsim.labels import (
    BARRIER,
    BICYCLE,
    CAR,
    CONSTRUCTION_VEHICLE,
    DRIVEABLE_SURFACE,
    FREE_ID,
    MANMADE,
    PEDESTRIAN,
    SIDEWALK,
    TERRAIN,
)
from occsim.motion_estimates import road_direction
from occsim.road_user_tracks import EMPTY, RoadUserTracks, extract
from occsim.road_users import keep_road_users
from occsim.scene_memory import UNKNOWN, SceneMemory, compose, frozen_copy, reproject

G = OCC3D_GRID.ground_index  # 2


def street() -> np.ndarray:
    """Terrain, a road along x (y in [-4, 4) m), a building block at x in [10, 14) m,
    y in [8, 12) m, 0.2-2.6 m high."""
    frame = np.full(OCC3D_GRID.shape, FREE_ID, dtype=np.uint8)
    frame[:, :, G] = TERRAIN
    frame[:, 90:110, G] = DRIVEABLE_SURFACE
    frame[125:135, 120:130, G + 1 : G + 7] = MANMADE
    return frame


def test_reads_back_what_it_wrote_at_the_same_pose():
    memory = SceneMemory()
    frame, pose = street(), np.array([5.0, -3.0, 0.7])
    memory.insert(frame, pose)
    assert np.array_equal(memory.project(pose), frame)


def test_projection_of_a_shifted_scene():
    memory = SceneMemory()
    memory.insert(street(), np.zeros(3))
    # 4 m forward (10 voxels): the block is now 6-10 m ahead; the last 10 rows are unknown.
    view = memory.project(np.array([4.0, 0.0, 0.0]))
    expected = street()[10:]
    assert np.array_equal(view[:190], expected)
    assert (view[190:] == UNKNOWN).all()
    assert (view[115:125, 120:130, G + 1] == MANMADE).all()


def test_projection_of_a_scene_turned_by_90_degrees():
    memory = SceneMemory()
    memory.insert(street(), np.zeros(3))
    # Turned left by 90 degrees at the same place: the old +x (forward) is now -y (right),
    # the old +y (left) is now +x (forward). The road along old x runs along new y.
    view = memory.project(np.array([0.0, 0.0, np.pi / 2]))
    assert (view[90:110, :, G] == DRIVEABLE_SURFACE).all()
    assert (view[:90, :, G] == TERRAIN).all() and (view[110:, :, G] == TERRAIN).all()
    # Block at old (x 10..14, y 8..12) -> new (x = old y 8..12, y = -old x -14..-10).
    block = view[:, :, G + 1] == MANMADE
    rows, cols = np.nonzero(block)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (120, 129, 65, 74)
    assert block.sum() == 100


def test_known_mask_and_road_users_are_not_remembered():
    frame = street()
    frame[105:116, 96:101, G : G + 4] = CAR  # a car 2-6.4 m ahead on the road
    memory = SceneMemory()
    memory.insert(frame, np.zeros(3))
    view = memory.project(np.array([20.0, 0.0, 0.0]))
    known = (view != UNKNOWN).any(axis=-1)
    # 20 m ahead, the first 150 rows (x < 20 m in the new frame) were seen, the rest not.
    assert known[:150].all() and not known[150:].any()
    assert (view != UNKNOWN).sum() == 150 * 200 * 16 - 11 * 5 * 4
    # The car's voxels (now 18-13.6 m behind) are unknown: road users are not static.
    assert (view[55:66, 96:101, G : G + 4] == UNKNOWN).all()
    assert (view[55:66, 96:101, G + 4] == FREE_ID).all()  # above the car: seen free


def test_memory_stays_bounded_and_evicts_what_lies_behind():
    memory = SceneMemory(radius=80.0)
    frame = street()
    sizes, allocated = [], []
    for k in range(100):  # 1 km straight ahead in 10 m steps
        memory.insert(frame, np.array([10.0 * k, 0.0, 0.0]))
        sizes.append(len(memory))
        allocated.append(memory.nbytes)
    tile = memory.tile_cells * memory.cell_size  # 25.6 m
    # Tiles within 80 m of the ego in x, and the view's 40 m half-width in y.
    bound = int(np.ceil(2 * 80 / tile + 1) * np.ceil(2 * 40 / tile + 1))
    assert max(sizes) <= bound and sizes[-1] == sizes[50]
    # Evicted tiles' storage is reused: the pool stops growing once the first tiles fill
    # it. It doubles when full, so it holds at most twice the most tiles held at once
    # (during an insert, before its eviction) plus the all-unknown tile.
    tile_bytes = memory.tile_cells**2 * OCC3D_GRID.shape[2]
    assert allocated[-1] == allocated[20] <= (2 * max(sizes) + 1) * tile_bytes
    # Back at the start, everything was evicted: nothing is known.
    assert (memory.project(np.zeros(3)) == UNKNOWN).all()


def test_bad_frames_and_poses_are_refused():
    memory = SceneMemory()
    with pytest.raises(ValueError, match="uint8"):
        memory.insert(np.zeros((10, 10, 16), dtype=np.uint8), np.zeros(3))
    with pytest.raises(ValueError, match="pose"):
        memory.insert(street(), np.array([0.0, np.nan, 0.0]))


def test_frozen_copy_and_reproject():
    frame = street()
    frame[105:116, 96:101, G : G + 4] = CAR
    copy = frozen_copy(frame, np.zeros(3), np.array([4.0, 0.0, 0.0]))
    assert np.array_equal(copy[:190], frame[10:])  # road users frozen where they were
    assert (copy[190:] == FREE_ID).all()  # unknown space free
    assert (reproject(frame, np.zeros(3), np.array([80.0, 0.0, 0.0])) == UNKNOWN).all()


def car_at(frame: np.ndarray, x0: int, y0: int) -> np.ndarray:
    frame[x0 : x0 + 11, y0 : y0 + 5, G : G + 4] = CAR  # 4.4 x 2 x 1.6 m
    return frame


def test_stray_voxels_never_become_road_users():
    frame = car_at(street(), 130, 95)
    frame[100, 100, G + 2] = BICYCLE  # four stray voxels inside the ego box
    frame[101, 99, G + 1] = BICYCLE
    frame[99, 101, G + 3] = PEDESTRIAN
    frame[60, 60, G + 5] = CAR  # floating speckle
    kept = keep_road_users(frame)
    assert (kept[130:141, 95:100, G : G + 4] == CAR).all()  # the car stays
    assert kept[100, 100, G + 2] == FREE_ID and kept[101, 99, G + 1] == FREE_ID
    assert kept[99, 101, G + 3] == FREE_ID and kept[60, 60, G + 5] == FREE_ID
    assert np.array_equal(kept[:, :, : G + 1] != FREE_ID, frame[:, :, : G + 1] != FREE_ID)


def test_a_road_user_smeared_longer_than_its_class_is_dropped():
    frame = car_at(street(), 130, 95)
    frame[40:90, 96:101, G : G + 4] = CAR  # 20 m of car: a smear, not a car (14 m at most)
    frame[0:40, 102:107, G : G + 4] = CAR  # cut by the view's edge, and still 16 m long
    frame[150:158, 102:104, G : G + 4] = PEDESTRIAN  # a 3.3 m pedestrian
    kept = keep_road_users(frame)
    assert (kept[130:141, 95:100, G : G + 4] == CAR).all()  # a 4.4 m car stays
    assert (kept[40:90, 96:101, G + 1 :] == FREE_ID).all()
    assert (kept[0:40, 102:107, G + 1 :] == FREE_ID).all()
    assert (kept[150:158, 102:104, G + 1 :] == FREE_ID).all()
    assert (kept[40:90, 96:101, G] == DRIVEABLE_SURFACE).all()  # the road underneath


def test_a_road_user_takes_one_class_and_needs_usable_ground():
    frame = car_at(street(), 130, 95)
    frame[131, 96, G + 1] = BICYCLE  # a few voxels of another class inside the car
    frame = car_at(frame, 30, 30)  # a car in the middle of terrain, far from any road
    frame[20, 10:14, G] = SIDEWALK  # (not near it)
    kept = keep_road_users(frame)
    assert kept[131, 96, G + 1] == CAR
    assert (kept[30:41, 30:35, G + 1 : G + 4] == FREE_ID).all()
    # Its footprint on the ground layer takes the surrounding ground back.
    assert (kept[30:41, 30:35, G] == TERRAIN).all()


def test_composition_keeps_known_structure_and_road_users_on_known_road():
    memory = SceneMemory()
    memory.insert(street(), np.zeros(3))
    projected = memory.project(np.zeros(3))
    generated = np.full(OCC3D_GRID.shape, FREE_ID, dtype=np.uint8)  # a blurry world...
    generated[:, :, G] = TERRAIN  # ...that lost the road
    generated = car_at(generated, 140, 95)  # ...with a car on the (known) road
    generated = car_at(generated, 124, 120)  # ...and one inside the (known) building
    composed = compose(generated, projected)
    assert (composed[:140, 90:110, G] == DRIVEABLE_SURFACE).all()  # the road is kept
    assert (composed[140:151, 95:100, G : G + 4] == CAR).all()  # the car drives on it
    assert (composed[125:135, 120:125, G + 1 : G + 4] == MANMADE).all()  # building wins
    # Where the memory knows nothing, the generated frame stands.
    projected[180:] = UNKNOWN
    assert np.array_equal(compose(generated, projected)[180:], generated[180:])


def test_where_a_seen_road_user_stood_the_world_is_free_over_ground():
    memory = SceneMemory()
    memory.insert(car_at(street(), 120, 95), np.zeros(3))  # a car on the road, seen
    projected = memory.project(np.zeros(3))
    assert (projected[120:131, 95:100, G : G + 4] == UNKNOWN).all()  # hidden by the car
    generated = street()
    generated[118:133, 93:102, G : G + 3] = MANMADE  # structure generated where it stood
    generated[118:133, 93:102, G] = SIDEWALK
    nothing = np.full(OCC3D_GRID.shape, UNKNOWN, dtype=np.uint8)  # no road user predicted
    composed = compose(generated, projected, nothing)
    # The car has gone: free space where it stood, the generated ground class underfoot.
    assert (composed[120:131, 95:100, G + 1 : G + 4] == FREE_ID).all()
    assert (composed[120:131, 95:100, G] == SIDEWALK).all()
    # Generated structure over a generated non-ground class on the ground layer: road.
    generated[120:131, 95:100, G] = MANMADE
    assert (compose(generated, projected, nothing)[120:131, 95:100, G] == DRIVEABLE_SURFACE).all()
    # Known voxels around it keep the memory's classes.
    assert (
        composed[118:120, 93:102, G + 1 : G + 3] == projected[118:120, 93:102, G + 1 : G + 3]
    ).all()


def test_a_seen_car_drives_on_at_its_velocity_and_a_parked_one_stays():
    tracks = RoadUserTracks()
    parked = car_at(street(), 60, 125)  # off to the left, never moves
    for k in range(2):  # the ego stands still; a car drives +x at 5 m/s (2.5 m a frame)
        frame = car_at(parked.copy(), 120 + round(k * 2.5 / 0.4), 95)
        tracks.observe(frame, np.zeros(3))
    moving = [o for o in tracks.objects if np.hypot(*o.velocity) > 0]
    assert len(tracks.objects) == 2 and len(moving) == 1
    np.testing.assert_allclose(moving[0].velocity, [5.0, 0.0], atol=0.5)
    predicted = tracks.predict(np.zeros(3))
    cars = np.argwhere((predicted == CAR).any(axis=2))
    ahead = cars[cars[:, 1] < 110]
    # 126 + 6 (2.4 m at 0.4 m) = 132: same length (11 voxels), one voxel of rounding.
    assert abs(ahead[:, 0].min() - 132) <= 1 and ahead[:, 0].max() - ahead[:, 0].min() == 10
    assert (predicted[60:71, 125:130, G : G + 4] == CAR).all()  # the parked one
    # Seen from a pose turned by 90 degrees, the car keeps its size (no holes, no growth).
    turned = tracks.predict(np.array([0.0, 0.0, np.pi / 2]))
    assert np.count_nonzero(turned == CAR) == np.count_nonzero(predicted == CAR)


def _car_blobs(predicted: np.ndarray) -> list[tuple[int, int]]:
    """First and last x index of each car blob (8-connected columns), in order of x."""
    from scipy import ndimage

    labels, count = ndimage.label((predicted == CAR).any(axis=2), np.ones((3, 3), bool))
    boxes = ndimage.find_objects(labels)
    return sorted((box[0].start, box[0].stop - 1) for box in boxes[:count])


def test_a_car_closing_in_on_a_parked_one_waits_behind_it_instead_of_merging():
    tracks = RoadUserTracks()
    for k in range(2):  # 2.4 m a frame (4.8 m/s) towards a car parked 7.6 m ahead of it
        frame = car_at(street(), 160, 95)
        tracks.observe(car_at(frame, 135 + 6 * k, 95), np.zeros(3))
    # Half a second on, 2.4 m, it still clears the parked car by a voxel: it moves.
    assert _car_blobs(tracks.predict(np.zeros(3), frames_ahead=1)) == [(147, 157), (160, 170)]
    # 2 s on, it would be 9.6 m further, inside the parked car: it stops at the farthest
    # place of the frames before that is clear (not back where it was last seen).
    assert _car_blobs(tracks.predict(np.zeros(3), frames_ahead=4)) == [(147, 157), (160, 170)]


def test_a_queue_moves_together_whichever_car_the_tracks_list_first():
    tracks = RoadUserTracks()
    for k in range(2):  # two cars 1.2 m apart, both at 4.8 m/s; the follower is listed first
        tracks.observe(car_at(car_at(street(), 120 + 6 * k, 95), 134 + 6 * k, 95), np.zeros(3))
    assert tracks.objects[0].centroid[0] < tracks.objects[1].centroid[0]
    # The follower's next place overlaps where the leader is now, not where it goes.
    assert _car_blobs(tracks.predict(np.zeros(3), frames_ahead=1)) == [(132, 142), (146, 156)]


def test_a_car_seen_braking_comes_to_a_stop_and_one_at_steady_speed_does_not():
    tracks = RoadUserTracks()
    for x0 in (110, 117, 122, 125):  # 7, 5, 3 voxels a frame: 5.6, 4.0, 2.4 m/s
        tracks.observe(car_at(street(), x0, 95), np.zeros(3), observed=True)
    (car,) = tracks.objects
    # Braking (5.6 - 2.4) / 1 s = 3.2 m/s^2. 2.4 m/s is the mean of the last 0.5 s; at its
    # end the car is slower by 3.2 * 0.25: 1.6 m/s. It stands after 0.5 s and
    # 1.6 * 0.5 - 3.2 * 0.5^2 / 2 = 0.4 m (one voxel) on.
    assert car.braking == pytest.approx(3.2) and car.velocity == pytest.approx([1.6, 0.0])
    stops = [_car_blobs(tracks.predict(np.zeros(3), frames_ahead=k)) for k in (1, 2, 4, 8)]
    assert stops[0] == stops[1] == stops[2] == stops[3] == [(126, 136)]
    # Seen again where it stopped, 2 s on, it stands still from then on.
    tracks.observe(car_at(street(), stops[0][0][0], 95), np.zeros(3), frames_since=4)
    assert tracks.objects[0].braking == 0 and not np.any(tracks.objects[0].velocity)
    steady = RoadUserTracks()
    for x0 in (110, 116, 123, 129):  # 6, 7, 6 voxels a frame: about 5 m/s, jitter
        steady.observe(car_at(street(), x0, 95), np.zeros(3), observed=True)
    assert steady.objects[0].braking == 0 and steady.objects[0].velocity[0] > 4.5


def test_a_fast_car_passing_a_parked_one_gets_its_speed_from_the_first_real_frames():
    tracks = RoadUserTracks()
    for x0 in (125, 140):  # 15 voxels (6 m) in 0.5 s: 12 m/s, past a car parked at x 140
        frame = car_at(street(), 140, 95)
        frame[x0 : x0 + 11, 88:93, G : G + 4] = CAR  # 2 columns beside the parked one
        tracks.observe(frame, np.zeros(3), observed=True)
    moving, parked = sorted(tracks.objects, key=lambda o: o.centroid[1])
    # Nearest-first matching took the parked car's track for the moving one (2.8 m away
    # against 6 m), and 6 m is more than a prediction may miss by: it stood still.
    np.testing.assert_allclose(moving.velocity, [12.0, 0.0], atol=0.01)
    assert not np.any(parked.velocity)


def test_a_road_user_behind_the_ego_yields_instead_of_driving_into_it():
    tracks = RoadUserTracks()
    for k in range(2):  # a car closing in from behind at 5 m/s, its front 4.4 m behind
        tracks.observe(car_at(street(), 78 + round(k * 2.5 / 0.4), 98), np.zeros(3))
    predicted = tracks.predict(np.zeros(3), frames_ahead=2)
    cars = np.argwhere((predicted == CAR).any(axis=2))
    assert cars[:, 0].max() == 78 + 6 + 10  # it waits where it was last seen
    assert not (predicted[OCC3D_GRID.ego_footprint()] == CAR).any()


def _walker(cls: int) -> RoadUserTracks:
    """Tracks of one small road user seen in four real frames, walking +y in blobs of one to
    three columns: centroids at y 120.5, 122.5, 124, 125 (voxels), so 1.6, 1.2 and
    0.8 m/s, slowing 0.8 m/s^2 on average, and 5 to 15 voxels (a fifth is not a size)."""
    tracks = RoadUserTracks()
    for low, high in ((120, 122), (122, 124), (123, 126), (125, 126)):
        frame = street()
        frame[150, low:high, G : G + 5] = cls
        tracks.observe(frame, np.zeros(3), observed=True)
    return tracks


def test_a_pedestrian_keeps_its_track_and_walks_on_at_the_line_fit_pace():
    (walker,) = _walker(PEDESTRIAN).objects
    # The least-squares line through the four centroids weighs the intervals 3:4:3:
    # (3 * 1.6 + 4 * 1.2 + 3 * 0.8) / 10 = 1.2 m/s. A pedestrian's pace is steady, so the
    # falling speeds are jitter, not braking.
    assert walker.measured and walker.braking == 0
    np.testing.assert_allclose(walker.velocity, [0.0, 1.2], atol=1e-9)
    # A bicycle seen the same way is slowing down (0.8 m/s^2, above MIN_BRAKING) and brakes
    # from its end-of-interval speed, 0.8 - 0.8 * 0.25 = 0.6 m/s.
    (bicycle,) = _walker(BICYCLE).objects
    assert bicycle.braking == pytest.approx(0.8)
    np.testing.assert_allclose(bicycle.velocity, [0.0, 0.6], atol=1e-9)


def test_a_car_whose_centroid_jitters_sideways_drives_along_its_length():
    tracks = RoadUserTracks()
    for x0, y0 in ((110, 95), (116, 96), (122, 95), (128, 96)):  # 4.8 m/s along x
        tracks.observe(car_at(street(), x0, y0), np.zeros(3), observed=True)
    (car,) = tracks.objects
    # Sideways its centroid moves 0.8 m/s one way, then the other: weighting the newest
    # displacement half, it would drift 0.4 m/s across the road, a lane in 10 s.
    np.testing.assert_allclose(car.velocity, [4.8, 0.0], atol=1e-9)


def _car_heading(frame: np.ndarray, centre: np.ndarray, heading: float) -> np.ndarray:
    """``frame`` with a 4.4 x 2 m car, 1.6 m high, centred at ``centre`` (metres, ego at the
    origin) and facing ``heading`` (rad)."""
    shape = OCC3D_GRID.shape[:2]
    columns = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1).reshape(-1, 2)
    offset = OCC3D_GRID.index_to_metric(columns) - centre
    along = offset @ np.array([np.cos(heading), np.sin(heading)])
    across = offset @ np.array([-np.sin(heading), np.cos(heading)])
    inside = ((np.abs(along) <= 2.2) & (np.abs(across) <= 1.0)).reshape(shape)
    frame[inside, G : G + 4] = CAR
    return frame


def _turning_car(side: float = 1.0) -> RoadUserTracks:
    """Tracks of a car seen in four real frames taking a quarter turn of radius 10 m at
    5 m/s (0.5 rad/s; ``side`` 1 to the left, -1 to the right), begun at the first frame."""
    tracks = RoadUserTracks()
    for t in (0.0, 0.5, 1.0, 1.5):
        centre, angle = _on_arc(t, side)
        tracks.observe(_car_heading(street(), centre, angle), np.zeros(3), observed=True)
    return tracks


def _on_arc(t: float, side: float = 1.0) -> tuple[np.ndarray, float]:
    """Centre and heading at ``t`` s of that car (straight on once the quarter turn is done)."""
    radius, rate = 10.0, 0.5
    angle = min(rate * t, np.pi / 2)
    straight = max(t - np.pi / 2 / rate, 0.0) * radius * rate
    centre = np.array([-5.0, -25.0 * side]) + radius * np.array(
        [np.sin(angle), side * (1 - np.cos(angle))]
    )
    return centre + np.array([0.0, side * straight]), side * angle


def test_a_car_seen_turning_turns_on_and_its_shape_turns_with_it():
    tracks = _turning_car()
    (car,) = tracks.objects
    assert car.curvature == pytest.approx(0.1, abs=0.02)  # 1 / 10 m
    # Seen turning 0.75 rad (0.5 rad/s from the first frame to the end of the last
    # interval), it turns on for half of the quarter turn's rest: (pi/2 - 0.75) / 2.
    assert car.turn_left == pytest.approx((np.pi / 2 - 0.75) / 2, abs=0.06)
    predicted = tracks.predict(np.zeros(3), frames_ahead=4)  # 2 s on, at t = 3.5 s
    (seen,) = extract(np.where(predicted == CAR, predicted, np.uint8(FREE_ID)), np.zeros(3))
    truth, _ = _on_arc(3.5)
    straight_on = tracks.objects[0].centroid + car.velocity * 2.0
    # Near where the turn takes it (the rest of the turn is a guess), far nearer than
    # driving straight on would put it; and its body has turned with it.
    assert np.hypot(*(seen.centroid - truth)) < 2.5
    assert np.hypot(*(straight_on - truth)) > 2 * np.hypot(*(seen.centroid - truth))
    assert seen.axis is not None
    turned = np.arctan2(abs(seen.axis[1]), abs(seen.axis[0]))
    assert turned == pytest.approx(0.75 + car.turn_left, abs=0.12)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_a_turn_goes_on_the_same_through_the_worlds_own_frames(side):
    # Predicting 4 s at once, or 2 s, observing that frame as the rollout observes its
    # composed frame, then 2 s more: the same place and body angle, left turn or right.
    at_once = _turning_car(side).predict(np.zeros(3), frames_ahead=8)
    tracks = _turning_car(side)
    halfway = tracks.predict(np.zeros(3), frames_ahead=4)
    tracks.observe(np.where(halfway == CAR, halfway, np.uint8(FREE_ID)), np.zeros(3), 4)
    in_two = tracks.predict(np.zeros(3), frames_ahead=4)
    (one,) = extract(np.where(at_once == CAR, at_once, np.uint8(FREE_ID)), np.zeros(3))
    (two,) = extract(np.where(in_two == CAR, in_two, np.uint8(FREE_ID)), np.zeros(3))
    assert np.hypot(*(one.centroid - two.centroid)) < 0.6  # a voxel and a half
    angle = [np.arctan2(o.axis[1], o.axis[0]) % np.pi for o in (one, two)]
    assert angle[0] == pytest.approx(angle[1], abs=0.1)
    # Turned the way the car did (to the left, or to the right), by what it was seen to
    # turn and half the rest of the quarter turn: (0.75 + 0.41) rad from facing +x.
    assert np.sign(np.cos(angle[1]) * np.sin(angle[1])) == np.sign(side)
    assert min(angle[1], np.pi - angle[1]) == pytest.approx(0.75 + 0.41, abs=0.12)


def test_a_car_braking_in_a_turn_stops_on_its_arc():
    tracks = _turning_car()
    car = tracks.objects[0]
    car.braking = 4.0  # from about 5 m/s: it stands after 1.25 s, 3.1 m on
    speed = float(np.hypot(*car.velocity))
    moved, turn = car.motion(10.0)
    arc = speed**2 / (2 * car.braking)
    assert turn == pytest.approx(min(car.curvature * arc, car.turn_left))
    # A chord of that arc, shorter than it by a hair; and standing, it moves no more.
    assert np.hypot(*moved) == pytest.approx(arc, rel=0.02) and np.hypot(*moved) < arc
    np.testing.assert_allclose(car.motion(speed / car.braking)[0], moved)


def test_a_car_the_views_edge_cuts_keeps_driving():
    tracks = RoadUserTracks()
    # 4.8 m/s along x beside the view's edge (y 199 is the last column): seen whole twice,
    # then cut by the edge, its centroid no measure of its motion.
    for x0, y0 in ((100, 194), (106, 194), (112, 195), (118, 195)):
        tracks.observe(car_at(street(), x0, y0), np.zeros(3), observed=True)
    (car,) = tracks.objects
    assert car.cut
    np.testing.assert_allclose(car.velocity, [4.8, 0.0], atol=1e-9)
    predicted = tracks.predict(np.zeros(3), frames_ahead=2)  # 1 s on: 12 voxels
    assert _car_blobs(predicted) == [(130, 140)]


def test_a_car_ending_its_turn_turns_until_it_lies_along_the_road_it_enters():
    # The last 1.5 s of the quarter turn of _on_arc (headings 0.7 -> 1.45 rad), onto a road
    # along +y (x in [3, 7] m) where the turn ends; the car stands on the ground layer.
    shape = OCC3D_GRID.shape[:2]
    columns = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1)
    x = OCC3D_GRID.index_to_metric(columns)[..., 0]
    tracks = RoadUserTracks()
    for t in (1.4, 1.9, 2.4, 2.9):
        frame = np.full(OCC3D_GRID.shape, FREE_ID, dtype=np.uint8)
        frame[:, :, G] = np.where((x >= 3.0) & (x < 7.0), DRIVEABLE_SURFACE, TERRAIN)
        car = _car_heading(np.full_like(frame, FREE_ID), *_on_arc(t))
        frame[:, :, G + 1 : G + 5] = np.where(car[:, :, G : G + 4] == CAR, CAR, FREE_ID)
        tracks.observe(frame, np.zeros(3), observed=True)
    (car,) = tracks.objects
    # Half the rest of a quarter turn begun at the first frame would be 0.41 rad more, to
    # 1.86 rad (107 degrees); the road says 0.12 more, to pi / 2.
    assert car.turn_left == pytest.approx(np.pi / 2 - 1.45, abs=0.06)
    velocity, _ = car.advance(2.0)
    assert np.arctan2(velocity[1], velocity[0]) == pytest.approx(np.pi / 2, abs=0.03)
    # Its body, a voxelised stamp turned with it, lies along the road within a few degrees.
    predicted = tracks.predict(np.zeros(3), frames_ahead=4)
    (seen,) = extract(np.where(predicted == CAR, predicted, np.uint8(FREE_ID)), np.zeros(3))
    assert np.arctan2(abs(seen.axis[1]), abs(seen.axis[0])) == pytest.approx(np.pi / 2, abs=0.15)


def test_the_roads_direction_is_read_along_a_road_and_not_in_a_junction():
    shape = OCC3D_GRID.shape[:2]
    columns = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1)
    x, y = np.moveaxis(OCC3D_GRID.index_to_metric(columns), -1, 0)
    slanted = np.abs(-np.sin(0.5) * x + np.cos(0.5) * y) < 3.0  # 6 m wide, 0.5 rad off x
    assert road_direction(slanted, np.zeros(3), np.zeros(2), OCC3D_GRID) == pytest.approx(
        0.5, abs=0.05
    )
    # Seen from an ego turned by 0.3 rad, the same road (now 0.2 rad off the frame's x)
    # lies 0.5 rad off the world's x.
    turned = np.abs(-np.sin(0.2) * x + np.cos(0.2) * y) < 3.0
    assert road_direction(turned, np.array([0.0, 0.0, 0.3]), np.zeros(2), OCC3D_GRID) == (
        pytest.approx(0.5, abs=0.05)
    )
    crossing = (np.abs(x) < 3.0) | (np.abs(y) < 3.0)  # two roads meet: no one direction
    assert road_direction(crossing, np.zeros(3), np.zeros(2), OCC3D_GRID) is None
    assert road_direction(np.zeros(shape, bool), np.zeros(3), np.zeros(2), OCC3D_GRID) is None


def test_a_view_reads_each_column_from_the_tile_that_holds_its_cell():
    """``project`` (one gather from the tile pool) against a plain reading of the cell under
    each view column, through tile boundaries, negative coordinates, eviction and clear."""
    from occsim.geometry import local_to_world

    rng = np.random.default_rng(3)
    memory = SceneMemory(tile_cells=16, radius=30.0)

    def reference(pose):
        centres = OCC3D_GRID.bev_centers().reshape(-1, 2)
        cells = np.floor(local_to_world(centres, pose[:2], pose[2]) / memory.cell_size)
        out = np.full((len(centres), OCC3D_GRID.shape[2]), UNKNOWN, np.uint8)
        for i, (cx, cy) in enumerate(cells.astype(int)):
            slot = memory._slots.get((cx // 16, cy // 16))
            if slot is not None:
                out[i] = memory._pool[slot][cx % 16, cy % 16]
        return out.reshape(OCC3D_GRID.shape)

    poses = [(-7.3, -12.1, 0.0), (3.0, -4.0, np.pi / 2), (-20.0, 9.5, 2.3), (5.0, 5.0, -0.7)]
    for k, pose in enumerate(np.array(poses)):
        frame = rng.integers(0, 18, OCC3D_GRID.shape, dtype=np.uint8)
        memory.insert(frame, pose, only_unknown=bool(k % 2))
        for probe in (pose, pose + np.array([6.1, -3.3, 0.4])):
            assert np.array_equal(memory.project(probe), reference(probe))
    memory.clear()
    assert (memory.project(np.zeros(3)) == UNKNOWN).all()  # a cleared slot reads nothing
    pose = np.array([1.0, 2.0, 0.3])
    memory.insert(street(), pose)
    assert np.array_equal(memory.project(pose), reference(pose))
    # Reused slots hold nothing of the cleared episode: the same as a fresh memory.
    fresh = SceneMemory(tile_cells=16, radius=30.0)
    fresh.insert(street(), pose)
    for probe in (pose, pose + np.array([25.0, -10.0, 1.0])):
        assert np.array_equal(memory.project(probe), fresh.project(probe))


def _thin_wall_frame(pose_x: float) -> np.ndarray:
    """The frame at pose ``(pose_x, 0.05, 0)`` of a world whose only structure is a wall
    0.2 m thin (half a voxel) at world x in [10.0, 10.2), as a renderer sampling the world
    at voxel centres draws it: only where a voxel centre falls inside the wall."""
    frame = np.full(OCC3D_GRID.shape, FREE_ID, dtype=np.uint8)
    frame[:, :, G] = TERRAIN
    centres_x = pose_x + OCC3D_GRID.lower[0] + (np.arange(OCC3D_GRID.shape[0]) + 0.5) * 0.4
    frame[(centres_x >= 10.0) & (centres_x < 10.2), :, G + 1] = MANMADE
    return frame


def test_a_thin_wall_seen_at_two_offsets_keeps_the_sample_nearest_each_cell():
    # At x = 0.25 a voxel centre (10.05) lies in the wall; at x = 0.05 the nearest centres
    # (9.85, 10.25) miss it. Whichever frame comes last, each memory cell keeps the sample
    # taken nearest its centre, and the view at 0.25 reads back exactly what it saw.
    def pose(x: float) -> np.ndarray:
        return np.array([x, 0.05, 0.0])

    assert (_thin_wall_frame(0.25)[:, :, G + 1] == MANMADE).any()
    assert not (_thin_wall_frame(0.05)[:, :, G + 1] == MANMADE).any()
    for order in ((0.25, 0.05), (0.05, 0.25)):
        memory = SceneMemory()
        for x in order:
            memory.insert(_thin_wall_frame(x), pose(x))
        assert np.array_equal(memory.project(pose(0.25)), _thin_wall_frame(0.25)), order
    # One frame that missed the wall cannot show it: the memory adds nothing it never saw.
    memory = SceneMemory()
    memory.insert(_thin_wall_frame(0.05), pose(0.05))
    assert not (memory.project(pose(0.25)) == MANMADE).any()


def test_a_road_user_that_waited_is_matched_where_it_stood_and_drives_on():
    tracks = RoadUserTracks()
    for k in range(2):  # a car at 4.8 m/s, 6 voxels a frame, behind a parked one
        tracks.observe(car_at(car_at(street(), 160, 95), 135 + 6 * k, 95), np.zeros(3))
    # The tracks' own frame 2 s on: it stopped 1 frame on, 8.4 m short of where its
    # velocity would have taken it (more than a prediction may miss by).
    frame = np.where(tracks.predict(np.zeros(3), frames_ahead=4) == EMPTY, street(), CAR)
    tracks.observe(frame.astype(np.uint8), np.zeros(3), frames_since=4)
    car = min(tracks.objects, key=lambda o: o.centroid[0])
    # Matched where it stood, it keeps its speed (its wait is no measurement of it).
    assert car.measured
    np.testing.assert_allclose(car.velocity, [4.8, 0.0], atol=0.01)


def test_a_parked_car_seen_at_two_offsets_is_drawn_from_the_nearest_samples():
    # A car 4.4 m long parked at world x in [10.1, 14.5): a renderer sampling at voxel
    # centres draws 11 columns from x = 0.1 m (centres 10.1 ... 14.1 m) and from x = 0.3 m
    # (10.3 ... 14.3 m): each frame misses part of it by where its centres fall.
    def frame_at(x: float) -> np.ndarray:
        frame = street()
        centres = x + OCC3D_GRID.lower[0] + (np.arange(OCC3D_GRID.shape[0]) + 0.5) * 0.4
        inside = np.flatnonzero((centres >= 10.1) & (centres < 14.5))
        frame[inside[0] : inside[-1] + 1, 95:100, G : G + 4] = CAR
        return frame

    def pose(x: float) -> np.ndarray:
        return np.array([x, 0.05, 0.0])

    tracks = RoadUserTracks()
    for x in (0.3, 0.1, 0.3, 0.1):
        tracks.observe(frame_at(x), pose(x), observed=True)
    (car,) = tracks.objects
    assert not np.any(car.velocity) and len(car.views) == 3
    # Read at either offset, the nearest samples are that offset's own frame: exact.
    for x in (0.1, 0.3):
        predicted = tracks.predict(pose(x), frames_ahead=1)
        assert np.array_equal(predicted == CAR, frame_at(x) == CAR), x
    # A car seen moving keeps one view, its last.
    moving = RoadUserTracks()
    for k in range(4):
        moving.observe(car_at(street(), 120 + 6 * k, 95), np.zeros(3), observed=True)
    assert moving.objects[0].views == ()


def test_a_vehicle_parked_against_a_barrier_is_drawn_over_it_as_the_real_frames_show():
    # A construction vehicle parked at world x in [10.1, 14.5) against a barrier at
    # [14.2, 14.6) that it overlaps; a renderer draws the vehicle over what it overlaps.
    # From x = 0.1 the voxel centre 14.3 m is the vehicle's; from x = 0.3 the centre 14.5 m
    # lies in the barrier only, and the memory keeps that barrier sample (road-user samples
    # never enter it) for the cell at 14.3 m too. The vehicle, parked where the real frames
    # saw it, stands there again.
    def frame_at(x: float) -> np.ndarray:
        frame = street()
        centres = x + OCC3D_GRID.lower[0] + (np.arange(OCC3D_GRID.shape[0]) + 0.5) * 0.4
        frame[(centres >= 14.2) & (centres < 14.6), 95:100, G + 1 : G + 4] = BARRIER
        vehicle = (centres >= 10.1) & (centres < 14.5)
        frame[vehicle, 95:100, G : G + 4] = CONSTRUCTION_VEHICLE
        return frame

    def pose(x: float) -> np.ndarray:
        return np.array([x, 0.05, 0.0])

    memory, tracks = SceneMemory(), RoadUserTracks()
    for x in (0.3, 0.1, 0.3, 0.1):
        memory.insert(frame_at(x), pose(x))
        tracks.observe(frame_at(x), pose(x), observed=True)
    projected = memory.project(pose(0.1))
    assert (projected[:, 95:100, G + 1] == BARRIER).sum() == 5  # the barrier sample, at x 14.3 m
    predicted, parked = tracks.predict_with_parked(pose(0.1))
    assert np.array_equal(parked, predicted != EMPTY)
    generated = street()  # the generated frame has nothing there; the memory and tracks do
    truth = frame_at(0.1)
    assert np.array_equal(compose(generated, projected, predicted, parked), truth)
    # Without the parked mask the barrier sample shows through the vehicle's side.
    overlaid = compose(generated, projected, predicted)
    assert np.count_nonzero(overlaid != truth) == 15
    # A moving road user's prediction never takes structure's voxels.
    moving = np.where(predicted != EMPTY, CAR, EMPTY).astype(np.uint8)
    assert (compose(generated, projected, moving)[:, 95:100, G + 1] == BARRIER).sum() == 5


def test_a_fast_car_stopping_short_behind_a_slower_one_never_merges_with_it():
    tracks = RoadUserTracks()
    for rear, front in ((48, 70), (56, 72)):  # 8 and 2 voxels a frame: 6.4 and 1.6 m/s
        tracks.observe(car_at(car_at(street(), rear, 95), front, 95), np.zeros(3))
    # 2 s on the rear car would run through the front one: it stops short of where the
    # front one stands, never on it (the two would be one blob).
    blobs = _car_blobs(tracks.predict(np.zeros(3), frames_ahead=4))
    assert len(blobs) == 2 and blobs[0][1] < blobs[1][0] - 1
