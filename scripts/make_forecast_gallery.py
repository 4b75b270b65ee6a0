"""BEV gallery of the bundled world model on held-out clips: truth against forecast.

Usage: python scripts/make_forecast_gallery.py [--pipeline DIR] [--clips 3]
Writes docs/gallery/learned_forecast.png: one row per held-out procedural clip (dataset
seed 10000, never used in training); columns: the last history frame, then the truth and
the forecast at 1, 2 and 3 s (the `occsim eval forecast` protocol: 2 s of history, true
future trajectory, DDIM 10 steps, guidance 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from occsim.data import ProceduralClips
from occsim.evaluate.cli import HELD_OUT_SEED
from occsim.evaluate.forecast import HISTORY_FRAMES, HORIZON_SECONDS, forecast_clip
from occsim.render import render_bev
from occsim.world_model import load_world_model

GAP = 4
HEADER = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", type=Path, default=None)
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/gallery/learned_forecast.png"))
    args = parser.parse_args()
    pipe = load_world_model(args.pipeline)
    future = 2 * HORIZON_SECONDS[-1]
    dataset = ProceduralClips(args.clips, clip_len=HISTORY_FRAMES + future, seed=HELD_OUT_SEED)
    generator = torch.Generator().manual_seed(0)
    labels = ["history (0 s)"]
    for s in HORIZON_SECONDS:
        labels += [f"truth {s} s", f"forecast {s} s"]
    rows = []
    for i in range(args.clips):
        item = dataset[i]
        occupancy = item["occupancy"]
        predicted = forecast_clip(pipe, occupancy, item["trajectory"], future, generator=generator)
        panels = [occupancy[HISTORY_FRAMES - 1]]
        for s in HORIZON_SECONDS:
            panels += [occupancy[HISTORY_FRAMES + 2 * s - 1], predicted[2 * s - 1]]
        rows.append([render_bev(frame, scale=1) for frame in panels])
    size = rows[0][0].shape[0]
    width = len(labels) * (size + GAP) - GAP
    canvas = Image.new("RGB", (width, HEADER + len(rows) * (size + GAP) - GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for column, label in enumerate(labels):
        draw.text((column * (size + GAP) + 4, 3), label, fill="black")
    for r, panels in enumerate(rows):
        for column, panel in enumerate(panels):
            canvas.paste(Image.fromarray(panel), (column * (size + GAP), HEADER + r * (size + GAP)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out} ({canvas.width}x{canvas.height})")


if __name__ == "__main__":
    main()
