"""Typed training configurations: dataclasses with a docstring per field.

A config is built from its defaults, then an optional YAML/JSON file, then command-line
overrides ``key=value`` (dotted keys reach nested sections, e.g. ``data.num_clips=64``).
Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml


@dataclass
class DataConfig:
    """Where training clips come from."""

    source: str = "procedural"
    """``procedural`` (clips built on the fly, no download) or ``occ3d`` (a dataset root)."""
    clip_len: int = 4
    """Frames per training clip (a multiple of the tokenizer's temporal factor)."""
    num_clips: int = 2048
    """Procedural: training clips (seeds ``seed``); held-out clips use ``val_seed``."""
    num_val_clips: int = 16
    """Procedural: validation clips."""
    seed: int = 0
    """Procedural: dataset seed of the training clips."""
    val_seed: int = 10_000
    """Procedural: dataset seed of the validation clips (never used in training)."""
    root: str = ""
    """Occ3D: dataset root holding ``gts/``."""
    poses: str = ""
    """Occ3D: ``annotations.json`` or infos ``.pkl`` (default ``root/annotations.json``)."""
    train_split: str = "train"
    """Occ3D: split of the training scenes."""
    val_split: str = "val"
    """Occ3D: split of the validation scenes."""
    num_workers: int = 0
    """DataLoader worker processes that load the coming steps' clips ahead of training
    (0: load in the training process). Batches do not depend on it: each step's clips are
    a function of the step alone."""


@dataclass
class OptimConfig:
    """AdamW with a cosine schedule after a linear warm-up."""

    learning_rate: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    max_steps: int = 2000
    """Total optimiser steps."""
    grad_clip: float = 1.0
    """Gradient-norm clipping (0 disables)."""
    batch_size: int = 2
    """Clips per device per step."""
    gradient_accumulation: int = 1
    """Micro-batches per optimiser step."""


@dataclass
class RunConfig:
    """Where and how often a run writes things."""

    output_dir: str = "runs/default"
    """Checkpoints (``checkpoints/step-N``), tensorboard logs and the final model."""
    seed: int = 0
    """Seed of initialisation and data order."""
    mixed_precision: str = "no"
    """accelerate mixed precision: ``no``, ``bf16`` or ``fp16``."""
    cpu: bool = False
    """Train on the CPU even where a GPU exists (several CPU processes use gloo DDP)."""
    checkpoint_every: int = 200
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept."""
    validate_every: int = 200
    """Steps between validations."""
    log_every: int = 10
    """Steps between tensorboard scalars."""
    image_every: int = 200
    """Steps between tensorboard BEV images (also after the last step; 0: none) of the
    first validation clip (the first training clip without validation data) next to the
    tokenizer's reconstruction or the DiT's forecast of it."""


@dataclass
class TokenizerTrainConfig:
    """Training of the 4D tokenizer (stage 1)."""

    preset: str = "default"
    """Tokenizer preset (``paper``, ``default``, ``tiny``)."""
    model_overrides: dict = field(default_factory=dict)
    """Keyword overrides of the preset (e.g. ``{"codebook_size": 512}``)."""
    patch_fraction: float = 0.25
    """Share of head patches supervised per step (rare-class patches always are)."""
    lovasz_weight: float = 1.0
    """Weight of the Lovasz-softmax term."""
    class_weighting: str = "none"
    """Cross-entropy class weights: ``none`` or ``inverse_sqrt_frequency`` (measured on the
    ``class_weight_clips`` training clips; rare classes count more, as they do in mIoU)."""
    class_weight_clips: int = 32
    """Training clips, evenly spread over the set, whose class frequencies set the
    ``inverse_sqrt_frequency`` weights."""
    init_from: str = ""
    """Start from the weights of a trained tokenizer folder (fine-tuning) instead of the
    preset's random initialisation."""
    freeze_encoder: bool = False
    """Train the decoder only: the encoder, class embeddings and codebook stay fixed, so
    the latent space (and a DiT trained on it) stays valid. Needs ``init_from``."""
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/tokenizer"))


@dataclass
class DiTTrainConfig:
    """Training of the diffusion world model (stage 2) on a frozen tokenizer."""

    tokenizer: str = "runs/tokenizer/final"
    """Folder of the trained tokenizer (``save_pretrained`` layout)."""
    preset: str = "default"
    """DiT preset (``paper``, ``default``, ``tiny``)."""
    model_overrides: dict = field(default_factory=dict)
    """Keyword overrides of the preset."""
    max_context_frames: int = 1
    """Latent frames given clean as context: 0..this many, drawn per sample."""
    trajectory_dropout: float = 0.1
    """Probability of replacing the trajectory by the null embedding (for guidance)."""
    vlb_from_step: int = 0
    """Step from which the variational-bound term is added (before it: L_simple only)."""
    prediction_type: str = "epsilon"
    """What the DiT predicts: ``epsilon`` (the paper), ``sample`` or ``v_prediction``;
    saved in the pipeline's scheduler config."""
    latent_cache: str = ""
    """Latent cache file (``safetensors``, see ``occsim.train.latent_cache``), built on
    first use and rebuilt when the tokenizer or data change; empty: encode on the fly."""
    segment_len: int = 40
    """Frames per cached segment (a multiple of the tokenizer's temporal factor)."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the DiT weights (saved as the model)."""
    init_from: str = ""
    """Continue from a trained DiT: a pipeline folder (its ``transformer``) or a transformer
    folder, instead of the preset's random initialisation. ``model_overrides`` may then only
    add ``memory_conditioning: true`` (new inputs with zero weights: the model starts out
    predicting what it did)."""
    memory_dropout: float = 0.1
    """With ``memory_conditioning``: probability that a sample's memory view is withheld
    (nothing known), so the model also continues a world without a memory."""
    data: DataConfig = field(default_factory=lambda: DataConfig(clip_len=8))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=3e-4))
    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/dit"))


C = TypeVar("C")


Rule = Callable[[Any, str], None]


def _integer(minimum: int, maximum: int | None = None, note: str = "") -> Rule:
    """An int (not a bool) in ``[minimum, maximum]``; ``note`` says what the bound means."""

    def rule(value: Any, key: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key {key!r} expects int, got {value!r}")
        if value < minimum:
            raise ValueError(f"config key {key!r} must be >= {minimum}{note}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"config key {key!r} must be <= {maximum}{note}, got {value}")

    return rule


def _real(minimum: float, maximum: float | None = None, *, open_min: bool = False) -> Rule:
    """A finite float in the range (``open_min``: the minimum itself excluded)."""

    def rule(value: Any, key: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config key {key!r} expects float, got {value!r}")
        low = value <= minimum if open_min else value < minimum
        if not math.isfinite(value) or low or (maximum is not None and value > maximum):
            bounds = (
                f"{'(' if open_min else '['}{minimum}, {maximum if maximum is not None else 'inf'}"
            )
            bounds += "]" if maximum is not None else ")"
            raise ValueError(f"config key {key!r} must be a finite number in {bounds}, got {value}")

    return rule


def _one_of(*choices: str) -> Rule:
    def rule(value: Any, key: str) -> None:
        if value not in choices:
            raise ValueError(
                f"unknown {key} {value!r}: config key {key!r} must be one of {list(choices)}"
            )

    return rule


def _text(value: Any, key: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"config key {key!r} expects str, got {value!r}")


def _path(value: Any, key: str) -> None:
    _text(value, key)
    if not value:
        raise ValueError(f"config key {key!r} must name a folder or file, got ''")


def _flag(value: Any, key: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"config key {key!r} expects bool, got {value!r}")


def _mapping(value: Any, key: str) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"config key {key!r} expects a mapping, got {value!r}")


def _presets(kind: str) -> Rule:
    def rule(value: Any, key: str) -> None:
        names = PRESET_NAMES[kind]
        if value not in names:
            raise ValueError(
                f"config key {key!r} must be a {kind} preset {list(names)}, got {value!r}"
            )

    return rule


MAX_SEED = 2**31 - 1  # seeds are combined with step counts into torch seeds (< 2**63)
MAX_COUNT = 2**31 - 1  # steps, clips, frames: anything larger is a typo
# Preset names without importing the models (the CLI parses configs before torch loads).
PRESET_NAMES = {
    "tokenizer": ("paper", "default", "default_fine", "tiny"),
    "DiT": ("paper", "default", "tiny"),
}

RULES: dict[type, dict[str, Rule]] = {
    DataConfig: {
        "source": _one_of("procedural", "occ3d"),
        "clip_len": _integer(1, 4096),
        "num_clips": _integer(1, MAX_COUNT),
        "num_val_clips": _integer(1, MAX_COUNT),
        "seed": _integer(0, MAX_SEED),
        "val_seed": _integer(0, MAX_SEED),
        "root": _text,
        "poses": _text,
        "train_split": _text,
        "val_split": _text,
        "num_workers": _integer(0, 256, " (0 loads clips in the training process)"),
    },
    OptimConfig: {
        "learning_rate": _real(0.0, 10.0, open_min=True),
        "weight_decay": _real(0.0, 10.0),
        "warmup_steps": _integer(0, MAX_COUNT),
        "max_steps": _integer(1, MAX_COUNT, " (a run trains at least one step)"),
        "grad_clip": _real(0.0, None),
        "batch_size": _integer(1, 65536),
        "gradient_accumulation": _integer(1, 65536),
    },
    RunConfig: {
        "output_dir": _path,
        "seed": _integer(0, MAX_SEED),
        "mixed_precision": _one_of("no", "bf16", "fp16"),
        "cpu": _flag,
        "checkpoint_every": _integer(1, MAX_COUNT, " (one is always written at the end)"),
        "keep_checkpoints": _integer(1, 1000),
        "validate_every": _integer(1, MAX_COUNT),
        "log_every": _integer(1, MAX_COUNT),
        "image_every": _integer(0, MAX_COUNT, " (0 writes no images)"),
    },
    TokenizerTrainConfig: {
        "preset": _presets("tokenizer"),
        "model_overrides": _mapping,
        "patch_fraction": _real(0.0, 1.0, open_min=True),
        "lovasz_weight": _real(0.0, 1000.0),
        "class_weighting": _one_of("none", "inverse_sqrt_frequency"),
        "class_weight_clips": _integer(1, MAX_COUNT),
        "init_from": _text,
        "freeze_encoder": _flag,
    },
    DiTTrainConfig: {
        "tokenizer": _path,
        "preset": _presets("DiT"),
        "model_overrides": _mapping,
        "max_context_frames": _integer(0, 4096),
        "trajectory_dropout": _real(0.0, 1.0),
        "vlb_from_step": _integer(0, MAX_COUNT),
        "prediction_type": _one_of("epsilon", "sample", "v_prediction"),
        "latent_cache": _text,
        "segment_len": _integer(1, 4096),
        "ema_decay": _real(0.0, 0.999999),
        "init_from": _text,
        "memory_dropout": _real(0.0, 1.0),
    },
}


def check_config(config: Any, prefix: str = "") -> None:
    """Every key of a training config in range, before any work starts; a ``ValueError``
    names the first key that is not (dotted, as on the command line)."""
    rules = RULES[type(config)]
    for item in dataclasses.fields(config):
        value, key = getattr(config, item.name), f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            check_config(value, f"{key}.")
        else:
            rules[item.name](value, key)
    if isinstance(config, DataConfig) and config.source == "occ3d" and not config.root:
        raise ValueError(f"config key '{prefix}root' must be set for data.source=occ3d")


def check_sections(data: DataConfig, run: RunConfig) -> None:
    """Raise a ``ValueError`` naming the key for values the sections cannot take."""
    check_config(data, "data.")
    check_config(run, "run.")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ValueError(f"config key {key!r}: cannot parse {value!r}: {error}") from None
    if annotation in (int, float) and isinstance(value, bool):
        raise ValueError(f"config key {key!r} expects {annotation.__name__}, got {value!r}")
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    if annotation is float and isinstance(value, int):
        return float(value)
    if annotation is str and value is None:
        return ""
    expected = {int: int, float: float, str: str, bool: bool, dict: dict}.get(annotation)
    if expected is not None and not isinstance(value, expected):
        raise ValueError(
            f"config key {key!r} expects {expected.__name__}, got {value!r} "
            f"({type(value).__name__})"
        )
    return value


def _apply(config: Any, values: dict[str, Any], prefix: str = "") -> None:
    hints = get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ValueError(f"unknown config key {dotted!r}; valid keys here: {sorted(names)}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {dotted!r} is a section; give a mapping")
            _apply(current, value, f"{dotted}.")
        else:
            setattr(config, key, _coerce(value, hints[key], dotted))


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """Build ``cls`` from defaults, an optional YAML/JSON file and ``key=value`` overrides."""
    config = cls()
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text()
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(values, dict):
            raise ValueError(f"config file {path} must hold a mapping at the top level")
        _apply(config, values)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        nested: dict[str, Any] = {}
        cursor = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        _apply(config, nested)
    check_config(config)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view (for logging and saving next to checkpoints)."""
    return dataclasses.asdict(config)
