"""Forecasting (OccWorld's protocol): 2 s of history as context plus the true future
trajectory -> 3 s predicted; IoU / mIoU at 1, 2 and 3 s against the ground truth."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from occsim.geometry import poses_to_trajectory
from occsim.metrics import HorizonMetrics, OccupancyScores
from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import StreamCache

HISTORY_FRAMES = 4  # 2 s at 2 Hz
HORIZON_SECONDS = (1, 2, 3)


@torch.no_grad()
def evaluate_forecast(
    pipe: OccSoraPipeline,
    dataset,
    clips: int | None = None,
    num_inference_steps: int = 10,
    guidance_scale: float = 2.0,
    seed: int = 0,
    progress: bool = True,
) -> list[OccupancyScores]:
    """Scores at 1, 2, 3 s. Items of ``dataset`` need ``4 + 6`` frames (history + 3 s).

    The history is encoded (streaming), then windows are generated one after another, each
    continuing the last, until 3 s are covered; the window trajectories are the true poses.
    """
    tokenizer, config = pipe.tokenizer, pipe.transformer.config
    factor = tokenizer.temporal_factor
    window = config.trajectory_length
    context_frames = config.latent_frames - 1
    history = context_frames * factor
    if history > HISTORY_FRAMES:
        raise ValueError(f"the DiT needs {history} frames of history; the protocol gives 4")
    future = 2 * HORIZON_SECONDS[-1]
    metrics = HorizonMetrics(len(HORIZON_SECONDS))
    count = len(dataset) if clips is None else min(clips, len(dataset))
    generator = torch.Generator().manual_seed(seed)
    for i in tqdm(range(count), desc="forecast", disable=not progress):
        item = dataset[i]
        occupancy, poses = item["occupancy"], item["trajectory"]
        if len(occupancy) < HISTORY_FRAMES + future:
            raise ValueError(
                f"forecast needs clips of {HISTORY_FRAMES + future} frames, got {len(occupancy)}"
            )
        cache = StreamCache()
        frames = torch.from_numpy(occupancy[None, :HISTORY_FRAMES]).to(tokenizer.device)
        latents = tokenizer.encode(frames).latents
        tokenizer.decode_classes(latents, cache)
        context = latents[:, :, -context_frames:]
        start, predicted = HISTORY_FRAMES - history, []
        while len(predicted) < future:
            span = poses[start : start + window]
            if len(span) < window:  # past the clip's end: extrapolate the last motion
                step = span[-1] - span[-2]
                span = np.concatenate(
                    [span, span[-1] + step * np.arange(1, window - len(span) + 1)[:, None]]
                )
            trajectory = poses_to_trajectory(span[:, :2], span[:, 2])
            out = pipe(
                trajectory[None, :, :2],
                context=context,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generator,
                output_type="latent",
            )
            new = out.latents[:, :, context_frames:]
            predicted.extend(tokenizer.decode_classes(new, cache)[0].cpu().numpy())
            context = out.latents[:, :, -context_frames:]
            start += window - history
        indices = [HISTORY_FRAMES + 2 * s - 1 for s in HORIZON_SECONDS]
        pred = np.stack([predicted[k - HISTORY_FRAMES] for k in indices])
        metrics.update(pred, occupancy[indices])
    return metrics.compute()
