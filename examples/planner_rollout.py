"""The CEM planner driving an occsim world, written to a GIF with the plan drawn in.

python examples/planner_rollout.py --world learned --steps 8 --out outputs/planner
"""

import argparse

from occsim.agents import PlannerAgent
from occsim.drive import make_env, run_headless

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--world", choices=("learned", "procedural"), default="learned")
parser.add_argument("--pipeline", help="world model folder (default: the bundled model)")
parser.add_argument("--scorer", choices=("occupancy", "world_model"), default="occupancy")
parser.add_argument("--steps", type=int, default=8)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", default="outputs/planner")
args = parser.parse_args()

kwargs = {"pipeline_path": args.pipeline} if args.world == "learned" else {}
env = make_env(args.world, **kwargs)
agent = PlannerAgent(env, scorer=args.scorer, seed=args.seed)
summary = run_headless(env, agent, args.steps, args.seed, args.out, kwargs)
print(f"{summary['episodes']} episode(s), step p50 {summary['step_ms_p50']:.0f} ms")
print(f"wrote {summary['video']}")
