"""Stage 1: train the 4D tokenizer. One readable loop, accelerate for devices and DDP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from occsim.evaluate.recon import evaluate_reconstruction
from occsim.render import render_bev
from occsim.tokenizer import OccTokenizer, tokenizer_losses
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
    accelerator = make_accelerator(config.run)
    torch.manual_seed(config.run.seed)
    train_set, val_set = build_datasets(config.data)
    state = None
    if resume:
        checkpoint_dir = resolve_checkpoint(run_dir, resume)
        state = load_state(checkpoint_dir)  # checked before anything is overwritten
        model = OccTokenizer.from_pretrained(checkpoint_dir / "tokenizer").train()  # loads in eval
    else:
        model = OccTokenizer.from_preset(config.preset, **config.model_overrides)
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
                losses = tokenizer_losses(output, lovasz_weight=config.lovasz_weight)
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
