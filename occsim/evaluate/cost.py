"""What a learned step costs, in terms a user can compare: this machine's matmul peak, the
step's share of it, and how step time grows with frames per step and batch; with the FLOP
counts, the same table estimated for one H100.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from occsim.dit import OccDiT
from occsim.evaluate.report import Report
from occsim.grid import FRAME_DT
from occsim.pipeline import OccSoraPipeline
from occsim.procedural.scene import starting_scene
from occsim.world_model import WorldModelRollout, propose_together

# One H100 SXM: dense bf16 tensor-core peak and HBM3 bandwidth (NVIDIA's data sheet).
H100_BF16_TFLOPS = 989.0
H100_BANDWIDTH_GBS = 3350.0
# A CPU-side floor per denoising pass: launching the ~200 kernels of a small DiT pass
# (about 5 us each) and the scheduler's step; measured figures for eager PyTorch.
GPU_PASS_OVERHEAD_S = 1.0e-3
# Share of peak a well-fed transformer of this width reaches (matmuls of 144-wide layers
# are far from the tensor cores' best shapes).
GPU_EFFICIENCY = 0.35


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of the best of ``repeats`` ``size``-square matmuls on this machine, with
    torch's threads as set (the figure a step's utilisation is measured against)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    a @ b  # warm-up: thread pool, caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


@dataclass(frozen=True)
class CostRow:
    """One cell of the scaling table: a step of ``batch`` rollouts generating
    ``frames`` frames each."""

    frames: int
    batch: int
    step_ms: float
    gflop: float
    world_seconds_per_second: float
    gpu_step_ms: float


def _pipeline_for(pipe: OccSoraPipeline, frames: int) -> OccSoraPipeline:
    """``pipe`` itself when its window generates ``frames`` frames after one latent frame
    of context, otherwise the same model with a window that long (random weights: cost
    depends on shapes only)."""
    factor = pipe.tokenizer.temporal_factor
    config = pipe.transformer.config
    latent_frames = 1 + frames // factor
    if latent_frames == config.latent_frames:
        return pipe
    shape = {k: v for k, v in config.items() if not k.startswith("_")}
    shape.update(latent_frames=latent_frames, trajectory_length=latent_frames * factor)
    transformer = OccDiT(**shape).to(pipe.transformer.device).eval()
    variant = OccSoraPipeline(pipe.tokenizer, transformer, pipe.scheduler)
    variant.set_progress_bar_config(disable=True)
    return variant


def gpu_step_seconds(gflop: float, passes: int, weight_bytes: int) -> float:
    """Roofline estimate of a step on one H100 in bf16: the larger of the launch floor of
    its ``passes`` denoising passes, its FLOPs at :data:`GPU_EFFICIENCY` of peak, and
    reading the weights once per pass."""
    compute = gflop * 1e9 / (H100_BF16_TFLOPS * 1e12 * GPU_EFFICIENCY)
    memory = passes * weight_bytes / (H100_BANDWIDTH_GBS * 1e9)
    return max(passes * GPU_PASS_OVERHEAD_S, compute, memory)


def _rollout_steps(
    model: OccSoraPipeline,
    frames: int,
    batch: int,
    repeats: int,
    settings: tuple[int, float, bool],
) -> tuple[float, float]:
    """Median seconds and GFLOP of a step of ``batch`` rollouts that drive straight on at
    6 m/s, ``frames`` frames a step (after one warm-up step)."""
    start_frames, states = starting_scene(4, 0)
    poses = np.array([[s.x, s.y, s.yaw] for s in states])
    solver_steps, guidance, memory = settings
    rollouts = [
        WorldModelRollout(model, frames, solver_steps, guidance, scene_memory=memory)
        for _ in range(batch)
    ]
    for i, rollout in enumerate(rollouts):
        rollout.start(start_frames, poses, torch.Generator().manual_seed(i))
    stride = 6.0 * FRAME_DT
    ahead = np.arange(1, frames + 1)[:, None] * np.array([stride, 0.0, 0.0])
    seconds = []
    for k in range(repeats + 2):  # warm-up, timed steps, one step under the FLOP counter
        target = poses[-1] + ahead + np.array([k * frames * stride, 0.0, 0.0])
        counter = FlopCounterMode(display=False)
        begin = time.perf_counter()
        with counter if k == repeats + 1 else contextlib.nullcontext():
            windows = propose_together(rollouts, [target] * batch)
            for rollout, window in zip(rollouts, windows):
                rollout.commit(window)
        if 0 < k <= repeats:
            seconds.append(time.perf_counter() - begin)
    return float(np.median(seconds)), counter.get_total_flops() / 1e9


def scaling_table(
    pipe: OccSoraPipeline,
    frames_options: tuple[int, ...] = (4, 8),
    batches: tuple[int, ...] = (1, 2, 4, 8),
    repeats: int = 2,
    num_inference_steps: int = 10,
    guidance_scale: float = 2.0,
    scene_memory: bool = True,
) -> list[CostRow]:
    """Step time of ``batch`` rollouts proposing and committing ``frames`` frames each
    (one batched denoising loop), FLOPs of one such step and the H100 estimate."""
    settings = (num_inference_steps, guidance_scale, scene_memory)
    passes = num_inference_steps * (2 if guidance_scale != 1.0 else 1)
    rows = []
    for frames in frames_options:
        model = _pipeline_for(pipe, frames)
        weight_bytes = sum(p.numel() for p in model.transformer.parameters()) * 2  # bf16
        for batch in batches:
            step_s, gflop = _rollout_steps(model, frames, batch, repeats, settings)
            rows.append(
                CostRow(
                    frames=frames,
                    batch=batch,
                    step_ms=step_s * 1e3,
                    gflop=gflop,
                    world_seconds_per_second=batch * frames * FRAME_DT / step_s,
                    gpu_step_ms=gpu_step_seconds(gflop, passes, weight_bytes) * 1e3,
                )
            )
    return rows


def gpu_saturation_batch(gflop_per_sample: float, passes: int) -> float:
    """The batch at which an H100's step stops being held at its per-pass launch floor and
    grows with the work (compute time = floor): below it, more samples are nearly free."""
    per_sample = gflop_per_sample * 1e9 / (H100_BF16_TFLOPS * 1e12 * GPU_EFFICIENCY)
    return passes * GPU_PASS_OVERHEAD_S / per_sample


def scaling_report(rows: list[CostRow], passes: int) -> Report:
    """The scaling table as a report, with how it was measured and where an H100 leaves
    its launch floor (``passes``: denoising passes a step)."""
    notes = [
        "Step: one batched denoising loop proposing `batch` windows (after one encode of "
        "their ground priors), then each committed (decode, scene memory). Windows longer "
        "than the bundled DiT's use a DiT of the same width with random weights (cost "
        "depends on shapes only); 2 frames a step is not possible, as the tokenizer folds 4 "
        "frames into a latent frame.",
        f"H100 column: a roofline estimate from the FLOP count (bf16 peak {H100_BF16_TFLOPS:.0f}"
        f" TFLOP/s at {GPU_EFFICIENCY:.0%} efficiency, {GPU_PASS_OVERHEAD_S * 1e3:.0f} ms launch"
        " floor a denoising pass, weights read once a pass), not a measurement; it leaves out"
        " the scene memory's numpy work (projection, composition, tracks), which runs on the"
        " CPU whatever the accelerator.",
    ]
    for frames in sorted({row.frames for row in rows}):
        smallest = min((r for r in rows if r.frames == frames), key=lambda r: r.batch)
        batch = gpu_saturation_batch(smallest.gflop / smallest.batch, passes)
        notes.append(
            f"{frames} frames a step: an H100 step stays at its launch floor up to a batch of "
            f"about {batch:.0f}; beyond it, time grows with the batch."
        )
    table = [
        {
            "frames per step": row.frames,
            "batch": row.batch,
            "step ms (this CPU)": row.step_ms,
            "GFLOP": row.gflop,
            "world s per s": row.world_seconds_per_second,
            "H100 bf16 step ms (estimate)": row.gpu_step_ms,
        }
        for row in rows
    ]
    title = "Step cost against frames per step and batch (the learned world's rollout)"
    return Report("bench-scaling", title, list(table[0]), table, notes=notes)
