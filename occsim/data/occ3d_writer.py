"""Writes occupancy scenes in the Occ3D-nuScenes layout that :class:`Occ3DDataset` reads.

Every file is written atomically (temporary file, then rename), and ``annotations.json`` is
rewritten after each finished scene, so an interrupted export can resume: the scenes it
lists are complete. A scene is validated whole before its first file is written, so a bad
scene never touches what was written before; temporaries left by an interrupted export are
removed when the next writer opens the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from occsim.data.poses import load_occ3d_annotations
from occsim.io import remove_stale_temporaries, write_json_atomic, write_npz_atomic
from occsim.validation import check_int, check_name, check_occupancy

FRAME_PERIOD_US = 500_000  # Occ3D keyframes are 0.5 s apart
MAX_TIMESTAMP_US = 2**62  # well inside int64 for every frame of any scene


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """nuScenes ``(w, x, y, z)`` quaternion of a rotation by ``yaw`` about z."""
    return (float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2)))


def _check_poses(poses_xy_yaw: object, frames: int, scene: str) -> np.ndarray:
    array = np.asarray(poses_xy_yaw)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"scene {scene!r} poses_xy_yaw must be real numbers, got {array.dtype}")
    if array.shape != (frames, 3):
        raise ValueError(
            f"scene {scene!r} poses_xy_yaw must have shape ({frames}, 3), got {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"scene {scene!r} poses_xy_yaw must be finite, got NaN or inf")
    return array


def _check_mask(mask_camera: object, shape: tuple[int, ...], scene: str) -> np.ndarray:
    if mask_camera is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(mask_camera)
    if mask.shape != shape:
        raise ValueError(f"scene {scene!r} mask_camera must have shape {shape}, got {mask.shape}")
    if mask.dtype != bool and (
        mask.dtype.kind not in "iu" or (mask.size and not np.isin(mask, (0, 1)).all())
    ):
        raise ValueError(f"scene {scene!r} mask_camera must hold booleans or 0/1")
    return mask.astype(bool, copy=False)


def _frame_info(scene: str, tokens: list[str], t: int, pose: np.ndarray, start: int) -> dict:
    return {
        "timestamp": start + FRAME_PERIOD_US * t,
        "ego_pose": {
            "translation": [float(pose[0]), float(pose[1]), 0.0],
            "rotation": list(yaw_to_quaternion(float(pose[2]))),
        },
        "gt_path": f"gts/{scene}/{tokens[t]}/labels.npz",
        "prev": tokens[t - 1] if t > 0 else "",
        "next": tokens[t + 1] if t + 1 < len(tokens) else "",
    }


def write_scene_frames(
    root: str | Path,
    scene: str,
    semantics: np.ndarray,
    poses_xy_yaw: np.ndarray,
    mask_camera: np.ndarray | None = None,
    timestamp_start: int = 0,
) -> dict[str, dict]:
    """Write the frame files of ``scene`` under ``root`` (each atomically) without
    registering the scene; returns its frame infos for :meth:`Occ3DWriter.add_scene`.

    Scenes may be written so in several processes at once; one writer registers them. Until
    it does, a resumed export writes the scene again. Arguments as
    :meth:`Occ3DWriter.write_scene`; everything is checked before the first file is written.
    """
    check_name(scene, "scene name")
    semantics = check_occupancy(semantics, f"scene {scene!r} semantics", ndim=4)
    if len(semantics) == 0:
        raise ValueError(f"scene {scene!r} has no frames; expected semantics (T>=1, X, Y, Z)")
    poses = _check_poses(poses_xy_yaw, len(semantics), scene)
    mask = _check_mask(mask_camera, semantics.shape, scene)
    last = MAX_TIMESTAMP_US - FRAME_PERIOD_US * len(semantics)
    check_int(timestamp_start, "timestamp_start", 0, last)

    tokens = [f"{scene}-{t:04d}" for t in range(len(semantics))]
    frames = {
        token: _frame_info(scene, tokens, t, poses[t], timestamp_start)
        for t, token in enumerate(tokens)
    }
    for t, token in enumerate(tokens):
        write_npz_atomic(
            Path(root) / frames[token]["gt_path"],
            semantics=semantics[t].astype(np.uint8),
            mask_lidar=mask[t].astype(np.uint8),
            mask_camera=mask[t].astype(np.uint8),
        )
    return frames


class Occ3DWriter:
    """Accumulates scenes under ``root`` and keeps ``root/annotations.json`` up to date.

    Args:
        root: output folder (created if needed). An existing ``annotations.json`` there is
            read back so that a resumed export keeps what was already written; one writer
            per folder at a time.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.annotations_path = self.root / "annotations.json"
        self._scene_infos: dict[str, dict] = {}
        self._splits: dict[str, list[str]] = {}
        if self.annotations_path.exists():
            load_occ3d_annotations(self.annotations_path)  # validates before we extend it
            existing = json.loads(self.annotations_path.read_text())
            self._scene_infos = existing["scene_infos"]
            self._splits = {
                k[: -len("_split")]: v for k, v in existing.items() if k.endswith("_split")
            }
        self._remove_interrupted_writes()

    def _remove_interrupted_writes(self) -> None:
        """Temporaries of a killed export: in the root and in scenes never completed."""
        remove_stale_temporaries(self.root)
        gts = self.root / "gts"
        if gts.is_dir():
            for folder in gts.iterdir():
                if folder.name not in self._scene_infos:
                    remove_stale_temporaries(folder, recursive=True)

    @property
    def scenes(self) -> list[str]:
        """Names of the scenes already complete on disk."""
        return list(self._scene_infos)

    def write_scene(
        self,
        scene: str,
        semantics: np.ndarray,
        poses_xy_yaw: np.ndarray,
        mask_camera: np.ndarray | None = None,
        split: str = "train",
        timestamp_start: int = 0,
    ) -> None:
        """Write all frames of ``scene`` and then register it in ``annotations.json``.

        Everything is checked before the first file is written; on any error the folder
        and this writer are as they were.

        Args:
            scene: scene name (a folder under ``gts/``): a plain name, not written before.
            semantics: ``(T, X, Y, Z)`` uint8 class ids, ``T >= 1``.
            poses_xy_yaw: ``(T, 3)`` finite world ``(x, y, yaw)`` of the ego at each frame.
            mask_camera: optional ``(T, X, Y, Z)`` bool visibility; all visible if omitted.
            split: split the scene belongs to (a plain name).
            timestamp_start: timestamp of the first frame in microseconds (frames 0.5 s apart).
        """
        self._check_new(scene, split)
        frames = write_scene_frames(
            self.root, scene, semantics, poses_xy_yaw, mask_camera, timestamp_start
        )
        self.add_scene(scene, frames, split)

    def add_scene(self, scene: str, frames: dict[str, dict], split: str = "train") -> None:
        """Register ``scene``, whose frame files :func:`write_scene_frames` wrote (in this or
        another process), in ``annotations.json``: from then on it counts as complete."""
        self._check_new(scene, split)
        members = self._splits.get(split, [])
        scene_infos = {**self._scene_infos, scene: frames}
        splits = {**self._splits, split: [*members, scene]}
        self._flush(scene_infos, splits)
        self._scene_infos, self._splits = scene_infos, splits  # only once it is on disk

    def _check_new(self, scene: str, split: str) -> None:
        check_name(scene, "scene name")
        check_name(split, "split name")
        if scene in self._scene_infos:
            raise ValueError(
                f"scene {scene!r} is already complete in {self.annotations_path}; a resumed "
                "export skips it (pick another name to add a scene)"
            )

    def _flush(self, scene_infos: dict, splits: dict) -> None:
        payload: dict[str, object] = {f"{name}_split": scenes for name, scenes in splits.items()}
        payload["scene_infos"] = scene_infos
        write_json_atomic(self.annotations_path, payload, indent=None, allow_nan=False)
