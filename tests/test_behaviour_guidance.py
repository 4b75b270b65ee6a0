"""Classifier-free guidance and the sampling loop against a fake DiT whose outputs are known
constants (issue #22).

The fake predicts the clean latent (``prediction_type="sample"``): ``COND`` for samples of
the conditional pass and ``UNCOND`` for those flagged ``drop`` (the null trajectory). With
DDIM, one inference step and ``set_alpha_to_one``, the only step goes from t = 0 (leading
spacing: 1000 // 1 * [0]) to the "previous" cumulative alpha 1, so with eta = 0

    x_prev = sqrt(1) * x0_hat + sqrt(1 - 1) * eps_hat = x0_hat,

and the pipeline returns ``denormalize(x0_hat) = x0_hat / latent_scale + latent_shift``
with ``x0_hat = UNCOND + s * (COND - UNCOND)`` (guidance scale s). Swapping the two passes
gives ``COND + s * (UNCOND - COND)`` instead, which differs for every s != 0.5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from occsim.diffusion import make_training_scheduler
from occsim.pipeline import OccSoraPipeline

COND = (0.5, -0.25, 1.0)  # per channel, conditional pass
UNCOND = (0.2, 0.25, -1.0)  # per channel, null-trajectory pass
SHIFT, SCALE = 1.0, 2.0  # latent_shift, latent_scale of the fake's config
CONTEXT_OUTPUT = 1000.0  # what the fake "predicts" for context frames: never to be used


class ConstantDiT(ModelMixin, ConfigMixin):
    """Predicts ``cond`` (per channel) for conditional samples and ``uncond`` for samples
    with the null trajectory; the variance channels are 0 (the middle of the learned range)
    and context frames get a value no result may contain. Records each call's ``drop``."""

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 3,
        latent_frames: int = 2,
        latent_size: tuple[int, int] = (4, 5),
        trajectory_length: int = 8,
        latent_shift: float = SHIFT,
        latent_scale: float = SCALE,
        memory_conditioning: bool = False,
        cond: tuple[float, ...] = COND,
        uncond: tuple[float, ...] = UNCOND,
    ) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device, dtype
        self.drops: list[list[bool]] = []

    def forward(self, x, timesteps, trajectory, context_mask, drop, memory=None):
        b, c, t, h, w = x.shape
        self.drops.append(drop.tolist())
        cond = torch.tensor(self.config.cond, dtype=x.dtype).view(1, c, 1, 1, 1)
        uncond = torch.tensor(self.config.uncond, dtype=x.dtype).view(1, c, 1, 1, 1)
        value = torch.where(drop.view(b, 1, 1, 1, 1), uncond, cond).expand(b, c, t, h, w)
        value = torch.where(context_mask.view(b, 1, t, 1, 1), CONTEXT_OUTPUT, value)
        return torch.cat([value, torch.zeros_like(value)], dim=1)  # + variance channels


def make_pipe(scheduler) -> OccSoraPipeline:
    pipe = OccSoraPipeline(None, ConstantDiT(), scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def one_step_ddim() -> DDIMScheduler:
    # One step from t=999 ("trailing"; one leading step at t=0 is refused) to alpha 1: the
    # output is the model's clean-sample prediction itself.
    return DDIMScheduler(
        prediction_type="sample",
        set_alpha_to_one=True,
        clip_sample=False,
        timestep_spacing="trailing",
    )


def trajectories(batch: int) -> np.ndarray:
    path = np.stack([np.arange(8) * 2.0, np.zeros(8)], 1).astype(np.float32)
    return np.repeat(path[None], batch, 0)


def channels(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1, 1)


def generate(pipe, guidance_scale: float, batch: int = 2, context=None) -> torch.Tensor:
    out = pipe(
        trajectories(batch),
        context=context,
        num_inference_steps=1,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        snap_to_codebook=False,
    )
    return out.latents


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        # x0_hat = UNCOND + 3 (COND - UNCOND) = (1.1, -1.25, 5.0); /2 + 1:
        (3.0, (1.55, 0.375, 3.5)),
        # s = 0: the null pass alone, (0.2, 0.25, -1.0) / 2 + 1:
        (0.0, (1.1, 1.125, 0.5)),
        # s = 2: 2 COND - UNCOND = (0.8, -0.75, 3.0); /2 + 1:
        (2.0, (1.4, 0.625, 2.5)),
    ],
)
def test_guidance_is_uncond_plus_scale_times_the_difference(scale, expected):
    pipe = make_pipe(one_step_ddim())
    latents = generate(pipe, scale)
    assert latents.shape == (2, 3, 2, 4, 5)
    torch.testing.assert_close(latents, channels(expected).expand_as(latents), atol=1e-6, rtol=0)
    # One batched call: the two conditional samples first, then their null twins.
    assert pipe.transformer.drops == [[False, False, True, True]]


def test_scale_one_is_the_conditional_pass_alone():
    pipe = make_pipe(one_step_ddim())
    latents = generate(pipe, 1.0)
    # COND / 2 + 1 = (1.25, 0.875, 1.5)
    torch.testing.assert_close(latents, channels((1.25, 0.875, 1.5)).expand_as(latents))
    assert pipe.transformer.drops == [[False, False]]  # no null pass at all


def test_context_frames_come_back_and_their_outputs_are_never_used():
    pipe = make_pipe(one_step_ddim())
    context = torch.randn(2, 3, 1, 4, 5, generator=torch.Generator().manual_seed(1))
    latents = generate(pipe, 3.0, context=context)
    assert torch.equal(latents[:, :, :1], context)
    generated = latents[:, :, 1:]
    torch.testing.assert_close(generated, channels((1.55, 0.375, 3.5)).expand_as(generated))


@pytest.mark.parametrize(
    "scheduler_class",
    [
        DDPMScheduler,
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
        EulerDiscreteScheduler,
    ],
)
def test_every_solver_ends_at_a_sure_models_clean_sample(scheduler_class):
    """A model that predicts the same clean sample at every step leaves every solver there
    after its last step (to sigma 0 / cumulative alpha 1): x = COND / 2 + 1, whatever the
    noise it started from."""
    config = make_training_scheduler(prediction_type="sample").config
    pipe = make_pipe(scheduler_class.from_config(config))
    out = pipe(
        trajectories(1),
        num_inference_steps=10,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        snap_to_codebook=False,
    )
    torch.testing.assert_close(
        out.latents, channels((1.25, 0.875, 1.5)).expand_as(out.latents), atol=1e-4, rtol=0
    )
