"""Closed-loop agreement: the same seeds and actions in the exact and the learned world."""

from __future__ import annotations

import gymnasium as gym
from tqdm import tqdm

from occsim.metrics import OccupancyMetrics, OccupancyScores


def closed_loop_agreement(
    exact: gym.Env, learned: gym.Env, agent, seeds: list[int], steps: int, progress: bool = True
) -> list[OccupancyScores]:
    """Per-step scores of the learned world's frames against the exact world's.

    Both envs reset with each seed (they start from the same procedural scene); the agent
    acts on the exact world's observation and both take its action. An episode stops at
    the first termination in either world. Entry ``k`` scores all frames of step ``k + 1``.
    """
    per_step = [OccupancyMetrics() for _ in range(steps)]
    for seed in tqdm(seeds, desc="closed loop", disable=not progress):
        observation, _ = exact.reset(seed=seed)
        learned.reset(seed=seed)
        agent.reset(seed)
        for k in range(steps):
            action = agent.act(observation)
            observation, _, exact_done, exact_cut, _ = exact.step(action)
            generated, _, learned_done, learned_cut, _ = learned.step(action)
            per_step[k].update(generated["occupancy"], observation["occupancy"])
            if exact_done or exact_cut or learned_done or learned_cut:
                break
    return [metrics.compute() for metrics in per_step if metrics.confusion.sum() > 0]
