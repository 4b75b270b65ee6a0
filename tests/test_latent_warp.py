import math

import pytest
import torch

from occsim.dit import OccDiT
from occsim.latent_warp import chunk_poses, motion_prior, trajectory_headings, warp_to_pose

CELL = 1.6  # metres per latent cell of the default tokenizer (80 m / 50)


def one_hot_frame(i: int, j: int, size: int = 50) -> torch.Tensor:
    frame = torch.zeros(1, 1, size, size)
    frame[0, 0, i, j] = 1.0
    return frame


def test_moving_forward_one_cell_shifts_the_world_back_one_cell():
    warped = warp_to_pose(one_hot_frame(30, 20), torch.tensor([[CELL, 0.0, 0.0]]), 40.0)
    assert warped[0, 0, 29, 20] == pytest.approx(1.0, abs=1e-5)
    assert warped.sum() == pytest.approx(1.0, abs=1e-5)
    sideways = warp_to_pose(one_hot_frame(30, 20), torch.tensor([[0.0, 2 * CELL, 0.0]]), 40.0)
    assert sideways[0, 0, 30, 18] == pytest.approx(1.0, abs=1e-5)


def test_turning_left_by_90_degrees_rotates_the_world_right():
    # A point 8 m ahead (x = +8) is at y = -8 after the ego turns 90 degrees left.
    i = 25 + 5  # cell centre x = (30 + 0.5) * 1.6 - 40 = 8.8 m
    warped = warp_to_pose(one_hot_frame(i, 25), torch.tensor([[0.0, 0.0, math.pi / 2]]), 40.0)
    peak = torch.nonzero(warped[0, 0] > 0.5)[0].tolist()
    assert peak == [25, 25 - 5 - 1]  # y = -8.8 m -> index 19


def test_no_motion_is_the_identity_and_out_of_grid_is_zero():
    frame = torch.randn(2, 3, 50, 50)
    torch.testing.assert_close(
        warp_to_pose(frame, torch.zeros(2, 3), 40.0), frame, atol=1e-4, rtol=0
    )
    far = warp_to_pose(frame, torch.tensor([[100.0, 0.0, 0.0]] * 2), 40.0)
    assert far.abs().max() == 0


def test_headings_follow_the_path_and_hold_when_stopped():
    path = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 1.0], [2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]])
    headings = trajectory_headings(path)[0]
    assert headings[0] == 0 and headings[3] == pytest.approx(math.pi / 2)
    assert headings[5] == headings[4] == headings[3]
    assert chunk_poses(path, 3).shape == (1, 2, 3)


def test_motion_prior_is_zero_without_context_and_warps_the_last_context_frame():
    latents = torch.randn(2, 4, 2, 50, 50)
    trajectory = torch.zeros(2, 8, 2)
    trajectory[:, :, 0] = torch.arange(8) * CELL / 4  # one cell per latent frame
    mask = torch.tensor([[True, False], [False, False]])
    prior = motion_prior(latents, mask, trajectory, 4, 40.0)
    assert prior[1].abs().max() == 0
    torch.testing.assert_close(prior[0, :, 0], latents[0, :, 0])
    torch.testing.assert_close(prior[0, :, 1, :-1], latents[0, :, 0, 1:], atol=1e-4, rtol=0)


def test_dit_with_context_prior_starts_from_the_warped_context():
    model = OccDiT.from_preset("tiny", latent_size=(10, 10), context_prior=True).eval()
    latents = torch.randn(1, 8, 2, 10, 10)
    mask = torch.tensor([[True, False]])
    trajectory = torch.zeros(1, 4, 2)
    with torch.no_grad():
        out = model(latents, torch.tensor([500]), trajectory, mask)
    # Zero-initialised output layer: the prediction is the prior, here the context itself.
    torch.testing.assert_close(out[0, :8, 1], latents[0, :, 0], atol=1e-5, rtol=0)
    assert model.x_embedder.in_features == 2 * 8 * 2 * 2


def road_along_x(size: int = 50, column: int = 20) -> torch.Tensor:
    frame = torch.zeros(1, 1, size, size)
    frame[0, 0, :, column] = 1.0
    return frame


def test_border_padding_carries_a_road_at_the_edge_into_new_space():
    # Three cells forward: the last three rows (x beyond the old view) are new space.
    ahead = torch.tensor([[3 * CELL, 0.0, 0.0]])
    zeros = warp_to_pose(road_along_x(), ahead, 40.0)[0, 0]
    border = warp_to_pose(road_along_x(), ahead, 40.0, padding="border")[0, 0]
    assert zeros[-3:, 20].abs().max() == 0  # the data mean: the road stops
    torch.testing.assert_close(border[:, 20], torch.ones(50), atol=1e-5, rtol=0)
    torch.testing.assert_close(border[:-3], zeros[:-3], atol=1e-5, rtol=0)  # seen: same
    assert border[:, 21].abs().max() < 1e-5  # beside the road stays as it was
    with pytest.raises(ValueError, match="padding must be one of"):
        warp_to_pose(road_along_x(), ahead, 40.0, padding="reflection")


def test_a_dit_with_border_padding_predicts_the_road_going_on():
    model = OccDiT.from_preset("tiny", latent_size=(10, 10), context_prior=True).eval()
    bordered = model.with_prior_padding("border")
    assert bordered.config.prior_padding == "border" and model.config.prior_padding == "zeros"
    assert model.with_prior_padding("zeros") is model
    for (name, a), b in zip(model.state_dict().items(), bordered.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    latents = torch.zeros(1, 8, 2, 10, 10)
    latents[0, :, 0, :, 4] = 1.0  # a road along x in the context frame
    trajectory = torch.zeros(1, 4, 2)
    trajectory[0, :, 0] = torch.tensor([0.0, 0.0, 8.0, 16.0])  # new frame: two 8 m cells on
    mask = torch.tensor([[True, False]])
    with torch.no_grad():
        stops = model(latents, torch.tensor([500]), trajectory, mask)[0, :8, 1]
        goes_on = bordered(latents, torch.tensor([500]), trajectory, mask)[0, :8, 1]
    # Zero-initialised output layer: the prediction is the prior.
    assert stops[:, -2:, 4].abs().max() < 1e-5
    torch.testing.assert_close(goes_on[:, :, 4], torch.ones(8, 10), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="prior_padding must be one of"):
        OccDiT.from_preset("tiny", latent_size=(10, 10), prior_padding="wrap")
