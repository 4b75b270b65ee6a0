"""Tokenizer learning experiment: overfit a few procedural clips, print mIoU as it goes.

Usage: python scripts/tokenizer_overfit.py [--steps 300] [--overrides JSON] [--class-weights]
e.g. --overrides '{"downsample": [[2,1,1]], "codebook_groups": 8, "latent_channels": 64}'
Clips: ProceduralClips(2, clip_len=4, seed=3) on a small map; AdamW 3e-3,
patch_fraction 0.25, codebook EMA decay 0.9 (numbers in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from occsim.data import ProceduralClips
from occsim.labels import NUM_CLASSES
from occsim.metrics import OccupancyMetrics
from occsim.procedural import WorldConfig
from occsim.tokenizer import OccTokenizer, inverse_sqrt_frequency_weights, tokenizer_losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--overrides", default="{}", help="JSON preset overrides")
    parser.add_argument(
        "--class-weights", action="store_true", help="inverse-sqrt-frequency CE weights"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    clips = ProceduralClips(2, clip_len=4, seed=3, config=WorldConfig(size=192.0, grid_nodes=3))
    occupancy = torch.from_numpy(np.stack([clips[i]["occupancy"] for i in range(2)])).long()
    overrides = {"codebook_decay": 0.9, **json.loads(args.overrides)}
    model = OccTokenizer.from_preset("default", **overrides)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    weights = inverse_sqrt_frequency_weights(occupancy, NUM_CLASSES) if args.class_weights else None
    start = time.perf_counter()
    print("| step | seconds | mIoU | IoU |\n|---|---|---|---|")
    for step in range(1, args.steps + 1):
        losses = tokenizer_losses(model(occupancy, patch_fraction=0.25), weights)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        if step % args.every == 0:
            model.eval()
            metrics = OccupancyMetrics()
            metrics.update(model.reconstruct(occupancy).numpy(), occupancy.numpy().astype(np.uint8))
            scores = metrics.compute()
            model.train()
            elapsed = time.perf_counter() - start
            print(f"| {step} | {elapsed:.0f} | {scores.miou:.1f} | {scores.iou:.1f} |", flush=True)


if __name__ == "__main__":
    main()
