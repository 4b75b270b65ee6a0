"""Agents compared over seeded episodes: collision rate, off-road rate, progress.

Usage: python scripts/agent_table.py --world procedural --episodes 20 --steps 20
Prints the markdown table recorded in BENCHMARKS.md. Episode i uses seed i for the env and
the agent; an episode ends at termination or after --steps steps (2 s each).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from occsim.agents import ConstantSpeedAgent, PlannerAgent, RandomAgent
from occsim.drive import make_env


def evaluate(env, agent, episodes: int, steps: int, verbose: bool = False) -> dict[str, float]:
    collisions = offroads = failures = 0
    progress = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=episode)
        agent.reset(episode)
        metres = 0.0
        info: dict = {"collision": False, "offroad": False}
        for _ in range(steps):
            observation, _, terminated, truncated, info = env.step(agent.act(observation))
            metres += info["rewards"]["progress"] / env.unwrapped.config.rewards.progress
            if terminated or truncated:
                break
        collisions += bool(info["collision"])
        offroads += bool(info["offroad"])
        failures += bool(info["collision"] or info["offroad"])
        progress.append(metres)
        if verbose:
            ended = "collision" if info["collision"] else "off road" if info["offroad"] else "-"
            print(f"  episode {episode}: {metres:.1f} m, end: {ended}", flush=True)
    return {
        "collision": 100.0 * collisions / episodes,
        "offroad": 100.0 * offroads / episodes,
        "failure": 100.0 * failures / episodes,
        "progress": float(np.mean(progress)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", choices=("learned", "procedural"), default="procedural")
    parser.add_argument("--pipeline", help="world model folder (default: the bundled model)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--agents", default="planner,constant,random", help="comma-separated subset to run"
    )
    parser.add_argument("--verbose", action="store_true", help="print each episode's end")
    args = parser.parse_args()
    kwargs = {"pipeline_path": args.pipeline} if args.world == "learned" else {}
    env = make_env(args.world, **kwargs)
    makers = {
        "planner": ("planner (CEM)", lambda: PlannerAgent(env, seed=0)),
        "constant": ("constant speed 8 m/s", lambda: ConstantSpeedAgent(env, 8.0)),
        "random": ("random", lambda: RandomAgent(env.action_space, seed=0)),
    }
    chosen = [name for name in args.agents.split(",") if name]
    unknown = sorted(set(chosen) - set(makers))
    if unknown:
        raise SystemExit(f"unknown agents {unknown}; choose from {sorted(makers)}")
    agents = {makers[name][0]: makers[name][1]() for name in chosen}
    print(f"{args.world} world, {args.episodes} episodes of up to {args.steps} steps\n")
    print("| agent | collision % | off-road % | either % | progress (m) | wall (s) |")
    print("|---|---|---|---|---|---|")
    for name, agent in agents.items():
        start = time.perf_counter()
        row = evaluate(env, agent, args.episodes, args.steps, args.verbose)
        print(
            f"| {name} | {row['collision']:.0f} | {row['offroad']:.0f} | {row['failure']:.0f} | "
            f"{row['progress']:.1f} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
