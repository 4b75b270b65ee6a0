"""Side by side: the exact procedural world and the learned world, the same actions.

Usage: python scripts/make_side_by_side.py [--seed 10000] [--steps 20] [--out docs/gallery]
The planner drives the learned world (bundled model, scene memory on); the exact world
takes the same actions from the same start. Every frame (4 a step, 0.5 s apart) goes into
a GIF, exact on the left, learned on the right, and a still of the last frame beside it.
An episode that ends in either world stops the clip there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw

import occsim  # noqa: F401  (registers the environments)
from occsim.agents import PlannerAgent
from occsim.render import render_bev

GAP = 6
HEADER = 18


def panel_pair(exact: np.ndarray, learned: np.ndarray, caption: str) -> np.ndarray:
    """Two BEV images side by side under a caption line."""
    left, right = render_bev(exact), render_bev(learned)
    height, width = left.shape[:2]
    canvas = Image.new("RGB", (2 * width + GAP, height + HEADER), "white")
    canvas.paste(Image.fromarray(left), (0, HEADER))
    canvas.paste(Image.fromarray(right), (width + GAP, HEADER))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), f"exact world   {caption}", fill="black")
    draw.text((width + GAP + 4, 3), "learned world (bundled model)", fill="black")
    return np.asarray(canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/gallery"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    exact, learned = gym.make("occsim/Procedural-v0"), gym.make("occsim/OccSora-v0")
    agent = PlannerAgent(learned, seed=args.seed)
    truth, _ = exact.reset(seed=args.seed)
    observation, _ = learned.reset(seed=args.seed)
    frames = [panel_pair(truth["occupancy"][-1], observation["occupancy"][-1], "t = 0 s")]
    for step in range(args.steps):
        action = agent.act(observation)
        truth, _, exact_done, _, exact_info = exact.step(action)
        observation, _, learned_done, _, info = learned.step(action)
        for k in range(len(truth["occupancy"])):
            seconds = 2.0 * step + 0.5 * (k + 1)
            caption = f"t = {seconds:.1f} s"
            frames.append(panel_pair(truth["occupancy"][k], observation["occupancy"][k], caption))
        if exact_done or learned_done:
            ended = "learned" if learned_done else "exact"
            reasons = info if learned_done else exact_info
            why = "collision" if reasons["collision"] else "off road"
            print(f"the {ended} world ended the episode at step {step + 1} ({why})")
            break
    gif = args.out / f"side_by_side_seed{args.seed}.gif"
    imageio.mimsave(gif, frames, duration=500, loop=0)
    imageio.imwrite(args.out / f"side_by_side_seed{args.seed}_last.png", frames[-1])
    print(f"wrote {len(frames)} frames to {gif}")


if __name__ == "__main__":
    main()
