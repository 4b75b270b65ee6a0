"""Soak and latency of an occsim env: step time percentiles and RSS growth.

Usage: python scripts/bench_env.py [--steps 500] [--env occsim/OccSora-v0]
Drives at constant speed with a reset every 25 steps (and on termination); prints p50/p95
step latency, resident memory after warm-up and at the end, and a trace of it every tenth of
the run (a leak grows steadily; allocator warm-up levels off).
"""

from __future__ import annotations

import argparse
import resource
import time

import gymnasium as gym
import numpy as np

import occsim  # noqa: F401  (registers the environments)


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--env", default="occsim/Procedural-v0")
    args = parser.parse_args()
    env = gym.make(args.env, map_seed=0)
    action = np.stack([np.arange(1, 5) * 0.2, np.zeros(4)], axis=1).astype(np.float32)
    env.reset(seed=0)
    times, resets = [], 0
    start_rss, trace = None, []
    for step in range(args.steps):
        begin = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        times.append(time.perf_counter() - begin)
        if terminated or truncated or (step + 1) % 25 == 0:
            env.reset(seed=step)
            resets += 1
        if step == min(49, args.steps // 4):
            start_rss = rss_mib()
        if (step + 1) % max(1, args.steps // 10) == 0:
            trace.append(f"{step + 1}: {rss_mib():.0f}")
    end_rss = rss_mib()
    p50, p95 = np.percentile(times, [50, 95]) * 1e3
    print("| measure | value |\n|---|---|")
    print(f"| steps / resets | {args.steps} / {resets} |")
    print(f"| step latency p50 / p95 (4 frames = 2 s of world) | {p50:.0f} / {p95:.0f} ms |")
    warm = min(50, args.steps // 4 + 1)
    print(
        f"| RSS after {warm} steps -> after {args.steps} | {start_rss:.0f} -> {end_rss:.0f} MiB |"
    )
    print(f"\nRSS trace (step: MiB): {', '.join(trace)}")


if __name__ == "__main__":
    main()
