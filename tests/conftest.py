"""Shared fixtures: tiny datasets written in the real Occ3D-nuScenes layouts, and a tiny
untrained world model at the full 200x200x16 grid for the learned env."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from occsim.diffusion import make_training_scheduler
from occsim.dit import OccDiT
from occsim.grid import OCC3D_GRID
from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import OccTokenizer


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised adaLN and output layers small random weights, so that the
    untrained model's output depends on its inputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "adaLN" in name or "final_layer" in name or "null" in name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def tiny_world_model() -> OccSoraPipeline:
    """Untrained tiny tokenizer (temporal factor 4) + DiT of two latent frames, full grid."""
    torch.manual_seed(0)
    tokenizer = OccTokenizer.from_preset("tiny", downsample=((4, 1, 1),)).eval()
    channels, frames, height, width = tokenizer.latent_shape(8)
    transformer = OccDiT.from_preset(
        "tiny",
        latent_channels=channels,
        latent_frames=frames,
        latent_size=(height, width),
        patch_size=(1, 5, 5),
        trajectory_length=8,
    ).eval()
    randomize(transformer)
    return OccSoraPipeline(tokenizer, transformer, make_training_scheduler())


@pytest.fixture(scope="session")
def tiny_pipeline_path(tmp_path_factory) -> Path:
    """A saved :func:`tiny_world_model` folder."""
    path = tmp_path_factory.mktemp("tiny_pipeline")
    tiny_world_model().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_free_pipeline_path(tiny_pipeline_path, tmp_path_factory) -> Path:
    """The tiny model with its free-class logit raised by 3: about 95 % of the voxels decode
    free (90 % in a procedural scene) instead of almost none, which the decoder's and the
    frame registration's slow paths handle several times slower. For tests of what a
    command reports, not of what the model predicts."""
    from occsim.labels import FREE_ID
    from occsim.pipeline import OccSoraPipeline

    pipe = OccSoraPipeline.from_pretrained(tiny_pipeline_path)
    with torch.no_grad():
        pipe.tokenizer.head.bias[FREE_ID] += 3.0
    path = tmp_path_factory.mktemp("tiny_free")
    pipe.save_pretrained(path)
    return path


def _yaw_quaternion(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def random_semantics(rng: np.random.Generator, shape=OCC3D_GRID.shape) -> np.ndarray:
    """A plausible volume: free everywhere, a ground layer and some random objects."""
    volume = np.full(shape, 17, dtype=np.uint8)
    volume[:, :, 2] = rng.choice([11, 13, 14], size=shape[:2])
    objects = rng.random(shape) < 0.02
    volume[objects] = rng.integers(0, 17, size=int(objects.sum()))
    return volume


@pytest.fixture
def occ3d_root(tmp_path: Path) -> dict:
    """Two scenes (5 and 3 frames) in Occ3D layout, poses in annotations.json and a pickle.

    Frames are listed out of order in the JSON so that ordering by timestamp is exercised;
    the ego drives along +x of a world rotated by 30 degrees.
    """
    rng = np.random.default_rng(0)
    root = tmp_path / "occ3d"
    heading = np.deg2rad(30.0)
    scenes = {"scene-0001": 5, "scene-0002": 3}
    scene_infos, infos, truth = {}, {}, {}
    for scene, length in scenes.items():
        tokens = [f"{scene}-tok{t}" for t in range(length)]
        frames, info_list, sem = {}, [], []
        for t, token in enumerate(tokens):
            semantics = random_semantics(rng)
            sem.append(semantics)
            gt_dir = root / "gts" / scene / token
            gt_dir.mkdir(parents=True)
            np.savez_compressed(
                gt_dir / "labels.npz",
                semantics=semantics,
                mask_lidar=np.ones_like(semantics),
                mask_camera=(semantics != 17).astype(np.uint8),
            )
            # 2 m forward per frame and a 0.1 rad left turn per frame.
            yaw = heading + 0.1 * t
            translation = [100.0 + 2.0 * t * np.cos(heading), 50.0 + 2.0 * t * np.sin(heading), 0.0]
            frames[token] = {
                "timestamp": 1_000_000 + 500_000 * t,
                "ego_pose": {"translation": translation, "rotation": _yaw_quaternion(yaw)},
                "prev": tokens[t - 1] if t else "",
                "next": tokens[t + 1] if t + 1 < length else "",
            }
            info_list.append(
                {
                    "token": token,
                    "timestamp": 1_000_000 + 500_000 * t,
                    "ego2global_translation": np.array(translation),
                    "ego2global_rotation": _yaw_quaternion(yaw),
                    "gt_boxes": np.zeros((0, 7)),
                }
            )
        scene_infos[scene] = dict(reversed(list(frames.items())))
        infos[scene] = info_list
        truth[scene] = np.stack(sem)
    (root / "annotations.json").write_text(
        json.dumps(
            {"train_split": ["scene-0001"], "val_split": ["scene-0002"], "scene_infos": scene_infos}
        )
    )
    with open(root / "infos.pkl", "wb") as handle:
        pickle.dump({"infos": infos}, handle)
    return {"root": root, "semantics": truth}
