"""Ego poses of Occ3D-nuScenes scenes, from Occ3D's ``annotations.json`` or an infos pickle.

Both readers return ``{scene_name: [FramePose, ...]}`` with frames in temporal order.

* ``annotations.json`` (Occ3D): ``scene_infos[scene][token]`` holds ``timestamp``,
  ``ego_pose`` (``translation``, ``rotation`` as a ``(w, x, y, z)`` quaternion), ``prev`` /
  ``next`` tokens and optionally ``gt_path``; ``train_split`` / ``val_split`` list scenes.
* infos pickle (OccWorld / OccSora): ``{"infos": {scene: [frame, ...]}}`` where each frame
  has ``token``, ``ego2global_translation`` and ``ego2global_rotation``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class FramePose:
    """One keyframe: its sample token, ego-to-global pose and optional label path."""

    token: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]
    timestamp: int | None = None
    gt_path: str | None = None


class _InfosUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and numpy arrays.

    Infos files come from other people's pipelines; refusing arbitrary globals keeps a
    malicious pickle from running code.
    """

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("collections", "OrderedDict"),
            ("collections", "defaultdict"),
            ("builtins", "list"),
            ("builtins", "dict"),
            ("builtins", "tuple"),
            ("builtins", "set"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: infos pickles may only hold dicts, lists "
            "and numpy arrays"
        )


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise ValueError(f"{where} must be a dict, got {type(mapping).__name__}")
    if key not in mapping:
        raise ValueError(f"{where} is missing required key {key!r} (has {sorted(mapping)[:8]})")
    return mapping[key]


def _vector(value: Any, size: int, where: str) -> tuple[float, ...]:
    array = np.asarray(value, dtype=np.float64).ravel()
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{where} must be {size} finite numbers, got {value!r}")
    return tuple(float(v) for v in array)


def _order_by_links(frames: dict[str, dict], scene: str, path: Path) -> list[str]:
    """Tokens in temporal order, by timestamp when every frame has one, else prev/next."""
    if all("timestamp" in f for f in frames.values()):
        return sorted(frames, key=lambda tok: frames[tok]["timestamp"])
    heads = [tok for tok, f in frames.items() if f.get("prev") not in frames]
    if len(heads) != 1:
        raise ValueError(
            f"{path}: scene {scene!r} has no timestamps and {len(heads)} frames without a valid "
            "'prev'; expected exactly one first frame"
        )
    order, token = [], heads[0]
    while token in frames and token not in order:
        order.append(token)
        token = frames[token].get("next")
    if len(order) != len(frames):
        raise ValueError(
            f"{path}: scene {scene!r} prev/next chain covers {len(order)} of {len(frames)} frames"
        )
    return order


def load_occ3d_annotations(path: str | Path) -> tuple[dict[str, list[FramePose]], dict[str, list]]:
    """Read Occ3D's ``annotations.json``; returns ``(scenes, splits)``.

    ``splits`` maps ``"train"``/``"val"``/... to scene lists where the file has them.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"poses file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    scene_infos = _require(data, "scene_infos", str(path))
    scenes: dict[str, list[FramePose]] = {}
    for scene, frames in scene_infos.items():
        where = f"{path}: scene_infos[{scene!r}]"
        if not isinstance(frames, dict) or not frames:
            raise ValueError(f"{where} must be a non-empty dict of token -> frame")
        poses = []
        for token in _order_by_links(frames, scene, path):
            frame = frames[token]
            ego_pose = _require(frame, "ego_pose", f"{where}[{token!r}]")
            poses.append(
                FramePose(
                    token=token,
                    translation=_vector(
                        _require(ego_pose, "translation", f"{where}[{token!r}].ego_pose"), 3, where
                    ),
                    rotation=_vector(
                        _require(ego_pose, "rotation", f"{where}[{token!r}].ego_pose"), 4, where
                    ),
                    timestamp=frame.get("timestamp"),
                    gt_path=frame.get("gt_path"),
                )
            )
        scenes[scene] = poses
    splits = {
        key[: -len("_split")]: list(value)
        for key, value in data.items()
        if key.endswith("_split") and isinstance(value, list)
    }
    return scenes, splits


def load_infos_pickle(path: str | Path) -> dict[str, list[FramePose]]:
    """Read an OccWorld/OccSora-style infos pickle ``{"infos": {scene: [frame, ...]}}``."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = _InfosUnpickler(handle).load()
    except FileNotFoundError:
        raise FileNotFoundError(f"poses file {path} does not exist") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a readable infos pickle: {error}") from None
    infos = _require(data, "infos", str(path))
    if not isinstance(infos, dict):
        raise ValueError(
            f"{path}: 'infos' must map scene name -> list of frames, got {type(infos).__name__}"
        )
    scenes: dict[str, list[FramePose]] = {}
    for scene, frames in infos.items():
        if not isinstance(frames, list) or not frames:
            raise ValueError(f"{path}: infos[{scene!r}] must be a non-empty list of frame dicts")
        poses = []
        for i, frame in enumerate(frames):
            where = f"{path}: infos[{scene!r}][{i}]"
            poses.append(
                FramePose(
                    token=str(_require(frame, "token", where)),
                    translation=_vector(_require(frame, "ego2global_translation", where), 3, where),
                    rotation=_vector(_require(frame, "ego2global_rotation", where), 4, where),
                    timestamp=frame.get("timestamp"),
                )
            )
        if all(p.timestamp is not None for p in poses):
            poses.sort(key=lambda p: p.timestamp)
        scenes[scene] = poses
    return scenes


def load_poses(path: str | Path) -> tuple[dict[str, list[FramePose]], dict[str, list]]:
    """Read ego poses from ``.json`` (Occ3D annotations) or ``.pkl`` (infos).

    Returns ``(scenes, splits)``; an infos pickle defines no splits.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return load_occ3d_annotations(path)
    if suffix in (".pkl", ".pickle"):
        return load_infos_pickle(path), {}
    raise ValueError(
        f"poses file {path} has suffix {suffix!r}; expected .json (Occ3D annotations) or "
        ".pkl (OccWorld-style infos)"
    )
