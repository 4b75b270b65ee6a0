"""Writes the BEV gallery of procedural frames in docs/gallery/ (one PNG per manoeuvre)."""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from occsim.procedural import ProceduralWorld
from occsim.render import render_bev


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/gallery"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    world = ProceduralWorld(args.seed)
    for i, maneuver in enumerate(("straight", "right", "lane_change", "stop")):
        world.reset(args.seed * 10 + i, maneuver)
        clip = world.rollout(8)
        panels = [render_bev(clip["occupancy"][t], scale=1) for t in (0, 4, 7)]
        gap = np.full((panels[0].shape[0], 4, 3), 255, dtype=np.uint8)
        strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
        imageio.imwrite(args.out / f"procedural_{maneuver}.png", strip)
        print(f"wrote {args.out / f'procedural_{maneuver}.png'}")


if __name__ == "__main__":
    main()
