"""The DiT training objective on top of a diffusers scheduler.

The scheduler does all the forward-process maths (``add_noise``, ``get_velocity``, its
``alphas_cumprod`` and ``betas``); this module only adds the loss terms of improved DDPM /
DiT: the MSE of the scheduler's ``prediction_type`` target (noise as in the paper, the clean
sample, or velocity), and with a learned variance the variational-bound term, whose mean part
is frozen so that it trains the variance alone. OccSora trains ``L_simple`` first, then the
full loss.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler

from occsim.sampler_defaults import DEFAULT_TIMESTEP_SPACING

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def make_training_scheduler(
    num_train_timesteps: int = 1000, prediction_type: str = "epsilon"
) -> DDPMScheduler:
    """The DDPM scheduler the DiT is trained with (linear betas, learned-range variance).

    ``prediction_type`` is what the DiT outputs: ``epsilon`` (the paper), ``sample`` (the
    clean latent) or ``v_prediction``. It travels in the scheduler config, so every solver
    built with ``from_config`` reads the DiT's output the same way, as does the
    ``"trailing"`` timestep spacing: few solver steps start at the last training timestep
    (see :mod:`occsim.sampler_defaults`). Training itself never reads the spacing.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
        )
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="linear",
        variance_type="learned_range",
        clip_sample=False,
        prediction_type=prediction_type,
        timestep_spacing=DEFAULT_TIMESTEP_SPACING,
    )


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL divergence between two diagonal Gaussians, elementwise, in nats."""
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def _gather(values: torch.Tensor, timesteps: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.to(timesteps.device)[timesteps].float().view(-1, *([1] * (ndim - 1)))


def predicted_sample(
    scheduler: DDPMScheduler, prediction: torch.Tensor, xt: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """The clean sample implied by a model ``prediction`` of the scheduler's type."""
    abar = _gather(scheduler.alphas_cumprod.to(xt.device).float(), timesteps, xt.ndim)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (xt - (1.0 - abar).sqrt() * prediction) / abar.sqrt()
    if kind == "v_prediction":
        return abar.sqrt() * xt - (1.0 - abar).sqrt() * prediction
    return prediction


def variational_bound(
    scheduler: DDPMScheduler,
    x0: torch.Tensor,
    xt: torch.Tensor,
    timesteps: torch.Tensor,
    x0_pred: torch.Tensor,
    variance_values: torch.Tensor,
) -> torch.Tensor:
    """Per-element VLB term (bits) of ``p(x_{t-1} | x_t)`` with a learned-range variance.

    ``x0_pred`` (the model's clean sample) should be detached: the term then trains only
    the variance (improved DDPM). At ``t = 0`` it is the Gaussian negative log-likelihood
    of ``x0``.
    """
    ndim = x0.ndim
    alphas_cumprod = scheduler.alphas_cumprod.to(x0.device).float()
    betas = scheduler.betas.to(x0.device).float()
    previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    abar_t = _gather(alphas_cumprod, timesteps, ndim)
    abar_prev = _gather(previous, timesteps, ndim)
    beta_t = _gather(betas, timesteps, ndim)
    posterior_variance = betas * (1.0 - previous) / (1.0 - alphas_cumprod)
    # The posterior variance is 0 at t = 0; DDPM clips its log to the value at t = 1.
    clipped = torch.cat([posterior_variance[1:2], posterior_variance[1:]])
    min_log = torch.log(_gather(clipped, timesteps, ndim))
    max_log = torch.log(beta_t)
    coef_x0 = beta_t * abar_prev.sqrt() / (1.0 - abar_t)
    coef_xt = (1.0 - abar_prev) * (1.0 - beta_t).sqrt() / (1.0 - abar_t)
    true_mean = coef_x0 * x0 + coef_xt * xt
    model_mean = coef_x0 * x0_pred + coef_xt * xt
    fraction = (variance_values + 1.0) / 2.0
    model_log = fraction * max_log + (1.0 - fraction) * min_log
    kl = normal_kl(true_mean, min_log, model_mean, model_log) / math.log(2.0)
    nll = 0.5 * (math.log(2 * math.pi) + model_log + (x0 - model_mean) ** 2 * torch.exp(-model_log))
    return torch.where((timesteps == 0).view(-1, *([1] * (ndim - 1))), nll / math.log(2.0), kl)


def diffusion_losses(
    model: torch.nn.Module,
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    trajectory: torch.Tensor,
    context_mask: torch.Tensor | None = None,
    drop_trajectory: torch.Tensor | None = None,
    use_vlb: bool = True,
    generator: torch.Generator | None = None,
    memory: torch.Tensor | None = None,
    new_space: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms of one training step of ``model`` (an :class:`~occsim.dit.OccDiT`) on
    normalised latents ``(B, C, t, h, w)``.

    The MSE target is the scheduler's ``prediction_type``. Context frames stay clean and
    carry no loss. ``memory`` (the scene memory's view, see :class:`~occsim.dit.OccDiT`)
    and ``new_space`` (what the motion prior holds beyond the context's view) are passed on
    to a DiT that takes them. Returns ``mse``, ``vlb`` (zero when
    ``use_vlb`` is false or the model has no learned variance) and their sum ``total``.

    ``model`` may be wrapped (``DistributedDataParallel``, ``torch.compile``): only its
    output is read, and whether it learns the variance is told by its channels (``C``
    for the prediction alone, ``2C`` with the variance values), never by ``model.config``.
    """
    b, c, t = latents.shape[:3]
    device = latents.device
    if context_mask is None:
        context_mask = torch.zeros(b, t, dtype=torch.bool, device=device)
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (b,), device=device, generator=generator
    )
    noise = torch.randn(latents.shape, device=device, generator=generator, dtype=latents.dtype)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    frame_context = context_mask[:, None, :, None, None]
    noisy = torch.where(frame_context, latents, noisy)
    # Only a DiT with memory_conditioning (a ground prior) takes the memory (new_space).
    extra = {} if memory is None else {"memory": memory}
    if new_space is not None:
        extra["new_space"] = new_space
    output = model(noisy, timesteps, trajectory, context_mask, drop_trajectory, **extra)
    if output.shape[1] not in (c, 2 * c):
        raise ValueError(
            f"the model output has {output.shape[1]} channels; expected {c} (prediction) or "
            f"{2 * c} (prediction and variance values) for latents of {c} channels"
        )
    learn_sigma = output.shape[1] == 2 * c
    prediction = output[:, :c]
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "sample":
        target = latents
    else:
        target = scheduler.get_velocity(latents, noise, timesteps)
    weight = (~frame_context).float().expand_as(latents)
    denominator = weight.sum().clamp(min=1.0)
    mse = ((prediction - target) ** 2 * weight).sum() / denominator
    vlb = mse.new_zeros(())
    if use_vlb and learn_sigma:
        x0_pred = predicted_sample(scheduler, prediction.detach(), noisy, timesteps)
        vlb_elements = variational_bound(
            scheduler, latents, noisy, timesteps, x0_pred, output[:, c:]
        )
        vlb = (vlb_elements * weight).sum() / denominator
    return {"mse": mse, "vlb": vlb, "total": mse + vlb}
