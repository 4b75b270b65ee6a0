"""Command line of the train module: ``occsim train STAGE [--config F] [--resume R] k=v ...``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from occsim.train.config import DiTTrainConfig, TokenizerTrainConfig, load_config
from occsim.train.config_help import config_help

STAGES = ("tokenizer", "dit")
CONFIGS = {"tokenizer": TokenizerTrainConfig, "dit": DiTTrainConfig}


def stage_help(stage: str) -> str:
    """The presets and config keys (with their docstrings) of a training stage."""
    if stage == "tokenizer":
        from occsim.tokenizer.model import TOKENIZER_PRESETS as presets
    else:
        from occsim.dit import DIT_PRESETS as presets
    return config_help(CONFIGS[stage], sorted(presets))


class _StageHelp(argparse.Action):
    """``-h``: the usage, then the chosen stage's presets and config keys."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **_: Any):
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            help="show this help (after STAGE: its presets and config keys) and exit",
        )

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.print_help()
        stage = getattr(namespace, "stage", None)
        print()
        if stage in STAGES:
            print(stage_help(stage))
        else:
            print(f"`{parser.prog} STAGE --help` lists the presets and config keys of a stage.")
        parser.exit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments shared by ``occsim train`` and ``python -m occsim.train``; ``parser``
    is made with ``add_help=False`` (its ``-h`` shows the stage's config keys)."""
    parser.add_argument("-h", "--help", action=_StageHelp)
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
    parser = argparse.ArgumentParser(
        prog="python -m occsim.train", description=__doc__, add_help=False
    )
    add_arguments(parser)
    run(parse_with_overrides(parser, argv))
