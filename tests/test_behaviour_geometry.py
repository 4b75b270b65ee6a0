"""Pose helpers, the latent warp and voxel re-projection with a turned ego (issue #22).

Conventions (docs/architecture.md): x forward, y left, yaw counter-clockwise; a pose
``(x, y, yaw)`` of a new ego frame given in the old one maps a new-frame point ``p`` to the
old frame as ``R(yaw) p + (x, y)``, and an old-frame point ``q`` to the new frame as
``R(-yaw) (q - (x, y))``. With yaw = 90 degrees, ``R(-yaw) (dx, dy) = (dy, -dx)``.

Latent cells: 50 x 50 over 80 m, 1.6 m each, centre of cell i at ``-40 + 1.6 (i + 0.5)``.
Voxel columns: 200 x 200 over 80 m, 0.4 m each, centre of cell i at ``-40 + 0.4 (i + 0.5)``.
Every case below moves by whole cells and quarter turns, so centres land on centres.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from occsim.geometry import (
    local_to_world,
    poses_to_trajectory,
    quaternion_to_yaw,
    world_to_local,
    wrap_angle,
)
from occsim.labels import CAR, FREE_ID, MANMADE
from occsim.latent_warp import (
    chunk_poses,
    motion_prior,
    relative_pose,
    trajectory_headings,
    warp_to_pose,
)
from occsim.scene_memory import UNKNOWN, frozen_copy, reproject, view_overlap

QUARTER = math.pi / 2


def test_pose_helpers_with_the_ego_turned_north():
    # Ego at (10, 5) heading +y (north). A point 8 m north is 8 m ahead; a point 3 m west
    # is 3 m to its left; a point 2 m east and 1 m south is 1 m behind and 2 m right.
    world = np.array([[10.0, 13.0], [7.0, 5.0], [12.0, 4.0]])
    local = world_to_local(world, [10.0, 5.0], QUARTER)
    np.testing.assert_allclose(local, [[8.0, 0.0], [0.0, 3.0], [-1.0, -2.0]], atol=1e-12)
    np.testing.assert_allclose(local_to_world(local, [10.0, 5.0], QUARTER), world, atol=1e-12)
    # A drive north 8 m, then a left turn onto a road west: each pose in the first frame.
    trajectory = poses_to_trajectory(
        np.array([[10.0, 5.0], [10.0, 13.0], [7.0, 13.0]]), np.array([QUARTER, QUARTER, math.pi])
    )
    np.testing.assert_allclose(trajectory, [[0, 0, 0], [8, 0, 0], [8, 3, QUARTER]], atol=1e-6)
    # nuScenes quaternions (w, x, y, z) of a yaw about z: (cos(yaw/2), 0, 0, sin(yaw/2)).
    half = math.sqrt(0.5)
    assert quaternion_to_yaw([half, 0, 0, half]) == pytest.approx(QUARTER)
    assert quaternion_to_yaw([0.0, 0, 0, 1.0]) == pytest.approx(math.pi)
    assert quaternion_to_yaw([half, 0, 0, -half]) == pytest.approx(-QUARTER)
    np.testing.assert_allclose(wrap_angle([5 * QUARTER, -3 * QUARTER]), [QUARTER, QUARTER])


def test_relative_pose_of_a_turned_origin():
    origin = torch.tensor([[10.0, 5.0, QUARTER], [10.0, 5.0, QUARTER]])
    target = torch.tensor([[10.0, 13.0, math.pi], [7.0, 5.0, QUARTER]])
    # 8 m north of a north-facing ego is 8 m ahead, turned a further 90 degrees; 3 m west
    # is 3 m to its left, same heading.
    expected = torch.tensor([[8.0, 0.0, QUARTER], [0.0, 3.0, 0.0]])
    torch.testing.assert_close(relative_pose(origin, target), expected, atol=1e-6, rtol=0)


def test_relative_pose_of_an_origin_facing_west():
    # Facing west (yaw 180 deg) its left is south and its right north. A target 3 m west
    # and 4 m north of it is 3 m ahead and 4 m to the right; heading north (90 deg) is a
    # quarter turn right of west.
    origin = torch.tensor([[10.0, 5.0, math.pi]])
    target = torch.tensor([[7.0, 9.0, QUARTER]])
    expected = torch.tensor([[3.0, -4.0, -QUARTER]])
    torch.testing.assert_close(relative_pose(origin, target), expected, atol=1e-6, rtol=0)


def test_the_last_heading_is_the_direction_of_the_last_step():
    # East 1 m, east 1 m, then north 1 m. Central differences: waypoint 1 sees (2, 0) -> 0;
    # waypoint 2 sees (1, 1) -> 45 deg; the last one has no successor and sees its own
    # step (0, 1) -> 90 deg. The first is the window's origin: 0 by definition.
    path = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0]]])
    expected = torch.tensor([[0.0, 0.0, math.pi / 4, QUARTER]])
    torch.testing.assert_close(trajectory_headings(path), expected, atol=1e-6, rtol=0)


def test_chunk_poses_take_x_y_yaw_of_wider_waypoints():
    # Waypoints (x, y, yaw, speed): the pose of each chunk is the first three columns of
    # its last frame (frames 3 and 7 for 4 frames per latent frame).
    trajectory = torch.stack(
        [torch.arange(8.0), torch.zeros(8), torch.full((8,), 0.5), torch.full((8,), 9.0)], -1
    )[None]
    expected = torch.tensor([[[3.0, 0.0, 0.5], [7.0, 0.0, 0.5]]])
    torch.testing.assert_close(chunk_poses(trajectory, 4), expected)


def test_motion_prior_warps_the_last_of_two_context_frames_from_its_pose():
    # Three latent frames of 4 frames each, the first two context. Frame k lies at
    # x = 0.4 (k - 3) m, so the chunks end at x = 0, 1.6 and 3.2 m (frames 3, 7, 11). The
    # generated frame is the second context frame warped one cell (1.6 m) forward: its
    # feature of 2.0 at cell (20, 25) (centre x = -7.2 m) is at -8.8 m, cell (19, 25).
    latents = torch.zeros(1, 1, 3, 50, 50)
    latents[0, 0, 0, 30, 30] = 1.0
    latents[0, 0, 1, 20, 25] = 2.0
    trajectory = torch.zeros(1, 12, 3)
    trajectory[0, :, 0] = 0.4 * (torch.arange(12.0) - 3)
    prior = motion_prior(latents, torch.tensor([[True, True, False]]), trajectory, 4, 40.0)
    torch.testing.assert_close(prior[:, :, :2], latents[:, :, :2])  # context: itself
    generated = prior[0, 0, 2]
    assert generated[19, 25] == pytest.approx(2.0, abs=1e-4)
    assert generated.sum() == pytest.approx(2.0, abs=1e-4)


def test_the_warp_works_in_the_latents_dtype():
    frame = torch.zeros(1, 1, 50, 50)
    frame[0, 0, 30, 20] = 1.0
    # float64: no motion maps every cell centre onto itself, to float64 precision.
    noise = torch.randn(2, 3, 50, 50, dtype=torch.float64)
    still = warp_to_pose(noise, torch.zeros(2, 3, dtype=torch.float64), 40.0)
    assert still.dtype == torch.float64
    torch.testing.assert_close(still, noise, atol=1e-12, rtol=0)
    # bfloat16 (a half-precision model): one cell (1.6 m) forward moves cell 30 to 29.
    half = warp_to_pose(frame.bfloat16(), torch.tensor([[1.6, 0.0, 0.0]]).bfloat16(), 40.0)
    assert half.dtype == torch.bfloat16
    assert torch.nonzero(half[0, 0] > 0.5).tolist() == [[29, 20]]
    latents = torch.stack([frame, frame], dim=2).bfloat16()  # (1, 1, 2, 50, 50)
    trajectory = torch.zeros(1, 8, 2)
    prior = motion_prior(latents, torch.tensor([[True, False]]), trajectory, 4, 40.0)
    assert prior.dtype == torch.bfloat16 and prior[0, 0, 1, 30, 20] > 0.5
    path = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]]])
    assert trajectory_headings(path.half()).dtype == torch.float16


def test_the_warp_makes_nothing_on_the_default_device():
    """The meta device stands in for a GPU: a tensor made on the CPU meets one there."""
    path = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]]])
    meta = warp_to_pose(
        torch.zeros(2, 3, 10, 10, device="meta"), torch.zeros(2, 3, device="meta"), 8.0
    )
    assert meta.device.type == "meta" and meta.shape == (2, 3, 10, 10)
    assert trajectory_headings(path.to("meta")).device.type == "meta"


def test_the_warp_raises_no_warnings():
    """Every step of the learned world warps; torch warns where an argument is left to
    its default that is changing (meshgrid's indexing, grid_sample's align_corners)."""
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch warns of meshgrid once per process otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warp_to_pose(torch.zeros(1, 1, 10, 10), torch.tensor([[1.0, 2.0, 0.3]]), 8.0)
            warp_to_pose(torch.zeros(1, 1, 10, 10), torch.zeros(1, 3), 8.0, padding="border")
    finally:
        torch.set_warn_always(warn_always)


def two_features(size: int = 50) -> torch.Tensor:
    frame = torch.zeros(1, 1, size, size)
    frame[0, 0, 30, 30] = 1.0  # centre (8.8, 8.8) m: ahead-left
    frame[0, 0, 20, 25] = 2.0  # centre (-7.2, 0.8) m: behind
    return frame


def test_latent_warp_after_driving_8_m_and_turning_left():
    # The ego drove 8 m ahead (5 cells) and turned 90 degrees left: pose (8, 0, 90 deg).
    # Feature 1 at (8.8, 8.8): (dx, dy) = (0.8, 8.8) -> new (8.8, -0.8) -> cell (30, 24).
    # Feature 2 at (-7.2, 0.8): (dx, dy) = (-15.2, 0.8) -> new (0.8, 15.2) -> cell (25, 34).
    warped = warp_to_pose(two_features(), torch.tensor([[8.0, 0.0, QUARTER]]), 40.0)[0, 0]
    assert warped[30, 24] == pytest.approx(1.0, abs=1e-4)
    assert warped[25, 34] == pytest.approx(2.0, abs=1e-4)
    assert warped.sum() == pytest.approx(3.0, abs=1e-4)  # nothing else lit up


def test_motion_prior_uses_the_last_frame_of_each_chunk_and_its_yaw():
    # Eight frames, 4 per latent frame. Context chunk: frames 0..3 along x, the last at
    # (6, 0, 0). Generated chunk: its last frame 7 at (14, 0, 90 deg), i.e. 8 m ahead of
    # the context's last pose and turned left; frames 4..6 are on the way (other poses).
    trajectory = torch.tensor(
        [
            [0, 0, 0],
            [2, 0, 0],
            [4, 0, 0],
            [6, 0, 0],
            [8, 0, 0],
            [10, 0, 0.3],
            [12, 1, 0.9],
            [14, 0, QUARTER],
        ],
        dtype=torch.float32,
    )[None]
    torch.testing.assert_close(
        chunk_poses(trajectory, 4), torch.tensor([[[6.0, 0, 0], [14.0, 0, QUARTER]]])
    )
    latents = torch.zeros(1, 1, 2, 50, 50)
    latents[:, :, 0] = two_features()
    prior = motion_prior(latents, torch.tensor([[True, False]]), trajectory, 4, 40.0)
    torch.testing.assert_close(prior[:, :, 0], latents[:, :, 0])  # context: itself
    # The same warp as above: relative pose (8, 0, 90 deg).
    generated = prior[0, 0, 1]
    assert generated[30, 24] == pytest.approx(1.0, abs=1e-4)
    assert generated[25, 34] == pytest.approx(2.0, abs=1e-4)
    assert generated.sum() == pytest.approx(3.0, abs=1e-4)


def test_voxel_reprojection_after_driving_8_m_and_turning_left():
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[140, 120, 3:6] = CAR  # centre (16.2, 8.2) m
    frame[100, 150, 3:9] = MANMADE  # centre (0.2, 20.2) m
    pose = np.array([8.0, 0.0, QUARTER])  # 20 cells ahead, turned left
    moved = reproject(frame, np.zeros(3), pose)
    # Car: (dx, dy) = (8.2, 8.2) -> new (8.2, -8.2) -> cell (120, 79).
    # Pole: (dx, dy) = (-7.8, 20.2) -> new (20.2, 7.8) -> cell (150, 119).
    assert (moved[120, 79, 3:6] == CAR).all() and (moved[150, 119, 3:9] == MANMADE).all()
    assert np.isin(moved, (CAR, MANMADE)).sum() == 3 + 6
    # The new view's right side reaches 8 m past the old view's front edge: new (x', y')
    # is (8 - y', x') in the old frame, inside the old grid (x < 40 m) iff y' > -32 m, so
    # columns with y index >= 20 (centre -31.8 m) are known and 0..19 are not.
    known = view_overlap(np.zeros(3), pose)
    assert known[:, 20:].all() and not known[:, :20].any()
    assert (moved[:, :20] == UNKNOWN).all() and not (moved[:, 20:] == UNKNOWN).any()
    copy = frozen_copy(frame, np.zeros(3), pose)
    assert (copy[:, :20] == FREE_ID).all() and (copy[120, 79, 3:6] == CAR).all()


def test_the_yaw_of_a_pitched_quaternion_is_its_heading():
    # q = q_z(yaw) * q_y(pitch) = (c1 c2, -s1 s2, c1 s2, s1 c2) with c1, s1 of yaw / 2 and
    # c2, s2 of pitch / 2. Worked by hand: 2 (w z + x y) = sin(yaw) cos(pitch) and
    # 1 - 2 (y^2 + z^2) = cos(yaw) cos(pitch), so the heading is the yaw for any pitch.
    for yaw, pitch in [(math.radians(60), math.radians(40)), (math.radians(-135), 0.3)]:
        c1, s1, c2, s2 = (
            math.cos(yaw / 2),
            math.sin(yaw / 2),
            math.cos(pitch / 2),
            math.sin(pitch / 2),
        )
        quaternion = [c1 * c2, -s1 * s2, c1 * s2, s1 * c2]
        assert quaternion_to_yaw(quaternion) == pytest.approx(yaw, abs=1e-12)
    with pytest.raises(ValueError, match=r"must end in 4 values \(w, x, y, z\), got shape \(3,\)"):
        quaternion_to_yaw([1.0, 0.0, 0.0])


def test_a_trajectory_is_in_the_first_pose_frame_not_the_second():
    # Start at the origin heading east, then turn north: the second pose's heading must not
    # be taken as the frame's. Each waypoint in the first frame is the world offset itself.
    positions = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0]])
    yaws = np.array([0.0, QUARTER, QUARTER])
    trajectory = poses_to_trajectory(positions, yaws)
    assert trajectory.dtype == np.float32
    np.testing.assert_allclose(trajectory, [[0, 0, 0], [4, 0, QUARTER], [4, 4, QUARTER]], atol=1e-6)
