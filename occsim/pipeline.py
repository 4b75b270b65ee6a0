"""OccSoraPipeline: trajectory-conditioned generation of 4D occupancy (inference only).

One visible denoising loop over any diffusers scheduler; clean context latents are kept
fixed and concatenated in front of the frames being generated; classifier-free guidance
runs the conditional and null-trajectory passes as one batch.

The DiT predicts a variance as well (``learned_range``, carried by the training DDPM
scheduler's config). DDPM samples with it; any other solver gets the prediction alone, and
its config, when inherited through ``from_config``, has the variance switched off as the
scheduler is set on the pipeline (built, loaded, or assigned), never during a call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from occsim.dit import OccDiT
from occsim.model_files import load_pipeline_parts
from occsim.tokenizer import OccTokenizer, StreamCache
from occsim.validation import check_float, check_int, check_trajectory

LEARNED_VARIANCE = ("learned", "learned_range")


def solver_for_learned_variance(scheduler: SchedulerMixin) -> SchedulerMixin:
    """``scheduler``, with a learned variance type in its config switched off unless it is DDPM.

    Only DDPM's step samples with a predicted variance; the other solvers take the
    prediction alone (DPM-Solver's learned-variance branch even assumes 3-channel images).
    The config is edited in place, as diffusers pipelines fix outdated scheduler configs.
    """
    if isinstance(scheduler, DDPMScheduler):
        return scheduler
    if scheduler.config.get("variance_type") in LEARNED_VARIANCE:
        scheduler.register_to_config(variance_type=None)
    return scheduler


def samples_learned_variance(scheduler: SchedulerMixin) -> bool:
    """Whether ``scheduler``'s step takes the DiT's predicted variance with the prediction."""
    return (
        isinstance(scheduler, DDPMScheduler)
        and scheduler.config.get("variance_type") in LEARNED_VARIANCE
    )


@dataclass
class OccSoraPipelineOutput:
    """``occupancy (B, T, X, Y, Z)`` uint8 of the generated frames (``None`` for
    ``output_type="latent"``) and the tokenizer ``latents (B, C, t, h, w)`` of the whole
    window: the context frames, unchanged, followed by the generated ones."""

    occupancy: np.ndarray | None
    latents: torch.Tensor


def first_step_error(scheduler: SchedulerMixin, num_inference_steps: int) -> str | None:
    """Why ``num_inference_steps`` solver steps of the diffusers ``scheduler`` cannot start
    from pure noise, or ``None`` when they can: their first step is at its first timestep
    (t=0, or ``steps_offset``; one ``"leading"`` step is), where a DiT reads pure noise as a
    clean latent. (Sets the scheduler's timesteps, as every pipeline call does first.)"""
    scheduler.set_timesteps(num_inference_steps)
    if int(scheduler.timesteps[0]) > int(scheduler.config.get("steps_offset", 0)):
        return None
    spacing = scheduler.config.get("timestep_spacing")
    return (
        f"{num_inference_steps} solver step(s) with timestep_spacing {spacing!r} start at "
        "t=0, where the DiT reads pure noise as a clean latent; use "
        "timestep_spacing='trailing' (load_world_model's default) or more steps"
    )


class OccSoraPipeline(DiffusionPipeline):
    """Tokenizer + DiT + scheduler, saved and loaded as one folder.

    Args:
        tokenizer: the 4D scene tokenizer (decodes latents to occupancy).
        transformer: the trajectory-conditioned DiT.
        scheduler: any diffusers scheduler; swap one in with
            ``pipe.scheduler = Scheduler.from_config(pipe.scheduler.config)``. DDPM with a
            learned variance samples with the DiT's predicted variance; any other solver's
            inherited learned variance type is switched off when it is set (see
            :func:`solver_for_learned_variance`).
    """

    model_cpu_offload_seq = "transformer->tokenizer"

    def __init__(
        self, tokenizer: OccTokenizer, transformer: OccDiT, scheduler: SchedulerMixin
    ) -> None:
        super().__init__()
        self.register_modules(tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)

    def __setattr__(self, name: str, value: object) -> None:
        # register_modules (hence __init__ and from_pretrained) and a plain
        # `pipe.scheduler = ...` all set the scheduler here: fix its variance setting once.
        if name == "scheduler" and value is not None:
            value = solver_for_learned_variance(value)
        super().__setattr__(name, value)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | Path, **kwargs: Any
    ) -> OccSoraPipeline:
        """Load a saved pipeline folder; every file is checked first (``model_index.json``
        names occsim's parts, configs in range, weights exactly the model's and finite, the
        parts fit each other), each error naming its file. Keyword arguments: ``dtype``
        (or ``torch_dtype``) and built ``tokenizer`` / ``transformer`` / ``scheduler``
        parts to use instead of the folder's."""
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        parts = load_pipeline_parts(pretrained_model_name_or_path, dtype, **kwargs)
        pipe = cls(*parts)
        pipe.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
        return pipe

    # ------------------------------------------------------------------ latents
    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Tokenizer latents -> the DiT's diffusion space (scale and shift measured on data)."""
        config = self.transformer.config
        return (latents - config.latent_shift) * config.latent_scale

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`."""
        config = self.transformer.config
        return latents / config.latent_scale + config.latent_shift

    def _check_inputs(self, trajectory, context, latents, strength):
        config = self.transformer.config
        array = check_trajectory(np.asarray(trajectory, dtype=np.float32), "trajectory")
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[1] != config.trajectory_length:
            raise ValueError(
                f"trajectory must have shape (B, {config.trajectory_length}, 2|3) for a window of "
                f"{config.trajectory_length} frames, got {array.shape}"
            )
        batch = array.shape[0]
        window = (config.latent_channels, config.latent_frames, *config.latent_size)
        num_context = 0
        if context is not None:
            if (
                context.ndim != 5
                or context.shape[0] != batch
                or context.shape[1] != window[0]
                or tuple(context.shape[3:]) != tuple(window[2:])
                or not 0 < context.shape[2] < window[1]
            ):
                raise ValueError(
                    f"context must have shape ({batch}, {window[0]}, k, {window[2]}, {window[3]}) "
                    f"with 0 < k < {window[1]}, got {tuple(context.shape)}"
                )
            if not torch.isfinite(context).all():
                raise ValueError("context latents must be finite")
            num_context = context.shape[2]
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must lie in (0, 1], got {strength}")

        if strength < 1.0 and latents is None:
            raise ValueError("strength < 1 needs the latents to start from (`latents=`)")
        return torch.from_numpy(array), batch, num_context

    def _generated_frames_input(
        self,
        value: torch.Tensor,
        name: str,
        channels: int,
        batch: int,
        num_context: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """``value`` of the generated frames, checked (shape, finite) and moved."""
        config = self.transformer.config
        expected = (batch, channels, config.latent_frames - num_context, *config.latent_size)
        if tuple(value.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(value.shape)}")
        value = value.to(device, dtype)
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} must be finite")
        return value

    def _memory_input(
        self,
        memory: torch.Tensor | None,
        batch: int,
        num_context: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor | None:
        """The DiT's memory input of the whole window: normalised view latents and the
        known fraction for the generated frames, zeros (nothing known) for the context."""
        config = self.transformer.config
        if memory is None:
            return None
        if not config.memory_conditioning:
            raise ValueError("memory was given but this DiT has no memory_conditioning")
        memory = self._generated_frames_input(
            memory, "memory", config.latent_channels + 1, batch, num_context, device, dtype
        )
        window = F.pad(memory, (0, 0, 0, 0, num_context, 0))  # the context frames first
        shown = torch.arange(config.latent_frames, device=device) >= num_context
        return self.transformer.memory_input(window, shown.expand(batch, -1))

    def _new_space_input(
        self,
        new_space: torch.Tensor | None,
        batch: int,
        num_context: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor | None:
        """The DiT's ``new_space`` of the whole window: the normalised latents for the
        generated frames, zeros for the context (whose prior is itself)."""
        config = self.transformer.config
        if new_space is None:
            return None
        if config.prior_padding != "ground" or not config.get("context_prior", False):
            raise ValueError(
                "new_space was given but this DiT has no ground prior (context_prior "
                f"{config.get('context_prior', False)}, prior_padding {config.prior_padding!r})"
            )
        new_space = self._generated_frames_input(
            new_space, "new_space", config.latent_channels, batch, num_context, device, dtype
        )
        return F.pad(self.normalize(new_space), (0, 0, 0, 0, num_context, 0))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        trajectory: np.ndarray | torch.Tensor,
        context: torch.Tensor | None = None,
        num_inference_steps: int = 10,
        guidance_scale: float = 2.0,
        strength: float = 1.0,
        latents: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "occupancy",
        decode_cache: StreamCache | None = None,
        snap_to_codebook: bool = True,
        memory: torch.Tensor | None = None,
        new_space: torch.Tensor | None = None,
    ) -> OccSoraPipelineOutput:
        """Generate the frames of one window that follow ``context``.

        Args:
            trajectory: ``(B, trajectory_length, 2|3)`` ego waypoints of the whole window
                (context frames included) in the first frame's ego frame, metres.
            context: ``(B, C, k, h, w)`` tokenizer latents of the first k latent frames,
                kept clean; ``None`` generates the whole window from noise (paper mode).
            num_inference_steps: solver steps.
            guidance_scale: classifier-free guidance against the null trajectory; 1 is off.
            strength: denoising ratio (paper Table 4); below 1 the loop starts from
                ``latents`` noised to that level instead of pure noise.
            latents: ``(B, C, t - k, h, w)`` tokenizer latents to start from (``strength``).
            generator: random source of the initial noise and stochastic solvers; a list
                gives each trajectory its own (as the vector env does).
            output_type: ``"occupancy"`` (decoded, uint8) or ``"latent"``.
            decode_cache: a :class:`StreamCache` to decode a stream window after window.
            snap_to_codebook: replace each generated latent vector by its nearest code, the
                only latents the tokenizer's decoder has seen in training.
            memory: ``(B, C + 1, t - k, h, w)``, the scene memory's view of the generated
                frames (:func:`~occsim.memory_condition.memory_condition`), for a DiT with
                ``memory_conditioning``; ``None``: nothing known.
            new_space: ``(B, C, t - k, h, w)`` tokenizer latents the motion prior holds
                where a generated frame sees beyond the context
                (:func:`~occsim.ground_prior.ground_prior`), for a DiT with
                ``prior_padding="ground"``; ``None``: the data mean.
        """
        if output_type not in ("occupancy", "latent"):
            raise ValueError(f"output_type must be 'occupancy' or 'latent', got {output_type!r}")
        check_int(num_inference_steps, "num_inference_steps", 1)
        check_float(guidance_scale, "guidance_scale", 0.0)
        trajectory, batch, num_context = self._check_inputs(trajectory, context, latents, strength)
        config = self.transformer.config
        device, dtype = self.transformer.device, self.transformer.dtype
        trajectory = trajectory.to(device=device, dtype=dtype)
        shape = (
            batch,
            config.latent_channels,
            config.latent_frames - num_context,
            *config.latent_size,
        )

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} trajectories")
        # One generator per sample makes a sample independent of the rest of the batch.
        noise = randn_tensor(shape, generator=generator, dtype=dtype).to(device)
        if strength < 1.0:
            start = len(timesteps) - max(round(num_inference_steps * strength), 1)
            timesteps = timesteps[start:]
            x = self.scheduler.add_noise(
                self.normalize(latents.to(device, dtype)), noise, timesteps[:1].repeat(batch)
            )
        else:
            x = noise * self.scheduler.init_noise_sigma

        clean = None if context is None else self.normalize(context.to(device, dtype))
        memory = self._memory_input(memory, batch, num_context, device, dtype)
        new_space = self._new_space_input(new_space, batch, num_context, device, dtype)
        first_is_clean = int(timesteps[0]) <= int(self.scheduler.config.get("steps_offset", 0))
        if strength >= 1.0 and first_is_clean:  # pure noise read as a clean latent
            raise ValueError(first_step_error(self.scheduler, num_inference_steps))
        context_mask = torch.zeros(batch, config.latent_frames, dtype=torch.bool, device=device)
        context_mask[:, :num_context] = True
        guided = guidance_scale != 1.0
        passes = 2 if guided else 1
        drop = torch.zeros(batch * passes, dtype=torch.bool, device=device)
        drop[batch:] = guided
        pass_mask = context_mask.repeat(passes, 1)
        pass_trajectory = trajectory.repeat(passes, 1, 1)
        if memory is not None:  # the memory is a fact of the world: both passes see it
            memory = memory.repeat(passes, 1, 1, 1, 1)
        if new_space is not None:  # what the memory knows of the ground: both passes see it
            new_space = new_space.repeat(passes, 1, 1, 1, 1)
        # The motion prior reads only the clean context: one for the window, not one a step.
        prior = None
        # Read only: the scheduler's variance setting was fixed when it was set.
        learned_variance = samples_learned_variance(self.scheduler)
        channels = config.latent_channels
        # Stochastic solvers take the generator; not every scheduler's step accepts one.
        accepted = inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if "generator" in accepted else {}

        for t in self.progress_bar(timesteps):
            model_input = self.scheduler.scale_model_input(x, t)
            if clean is not None:
                model_input = torch.cat([clean, model_input], dim=2)
            model_input = model_input.repeat(passes, 1, 1, 1, 1)
            step = torch.full((batch * passes,), int(t), device=device)
            if config.get("context_prior", False) and prior is None:
                prior = self.transformer.window_prior(
                    model_input, pass_trajectory, pass_mask, new_space
                )
            extra = {} if prior is None else {"prior": prior}
            output = self.transformer(
                model_input, step, pass_trajectory, pass_mask, drop, memory=memory, **extra
            )
            output = output[:, :, num_context:]
            if guided:
                conditional, unconditional = output.chunk(2)
                prediction = unconditional[:, :channels] + guidance_scale * (
                    conditional[:, :channels] - unconditional[:, :channels]
                )
                output = torch.cat([prediction, conditional[:, channels:]], dim=1)
            if not learned_variance:
                output = output[:, :channels]
            x = self.scheduler.step(output, t, x, **step_kwargs).prev_sample

        generated = self.denormalize(x)
        if snap_to_codebook:
            generated = self.tokenizer.quantizer.snap(generated)
        occupancy = None
        if output_type == "occupancy":
            occupancy = self.tokenizer.decode_classes(generated, decode_cache).cpu().numpy()
        window = generated if context is None else torch.cat([context.to(generated), generated], 2)
        self.maybe_free_model_hooks()
        return OccSoraPipelineOutput(occupancy=occupancy, latents=window)
