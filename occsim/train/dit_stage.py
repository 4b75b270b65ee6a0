"""Stage 2: train the DiT on latents of a frozen tokenizer; save the whole pipeline."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from occsim.diffusion import diffusion_losses, make_training_scheduler
from occsim.dit import OccDiT
from occsim.io import atomic_directory, remove_stale_temporaries
from occsim.metrics import OccupancyMetrics
from occsim.model_files import check_overrides, load_model
from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import OccTokenizer
from occsim.train.checkpoint import load_state, resolve_checkpoint
from occsim.train.config import DiTTrainConfig, check_config, config_to_dict
from occsim.train.data import (
    StepBatches,
    build_datasets,
    build_segments,
    image_clip,
    load_clips,
    step_loader,
)
from occsim.train.latent_cache import LatentCache, load_or_build_cache
from occsim.train.loop import (
    checkpoint,
    flat_config,
    images_due,
    is_due,
    log_image,
    make_accelerator,
    make_optimizer,
    optimizer_step,
    truth_and_prediction,
)

LATENT_STATISTICS_CLIPS = 8


@torch.no_grad()
def latent_statistics(tokenizer: OccTokenizer, dataset, clips: int) -> tuple[float, float]:
    """``(shift, scale)`` that bring the tokenizer latents of ``clips`` clips to zero mean
    and unit variance."""
    indices = torch.arange(min(clips, len(dataset)))
    latents = [
        tokenizer.encode(load_clips(dataset, indices[i : i + 1])["occupancy"]).latents
        for i in range(len(indices))
    ]
    stacked = torch.cat(latents)
    return float(stacked.mean()), float(1.0 / stacked.std().clamp(min=1e-6))


def _build_model(config: DiTTrainConfig, tokenizer: OccTokenizer, train_set) -> OccDiT:
    channels, frames, height, width = tokenizer.latent_shape(config.data.clip_len)
    shift, scale = latent_statistics(tokenizer, train_set, LATENT_STATISTICS_CLIPS)
    geometry = dict(
        latent_channels=channels,
        latent_frames=frames,
        latent_size=(height, width),
        trajectory_length=config.data.clip_len,
        latent_shift=shift,
        latent_scale=scale,
    )
    return OccDiT.from_preset(config.preset, **{**geometry, **config.model_overrides})


def train_dit(config: DiTTrainConfig, resume: str | None = None) -> Path:
    """Train, checkpoint, validate; returns the folder of the saved ``OccSoraPipeline``."""
    run_dir = Path(config.run.output_dir)
    check_config(config)  # every key in range before any work starts
    check_overrides(OccDiT, config.model_overrides, "model_overrides")
    remove_stale_temporaries(run_dir / "checkpoints")  # of a run killed mid-checkpoint
    accelerator = make_accelerator(config.run)
    torch.manual_seed(config.run.seed)
    noise_scheduler = make_training_scheduler(prediction_type=config.prediction_type)
    train_set, val_set = build_datasets(config.data)
    tokenizer_path = Path(config.tokenizer)
    if not (tokenizer_path / "config.json").is_file():
        raise FileNotFoundError(
            f"tokenizer {tokenizer_path} is not a save_pretrained folder (no config.json); "
            "train one with `occsim train tokenizer`"
        )
    # fp32 whatever the folder holds (a bundled model is stored in fp16).
    tokenizer = load_model(OccTokenizer, tokenizer_path, torch.float32)
    tokenizer = tokenizer.eval().requires_grad_(False)
    if resume:
        checkpoint_dir = resolve_checkpoint(run_dir, resume)
        state = load_state(checkpoint_dir)  # checked before anything is overwritten
        model = load_model(OccDiT, checkpoint_dir / "transformer").train()
    elif config.init_from:
        state = None
        model = _continue_model(config)
    else:
        state = None
        model = _build_model(config, tokenizer, train_set)
    if model.config.context_prior and config.prediction_type != "sample":
        raise ValueError(
            "a DiT with context_prior predicts the clean latent: set prediction_type=sample "
            f"(got {config.prediction_type!r})"
        )
    ema = EMAModel(model.parameters(), decay=config.ema_decay)
    optimizer, lr_schedule = make_optimizer(model, config.optim, state)
    start_step = 0
    if state is not None:
        ema.load_state_dict(state["ema"])
        start_step = int(state["step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    tokenizer.to(accelerator.device)
    accelerator.init_trackers("dit", config=flat_config(config_to_dict(config)))
    # `model` may now be a DistributedDataParallel wrapper: it is only called, trained and
    # clipped; its config and weights are read from `unwrapped`.
    unwrapped = accelerator.unwrap_model(model)
    frames = unwrapped.config.latent_frames
    with_memory = bool(unwrapped.config.memory_conditioning)
    if with_memory and not config.latent_cache:
        raise ValueError(
            "a DiT with memory_conditioning trains on the scene memory's views, which the "
            "latent cache holds: set latent_cache (e.g. runs/dit/latents.safetensors)"
        )
    # Without a motion prior, the padding of none is moot.
    with_ground = unwrapped.config.context_prior and unwrapped.config.prior_padding == "ground"
    if with_ground and not config.latent_cache:
        raise ValueError(
            "a DiT with prior_padding=ground trains on the scene memory's views with the "
            "ground carried on, which the latent cache holds: set latent_cache "
            "(e.g. runs/dit/latents.safetensors)"
        )
    cache = (
        _latent_cache(config, tokenizer, accelerator, with_memory, with_ground)
        if config.latent_cache
        else None
    )
    num_items = len(train_set) if cache is None else len(cache) * cache.windows_per_segment(frames)
    image_batch = None  # only the main process writes images
    if accelerator.is_main_process and config.run.image_every > 0:
        image_batch = image_clip(val_set, train_set)

    steps = range(start_step, config.optim.max_steps)
    world, rank = accelerator.num_processes, accelerator.process_index
    # With the cache, clips are already in memory: the loader hands out indices only.
    batches = StepBatches(
        train_set if cache is None else None,
        num_items,
        steps,
        config.optim,
        config.run.seed,
        world,
        rank,
    )
    progress = tqdm(
        steps,
        initial=start_step,
        total=config.optim.max_steps,
        disable=not accelerator.is_main_process,
        desc="dit",
    )
    for step, parts in zip(progress, step_loader(batches, config.data.num_workers)):
        torch.manual_seed(config.run.seed * 7919 + step)
        generator = torch.Generator(device=accelerator.device).manual_seed(
            config.run.seed * 104_729 + step * world + rank
        )
        for part in parts:
            if cache is None:
                batch = part
                with torch.no_grad():
                    latents = tokenizer.encode(batch["occupancy"].to(accelerator.device)).latents
            else:
                batch = cache.window(tokenizer, part["indices"], frames)
                latents = batch["latents"]
            latents = (latents - unwrapped.config.latent_shift) * unwrapped.config.latent_scale
            b = latents.shape[0]
            # 0..max_context clean context frames per sample, never the whole window.
            limit = min(config.max_context_frames, frames - 1)
            context = torch.randint(0, limit + 1, (b,), generator=generator, device=latents.device)
            context_mask = torch.arange(frames, device=latents.device)[None] < context[:, None]
            drop = torch.rand(b, generator=generator, device=latents.device)
            drop = drop < config.trajectory_dropout
            trajectory = batch["trajectory"][..., :2].to(accelerator.device)
            memory = None
            if with_memory:
                memory = _training_memory(
                    unwrapped, batch, context_mask, config.memory_dropout, generator
                )
            with accelerator.accumulate(model), accelerator.autocast():
                losses = diffusion_losses(
                    model,
                    noise_scheduler,
                    latents,
                    trajectory,
                    context_mask,
                    drop,
                    use_vlb=step >= config.vlb_from_step,
                    generator=generator,
                    memory=memory,
                    new_space=_training_new_space(unwrapped, batch) if with_ground else None,
                )
                accelerator.backward(losses["total"] / config.optim.gradient_accumulation)
        optimizer_step(accelerator, model, optimizer, lr_schedule, config.optim.grad_clip)
        ema.step(unwrapped.parameters())
        done = step + 1
        progress.set_postfix(loss=f"{losses['total'].item():.3f}")
        if done % config.run.log_every == 0:
            scalars = {f"loss/{k}": v.item() for k, v in losses.items()}
            scalars["lr"] = lr_schedule.get_last_lr()[0]
            accelerator.log(scalars, step=done)
        validate = is_due(done, config.run.validate_every, config.optim.max_steps)
        image = images_due(done, config.run, config.optim.max_steps)
        if accelerator.is_main_process and (validate or image):
            pipe = _ema_pipeline(tokenizer, unwrapped, ema, noise_scheduler)
            if validate:
                scores = evaluate_forecast(pipe, val_set)
                accelerator.log({f"val/{k}": v for k, v in scores.items()}, step=done)
            if image:
                generated, truth = forecast(pipe, image_batch, seed=0)
                picture = truth_and_prediction(truth[0, -1], generated[0, -1])
                log_image(accelerator, "images/truth_vs_forecast", picture, done)
        if is_due(done, config.run.checkpoint_every, config.optim.max_steps):
            checkpoint(
                accelerator,
                config.run,
                done,
                {"transformer": unwrapped},
                optimizer,
                lr_schedule,
                {"ema": ema.state_dict()},
            )
    accelerator.wait_for_everyone()
    final = run_dir / "pipeline"
    if accelerator.is_main_process:
        # Written beside the target and renamed: a crash never leaves half a pipeline.
        with atomic_directory(final) as tmp:
            _ema_pipeline(tokenizer, unwrapped, ema, noise_scheduler).save_pretrained(tmp)
    accelerator.end_training()
    return final


def _continue_model(config: DiTTrainConfig) -> OccDiT:
    """The DiT of ``config.init_from`` (a pipeline or transformer folder), given the memory
    inputs if ``model_overrides`` asks for them and the ``prior_padding`` it names (the
    weights do not depend on it); any other override is refused, since the weights fix
    the model's shape."""
    source = Path(config.init_from)
    folder = source / "transformer" if (source / "transformer").is_dir() else source
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"init_from {source} is neither a pipeline folder (with transformer/) nor a "
            "transformer folder (no config.json)"
        )
    model = load_model(OccDiT, folder, torch.float32)
    overrides = dict(config.model_overrides)
    wants_memory = bool(overrides.pop("memory_conditioning", model.config.memory_conditioning))
    if "prior_padding" in overrides:
        model = model.with_prior_padding(overrides.pop("prior_padding"))
    changed = {k: v for k, v in overrides.items() if model.config.get(k) != _plain(v)}
    if changed:
        raise ValueError(
            f"model_overrides {sorted(changed)} differ from the DiT in init_from {source}; "
            "with init_from only memory_conditioning may be added and prior_padding changed"
        )
    if wants_memory and not model.config.memory_conditioning:
        model = model.with_memory_conditioning()
    elif not wants_memory and model.config.memory_conditioning:
        raise ValueError(f"the DiT in init_from {source} takes the memory; it cannot drop it")
    return model.train()


def _plain(value):
    """Lists as the tuples a loaded config holds, for comparison."""
    return tuple(value) if isinstance(value, list) else value


def _training_memory(
    model: OccDiT,
    batch: dict[str, torch.Tensor],
    context_mask: torch.Tensor,
    dropout: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The DiT's memory input of a training batch, as the pipeline builds it at inference:
    normalised view latents and known fractions of the generated frames, zeros for context
    frames, frames without a view and samples whose memory is withheld (``dropout``)."""
    memory = batch["memory"].to(context_mask.device)
    withheld = torch.rand(len(memory), generator=generator, device=memory.device) < dropout
    shown = batch["memory_present"].to(memory.device) & ~context_mask & ~withheld[:, None]
    return model.memory_input(memory, shown)


def _training_new_space(model: OccDiT, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The DiT's ``new_space`` of a training batch, as the pipeline builds it at inference:
    the carried views' latents, normalised; the data mean (zeros) where a frame has none."""
    latents = batch["new_space"]
    present = batch["new_space_present"].to(latents.device)[:, None, :, None, None]
    normalised = (latents - model.config.latent_shift) * model.config.latent_scale
    return normalised * present.to(normalised)


def _latent_cache(
    config: DiTTrainConfig,
    tokenizer: OccTokenizer,
    accelerator,
    memory: bool = False,
    ground: bool = False,
) -> LatentCache:
    """The main process builds (or checks) the cache; the others then read it."""
    if config.segment_len % tokenizer.temporal_factor:
        raise ValueError(
            f"segment_len={config.segment_len} must be a multiple of the tokenizer's temporal "
            f"factor {tokenizer.temporal_factor}"
        )
    segments = build_segments(config.data, config.segment_len)
    data_digest = hashlib.sha256(
        json.dumps([config_to_dict(config.data), config.segment_len], sort_keys=True).encode()
    ).hexdigest()[:16]
    if accelerator.is_main_process:
        load_or_build_cache(config.latent_cache, tokenizer, segments, data_digest, memory, ground)
    accelerator.wait_for_everyone()
    return load_or_build_cache(
        config.latent_cache, tokenizer, segments, data_digest, memory, ground
    )


def _ema_pipeline(
    tokenizer: OccTokenizer, model: OccDiT, ema: EMAModel, scheduler: DDPMScheduler
) -> OccSoraPipeline:
    """A pipeline whose transformer holds the EMA weights (the training model is untouched)
    and a fresh copy of the training scheduler."""
    averaged = copy.deepcopy(model).eval()
    ema.copy_to(averaged.parameters())
    pipe = OccSoraPipeline(tokenizer, averaged, type(scheduler).from_config(scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def forecast(
    pipe: OccSoraPipeline, batch: dict[str, torch.Tensor], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(generated, truth)`` uint8 ``(B, T', X, Y, Z)`` of the frames the pipeline
    generates for clips ``batch`` given their first latent frame as context (none for a
    one-frame window) and their true trajectories (10 DDPM steps, guidance 2)."""
    tokenizer, config = pipe.tokenizer, pipe.transformer.config
    occupancy = batch["occupancy"].to(tokenizer.device)
    latents = tokenizer.encode(occupancy).latents
    context = latents[:, :, :1] if config.latent_frames > 1 else None
    out = pipe(
        batch["trajectory"][..., :2].numpy(),
        context=context,
        num_inference_steps=10,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(seed),
    )
    generated_frames = out.occupancy.shape[1]
    truth = occupancy[:, -generated_frames:].cpu().numpy().astype(np.uint8)
    return out.occupancy, truth


def evaluate_forecast(pipe: OccSoraPipeline, dataset, clips: int = 4) -> dict[str, float]:
    """mIoU / IoU of the :func:`forecast` of each of the first ``clips`` clips (seed: the
    clip's index)."""
    metrics = OccupancyMetrics()
    for i in range(min(clips, len(dataset))):
        metrics.update(*forecast(pipe, load_clips(dataset, torch.tensor([i])), seed=i))
    scores = metrics.compute()
    return {"forecast_iou": scores.iou, "forecast_miou": scores.miou}
