"""Tokenizer reconstruction on held-out clips: IoU, mIoU and per-class IoU (paper Table 1)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from occsim.evaluate.report import Report
from occsim.labels import CLASS_NAMES, FREE_ID
from occsim.metrics import OccupancyMetrics, OccupancyScores
from occsim.tokenizer import OccTokenizer


@torch.no_grad()
def evaluate_reconstruction(
    tokenizer: OccTokenizer, dataset, clips: int | None = None, progress: bool = True
) -> OccupancyScores:
    """Occ3D-convention scores of ``tokenizer.reconstruct`` over the first ``clips`` items."""
    tokenizer.eval()
    metrics = OccupancyMetrics()
    count = len(dataset) if clips is None else min(clips, len(dataset))
    for i in tqdm(range(count), desc="recon", disable=not progress):
        occupancy = dataset[i]["occupancy"]
        frames = torch.from_numpy(occupancy[None]).to(tokenizer.device)
        metrics.update(tokenizer.reconstruct(frames)[0].cpu().numpy(), occupancy)
    return metrics.compute()


def recon_report(scores: OccupancyScores, label: str, meta: dict) -> Report:
    """The paper's Table 1 layout: one row, IoU, mIoU, then every class."""
    classes = [name for i, name in enumerate(CLASS_NAMES) if i != FREE_ID]
    row = {"model": label, "IoU": scores.iou, "mIoU": scores.miou}
    row.update({name: scores.per_class.get(name, np.nan) for name in classes})
    return Report(
        "eval:recon", "Tokenizer reconstruction", ["model", "IoU", "mIoU", *classes], [row], meta
    )
