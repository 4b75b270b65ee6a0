"""Command line of the train module: ``occsim train STAGE [--config F] [--resume R] k=v ...``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from occsim.train.config import DiTTrainConfig, TokenizerTrainConfig, load_config

STAGES = ("tokenizer", "dit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments shared by ``occsim train`` and ``python -m occsim.train``."""
    parser.add_argument("stage", choices=STAGES, help="what to train")
    parser.add_argument("--config", help="YAML or JSON file of config values")
    parser.add_argument("--resume", help="'latest' or a checkpoint folder to continue from")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.max_steps=10")


def parse_with_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse ``argv``, taking ``key=value`` overrides wherever they stand: argparse alone
    drops those that follow an option (``train tokenizer --config F a=1``)."""
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def run(args: argparse.Namespace) -> None:
    """Train the chosen stage."""
    if args.stage == "tokenizer":
        from occsim.train.tokenizer_stage import train_tokenizer

        config = load_config(TokenizerTrainConfig, args.config, args.overrides)
        final = train_tokenizer(config, resume=args.resume)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"tokenizer saved to {final}")
    elif args.stage == "dit":
        from occsim.train.dit_stage import train_dit

        config = load_config(DiTTrainConfig, args.config, args.overrides)
        final = train_dit(config, resume=args.resume)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"pipeline saved to {final}")
    else:
        raise ValueError(f"unknown stage {args.stage!r}; expected one of {STAGES}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m occsim.train", description=__doc__)
    add_arguments(parser)
    run(parse_with_overrides(parser, argv))
