"""The DiT's view of the scene memory: views built as the rollout builds them, their
latents and known fractions, a grown DiT that starts as the model it grew from, the
pipeline's and the latent cache's memory, and a memory-conditioned fine-tune."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occsim.dit import OccDiT
from occsim.grid import OCC3D_GRID
from occsim.labels import CAR, DRIVEABLE_SURFACE, FREE_ID, MANMADE
from occsim.memory_condition import encode_views, memory_condition, memory_views
from occsim.scene_memory import UNKNOWN
from occsim.tokenizer import OccTokenizer

BUILDING, ROAD = MANMADE, DRIVEABLE_SURFACE
VOXEL = OCC3D_GRID.voxel_size


def street(frames: int, shift_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """A static street seen by an ego driving +x by ``shift_voxels`` voxels a frame: road
    underfoot, a building row at world x in [20, 24) m on the left, a car at the ego's
    right in the first frame only; frames and world poses."""
    nx, ny, nz = OCC3D_GRID.shape
    ground = OCC3D_GRID.ground_index
    out = np.full((frames, nx, ny, nz), FREE_ID, dtype=np.uint8)
    poses = np.zeros((frames, 3))
    for t in range(frames):
        x0 = t * shift_voxels * VOXEL
        poses[t, 0] = x0
        out[t, :, :, ground] = ROAD
        world_x = OCC3D_GRID.lower[0] + (np.arange(nx) + 0.5) * VOXEL + x0
        row = (world_x >= 20) & (world_x < 24)
        out[t, row, 150:160, ground + 1 : ground + 6] = BUILDING
    out[0, 100:110, 60:65, 3:6] = CAR
    return out, poses


def test_views_of_a_drive_move_the_seen_street_by_the_ego_motion():
    frames, poses = street(12, shift_voxels=2)
    views = memory_views(frames, poses, start_frames=4, step_frames=4)
    assert views.shape == (2, 4, *OCC3D_GRID.shape)
    # Frame 4 lies 2 voxels beyond frame 3: the memory knows all but the last 2 rows of x,
    # and frame 7 (the step's last) lies 8 beyond what the start frames showed.
    first, last = views[0, 0], views[0, 3]
    np.testing.assert_array_equal(first[:-2], frames[4][:-2])
    assert (first[-2:] == UNKNOWN).all()
    np.testing.assert_array_equal(last[:-8], frames[7][:-8])
    assert (last[-8:] == UNKNOWN).all()
    # The car stood in frame 0 only and road users never enter the memory.
    assert not (views == CAR).any()
    # Step 1 sees through the last frame of step 0 (frame 7) too.
    second = views[1, 0]  # frame 8, 2 voxels past frame 7
    np.testing.assert_array_equal(second[:-2], frames[8][:-2])
    assert (second[-2:] == UNKNOWN).all()


def test_a_later_frame_never_overwrites_what_the_memory_knows():
    frames, poses = street(8, shift_voxels=0)
    changed = frames.copy()
    changed[3, 10:20, 10:20, 4] = BUILDING  # frame 3 enters the memory whole (a start frame)
    changed[7, 30:40, 30:40, 4] = BUILDING  # frame 7 enters only where nothing is known
    views = memory_views(changed, poses, start_frames=4, step_frames=4)
    assert (views[0, :, 10:20, 10:20, 4] == BUILDING).all()
    assert (views[0, :, 30:40, 30:40, 4] == FREE_ID).all()


def test_memory_views_refuse_a_recording_without_a_step():
    frames, poses = street(4, shift_voxels=1)
    with pytest.raises(ValueError, match="at least one step"):
        memory_views(frames, poses, start_frames=4, step_frames=4)
    with pytest.raises(ValueError, match="pose each"):
        memory_views(np.concatenate([frames, frames]), poses, start_frames=4, step_frames=4)


@pytest.fixture(scope="module")
def tokenizer() -> OccTokenizer:
    torch.manual_seed(0)
    return OccTokenizer.from_preset("tiny").eval()


def test_known_fraction_counts_known_voxels_per_latent_cell(tokenizer):
    views = np.full((1, 2, *OCC3D_GRID.shape), UNKNOWN, dtype=np.uint8)
    views[0, :, :100] = FREE_ID  # the rear half of every frame is known
    views[0, 1, 100:104, :, :8] = ROAD  # half a latent cell's voxels, in one of its 2 frames
    encoding, fraction = encode_views(tokenizer, views)
    c, t, h, w = tokenizer.latent_shape(2)
    assert fraction.shape == (1, t, h, w) and encoding.latents.shape == (1, c, t, h, w)
    assert (fraction[0, :, :25] == 1).all() and (fraction[0, :, 26:] == 0).all()
    torch.testing.assert_close(fraction[0, :, 25], torch.full((t, w), 0.25))
    # Unknown voxels are encoded as free space.
    free = np.where(views == UNKNOWN, np.uint8(FREE_ID), views)
    with torch.no_grad():
        expected = tokenizer.encode(torch.from_numpy(free)).latents
    condition = memory_condition(tokenizer, views)
    torch.testing.assert_close(condition[:, :c], expected)
    torch.testing.assert_close(condition[:, c], fraction)
    with pytest.raises(ValueError, match="uint8"):
        encode_views(tokenizer, views[0])


def tiny_dit(**overrides) -> OccDiT:
    torch.manual_seed(0)
    model = OccDiT.from_preset("tiny", **overrides).eval()
    with torch.no_grad():  # a trained-looking model: no zero output layer
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def dit_inputs(model: OccDiT, batch: int = 2):
    config = model.config
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(
        batch,
        config.latent_channels,
        config.latent_frames,
        *config.latent_size,
        generator=generator,
    )
    trajectory = torch.randn(batch, config.trajectory_length, 2, generator=generator)
    memory = torch.randn(
        batch,
        config.latent_channels + 1,
        config.latent_frames,
        *config.latent_size,
        generator=generator,
    )
    timesteps = torch.tensor([10, 500])[:batch]
    context = torch.zeros(batch, config.latent_frames, dtype=torch.bool)
    context[:, 0] = True
    return latents, timesteps, trajectory, context, memory


@pytest.mark.parametrize("context_prior", [False, True])
def test_a_grown_dit_predicts_what_it_did_until_its_memory_weights_train(context_prior):
    model = tiny_dit(context_prior=context_prior)
    grown = model.with_memory_conditioning()
    assert grown.config.memory_conditioning and not model.config.memory_conditioning
    latents, timesteps, trajectory, context, memory = dit_inputs(model)
    with torch.no_grad():
        before = model(latents, timesteps, trajectory, context)
        torch.testing.assert_close(grown(latents, timesteps, trajectory, context), before)
        torch.testing.assert_close(
            grown(latents, timesteps, trajectory, context, memory=memory), before
        )
        # The last memory channel's last patch voxel (not a constant: LayerNorm drops one).
        grown.x_embedder.weight[:, -1] = torch.linspace(-1, 1, grown.config.hidden_size)
        after = grown(latents, timesteps, trajectory, context, memory=memory)
    assert (after - before).abs().max() > 1e-3
    with pytest.raises(ValueError, match="already takes"):
        grown.with_memory_conditioning()
    with pytest.raises(ValueError, match="takes no memory"):
        model(latents, timesteps, trajectory, context, memory=memory)
    with pytest.raises(ValueError, match="memory must have shape"):
        grown(latents, timesteps, trajectory, context, memory=memory[:, :-1])


def test_the_pipeline_feeds_the_memory_of_the_generated_frames_only(tokenizer):
    from diffusers import DDIMScheduler

    from occsim.pipeline import OccSoraPipeline

    c, _, h, w = tokenizer.latent_shape(2)
    model = tiny_dit(latent_channels=c, latent_size=(h, w), memory_conditioning=True)
    seen: list[torch.Tensor] = []
    model.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs["memory"]), with_kwargs=True
    )
    pipe = OccSoraPipeline(tokenizer, model, DDIMScheduler(prediction_type="sample"))
    pipe.set_progress_bar_config(disable=True)
    context = torch.randn(1, c, 1, h, w)
    memory = torch.rand(1, c + 1, 1, h, w)
    trajectory = np.zeros((1, 4, 2), dtype=np.float32)
    pipe(trajectory, context=context, num_inference_steps=2, memory=memory, output_type="latent")
    assert len(seen) == 2 and seen[0].shape == (2, c + 1, 2, h, w)  # both guidance passes
    fed = seen[0]
    assert (fed[:, :, 0] == 0).all()  # context frame: nothing known
    torch.testing.assert_close(fed[0, :c, 1], pipe.normalize(memory[0, :c, 0]))
    torch.testing.assert_close(fed[0, c, 1], memory[0, c, 0])  # the fraction as given
    torch.testing.assert_close(fed[1], fed[0])
    with pytest.raises(ValueError, match="memory must have shape"):
        pipe(trajectory, context=context, num_inference_steps=1, memory=memory[:, :, :, :2])
    plain = OccSoraPipeline(
        tokenizer, tiny_dit(latent_channels=c, latent_size=(h, w)), DDIMScheduler()
    )
    with pytest.raises(ValueError, match="no memory_conditioning"):
        plain(trajectory, context=context, num_inference_steps=1, memory=memory)
