"""Stage 1: train the 4D tokenizer. One readable loop, accelerate for devices and DDP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from occsim.evaluate.recon import evaluate_reconstruction
from occsim.labels import NUM_CLASSES
from occsim.render import render_bev
from occsim.tokenizer import OccTokenizer, inverse_sqrt_frequency_weights, tokenizer_losses
from occsim.train.checkpoint import load_state, resolve_checkpoint
from occsim.train.config import TokenizerTrainConfig, config_to_dict
from occsim.train.data import build_datasets, load_clips, micro_batches
from occsim.train.loop import (
    checkpoint,
    flat_config,
    is_due,
    make_accelerator,
    make_optimizer,
    optimizer_step,
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
    _check_fine_tuning(config)
    accelerator = make_accelerator(config.run)
    torch.manual_seed(config.run.seed)
    train_set, val_set = build_datasets(config.data)
    class_weights = make_class_weights(config, train_set)
    state = None
    if resume:
        checkpoint_dir = resolve_checkpoint(run_dir, resume)
        state = load_state(checkpoint_dir)  # checked before anything is overwritten
        model = OccTokenizer.from_pretrained(checkpoint_dir / "tokenizer").train()  # loads in eval
    elif config.init_from:
        model = OccTokenizer.from_pretrained(config.init_from).train()
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

    world, rank = accelerator.num_processes, accelerator.process_index
    progress = tqdm(
        range(start_step, config.optim.max_steps),
        initial=start_step,
        total=config.optim.max_steps,
        disable=not accelerator.is_main_process,
        desc="tokenizer",
    )
    losses = {}
    for step in progress:
        # Everything random in a step derives from (seed, step): resuming is exact.
        torch.manual_seed(config.run.seed * 7919 + step)
        parts = micro_batches(
            len(train_set),
            step,
            config.optim.batch_size,
            config.optim.gradient_accumulation,
            config.run.seed,
            world,
            rank,
        )
        for part in parts:
            occupancy = load_clips(train_set, part)["occupancy"].to(accelerator.device)
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
            _validate(accelerator, model, val_set, occupancy, done)
        if is_due(done, config.run.checkpoint_every, config.optim.max_steps):
            models = {"tokenizer": accelerator.unwrap_model(model)}
            checkpoint(accelerator, config.run, done, models, optimizer, lr_schedule)
    accelerator.wait_for_everyone()
    final = run_dir / "final"
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(final)
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


def _validate(accelerator, model, val_set, occupancy, step: int) -> None:
    if not accelerator.is_main_process:
        return
    unwrapped = accelerator.unwrap_model(model)
    scores = evaluate_tokenizer(unwrapped, val_set)
    tqdm.write(f"step {step}: val recon IoU {scores['iou']:.1f} mIoU {scores['miou']:.1f}")
    accelerator.log({f"val/{k}": v for k, v in scores.items() if not np.isnan(v)}, step=step)
    with torch.no_grad():
        unwrapped.eval()
        reconstruction = unwrapped.reconstruct(occupancy[:1])[0, -1].cpu().numpy()
        unwrapped.train()
    image = np.concatenate(
        [
            render_bev(occupancy[0, -1].cpu().numpy().astype(np.uint8), scale=1),
            render_bev(reconstruction, scale=1),
        ],
        axis=1,
    )
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("val/target_vs_reconstruction", image, step, dataformats="HWC")
