"""Paper mode: generate a 16 s clip from noise along a chosen trajectory, as a GIF.

The first window comes from noise (no context), then the world model continues it
window after window along the manoeuvre (OccSora's Figure 10 trajectories).

python examples/generate_clip.py --maneuver left --seconds 16 --out outputs/clip.gif
"""

import argparse

import imageio.v2 as imageio
import numpy as np

from occsim.agents import ManeuverAgent
from occsim.agents.scripted import MANEUVER_COMMANDS
from occsim.drive import make_env
from occsim.render import render_bev

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--pipeline", help="world model folder (default: the bundled model)")
parser.add_argument("--maneuver", choices=sorted(MANEUVER_COMMANDS), default="straight")
parser.add_argument("--seconds", type=float, default=16.0)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="outputs/clip.gif")
args = parser.parse_args()

env = make_env("learned", pipeline_path=args.pipeline).unwrapped
agent = ManeuverAgent(env, args.maneuver)
observation, _ = env.reset(seed=args.seed, options={"start": "noise"})
frames = list(observation["occupancy"])
while len(frames) * env.frame_period < args.seconds:
    observation, *_ = env.step(agent.act(observation))
    frames.extend(observation["occupancy"])
frames = frames[: round(args.seconds / env.frame_period)]
imageio.mimsave(args.out, [render_bev(f) for f in frames], duration=1000 * env.frame_period, loop=0)
classes = np.bincount(np.concatenate([f.ravel() for f in frames]), minlength=18)
print(f"wrote {len(frames)} frames ({len(frames) * env.frame_period:.1f} s) to {args.out}")
print(f"occupied voxels: {100 * (1 - classes[17] / classes.sum()):.1f} %")
