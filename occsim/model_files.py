"""Saved model folders checked before they load: configs in range, weights that fit exactly.

diffusers only logs a warning for missing or unexpected weights (and fills the gaps with
random ones) and never range-checks a config, so a structurally wrong folder would load
and run. Here every folder is refused, with the file named, unless its config describes a
buildable model and its safetensors file holds exactly that model's tensors, all finite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from safetensors import safe_open

from occsim.dit import OccDiT
from occsim.labels import NUM_CLASSES
from occsim.latent_warp import PADDINGS
from occsim.tokenizer import OccTokenizer
from occsim.validation import check_float, check_int

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
MAX_SIZE = 1 << 16  # any width, count or length of a model larger than this is corruption
MAX_LEVELS = 16  # encoder levels, downsample factors

Rule = Callable[[Any, str], Any]


def _size(value: Any, name: str) -> int:
    return check_int(value, name, 1, MAX_SIZE)


def _sizes(length: int | None) -> Rule:
    def rule(value: Any, name: str) -> None:
        if not isinstance(value, (list, tuple)) or not value or len(value) > MAX_LEVELS:
            raise ValueError(f"{name} must be a list of sizes, got {value!r}")
        if length is not None and len(value) != length:
            raise ValueError(f"{name} must hold {length} sizes, got {value!r}")
        for i, item in enumerate(value):
            _size(item, f"{name}[{i}]")

    return rule


def _triples(value: Any, name: str) -> None:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LEVELS:
        raise ValueError(f"{name} must be a list of (t, h, w) factors, got {value!r}")
    for i, item in enumerate(value):
        _sizes(3)(item, f"{name}[{i}]")


def _flag(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def _float(minimum: float | None, maximum: float | None = None, open_min: bool = False) -> Rule:
    return lambda value, name: check_float(value, name, minimum, maximum, open_minimum=open_min)


def _below_one(value: Any, name: str) -> None:
    if not 0.0 <= check_float(value, name, 0.0, 1.0) < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")


def _one_of(choices: tuple[str, ...]) -> Rule:
    def check(value: Any, name: str) -> None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")

    return check


def _num_classes(value: Any, name: str) -> None:
    if check_int(value, name) != NUM_CLASSES:
        raise ValueError(f"{name} must be {NUM_CLASSES} (the Occ3D classes), got {value}")


CONFIG_RULES: dict[type, dict[str, Rule]] = {
    OccTokenizer: {
        "num_classes": _num_classes,
        "grid_size": _sizes(3),
        "class_embed_dim": _size,
        "stem_patch": _sizes(3),
        "block_channels": _sizes(None),
        "downsample": _triples,
        "num_res_blocks": lambda v, n: check_int(v, n, 0, MAX_LEVELS),
        "latent_channels": _size,
        "codebook_size": _size,
        "codebook_groups": _size,
        "attention_heads": _size,
        "dropout": _below_one,
        "head_upsample": _sizes(3),
        "head_channels": _size,
        "commitment_cost": _float(0.0),
        "codebook_decay": _below_one,
    },
    OccDiT: {
        "latent_channels": _size,
        "latent_frames": _size,
        "latent_size": _sizes(2),
        "patch_size": _sizes(3),
        "trajectory_length": _size,
        "hidden_size": _size,
        "depth": lambda v, n: check_int(v, n, 1, 1024),
        "num_heads": _size,
        "mlp_ratio": _float(0.0, 64.0, open_min=True),
        "learn_sigma": _flag,
        "trajectory_scale": _float(0.0, open_min=True),
        "latent_scale": _float(0.0, open_min=True),
        "latent_shift": _float(None),
        "context_prior": _flag,
        "grid_half_extent": _float(0.0, open_min=True),
        "memory_conditioning": _flag,
        "prior_padding": _one_of(PADDINGS),
    },
}


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; a missing file or anything but an object is named."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected a save_pretrained folder")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def check_model_config(model_class: type, config: dict, path: Path) -> None:
    """Every key of ``config`` known and in range for ``model_class``; raises naming ``path``."""
    if config.get("_class_name") != model_class.__name__:
        raise ValueError(
            f"{path} describes {config.get('_class_name')!r}, expected {model_class.__name__!r}"
        )
    rules = CONFIG_RULES[model_class]
    unknown = sorted(k for k in config if not k.startswith("_") and k not in rules)
    if unknown:
        raise ValueError(f"{path} has unexpected config keys {unknown}; valid: {sorted(rules)}")
    try:
        for key, rule in rules.items():
            if key in config:
                rule(config[key], key)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    if model_class is OccDiT:
        hidden, heads = config.get("hidden_size", 1), config.get("num_heads", 1)
        if hidden % heads:
            raise ValueError(f"{path}: hidden_size {hidden} is not divisible by num_heads {heads}")
    if model_class is OccTokenizer:
        channels, groups = config.get("latent_channels", 1), config.get("codebook_groups", 1)
        if channels % groups:
            raise ValueError(
                f"{path}: latent_channels {channels} is not divisible by codebook_groups {groups}"
            )


def expected_tensors(model_class: type, config: dict, path: Path) -> dict[str, torch.Tensor]:
    """The state dict (on the meta device: no memory) of the model ``config`` describes."""
    try:
        with torch.device("meta"):
            model = model_class.from_config(config)
    except (ValueError, TypeError, RuntimeError, AssertionError, ZeroDivisionError) as error:
        raise ValueError(f"{path} describes a model that cannot be built: {error}") from None
    return model.state_dict()


def check_weights(weights: Path, expected: dict[str, torch.Tensor]) -> None:
    """The safetensors file holds exactly ``expected``'s tensors, in shape and kind."""
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist; models load only from safetensors")
    try:
        with safe_open(str(weights), "pt") as handle:
            found = {key: handle.get_slice(key) for key in handle.keys()}
            shapes = {key: tuple(s.get_shape()) for key, s in found.items()}
            kinds = {key: s.get_dtype() for key, s in found.items()}
    except Exception as error:  # any unreadable header is a corrupt file
        raise ValueError(f"{weights} is not a readable safetensors file: {error}") from None
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not fit its config: {len(missing)} missing tensors "
            f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}"
        )
    for key, tensor in expected.items():
        if shapes[key] != tuple(tensor.shape):
            raise ValueError(
                f"{weights}: {key} has shape {shapes[key]}, the config needs {tuple(tensor.shape)}"
            )
        floating = kinds[key].startswith(("F", "BF"))
        if floating != tensor.is_floating_point():
            raise ValueError(f"{weights}: {key} has dtype {kinds[key]}, expected {tensor.dtype}")


def check_finite(model: torch.nn.Module, weights: Path) -> None:
    """Every floating weight and buffer finite (NaN weights generate garbage silently)."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{weights}: {name} holds NaN or infinity")


def load_model(model_class: type, folder: str | Path, dtype: torch.dtype | None = None):
    """``model_class.from_pretrained(folder)`` once its config and weights are checked."""
    folder = Path(folder)
    config_path = folder / "config.json"
    config = read_json_object(config_path)
    check_model_config(model_class, config, config_path)
    weights = folder / WEIGHTS_NAME
    check_weights(weights, expected_tensors(model_class, config, config_path))
    model = model_class.from_pretrained(folder, torch_dtype=dtype)
    check_finite(model, weights)
    return model


SCHEDULER_CHOICES = {
    "prediction_type": ("epsilon", "sample", "v_prediction"),
    "variance_type": (
        None,
        "fixed_small",
        "fixed_small_log",
        "fixed_large",
        "fixed_large_log",
        "learned",
        "learned_range",
    ),
    "timestep_spacing": ("leading", "linspace", "trailing"),
}


def scheduler_class(name: Any, where: str) -> type:
    """The diffusers scheduler class called ``name`` (nothing else is ever imported)."""
    found = getattr(diffusers, name, None) if isinstance(name, str) else None
    if not (isinstance(found, type) and issubclass(found, SchedulerMixin)):
        raise ValueError(f"{where}: {name!r} is not a diffusers scheduler class")
    return found


def check_scheduler_config(config: dict, where: str) -> None:
    """The values every sampler relies on: a timestep count, betas in (0, 1), known modes."""
    try:
        steps = check_int(
            config.get("num_train_timesteps", 1000), "num_train_timesteps", 1, 100_000
        )
        start = check_float(
            config.get("beta_start", 1e-4), "beta_start", 0.0, 1.0, open_minimum=True
        )
        end = check_float(config.get("beta_end", 0.02), "beta_end", 0.0, 1.0, open_minimum=True)
        if start > end or end >= 1.0:
            raise ValueError(
                f"beta_start {start} and beta_end {end} must satisfy 0 < start <= end < 1"
            )
        betas = config.get("trained_betas")
        if betas is not None:
            if not isinstance(betas, list) or len(betas) != steps:
                raise ValueError(f"trained_betas must list {steps} numbers")
            for i, beta in enumerate(betas):
                check_float(beta, f"trained_betas[{i}]", 0.0, 1.0, open_minimum=True)
        for key, choices in SCHEDULER_CHOICES.items():
            if key in config and config[key] not in choices:
                raise ValueError(f"{key} must be one of {choices}, got {config[key]!r}")
        if "steps_offset" in config:
            check_int(config["steps_offset"], "steps_offset", 0, steps - 1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def load_scheduler(folder: str | Path, class_name: str) -> SchedulerMixin:
    """The scheduler ``class_name`` from ``folder/scheduler_config.json``, checked."""
    path = Path(folder) / "scheduler_config.json"
    config = read_json_object(path)
    check_scheduler_config(config, str(path))
    found = scheduler_class(class_name, str(path))
    try:
        return found.from_config(config)
    except Exception as error:  # a config the scheduler refuses is a broken file
        raise ValueError(f"{path} does not configure {class_name}: {error}") from None


PIPELINE_PARTS = {"tokenizer": OccTokenizer, "transformer": OccDiT}


def read_model_index(folder: Path) -> str:
    """Check ``model_index.json`` names occsim's parts; returns the scheduler class name.

    diffusers would import whatever module the index names; here only occsim's own
    classes and diffusers schedulers are ever used.
    """
    path = folder / "model_index.json"
    index = read_json_object(path)
    if index.get("_class_name") != "OccSoraPipeline":
        raise ValueError(f"{path} is not an OccSoraPipeline index: {index.get('_class_name')!r}")
    for part, model_class in PIPELINE_PARTS.items():
        entry = index.get(part)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[1] == model_class.__name__):
            raise ValueError(
                f"{path}: {part} must be [module, {model_class.__name__!r}], got {entry!r}"
            )
        if not str(entry[0]).startswith("occsim"):
            raise ValueError(f"{path}: {part} must come from occsim, got module {entry[0]!r}")
    entry = index.get("scheduler")
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == "diffusers"):
        raise ValueError(f"{path}: scheduler must be ['diffusers', class name], got {entry!r}")
    scheduler_class(entry[1], str(path))
    return entry[1]


def check_pipeline_parts(tokenizer: Any, transformer: Any, scheduler: Any, folder: Path) -> None:
    """The parts fit each other: the DiT's latent window is the tokenizer's, and the
    scheduler asks only for what the DiT predicts."""
    config = transformer.config
    window = (config.latent_channels, config.latent_frames, *config.latent_size)
    try:
        latent = tuple(tokenizer.latent_shape(config.trajectory_length))
    except ValueError as error:
        raise ValueError(
            f"{folder}: the DiT's window does not fit the tokenizer: {error}"
        ) from None
    if latent != window:
        raise ValueError(
            f"{folder}: the DiT generates latents {window} but the tokenizer's latent of "
            f"{config.trajectory_length} frames is {latent}"
        )
    learned = scheduler.config.get("variance_type") in ("learned", "learned_range")
    if learned and isinstance(scheduler, diffusers.DDPMScheduler) and not config.learn_sigma:
        raise ValueError(
            f"{folder}: the scheduler samples a learned variance the DiT does not predict"
        )
    if config.context_prior and scheduler.config.get("prediction_type") != "sample":
        raise ValueError(f"{folder}: a DiT with context_prior needs prediction_type 'sample'")


def load_pipeline_parts(
    path: str | Path, dtype: torch.dtype | None = None, **given: Any
) -> tuple[Any, Any, SchedulerMixin]:
    """Tokenizer, DiT and scheduler of a pipeline folder, each checked; ``given`` parts
    (already built objects) replace those of the folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"pipeline folder {folder} does not exist")
    unknown = sorted(set(given) - {"tokenizer", "transformer", "scheduler"})
    if unknown:
        raise TypeError(
            f"unknown pipeline parts {unknown}; expected tokenizer, transformer, scheduler"
        )
    scheduler_name = read_model_index(folder)
    parts = {}
    for part, model_class in PIPELINE_PARTS.items():
        if given.get(part) is not None:
            parts[part] = given[part]
        else:
            parts[part] = load_model(model_class, folder / part, dtype).eval()
    scheduler = given.get("scheduler")
    if scheduler is None:
        scheduler = load_scheduler(folder / "scheduler", scheduler_name)
    elif not isinstance(scheduler, SchedulerMixin):
        raise TypeError(f"scheduler must be a diffusers scheduler, got {type(scheduler).__name__}")
    else:
        check_scheduler_config(dict(scheduler.config), "the given scheduler")
    check_pipeline_parts(parts["tokenizer"], parts["transformer"], scheduler, folder)
    return parts["tokenizer"], parts["transformer"], scheduler


def check_overrides(model_class: type, overrides: Any, key: str) -> None:
    """Keyword overrides of a model preset (a training config's ``model_overrides``): known
    keys with values in range, before any model is built."""
    if not isinstance(overrides, dict):
        raise ValueError(f"config key {key!r} expects a mapping, got {overrides!r}")
    rules = CONFIG_RULES[model_class]
    unknown = sorted(set(overrides) - set(rules))
    if unknown:
        raise ValueError(f"config key {key!r} has unknown keys {unknown}; valid: {sorted(rules)}")
    for name, value in overrides.items():
        try:
            rules[name](value, f"{key}.{name}")
        except TypeError as error:
            raise ValueError(str(error)) from None
