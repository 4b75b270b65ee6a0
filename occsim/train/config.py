"""Typed training configurations: dataclasses with a docstring per field.

A config is built from its defaults, then an optional YAML/JSON file, then command-line
overrides ``key=value`` (dotted keys reach nested sections, e.g. ``data.num_clips=64``).
Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
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
    data: DataConfig = field(default_factory=lambda: DataConfig(clip_len=8))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=3e-4))
    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/dit"))


C = TypeVar("C")


def check_sections(data: DataConfig, run: RunConfig) -> None:
    """Raise a ``ValueError`` naming the key for values the sections cannot take."""
    checks = (
        ("data.num_workers", data.num_workers, "0 loads clips in the training process"),
        ("run.image_every", run.image_every, "0 writes no images"),
    )
    for key, value, zero in checks:
        if value < 0:
            raise ValueError(f"config key {key!r} must be >= 0 ({zero}), got {value}")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ValueError(f"config key {key!r}: cannot parse {value!r}: {error}") from None
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
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict view (for logging and saving next to checkpoints)."""
    return dataclasses.asdict(config)
