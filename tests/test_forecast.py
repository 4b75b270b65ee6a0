"""The planner's constant-velocity forecast of road users from two frames."""

import numpy as np

from occsim.agents.forecast import blob_velocities, body_masks, forecast_obstacles
from occsim.agents.planner import offroad_share
from occsim.labels import CAR, DRIVEABLE_SURFACE, FREE_ID, MANMADE, TERRAIN


def road_frame() -> np.ndarray:
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[:, :, 2] = TERRAIN
    frame[:, 90:110, 2] = DRIVEABLE_SURFACE  # an 8 m road along x
    return frame


def with_car(frame: np.ndarray, x0: int) -> np.ndarray:
    frame = frame.copy()
    frame[x0 : x0 + 10, 95:100, 3:6] = CAR  # 4 m x 2 m
    return frame


def test_a_car_moving_ahead_of_a_standing_ego_gets_its_velocity():
    previous, current = with_car(road_frame(), 120), with_car(road_frame(), 125)
    _, count, velocities = blob_velocities(
        body_masks(previous)[1], body_masks(current)[1], speed=0.0, yaw_rate=0.0, frame_period=0.5
    )
    assert count == 1
    np.testing.assert_allclose(velocities[0], [5 * 0.4 / 0.5, 0.0], atol=1e-9)  # 4 m/s


def test_ego_motion_is_compensated():
    # The ego drives 4 m (10 cells) in 0.5 s; a parked car 10 cells closer is standing still.
    previous, current = with_car(road_frame(), 130), with_car(road_frame(), 120)
    _, _, velocities = blob_velocities(
        body_masks(previous)[1], body_masks(current)[1], speed=8.0, yaw_rate=0.0, frame_period=0.5
    )
    np.testing.assert_allclose(velocities[0], [0.0, 0.0], atol=1e-9)
    # Driving at 8 m/s behind a car that keeps its distance: the car drives 8 m/s too.
    previous, current = with_car(road_frame(), 130), with_car(road_frame(), 130)
    _, _, velocities = blob_velocities(
        body_masks(previous)[1], body_masks(current)[1], speed=8.0, yaw_rate=0.0, frame_period=0.5
    )
    np.testing.assert_allclose(velocities[0], [8.0, 0.0], atol=1e-9)


def test_forecast_moves_road_users_and_keeps_static_obstacles():
    previous, current = with_car(road_frame(), 120), with_car(road_frame(), 125)
    current[60:62, 60:62, 3:6] = MANMADE  # a pole
    frames = np.stack([previous, current])
    obstacles, driveable = forecast_obstacles(
        frames, 0.0, 0.0, horizon=4, frame_period=0.5, margin=0
    )
    assert obstacles.shape == (4, 200, 200) and driveable[:, 90:110].all()
    for j in range(4):
        rows = np.nonzero(obstacles[j, :, 97])[0]
        # 5 cells per 0.5 s: the car's rear edge at 125 + 5 (j + 1).
        assert rows.min() == 125 + 5 * (j + 1) and rows.max() == 134 + 5 * (j + 1)
        assert obstacles[j, 60:62, 60:62].all()
    # With one frame only, road users are taken as still.
    still, _ = forecast_obstacles(current[None], 0.0, 0.0, horizon=2, frame_period=0.5, margin=1)
    assert still[1, 124:136, 94:101].all() and not still[1, 137:, 97].any()


def test_offroad_share_is_zero_mid_lane_and_one_off_the_road():
    driveable = body_masks(road_frame())[2]
    poses = np.array([[0.0, 0.0, 0.0], [0.0, 3.6, 0.0], [0.0, 10.0, 0.0]])
    share = offroad_share(poses, driveable)
    # At y = 3.6 m the box's 4 sample columns lie at y = 3.6 + (-0.725, -0.242, 0.242,
    # 0.725) m; the road (cells 90..109) ends at y = 4.0 m, so only the outer column
    # (4.325 m) is off it: 9 of 36 points, a quarter of the box.
    assert share[0] == 0.0 and share[1] == 0.25 and share[2] == 1.0
