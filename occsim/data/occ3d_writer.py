"""Writes occupancy scenes in the Occ3D-nuScenes layout that :class:`Occ3DDataset` reads.

Every file is written atomically (temporary file, then rename), and ``annotations.json`` is
rewritten after each finished scene, so an interrupted export can resume: the scenes it
lists are complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from occsim.data.poses import FramePose, load_occ3d_annotations
from occsim.io import write_json_atomic, write_npz_atomic
from occsim.validation import check_occupancy


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """nuScenes ``(w, x, y, z)`` quaternion of a rotation by ``yaw`` about z."""
    return (float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2)))


class Occ3DWriter:
    """Accumulates scenes under ``root`` and keeps ``root/annotations.json`` up to date.

    Args:
        root: output folder (created if needed). An existing ``annotations.json`` there is
            read back so that a resumed export keeps what was already written.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.annotations_path = self.root / "annotations.json"
        self._scene_infos: dict[str, dict] = {}
        self._splits: dict[str, list[str]] = {}
        if self.annotations_path.exists():
            existing = json.loads(self.annotations_path.read_text())
            load_occ3d_annotations(self.annotations_path)  # validates before we extend it
            self._scene_infos = existing["scene_infos"]
            self._splits = {
                k[: -len("_split")]: v for k, v in existing.items() if k.endswith("_split")
            }

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

        Args:
            scene: scene name (a folder under ``gts/``).
            semantics: ``(T, X, Y, Z)`` uint8 class ids.
            poses_xy_yaw: ``(T, 3)`` world ``(x, y, yaw)`` of the ego at each frame.
            mask_camera: optional ``(T, X, Y, Z)`` bool visibility; all visible if omitted.
            split: split the scene belongs to.
            timestamp_start: timestamp of the first frame in microseconds (frames 0.5 s apart).
        """
        semantics = check_occupancy(semantics, f"scene {scene!r} semantics", ndim=4)
        poses_xy_yaw = np.asarray(poses_xy_yaw, dtype=np.float64)
        if poses_xy_yaw.shape != (len(semantics), 3):
            raise ValueError(
                f"poses_xy_yaw must have shape ({len(semantics)}, 3), got {poses_xy_yaw.shape}"
            )
        if mask_camera is None:
            mask_camera = np.ones(semantics.shape, dtype=bool)
        tokens = [f"{scene}-{t:04d}" for t in range(len(semantics))]
        frames: dict[str, dict] = {}
        for t, token in enumerate(tokens):
            gt_path = f"gts/{scene}/{token}/labels.npz"
            write_npz_atomic(
                self.root / gt_path,
                semantics=semantics[t].astype(np.uint8),
                mask_lidar=mask_camera[t].astype(np.uint8),
                mask_camera=mask_camera[t].astype(np.uint8),
            )
            pose = FramePose(
                token=token,
                translation=(float(poses_xy_yaw[t, 0]), float(poses_xy_yaw[t, 1]), 0.0),
                rotation=yaw_to_quaternion(float(poses_xy_yaw[t, 2])),
            )
            frames[token] = {
                "timestamp": timestamp_start + 500_000 * t,
                "ego_pose": {
                    "translation": list(pose.translation),
                    "rotation": list(pose.rotation),
                },
                "gt_path": gt_path,
                "prev": tokens[t - 1] if t > 0 else "",
                "next": tokens[t + 1] if t + 1 < len(tokens) else "",
            }
        self._scene_infos[scene] = frames
        members = self._splits.setdefault(split, [])
        if scene not in members:
            members.append(scene)
        self._flush()

    def _flush(self) -> None:
        payload: dict[str, object] = {
            f"{name}_split": scenes for name, scenes in self._splits.items()
        }
        payload["scene_infos"] = self._scene_infos
        write_json_atomic(self.annotations_path, payload, indent=None)
