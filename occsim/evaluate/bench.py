"""``occsim bench``: latency, throughput, memory and FLOPs of the learned env, against this
machine's matmul peak (see :mod:`occsim.evaluate.cost` for the scaling table)."""

from __future__ import annotations

import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from occsim.agents import ConstantSpeedAgent
from occsim.envs import OccSoraEnv, OccSoraVectorEnv
from occsim.evaluate.cost import matmul_peak_gflops
from occsim.pipeline import OccSoraPipeline


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 95) * 1e3)


def run_bench(
    pipe: OccSoraPipeline,
    steps: int = 20,
    batch: int = 8,
    seed: int = 0,
    progress: bool = True,
    **env_kwargs,
) -> dict[str, float]:
    """Figures of one learned env and of ``batch`` envs stepped together or in turn; the
    step's achieved GFLOP/s against this machine's fp32 matmul peak measured in the same
    run, and its real-time factor (seconds of world per second of compute)."""
    env = OccSoraEnv(pipeline=pipe, **env_kwargs)
    agent = ConstantSpeedAgent(env, 6.0)
    observation, _ = env.reset(seed=seed)
    env.step(agent.act(observation))  # warm-up
    latencies = []
    for _ in tqdm(range(steps), desc="env steps", disable=not progress):
        start = time.perf_counter()
        observation, _, terminated, truncated, _ = env.step(agent.act(observation))
        latencies.append(time.perf_counter() - start)
        if terminated or truncated:
            observation, _ = env.reset()
    p50, p95 = _percentiles(latencies)
    with FlopCounterMode(display=False) as counter:
        env.step(agent.act(observation))
    flops = counter.get_total_flops()
    world_seconds = env.config.frames_per_step * env.frame_period
    peak = matmul_peak_gflops()

    # Both sides time steps only (no autoresets): the batched step of all envs together
    # against each env stepped on its own.
    vector = OccSoraVectorEnv(batch, pipeline=pipe, **env_kwargs)
    vector.reset(seed=seed)
    actions = np.stack([agent.act(observation)] * batch)
    everyone = list(range(batch))
    vector.step_batch(everyone, actions)  # warm-up of the batched shapes
    start = time.perf_counter()
    for _ in range(2):
        vector.step_batch(everyone, actions)
    batched = (time.perf_counter() - start) / 2
    singles = [OccSoraEnv(pipeline=pipe, **env_kwargs) for _ in range(batch)]
    for i, single in enumerate(singles):
        single.reset(seed=seed + i)
    start = time.perf_counter()
    for _ in range(2):
        for single in singles:
            single.step(actions[0])
    sequential = (time.perf_counter() - start) / 2

    tokenizer = pipe.tokenizer
    frames = torch.from_numpy(observation["occupancy"][None]).to(tokenizer.device)
    with torch.no_grad():
        start = time.perf_counter()
        latents = tokenizer.encode(frames).latents
        encode = time.perf_counter() - start
        start = time.perf_counter()
        tokenizer.decode_classes(latents)
        decode = time.perf_counter() - start
    return {
        "step_p50_ms": p50,
        "step_p95_ms": p95,
        "steps_per_s": 1.0 / float(np.mean(latencies)),
        "real_time_factor": world_seconds / (p50 / 1e3),
        "matmul_peak_gflops": peak,
        "achieved_gflops": flops / 1e9 / (p50 / 1e3),
        "utilisation_%": 100.0 * flops / 1e9 / (p50 / 1e3) / peak,
        f"batched_{batch}_step_ms": batched * 1e3,
        f"sequential_{batch}_steps_ms": sequential * 1e3,
        "batched_speedup": sequential / batched,
        "encode_ms": encode * 1e3,
        "decode_ms": decode * 1e3,
        "gflop_per_step": flops / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
