"""Training checkpoints without pickles: models as ``save_pretrained`` folders, every other
piece of state as safetensors (tensors) plus JSON (the structure around them).

A checkpoint folder is written whole into a temporary folder and renamed into place, so a
kill mid-write never leaves a broken ``checkpoints/step-N``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from occsim.io import atomic_directory

STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"


def _flatten(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(value, dict):
        return {
            "__dict__": [
                [_flatten(k, tensors, f"{path}.k{i}"), _flatten(v, tensors, f"{path}.{i}")]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path} in a checkpoint")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__tuple__" in value:
            return tuple(_unflatten(v, tensors) for v in value["__tuple__"])
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_checkpoint(
    run_dir: Path, step: int, models: dict[str, Any], state: dict[str, Any], keep: int = 2
) -> Path:
    """Write ``checkpoints/step-N`` atomically; keep the ``keep`` most recent."""
    target = Path(run_dir) / "checkpoints" / f"step-{step:08d}"
    with atomic_directory(target) as tmp:
        for name, model in models.items():
            model.save_pretrained(tmp / name)
        tensors: dict[str, torch.Tensor] = {}
        skeleton = _flatten({**state, "step": step}, tensors, "state")
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(skeleton))
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-"))


def resolve_checkpoint(run_dir: Path, resume: str) -> Path:
    """``latest`` -> the newest checkpoint of the run; otherwise a checkpoint folder path."""
    if resume == "latest":
        found = list_checkpoints(run_dir)
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint under {run_dir}/checkpoints")
        return found[-1]
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def load_state(checkpoint: Path) -> dict[str, Any]:
    """The non-model state of a checkpoint; a clear error if it is incomplete or corrupt."""
    checkpoint = Path(checkpoint)
    try:
        skeleton = json.loads((checkpoint / STATE_JSON).read_text())
        tensors = load_file(str(checkpoint / STATE_TENSORS))
        return _unflatten(skeleton, tensors)
    except FileNotFoundError as error:
        raise ValueError(
            f"checkpoint {checkpoint} is incomplete: {error.filename} missing"
        ) from None
    except Exception as error:  # any unreadable part means the checkpoint is unusable
        raise ValueError(f"checkpoint {checkpoint} is corrupt: {error}") from None
