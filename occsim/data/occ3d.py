"""Occ3D-nuScenes reader: clips of consecutive occupancy frames with their ego trajectory.

Layout on disk (as distributed by Occ3D)::

    root/
      annotations.json                 # or an OccWorld-style infos .pkl given as `poses`
      gts/<scene>/<token>/labels.npz   # semantics (200,200,16) uint8, mask_lidar, mask_camera
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from occsim.data.poses import FramePose, load_poses
from occsim.geometry import poses_to_trajectory, quaternion_to_yaw
from occsim.grid import OCC3D_GRID
from occsim.validation import check_occupancy

LABEL_KEYS = ("semantics", "mask_lidar", "mask_camera")
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


class _WrongShape(ValueError):
    """A readable array of the wrong shape (the file is fine, its content is not)."""


def _read_member(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One ``.npy`` member, its header checked before any data is read (a corrupt header
    must not allocate a huge array) and its CRC checked by reading it whole."""
    with archive.open(name) as handle:
        version = np.lib.format.read_magic(handle)
        if version not in _HEADER_READERS:
            raise ValueError(f"{name} has .npy format version {version}, expected 1.0 or 2.0")
        found = tuple(_HEADER_READERS[version](handle)[0])  # (shape, fortran order, dtype)
    if found != shape:
        raise _WrongShape(f"{name[: -len('.npy')]} must have spatial shape {shape}, got {found}")
    data = archive.read(name)  # zipfile checks the CRC of what it read
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def _read_archive(path: Path, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The label arrays of an ``.npz`` file; every way it can be unreadable is a ValueError."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n[: -len(".npy")]: n for n in archive.namelist() if n.endswith(".npy")}
            if "semantics" not in members:
                raise ValueError(
                    f"it has arrays {sorted(members)}; expected 'semantics' (and masks)"
                )
            return {
                key: _read_member(archive, members[key], shape)
                for key in LABEL_KEYS
                if key in members
            }
    except _WrongShape as error:
        raise ValueError(f"{path}: {error}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as error:
        # numpy's own messages may advise allow_pickle: never follow that for data files.
        reason = "it holds pickled objects" if "pickle" in str(error) else str(error)
        raise ValueError(
            f"{path} is not a readable Occ3D labels.npz (truncated or corrupt): {reason}; "
            "expected arrays 'semantics', 'mask_lidar', 'mask_camera'"
        ) from None
    except MemoryError:
        raise ValueError(f"{path} is corrupt: it declares an impossibly large array") from None


def _check_mask(mask: np.ndarray, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if mask.shape != shape:
        raise ValueError(f"{path}: {key} has shape {mask.shape}, expected {shape}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iu" or (mask.size and int(mask.max()) > 1):
            raise ValueError(f"{path}: {key} must hold 0/1 or booleans, got dtype {mask.dtype}")
        if mask.size and int(mask.min()) < 0:
            raise ValueError(f"{path}: {key} must hold 0/1 or booleans, got negative values")
    return mask.astype(bool, copy=False)


def load_labels(path: str | Path, spatial_shape: tuple[int, int, int] = OCC3D_GRID.shape) -> dict:
    """Read one ``labels.npz``: ``semantics`` uint8 and boolean ``mask_lidar``/``mask_camera``.

    Raises ``FileNotFoundError`` for a missing file and a ``ValueError`` naming the file for
    every corruption: a truncated or bit-flipped archive, pickled or non-numeric arrays, a
    missing key, semantics of the wrong shape, type or with class ids above 17, masks of the
    wrong shape or with values other than 0/1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"occupancy labels {path} do not exist; expected gts/<scene>/<token>/labels.npz"
        )
    arrays = _read_archive(path, tuple(spatial_shape))
    try:
        semantics = check_occupancy(
            arrays["semantics"], str(path), ndim=3, spatial_shape=spatial_shape
        )
    except TypeError as error:  # a corrupt file, not a caller's mistake
        raise ValueError(str(error)) from None
    out = {"semantics": semantics.astype(np.uint8, copy=False)}
    for key in ("mask_lidar", "mask_camera"):
        if key in arrays:
            out[key] = _check_mask(arrays[key], key, semantics.shape, path)
    return out


class Occ3DDataset(Dataset):
    """Clips of ``clip_len`` consecutive keyframes (2 Hz) from Occ3D-nuScenes.

    Each item is a dict:

    - ``occupancy``: ``(T, 200, 200, 16)`` uint8 class ids;
    - ``trajectory``: ``(T, 3)`` float32, ``(x, y, yaw)`` of each frame in the first frame's
      ego frame;
    - ``mask_camera``: ``(T, 200, 200, 16)`` bool (if ``with_camera_mask``);
    - ``scene``: scene name; ``tokens``: the frames' sample tokens.

    Windows never cross scene boundaries.

    Args:
        root: dataset root holding ``gts/``.
        poses: ``annotations.json`` or an infos ``.pkl``; default ``root/annotations.json``.
        clip_len: frames per clip.
        stride: frames between the starts of consecutive clips.
        split: keep only scenes of this split of ``annotations.json`` (``"train"``, ``"val"``).
        scenes: keep only these scene names.
        with_camera_mask: also return the camera visibility mask.
        drop_short_scenes: skip scenes shorter than ``clip_len`` instead of raising.
    """

    def __init__(
        self,
        root: str | Path,
        poses: str | Path | None = None,
        clip_len: int = 16,
        stride: int = 1,
        split: str | None = None,
        scenes: Sequence[str] | None = None,
        with_camera_mask: bool = False,
        drop_short_scenes: bool = False,
    ) -> None:
        self.root = Path(root)
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len} and {stride}")
        if not (self.root / "gts").is_dir():
            raise FileNotFoundError(
                f"dataset root {self.root} has no gts/ folder; expected the Occ3D layout "
                "root/gts/<scene>/<token>/labels.npz"
            )
        poses_path = Path(poses) if poses is not None else self.root / "annotations.json"
        all_scenes, splits = load_poses(poses_path)
        names = list(all_scenes)
        if split is not None:
            if split not in splits:
                raise ValueError(
                    f"split {split!r} not in {poses_path}; it defines {sorted(splits) or 'none'}"
                )
            names = [n for n in names if n in set(splits[split])]
        if scenes is not None:
            unknown = sorted(set(scenes) - set(all_scenes))
            if unknown:
                raise ValueError(f"scenes {unknown} are not in {poses_path}")
            names = [n for n in names if n in set(scenes)]

        self.clip_len, self.stride, self.with_camera_mask = clip_len, stride, with_camera_mask
        self.scenes: dict[str, list[FramePose]] = {}
        self.index: list[tuple[str, int]] = []
        for name in names:
            frames = all_scenes[name]
            if len(frames) < clip_len:
                if drop_short_scenes:
                    continue
                raise ValueError(
                    f"scene {name!r} in {poses_path} has {len(frames)} frames, shorter than "
                    f"clip_len={clip_len} (pass drop_short_scenes=True to skip such scenes)"
                )
            self.scenes[name] = frames
            self.index.extend((name, s) for s in range(0, len(frames) - clip_len + 1, stride))

    def __len__(self) -> int:
        return len(self.index)

    def label_path(self, scene: str, frame: FramePose) -> Path:
        """Where the labels of ``frame`` live."""
        if frame.gt_path:
            return self.root / frame.gt_path
        return self.root / "gts" / scene / frame.token / "labels.npz"

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip index {i} out of range for {len(self)} clips")
        scene, start = self.index[i]
        frames = self.scenes[scene][start : start + self.clip_len]
        labels = [load_labels(self.label_path(scene, f)) for f in frames]
        translations = np.array([f.translation for f in frames])
        yaws = quaternion_to_yaw(np.array([f.rotation for f in frames]))
        item: dict[str, Any] = {
            "occupancy": np.stack([lab["semantics"] for lab in labels]),
            "trajectory": poses_to_trajectory(translations[:, :2], yaws),
            "scene": scene,
            "tokens": [f.token for f in frames],
        }
        if self.with_camera_mask:
            if any("mask_camera" not in lab for lab in labels):
                raise ValueError(f"scene {scene!r}: a labels.npz lacks mask_camera")
            item["mask_camera"] = np.stack([lab["mask_camera"] for lab in labels])
        return item
