"""Stage 1: train the 4D tokenizer. One readable loop, accelerate for devices and DDP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from occsim.evaluate.recon import evaluate_reconstruction
from occsim.io import atomic_directory, remove_stale_temporaries
from occsim.labels import NUM_CLASSES
from occsim.model_files import check_overrides, load_model
from occsim.tokenizer import OccTokenizer, inverse_sqrt_frequency_weights, tokenizer_losses
from occsim.train.checkpoint import load_state, resolve_checkpoint
from occsim.train.config import TokenizerTrainConfig, check_config, config_to_dict
from occsim.train.data import StepBatches, build_datasets, image_clip, step_loader
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


def evaluate_tokenizer(model: OccTokenizer, dataset) -> dict[str, float]:
    """Reconstruction IoU / mIoU (Occ3D convention) over a whole dataset, flattened for
    logging; the model is left in training mode."""
    scores = evaluate_reconstruction(model, dataset, progress=False)
    model.train()
    return {
        "iou": scores.iou,
        "miou": scores.miou,
        **{f"iou/{name}": value for name, value in scores.per_class.items()},
    }


def train_tokenizer(config: TokenizerTrainConfig, resume: str | None = None) -> Path:
    """Train, checkpoint, validate; returns the folder of the final tokenizer."""
    run_dir = Path(config.run.output_dir)
    check_config(config)  # every key in range before any work starts
    check_overrides(OccTokenizer, config.model_overrides, "model_overrides")
    remove_stale_temporaries(run_dir / "checkpoints")  # of a run killed mid-checkpoint
    _check_fine_tuning(config)
    accelerator = make_accelerator(config.run)
    torch.manual_seed(config.run.seed)
    train_set, val_set = build_datasets(config.data)
    class_weights = make_class_weights(config, train_set)
    state = None
    if resume:
        checkpoint_dir = resolve_checkpoint(run_dir, resume)
        state = load_state(checkpoint_dir)  # checked before anything is overwritten
        model = load_model(OccTokenizer, checkpoint_dir / "tokenizer").train()  # loads in eval
    elif config.init_from:
        model = load_model(OccTokenizer, config.init_from).train()
    else:
        model = OccTokenizer.from_preset(config.preset, **config.model_overrides)
    if config.freeze_encoder:
        model.freeze_encoder()
    if class_weights is not None:
        class_weights = class_weights.to(accelerator.device)
    optimizer, lr_schedule = make_optimizer(model, config.optim, state)
    start_step = 0 if state is None else int(state["step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.init_trackers("tokenizer", config=flat_config(config_to_dict(config)))
    image_occupancy = None  # only the main process writes images
    if accelerator.is_main_process and config.run.image_every > 0:
        image_occupancy = image_clip(val_set, train_set)["occupancy"]

    steps = range(start_step, config.optim.max_steps)
    world, rank = accelerator.num_processes, accelerator.process_index
    batches = StepBatches(
        train_set, len(train_set), steps, config.optim, config.run.seed, world, rank
    )
    progress = tqdm(
        steps,
        initial=start_step,
        total=config.optim.max_steps,
        disable=not accelerator.is_main_process,
        desc="tokenizer",
    )
    losses = {}
    for step, parts in zip(progress, step_loader(batches, config.data.num_workers)):
        # Everything random in a step derives from (seed, step): resuming is exact.
        torch.manual_seed(config.run.seed * 7919 + step)
        for part in parts:
            occupancy = part["occupancy"].to(accelerator.device)
            with accelerator.accumulate(model), accelerator.autocast():
                output = model(occupancy, patch_fraction=config.patch_fraction)
                losses = tokenizer_losses(output, class_weights, config.lovasz_weight)
                accelerator.backward(losses["total"] / config.optim.gradient_accumulation)
        optimizer_step(accelerator, model, optimizer, lr_schedule, config.optim.grad_clip)
        done = step + 1
        progress.set_postfix(loss=f"{losses['total'].item():.3f}")
        if done % config.run.log_every == 0:
            scalars = {f"loss/{k}": v.item() for k, v in losses.items()}
            scalars["lr"] = lr_schedule.get_last_lr()[0]
            scalars["codebook/perplexity"] = output.quantizer.perplexity.item()
            scalars["codebook/usage"] = output.quantizer.usage.item()
            accelerator.log(scalars, step=done)
        if is_due(done, config.run.validate_every, config.optim.max_steps):
            _validate(accelerator, model, val_set, done)
        if accelerator.is_main_process and images_due(done, config.run, config.optim.max_steps):
            image = reconstruction_image(accelerator.unwrap_model(model), image_occupancy)
            log_image(accelerator, "images/truth_vs_reconstruction", image, done)
        if is_due(done, config.run.checkpoint_every, config.optim.max_steps):
            models = {"tokenizer": accelerator.unwrap_model(model)}
            checkpoint(accelerator, config.run, done, models, optimizer, lr_schedule)
    accelerator.wait_for_everyone()
    final = run_dir / "final"
    if accelerator.is_main_process:
        # Written beside the target and renamed: a crash never leaves half a model.
        with atomic_directory(final) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
    accelerator.end_training()
    return final


def _check_fine_tuning(config: TokenizerTrainConfig) -> None:
    if config.class_weighting not in ("none", "inverse_sqrt_frequency"):
        raise ValueError(
            f"unknown class_weighting {config.class_weighting!r}; expected 'none' or "
            "'inverse_sqrt_frequency'"
        )
    if config.freeze_encoder and not config.init_from:
        raise ValueError(
            "freeze_encoder=true fine-tunes the decoder of a trained tokenizer: set init_from "
            "to its folder"
        )
    if config.init_from and not (Path(config.init_from) / "config.json").is_file():
        raise FileNotFoundError(
            f"init_from {config.init_from!r} is not a tokenizer folder (no config.json); "
            "expected a save_pretrained folder such as runs/tokenizer/final"
        )


def make_class_weights(config: TokenizerTrainConfig, train_set) -> torch.Tensor | None:
    """Cross-entropy class weights of the config (``None`` for unweighted)."""
    if config.class_weighting == "none":
        return None
    # Evenly spread over the dataset: neighbouring clips come from the same scene.
    picks = np.unique(np.linspace(0, len(train_set) - 1, config.class_weight_clips).astype(int))
    occupancy = torch.from_numpy(np.stack([train_set[int(i)]["occupancy"] for i in picks]))
    return inverse_sqrt_frequency_weights(occupancy, NUM_CLASSES)


def _validate(accelerator, model, val_set, step: int) -> None:
    if not accelerator.is_main_process:
        return
    scores = evaluate_tokenizer(accelerator.unwrap_model(model), val_set)
    tqdm.write(f"step {step}: val recon IoU {scores['iou']:.1f} mIoU {scores['miou']:.1f}")
    accelerator.log({f"val/{k}": v for k, v in scores.items() if not np.isnan(v)}, step=step)


@torch.no_grad()
def reconstruction_image(model: OccTokenizer, occupancy: torch.Tensor) -> np.ndarray:
    """BEV of the last frame of one clip ``occupancy (1, T, X, Y, Z)``, truth | the model's
    reconstruction; the model's training mode is kept."""
    training = model.training
    reconstruction = model.eval().reconstruct(occupancy.to(model.device))[0, -1]
    model.train(training)
    return truth_and_prediction(occupancy[0, -1].numpy(), reconstruction.cpu().numpy())
