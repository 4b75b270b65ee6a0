"""Screenshots for the docs: the pygame driving window and the open3d view.

Usage: python scripts/make_screenshots.py [--world learned] [--out docs/screenshots]
Runs headless (SDL dummy driver, open3d on EGL): a few scripted key presses drive the
keyboard window, whose last frame (and the open3d view beside it) is saved as PNG.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pygame

from occsim.drive import make_env, run_keyboard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", choices=("learned", "procedural"), default="learned")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    def key(kind: int, code: int) -> list:
        return [pygame.event.Event(kind, key=code)]

    # Accelerate for two steps, then a short steer to the left, then straight on.
    script = iter(
        [
            key(pygame.KEYDOWN, pygame.K_UP),
            [],
            key(pygame.KEYUP, pygame.K_UP) + key(pygame.KEYDOWN, pygame.K_a),
            key(pygame.KEYUP, pygame.K_a),
        ]
    )
    run_keyboard(
        make_env(args.world),
        seed=args.seed,
        three_d=True,
        max_frames=4,
        events=lambda: next(script, []),
        screenshot=args.out / f"drive_window_{args.world}.png",
        fast=True,  # a step per scripted frame
    )
    print(f"wrote {args.out}/drive_window_{args.world}.png and _3d.png")


if __name__ == "__main__":
    main()
