"""Benchmark of the procedural world: frames/s on one core, class frequencies, consistency.

Usage: OMP_NUM_THREADS=1 python scripts/bench_procedural.py [--clips 24] [--clip-len 8]
Prints markdown tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from occsim.consistency import static_agreement
from occsim.data.procedural import ProceduralClips
from occsim.labels import CLASS_NAMES, FREE_ID
from occsim.metrics import OccupancyMetrics
from occsim.procedural import ProceduralWorld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()

    world = ProceduralWorld(args.seed)
    start = time.perf_counter()
    ProceduralWorld(args.seed + 1)
    map_seconds = time.perf_counter() - start
    world.reset(0, "straight")
    world.render()
    start = time.perf_counter()
    for _ in range(100):
        world.render()
    render_fps = 100 / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(100):
        world.step_scripted()
        world.render()
    step_fps = 100 / (time.perf_counter() - start)

    clips = ProceduralClips(args.clips, clip_len=args.clip_len, seed=args.seed)
    counts = np.zeros(18, dtype=np.int64)
    strict, tolerant = [], []
    for i in range(len(clips)):
        clip = clips[i]
        occ, traj = clip["occupancy"], clip["trajectory"]
        counts += np.bincount(occ.ravel(), minlength=18)
        for t in range(len(occ) - 1):
            strict.append(static_agreement(occ[t], occ[t + 1], traj[t], traj[t + 1]))
            tolerant.append(static_agreement(occ[t], occ[t + 1], traj[t], traj[t + 1], tolerance=1))

    frames = np.repeat(occ[:1], 100, axis=0)
    metrics = OccupancyMetrics()
    start = time.perf_counter()
    metrics.update(frames, frames)
    metric_fps = 100 / (time.perf_counter() - start)

    print("| measure | value |\n|---|---|")
    print(f"| map generation (320 m torus) | {map_seconds:.2f} s |")
    print(f"| render only, 200x200x16 frames/s (1 core) | {render_fps:.0f} |")
    print(f"| simulate 0.5 s + render, frames/s (1 core) | {step_fps:.0f} |")
    print(
        f"| static agreement, nearest voxel (mean / min) | {np.mean(strict):.4f} / "
        f"{np.min(strict):.4f} |"
    )
    print(
        f"| static agreement, 1-voxel tolerance (mean / min) | {np.mean(tolerant):.4f} / "
        f"{np.min(tolerant):.4f} |"
    )
    print(f"| OccupancyMetrics.update, frames/s | {metric_fps:.0f} |")
    occupied = counts[:FREE_ID] / counts[:FREE_ID].sum()
    print(
        f"\nClass frequencies over {len(clips)} clips x {args.clip_len} frames "
        f"(seed {args.seed}), % of occupied voxels; free is "
        f"{100 * counts[FREE_ID] / counts.sum():.1f} % of all voxels:\n"
    )
    print("| class | % |\n|---|---|")
    for index in np.argsort(-occupied):
        print(f"| {CLASS_NAMES[index]} | {100 * occupied[index]:.2f} |")


if __name__ == "__main__":
    main()
