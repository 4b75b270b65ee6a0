"""Benchmark of the world model: DiT FLOPs per sample and the CPU closed-loop step time.

Usage: python scripts/bench_dit.py [--repeats 5]
FLOPs are counted by torch's FlopCounterMode on the meta device (matmuls and attention;
elementwise work is not counted). The closed-loop step is the default preset generating
one new latent frame after one context frame: 10 solver steps (DDIM), guidance on
(conditional and null passes batched), then decoding the new 4 frames to classes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from diffusers import DDIMScheduler
from torch.utils.flop_counter import FlopCounterMode

from occsim.diffusion import make_training_scheduler
from occsim.dit import DIT_PRESETS, OccDiT
from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import OccTokenizer

H100_BF16_DENSE = 800e12  # FLOP/s, about, as the issue states


def forward_flops(name: str) -> tuple[int, int, int]:
    """(FLOPs of one forward pass, batch 1; parameters; tokens)."""
    with torch.device("meta"):
        model = OccDiT.from_preset(name)
        config = model.config
        latents = torch.zeros(1, config.latent_channels, config.latent_frames, *config.latent_size)
        trajectory = torch.zeros(1, config.trajectory_length, 2)
        with FlopCounterMode(display=False) as counter:
            model(latents, torch.zeros(1, dtype=torch.long), trajectory)
    tokens = int(np.prod(model.token_grid))
    return counter.get_total_flops(), sum(p.numel() for p in model.parameters()), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| preset | params | tokens | GFLOP / forward | GFLOP / sample (10 steps, guided) |")
    print("|---|---|---|---|---|")
    results = {}
    for name in ("paper", "default"):
        flops, params, tokens = forward_flops(name)
        per_sample = flops * 10 * 2
        results[name] = per_sample
        print(
            f"| {name} | {params / 1e6:.1f} M | {tokens} | {flops / 1e9:.1f} | "
            f"{per_sample / 1e9:.0f} |"
        )
    paper_frames = 32
    seconds = results["paper"] / H100_BF16_DENSE
    print(
        f"\npaper preset on an H100 at 800 TFLOP/s bf16 dense, 100% utilisation: "
        f"{seconds * 1e3:.1f} ms per 32-frame clip with 10 guided steps = "
        f"{paper_frames / seconds:.0f} frames/s (at a realistic 40% MFU: "
        f"{0.4 * paper_frames / seconds:.0f} frames/s); 1000 steps: "
        f"{paper_frames / (seconds * 100) * 0.4:.1f} frames/s at 40% MFU"
    )

    tokenizer = OccTokenizer.from_preset("default").eval()
    transformer = OccDiT.from_preset("default").eval()
    pipe = OccSoraPipeline(tokenizer, transformer, make_training_scheduler())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    config = transformer.config
    context = torch.randn(1, config.latent_channels, 1, *config.latent_size)
    trajectory = np.zeros((1, config.trajectory_length, 2), dtype=np.float32)
    times = []
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        pipe(
            trajectory,
            context=context,
            num_inference_steps=10,
            guidance_scale=2.0,
            generator=torch.Generator().manual_seed(i),
        )
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    print(
        f"\ndefault preset closed-loop step on this CPU ({torch.get_num_threads()} threads): "
        f"median {times[len(times) // 2] * 1e3:.0f} ms over {args.repeats} "
        f"(one new latent frame = 4 frames = 2 s of world, 10 DDIM steps, guidance 2.0, "
        f"decode to classes); DiT presets: {sorted(DIT_PRESETS)}"
    )


if __name__ == "__main__":
    main()
