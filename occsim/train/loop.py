"""Pieces shared by the two training loops: engine, optimiser, step and checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.optimization import get_cosine_schedule_with_warmup

from occsim.render import render_bev
from occsim.train.checkpoint import save_checkpoint
from occsim.train.config import OptimConfig, RunConfig


def make_accelerator(run: RunConfig) -> Accelerator:
    """The accelerate engine; several processes without GPUs run CPU DDP over gloo."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(
        cpu=run.cpu or (distributed and not torch.cuda.is_available()),
        mixed_precision=run.mixed_precision,
        log_with="tensorboard",
        project_dir=str(run.output_dir),
    )


def make_optimizer(model: torch.nn.Module, optim: OptimConfig, state: dict | None = None):
    """AdamW and its cosine schedule with warm-up, restored from a checkpoint ``state``."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=optim.learning_rate, weight_decay=optim.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(optimizer, optim.warmup_steps, optim.max_steps)
    if state is not None:
        # After the schedule is built: building it resets the learning rate to step 0.
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["lr_schedule"])
    return optimizer, schedule


def optimizer_step(accelerator: Accelerator, model, optimizer, schedule, grad_clip: float) -> None:
    """Clip, step the optimiser and the schedule, clear the gradients."""
    if grad_clip > 0:
        accelerator.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()


def is_due(done: int, every: int, max_steps: int) -> bool:
    """Whether a periodic action (validation, checkpoint) runs after step ``done``."""
    return done % every == 0 or done == max_steps


def images_due(done: int, run: RunConfig, max_steps: int) -> bool:
    """Whether the BEV images are written after step ``done`` (``image_every=0``: never)."""
    return run.image_every > 0 and is_due(done, run.image_every, max_steps)


def truth_and_prediction(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """BEV images ``(X, 2Y, 3)`` uint8 of two frames ``(X, Y, Z)`` side by side, truth left."""
    return np.concatenate(
        [render_bev(truth.astype(np.uint8), scale=1), render_bev(prediction, scale=1)], axis=1
    )


def log_image(accelerator: Accelerator, tag: str, image: np.ndarray, step: int) -> None:
    """Write an ``(H, W, 3)`` image to tensorboard (call on the main process)."""
    writer = accelerator.get_tracker("tensorboard", unwrap=True)
    writer.add_image(tag, image, step, dataformats="HWC")


def checkpoint(
    accelerator: Accelerator,
    run: RunConfig,
    done: int,
    models: dict[str, Any],
    optimizer,
    schedule,
    extra: dict | None = None,
) -> None:
    """Write ``checkpoints/step-N`` from the main process once every process got there."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {
            "optimizer": optimizer.state_dict(),
            "lr_schedule": schedule.state_dict(),
            "world_size": accelerator.num_processes,
            **(extra or {}),
        }
        save_checkpoint(Path(run.output_dir), done, models, state, keep=run.keep_checkpoints)


def flat_config(values: dict, prefix: str = "") -> dict:
    """Nested config dict -> flat ``section.key`` scalars (for tracker hyper-parameters)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str, bool)):
            out[f"{prefix}{key}"] = value
    return out
