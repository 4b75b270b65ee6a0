"""A GIF of a real-time drive for the docs: what the keyboard window shows, frame by frame.

Usage: python scripts/make_drive_gif.py [--world learned] [--seconds 10] [--out FILE.gif]
The real-time driver runs on a simulated clock (each display frame 1/fps s after the last)
with the world computed in place of the worker thread and scripted keys, so the GIF shows
what the window shows at full speed, however fast this machine generates the world.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import Future
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import imageio.v2 as imageio
import pygame

from occsim.agents import KeyboardAgent
from occsim.drive import make_env
from occsim.realtime import FPS, RealtimeDriver

# (second, key, pressed): accelerate, ease off, a short steer left, then straight on.
KEYS = [
    (0.5, pygame.K_UP, True),
    (3.0, pygame.K_UP, False),
    (5.0, pygame.K_a, True),
    (5.6, pygame.K_a, False),
]


class SimulatedClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class InPlace:
    """A worker that computes each job at once (the simulated clock does not move meanwhile)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", choices=("learned", "procedural"), default="learned")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of driving")
    parser.add_argument("--every", type=int, default=2, help="keep every n-th display frame")
    parser.add_argument("--out", type=Path, default=Path("docs/drive_realtime.gif"))
    args = parser.parse_args()

    clock, script, images = SimulatedClock(), list(KEYS), []

    def events() -> list:
        due = [s for s in script if s[0] <= clock.now()]
        del script[: len(due)]
        kinds = {True: pygame.KEYDOWN, False: pygame.KEYUP}
        return [pygame.event.Event(kinds[pressed], key=key) for _, key, pressed in due]

    env = make_env(args.world)
    driver = RealtimeDriver(
        env,
        KeyboardAgent(env),
        args.seed,
        events=events,
        display=images.append,
        clock=clock,
        worker=InPlace(),
    )
    driver.run(max_ticks=int(args.seconds * FPS))
    frames = images[:: args.every]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(args.out, frames, duration=1000 * args.every / FPS, loop=0)
    print(f"wrote {len(frames)} frames ({args.seconds:.0f} s) to {args.out}")


if __name__ == "__main__":
    main()
