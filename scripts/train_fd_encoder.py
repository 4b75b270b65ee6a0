"""Train the fixed feature encoder of `occsim eval generate` and save it to assets/.

Procedural clips (dataset seed 20000, never used by the world model) are labelled with their
manoeuvre and mean speed; the encoder learns both, is checked on held-out clips (seed
30000), and is saved with ``save_pretrained``. Usage:
``.venv/bin/python scripts/train_fd_encoder.py --clips 420 --epochs 12``
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from occsim.assets import asset_path
from occsim.data import ProceduralClips
from occsim.evaluate.features import FD_ENCODER, OccupancyFeatureNet
from occsim.procedural import MANEUVERS


def load(
    model: OccupancyFeatureNet, num: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-fraction maps, manoeuvre ids and mean speeds of ``num`` procedural clips."""
    frames = model.config.frames
    clips = ProceduralClips(num, clip_len=frames, seed=seed)
    fractions, maneuvers, speeds = [], [], []
    for i in tqdm(range(num), desc=f"clips seed {seed}"):
        item = clips[i]
        with torch.no_grad():
            fractions.append(model.class_fractions(torch.from_numpy(item["occupancy"][None]))[0])
        maneuvers.append(MANEUVERS.index(item["maneuver"]))
        path = np.linalg.norm(np.diff(item["trajectory"][:, :2], axis=0), axis=1).sum()
        speeds.append(path / (0.5 * (frames - 1)))
    return torch.stack(fractions), torch.tensor(maneuvers), torch.tensor(speeds).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=420)
    parser.add_argument("--val-clips", type=int, default=70)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", default=str(asset_path(FD_ENCODER)))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = OccupancyFeatureNet()
    train = load(model, args.clips, 20_000)
    val = load(model, args.val_clips, 30_000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        order = torch.randperm(args.clips)
        for start in range(0, args.clips, 16):
            index = order[start : start + 16]
            logits, speed = model.heads(model.features_of_fractions(train[0][index]))
            loss = F.cross_entropy(logits, train[1][index]) + F.smooth_l1_loss(
                speed, train[2][index]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            logits, speed = model.heads(model.features_of_fractions(val[0]))
        accuracy = (logits.argmax(1) == val[1]).float().mean().item()
        speed_error = (speed - val[2]).abs().mean().item()
        print(
            f"epoch {epoch + 1}: loss {loss.item():.3f}, held-out manoeuvre accuracy "
            f"{accuracy:.2f}, speed error {speed_error:.2f} m/s"
        )
    model.eval().save_pretrained(args.out)
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
