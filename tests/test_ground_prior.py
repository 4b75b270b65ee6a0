"""The motion prior's new space: the scene memory's ground carried on (issue #18).

Hand-built views on a small grid; the expected columns are worked out from the layout,
not from the code. Latent cells of the prior tests: 50 x 50 over 80 m (1.6 m each), so an
8 m drive is 5 whole cells and centres land on centres.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from occsim.dit import OccDiT
from occsim.grid import OCC3D_GRID
from occsim.ground_prior import carry_ground, ground_prior
from occsim.labels import CAR, DRIVEABLE_SURFACE, FREE_ID, MANMADE, SIDEWALK, VEGETATION
from occsim.latent_warp import motion_prior
from occsim.pipeline import OccSoraPipeline
from occsim.scene_memory import UNKNOWN
from occsim.tokenizer import OccTokenizer


def seen_street() -> np.ndarray:
    """A (10, 6, 4) view: x 0-4 seen, x 5-9 never. Road at z 0 in y 2-3, sidewalk in y 0-1
    and 4-5; a car stands on the road at x 4 and a building on the sidewalk at x 3, y 0; the
    column x 4, y 0 is a wall with no ground under it (hidden)."""
    view = np.full((10, 6, 4), UNKNOWN, dtype=np.uint8)
    view[:5] = FREE_ID
    view[:5, :, 0] = SIDEWALK
    view[:5, 2:4, 0] = DRIVEABLE_SURFACE
    view[4, 2, 1:3] = CAR
    view[3, 0, 1:] = MANMADE
    view[4, 0, :] = MANMADE
    return view


def test_the_road_and_sidewalk_go_on_into_unseen_columns_and_nothing_stands_on_them():
    view = seen_street()
    carried = carry_ground(view)
    np.testing.assert_array_equal(carried[:5], view[:5])  # what was seen stays as it was
    # Every unseen column takes the ground of the nearest column with ground: the one at
    # x 4 in its own row, except row 0, whose x 4 is a wall: (4, 1) is nearer (sqrt 2 from
    # (5, 0)) than (3, 0) (2 away), so row 0 goes on as sidewalk too.
    expected_ground = np.array([SIDEWALK, SIDEWALK, *[DRIVEABLE_SURFACE] * 2, SIDEWALK, SIDEWALK])
    for x in range(5, 10):
        np.testing.assert_array_equal(carried[x, :, 0], expected_ground)
        assert (carried[x, :, 1:] == FREE_ID).all()  # no car, no building repeated
    assert not (carried == UNKNOWN).any()


def test_columns_partly_known_or_without_any_ground_anywhere_are_left_alone():
    view = seen_street()
    view[7, 3, 2] = VEGETATION  # a column partly known (a tree top): not carried into
    carried = carry_ground(view)
    np.testing.assert_array_equal(carried[7, 3], [UNKNOWN, UNKNOWN, VEGETATION, UNKNOWN])
    nothing_seen = np.full((4, 4, 3), UNKNOWN, dtype=np.uint8)
    np.testing.assert_array_equal(carry_ground(nothing_seen), nothing_seen)
    no_ground = np.full((4, 4, 3), UNKNOWN, dtype=np.uint8)
    no_ground[0] = MANMADE
    np.testing.assert_array_equal(carry_ground(no_ground), no_ground)
    with pytest.raises(ValueError, match=r"view must be uint8 \(X, Y, Z\), got int64"):
        carry_ground(view.astype(np.int64))


def test_the_prior_holds_the_warped_context_where_seen_and_the_ground_beyond():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 3, 2, 50, 50, generator=generator)
    new_space = torch.randn(1, 3, 2, 50, 50, generator=generator)
    context = torch.tensor([[True, False]])
    # The window's first latent frame at the origin, its second 8 m (5 cells) ahead.
    trajectory = torch.zeros(1, 8, 3)
    trajectory[0, 4:, 0] = 8.0
    prior = motion_prior(latents, context, trajectory, 4, 40.0, "ground", new_space)
    torch.testing.assert_close(prior[:, :, 0], latents[:, :, 0])  # the context is itself
    # Cells 0-44 along x see old cells 5-49; cells 45-49 lie beyond the old grid's edge.
    # (Within float rounding of the grid's coordinates: the edge cell's cover is 1 - 1e-6.)
    torch.testing.assert_close(prior[:, :, 1, :45], latents[:, :, 0, 5:], atol=1e-4, rtol=0)
    torch.testing.assert_close(prior[:, :, 1, 45:], new_space[:, :, 1, 45:], atol=1e-4, rtol=0)
    zeros = motion_prior(latents, context, trajectory, 4, 40.0, "ground")
    assert (zeros[:, :, 1, 45:] == 0).all()  # nothing given: the data mean, as "zeros"
    standing = motion_prior(latents, context, torch.zeros(1, 8, 3), 4, 40.0, "ground", new_space)
    torch.testing.assert_close(standing[:, :, 1], latents[:, :, 0])  # nothing new to fill
    with pytest.raises(ValueError, match="new_space is given but padding is 'zeros'"):
        motion_prior(latents, context, trajectory, 4, 40.0, "zeros", new_space)


@pytest.fixture(scope="module")
def tokenizer() -> OccTokenizer:
    torch.manual_seed(0)
    return OccTokenizer.from_preset("tiny").eval()


def ground_dit(tokenizer: OccTokenizer) -> OccDiT:
    """A tiny DiT with a ground prior over ``tokenizer``'s latents of 2 latent frames."""
    c, _, h, w = tokenizer.latent_shape(2)
    torch.manual_seed(0)
    return OccDiT.from_preset(
        "tiny", latent_channels=c, latent_size=(h, w), context_prior=True, prior_padding="ground"
    ).eval()


def test_the_pipeline_feeds_the_ground_of_the_generated_frames_to_a_ground_prior(tokenizer):
    c, _, h, w = tokenizer.latent_shape(2)
    model = ground_dit(tokenizer)
    seen: list[torch.Tensor] = []  # the new space each window prior was built with
    priors: list[torch.Tensor] = []  # the prior each denoising step was given
    window_prior = model.window_prior

    def recording_prior(latents, trajectory, context_mask, new_space=None):
        seen.append(new_space)
        return window_prior(latents, trajectory, context_mask, new_space)

    model.window_prior = recording_prior
    model.register_forward_hook(
        lambda module, args, kwargs, out: priors.append(kwargs["prior"]), with_kwargs=True
    )
    pipe = OccSoraPipeline(tokenizer, model, DDIMScheduler(prediction_type="sample"))
    pipe.set_progress_bar_config(disable=True)
    views = np.full((1, 2, *OCC3D_GRID.shape), UNKNOWN, dtype=np.uint8)
    views[:, :, : views.shape[2] // 2] = FREE_ID
    views[:, :, : views.shape[2] // 2, :, 0] = DRIVEABLE_SURFACE
    new_space = ground_prior(tokenizer, views)
    assert new_space.shape == (1, c, 1, h, w)
    # All road: the carried view is road at z 0 everywhere, whatever was unknown.
    road = np.full_like(views, FREE_ID)
    road[..., 0] = DRIVEABLE_SURFACE
    torch.testing.assert_close(new_space, tokenizer.encode(torch.from_numpy(road)).latents)
    context = torch.randn(1, c, 1, h, w)
    trajectory = np.zeros((1, 4, 2), dtype=np.float32)
    pipe(
        trajectory,
        context=context,
        num_inference_steps=2,
        new_space=new_space,
        output_type="latent",
    )
    assert len(seen) == 1 and seen[0].shape == (2, c, 2, h, w)  # once, both guidance passes
    assert (seen[0][:, :, 0] == 0).all()  # the context's prior is the context itself
    torch.testing.assert_close(seen[0][0, :, 1], pipe.normalize(new_space[0, :, 0]))
    torch.testing.assert_close(seen[0][1], seen[0][0])
    assert len(priors) == 2 and priors[0] is priors[1]  # one prior for the window's steps
    with pytest.raises(ValueError, match="new_space must have shape"):
        pipe(trajectory, context=context, num_inference_steps=1, new_space=new_space[..., :2])
    plain = OccSoraPipeline(
        tokenizer,
        OccDiT.from_preset("tiny", latent_channels=c, latent_size=(h, w), context_prior=True),
        DDIMScheduler(),
    )
    with pytest.raises(ValueError, match="prior_padding 'zeros'"):
        plain(trajectory, context=context, num_inference_steps=1, new_space=new_space)


def test_a_window_prior_given_to_the_dit_equals_the_one_it_builds(tokenizer):
    c, _, h, w = tokenizer.latent_shape(2)
    model = ground_dit(tokenizer)
    latents, new_space = torch.randn(2, c, 2, h, w), torch.randn(2, c, 2, h, w)
    steps = torch.tensor([500, 20])
    trajectory = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.5], [3.0, 1.0]]]).repeat(2, 1, 1)
    mask = torch.tensor([[True, False], [True, False]])
    prior = model.window_prior(latents, trajectory, mask, new_space)
    # The prior reads only the clean context: other noise in the generated frame, same prior.
    noisier = latents.clone()
    noisier[:, :, 1] = torch.randn(2, c, h, w)
    torch.testing.assert_close(model.window_prior(noisier, trajectory, mask, new_space), prior)
    with torch.no_grad():
        built = model(latents, steps, trajectory, mask, new_space=new_space)
        given = model(latents, steps, trajectory, mask, prior=prior)
    torch.testing.assert_close(given, built, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not both"):
        model(latents, steps, trajectory, mask, new_space=new_space, prior=prior)
    with pytest.raises(ValueError, match="prior must have the latents' shape"):
        model(latents, steps, trajectory, mask, prior=prior[:, :, :1])
