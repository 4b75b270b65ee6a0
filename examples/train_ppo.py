"""Train stable-baselines3 PPO on the BEV of occsim/Procedural-v0 (meta-actions), then
evaluate it in the learned world occsim/OccSora-v0. Needs the `rl` extra.

python examples/train_ppo.py --timesteps 2000 --eval-episodes 3
"""

import argparse

import gymnasium as gym
import numpy as np

import occsim  # noqa: F401  (registers the environments)
from occsim.envs import MetaActions

try:
    from stable_baselines3 import PPO
except ImportError as error:
    raise SystemExit(
        f"this example needs stable-baselines3: pip install 'occsim[rl]' ({error})"
    ) from None

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--timesteps", type=int, default=2000)
parser.add_argument("--eval-episodes", type=int, default=3)
parser.add_argument("--eval-steps", type=int, default=20)
parser.add_argument("--pipeline", help="world model folder (default: the bundled model)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()


def bev_only(env: gym.Env) -> gym.Env:
    """Meta-actions in, the (200, 200) top-class map as a 1-channel image out."""
    env = gym.wrappers.FilterObservation(MetaActions(env), ["bev"])
    env = gym.wrappers.TransformObservation(
        env, lambda obs: obs["bev"][None], gym.spaces.Box(0, 17, (1, 200, 200), np.uint8)
    )
    return env


keys = {"observation_keys": ("occupancy", "ego", "bev")}
train_env = bev_only(gym.make("occsim/Procedural-v0", max_episode_steps=25, **keys))
model = PPO(
    "CnnPolicy",
    train_env,
    n_steps=64,
    batch_size=32,
    seed=args.seed,
    verbose=0,
    policy_kwargs={"normalize_images": False},
)
model.learn(total_timesteps=args.timesteps)

learned = bev_only(gym.make("occsim/OccSora-v0", pipeline_path=args.pipeline, **keys))
for episode in range(args.eval_episodes):
    observation, _ = learned.reset(seed=1000 + episode)
    total = 0.0
    for _ in range(args.eval_steps):
        action, _ = model.predict(observation, deterministic=True)
        observation, reward, terminated, truncated, info = learned.step(int(action))
        total += reward
        if terminated or truncated:
            break
    print(f"OccSora-v0 episode {episode}: return {total:+.2f}, collision {info['collision']}")
