"""Copy a trained pipeline into assets/default_model, weights stored in float16.

Usage: python scripts/bundle_model.py runs/dit/pipeline [--out assets/default_model]
                                      [--tokenizer runs/tokenizer_ft/final]
The env loads it back in its configured dtype (float32 by default); float16 storage halves
the wheel's size at no measurable cost for these small models. Written atomically.
``--tokenizer`` swaps in a decoder-fine-tuned tokenizer; it is refused unless its encoder
equals the pipeline's (the DiT was trained on that latent space).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from occsim.io import atomic_directory
from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import OccTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pipeline", type=Path, help="OccSoraPipeline folder")
    parser.add_argument("--out", type=Path, default=Path("assets/default_model"))
    parser.add_argument("--tokenizer", type=Path, help="decoder-fine-tuned tokenizer folder")
    args = parser.parse_args()
    pipe = OccSoraPipeline.from_pretrained(args.pipeline)
    if args.tokenizer is not None:
        tokenizer = OccTokenizer.from_pretrained(args.tokenizer)
        ours, theirs = pipe.tokenizer.encoder_state_dict(), tokenizer.encoder_state_dict()
        if ours.keys() != theirs.keys() or any(
            not torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours
        ):
            raise SystemExit(
                f"{args.tokenizer} encodes differently from the pipeline's tokenizer: its "
                "DiT would see another latent space (fine-tune with freeze_encoder=true)"
            )
        pipe.register_modules(tokenizer=tokenizer)
    pipe.to(torch.float16)
    with atomic_directory(args.out) as staging:
        pipe.save_pretrained(staging)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"bundled {args.pipeline} into {args.out} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
