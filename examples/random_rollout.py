"""Random actions in an occsim world: the smallest closed loop.

python examples/random_rollout.py --world learned --steps 5
"""

import argparse

import gymnasium as gym
import numpy as np

import occsim  # noqa: F401  (registers occsim/OccSora-v0 and occsim/Procedural-v0)
from occsim.agents import RandomAgent

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--world", choices=("learned", "procedural"), default="learned")
parser.add_argument("--pipeline", help="world model folder (default: the bundled model)")
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

if args.world == "learned":
    env = gym.make("occsim/OccSora-v0", pipeline_path=args.pipeline)
else:
    env = gym.make("occsim/Procedural-v0")
agent = RandomAgent(env.action_space, seed=args.seed)
observation, info = env.reset(seed=args.seed)
total = 0.0
for step in range(args.steps):
    observation, reward, terminated, truncated, info = env.step(agent.act(observation))
    total += reward
    occupied = np.mean(observation["occupancy"] != 17) * 100
    print(f"step {step}: reward {reward:+.2f} {info['rewards']} occupied {occupied:.1f} %")
    if terminated or truncated:
        observation, info = env.reset()
print(f"return {total:+.2f}")
