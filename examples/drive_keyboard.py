"""Drive the learned world with the keyboard in real time (arrows/WASD, space brakes,
R resets, P pauses, Esc quits); --3d opens the open3d view beside the BEV window, --fast
steps once per frame instead of in real time.

python examples/drive_keyboard.py [--world procedural] [--3d] [--fast] [--record episode.json]
"""

import argparse

from occsim.drive import make_env, run_keyboard

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--world", choices=("learned", "procedural"), default="learned")
parser.add_argument("--pipeline", help="world model folder (default: the bundled model)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--3d", dest="three_d", action="store_true")
parser.add_argument("--record", help="write the episode here; replay with `occsim replay`")
parser.add_argument("--fast", action="store_true", help="a step per frame, not real time")
parser.add_argument("--max-frames", type=int, help="stop after this many frames")
args = parser.parse_args()

kwargs = {"pipeline_path": args.pipeline} if args.world == "learned" else {}
env = make_env(args.world, **kwargs)
record = run_keyboard(
    env, args.seed, args.three_d, args.record, kwargs, args.max_frames, fast=args.fast
)
print(f"drove {len(record.actions)} steps")
