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

from occsim.validation import check_name, check_relative_path

# How far from 1 a stored quaternion's norm may be (float32 rounding, not a wrong pose).
QUATERNION_TOLERANCE = 1e-2


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
        raise ValueError(
            f"{where} is missing required key {key!r} (has {sorted(map(str, mapping))[:8]})"
        )
    return mapping[key]


def _vector(value: Any, size: int, where: str) -> tuple[float, ...]:
    items = value.tolist() if isinstance(value, np.ndarray) else value
    numbers = isinstance(items, (list, tuple)) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        for v in items
    )
    array = np.asarray(items, dtype=np.float64).ravel() if numbers else np.zeros(0)
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{where} must be {size} finite numbers, got {value!r}"[:300])
    return tuple(float(v) for v in array)


def _rotation(value: Any, where: str) -> tuple[float, ...]:
    """A unit ``(w, x, y, z)`` quaternion; any other norm means a corrupt pose."""
    quaternion = _vector(value, 4, where)
    norm = float(np.linalg.norm(quaternion))
    if abs(norm - 1.0) > QUATERNION_TOLERANCE:
        raise ValueError(f"{where} must be a unit quaternion (w, x, y, z), got norm {norm:.4g}")
    return quaternion


def _timestamp(frame: dict, where: str) -> int | None:
    value = frame.get("timestamp")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{where}: timestamp must be an integer (microseconds), got {value!r}")
    return int(value)


def _link(frame: dict, key: str, where: str) -> str | None:
    value = frame.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} must be a token string, got {value!r}")
    return value


def _as_value_error(check, *args) -> Any:
    """Run a name check whose TypeError, in a data file, is a corruption (ValueError)."""
    try:
        return check(*args)
    except TypeError as error:
        raise ValueError(str(error)) from None


def _order_by_links(frames: dict[str, dict], scene: str, path: Path) -> list[str]:
    """Tokens in temporal order, by timestamp when every frame has one, else prev/next."""
    where = f"{path}: scene {scene!r}"
    stamps = {tok: _timestamp(f, f"{where}[{tok!r}]") for tok, f in frames.items()}
    if all(stamp is not None for stamp in stamps.values()):
        if len(set(stamps.values())) != len(stamps):
            raise ValueError(f"{where} has frames with the same timestamp; expected distinct")
        return sorted(frames, key=lambda tok: stamps[tok])
    links = {
        tok: (_link(f, "prev", f"{where}[{tok!r}]"), _link(f, "next", f"{where}[{tok!r}]"))
        for tok, f in frames.items()
    }
    heads = [tok for tok, (prev, _) in links.items() if prev not in frames]
    if len(heads) != 1:
        raise ValueError(
            f"{where} has no timestamps and {len(heads)} frames without a valid "
            "'prev'; expected exactly one first frame"
        )
    order, token = [], heads[0]
    while token in frames and token not in order:
        order.append(token)
        token = links[token][1]
    if len(order) != len(frames):
        raise ValueError(f"{where} prev/next chain covers {len(order)} of {len(frames)} frames")
    return order


def _annotation_frame(frame: Any, token: str, where: str) -> FramePose:
    where = f"{where}[{token!r}]"
    ego_pose = _require(frame, "ego_pose", where)
    gt_path = frame.get("gt_path")
    if gt_path is not None:
        _as_value_error(check_relative_path, gt_path, f"{where}.gt_path")
    return FramePose(
        token=token,
        translation=_vector(
            _require(ego_pose, "translation", f"{where}.ego_pose"), 3, f"{where}.translation"
        ),
        rotation=_rotation(
            _require(ego_pose, "rotation", f"{where}.ego_pose"), f"{where}.rotation"
        ),
        timestamp=_timestamp(frame, where),
        gt_path=gt_path,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"poses file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def _splits(data: dict, path: Path) -> dict[str, list]:
    splits = {}
    for key, value in data.items():
        if not key.endswith("_split"):
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: {key!r} must be a list of scene names")
        splits[key[: -len("_split")]] = list(value)
    return splits


def load_occ3d_annotations(path: str | Path) -> tuple[dict[str, list[FramePose]], dict[str, list]]:
    """Read Occ3D's ``annotations.json``; returns ``(scenes, splits)``.

    ``splits`` maps ``"train"``/``"val"``/... to scene lists where the file has them. Any
    malformed part (types, non-finite or non-unit poses, names or ``gt_path`` that would
    leave the dataset root, broken frame order) is a ``ValueError`` naming the file.
    """
    path = Path(path)
    data = _read_json(path)
    scene_infos = _require(data, "scene_infos", str(path))
    if not isinstance(scene_infos, dict):
        raise ValueError(f"{path}: 'scene_infos' must map scene name -> frames")
    scenes: dict[str, list[FramePose]] = {}
    for scene, frames in scene_infos.items():
        where = f"{path}: scene_infos[{scene!r}]"
        _as_value_error(check_name, scene, f"{path}: scene name")
        if not isinstance(frames, dict) or not frames:
            raise ValueError(f"{where} must be a non-empty dict of token -> frame")
        for token in frames:
            _as_value_error(check_name, token, f"{where}: token")
        order = _order_by_links(frames, scene, path)
        scenes[scene] = [_annotation_frame(frames[token], token, where) for token in order]
    return scenes, _splits(data, path)


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as handle:
            return _InfosUnpickler(handle).load()
    except FileNotFoundError:
        raise FileNotFoundError(f"poses file {path} does not exist") from None
    except Exception as error:  # a corrupt pickle fails in many ways; all mean unreadable
        raise ValueError(f"{path} is not a readable infos pickle: {error}") from None


def load_infos_pickle(path: str | Path) -> dict[str, list[FramePose]]:
    """Read an OccWorld/OccSora-style infos pickle ``{"infos": {scene: [frame, ...]}}``."""
    path = Path(path)
    data = _read_pickle(path)
    infos = _require(data, "infos", str(path))
    if not isinstance(infos, dict):
        raise ValueError(
            f"{path}: 'infos' must map scene name -> list of frames, got {type(infos).__name__}"
        )
    scenes: dict[str, list[FramePose]] = {}
    for scene, frames in infos.items():
        _as_value_error(check_name, scene, f"{path}: scene name")
        if not isinstance(frames, list) or not frames:
            raise ValueError(f"{path}: infos[{scene!r}] must be a non-empty list of frame dicts")
        poses = []
        for i, frame in enumerate(frames):
            where = f"{path}: infos[{scene!r}][{i}]"
            poses.append(
                FramePose(
                    token=_as_value_error(
                        check_name, _require(frame, "token", where), f"{where}: token"
                    ),
                    translation=_vector(_require(frame, "ego2global_translation", where), 3, where),
                    rotation=_rotation(_require(frame, "ego2global_rotation", where), where),
                    timestamp=_timestamp(frame, where),
                )
            )
        if len({p.token for p in poses}) != len(poses):
            raise ValueError(f"{path}: infos[{scene!r}] lists a token twice")
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
