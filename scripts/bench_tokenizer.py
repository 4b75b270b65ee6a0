"""Benchmark of the tokenizer presets: parameters, compression, CPU encode/decode time.

Usage: python scripts/bench_tokenizer.py [--repeats 10]
Prints a markdown table for BENCHMARKS.md. The paper preset is built on the meta device
(shapes and parameter count only). The bundled default tokenizer (float32) is timed on a
4-frame 200x200x16 chunk of a held-out procedural clip (dataset seed 10000), batch 1, with
torch's default threads: real scenes, since decoding is faster where voxels are free.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from occsim.assets import asset_path
from occsim.data import ProceduralClips
from occsim.tokenizer import TOKENIZER_PRESETS, OccTokenizer


def describe(model: OccTokenizer, frames: int) -> dict:
    c, t, h, w = model.latent_shape(frames)
    x, y, z = model.config.grid_size
    groups, codes = model.config.codebook_groups, model.config.codebook_size
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "latent": f"{c}x{t}x{h}x{w}",
        "ratio": frames * x * y / (t * h * w),
        "bits": frames * x * y * z * math.log2(18) / (t * h * w * groups * math.log2(codes)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for name, frames in (("paper", 32), ("default", 4)):
        with torch.device("meta"):
            info = describe(OccTokenizer.from_preset(name), frames)
        rows.append((name, frames, info))
    model = OccTokenizer.from_pretrained(asset_path("default_model", "tokenizer")).float().eval()
    occupancy = torch.as_tensor(ProceduralClips(1, clip_len=4, seed=10000)[0]["occupancy"])[None]
    with torch.no_grad():
        for _ in range(2):
            model.decode_classes(model.encode(occupancy).latents)
        encode_times, decode_times, trunk_times = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            latents = model.encode(occupancy).latents
            middle = time.perf_counter()
            model.decode_classes(latents)
            encode_times.append(middle - start)
            decode_times.append(time.perf_counter() - middle)
            start = time.perf_counter()
            model._decode_features(latents, None)
            trunk_times.append(time.perf_counter() - start)
    print("| preset | input | latent | params | ratio (THW/thw) | input bits / code bits |")
    print("|---|---|---|---|---|---|")
    for name, frames, info in rows:
        print(
            f"| {name} | {frames}x200x200x16 | {info['latent']} | {info['params'] / 1e6:.2f} M "
            f"| {info['ratio']:.0f} | {info['bits']:.0f} |"
        )
    median = sorted(encode_times)[len(encode_times) // 2] * 1e3
    median_d = sorted(decode_times)[len(decode_times) // 2] * 1e3
    print(
        "\nbundled default tokenizer, 4x200x200x16 held-out chunk, batch 1, "
        f"{torch.get_num_threads()} threads: "
        f"encode {median:.0f} ms + decode to classes {median_d:.0f} ms = "
        f"{median + median_d:.0f} ms (median of {args.repeats})"
    )
    trunk = sorted(trunk_times)[len(trunk_times) // 2] * 1e3
    print(f"of the decode: trunk {trunk:.0f} ms, class head (logits + arg-max) the rest")
    print(f"presets: {sorted(TOKENIZER_PRESETS)}")


if __name__ == "__main__":
    main()
