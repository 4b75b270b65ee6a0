"""Latent cache of the DiT stage: a frozen tokenizer's codes of long segments, encoded once.

Format: one ``safetensors`` file holding

- ``indices``: ``(N, G, t, h, w)`` int16 code indices of N segments (G codebook groups,
  ``t = segment_len / temporal_factor`` latent frames);
- ``trajectory``: ``(N, segment_len, 3)`` float32 ``(x, y, yaw)`` of each frame in the
  segment's first ego frame;

and, in the file's metadata, ``tokenizer`` (a digest of the tokenizer's config and
weights), ``segment_len`` and ``data`` (a digest of the data config). A cache whose
metadata does not match is rebuilt, never silently reused. Segments are encoded whole
(the causal tokenizer streams, so a latent frame sees the segment's past as it will in
closed loop); training windows are cut from them at random latent offsets.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from occsim.geometry import poses_to_trajectory
from occsim.tokenizer import OccTokenizer
from occsim.train.data import load_clips


def tokenizer_digest(tokenizer: OccTokenizer) -> str:
    """Digest of a tokenizer's config and weights: a cache is only valid for one model."""
    config = {k: v for k, v in tokenizer.config.items() if not k.startswith("_")}  # not paths
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(tokenizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class LatentCache:
    """Code indices and trajectories of encoded segments; cuts training windows."""

    def __init__(self, indices: torch.Tensor, trajectory: torch.Tensor, temporal_factor: int):
        self.indices, self.trajectory, self.temporal_factor = indices, trajectory, temporal_factor

    def __len__(self) -> int:
        return self.indices.shape[0]

    def windows_per_segment(self, latent_frames: int) -> int:
        """Start offsets a segment offers to a window of ``latent_frames``."""
        return self.indices.shape[2] - latent_frames + 1

    def window(
        self, tokenizer: OccTokenizer, items: torch.Tensor, latent_frames: int
    ) -> dict[str, torch.Tensor]:
        """Latents ``(B, C, latent_frames, h, w)`` and trajectories ``(B, T, 3)`` of
        windows; ``items`` indexes ``segment * windows_per_segment + offset``."""
        per_segment = self.windows_per_segment(latent_frames)
        segments, offsets = items // per_segment, items % per_segment
        codes = torch.stack(
            [self.indices[s, :, o : o + latent_frames] for s, o in zip(segments, offsets)]
        )
        frames = latent_frames * self.temporal_factor
        trajectories = []
        for s, o in zip(segments.tolist(), offsets.tolist()):
            poses = self.trajectory[s, o * self.temporal_factor :][:frames].numpy()
            trajectories.append(poses_to_trajectory(poses[:, :2], poses[:, 2]))
        latents = tokenizer.quantizer.lookup(codes.long().to(tokenizer.device))
        return {"latents": latents, "trajectory": torch.from_numpy(np.stack(trajectories))}


def _read_cache(path: Path, expected: dict, tokenizer: OccTokenizer) -> LatentCache | None:
    """The cache in ``path`` if it matches ``expected`` and its contents are sound (codes
    of the codebook, finite poses, one trajectory per segment); ``None`` to rebuild."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if not all(metadata.get(k) == v for k, v in expected.items()):
            tqdm.write(f"latent cache {path} was built from another tokenizer or data: rebuilding")
            return None
        indices, trajectory = handle.get_tensor("indices"), handle.get_tensor("trajectory")
    sound = (
        indices.ndim == 5
        and not indices.is_floating_point()
        and trajectory.ndim == 3
        and trajectory.shape[0] == indices.shape[0]
        and trajectory.shape[2] == 3
        and bool(torch.isfinite(trajectory).all())
        and (
            indices.numel() == 0
            or 0 <= int(indices.min()) <= int(indices.max()) < tokenizer.quantizer.codebook_size
        )
    )
    if not sound:
        tqdm.write(f"latent cache {path} holds impossible codes or poses: rebuilding")
        return None
    return LatentCache(indices, trajectory, tokenizer.temporal_factor)


def load_or_build_cache(
    path: str | Path, tokenizer: OccTokenizer, segments, data_digest: str
) -> LatentCache:
    """Load the cache at ``path`` if it was built from this tokenizer and data, otherwise
    encode every item of ``segments`` (a dataset of whole segments) and write it
    atomically (a temporary file, then a rename)."""
    path = Path(path)
    model_digest = tokenizer_digest(tokenizer)
    expected = {"tokenizer": model_digest, "data": data_digest}
    if path.is_file():
        try:
            cache = _read_cache(path, expected, tokenizer)
        except Exception as error:  # a cache is rebuilt, never trusted, when unreadable
            cache = None
            tqdm.write(f"latent cache {path} is unreadable ({error}): rebuilding")
        if cache is not None:
            return cache
    indices, trajectories = [], []
    with torch.no_grad():
        for i in tqdm(range(len(segments)), desc="latent cache", unit="segment"):
            clip = load_clips(segments, torch.tensor([i]))
            encoding = tokenizer.encode(clip["occupancy"].to(tokenizer.device))
            indices.append(encoding.indices.to(torch.int16).cpu())
            trajectories.append(clip["trajectory"])
    cache = LatentCache(torch.cat(indices), torch.cat(trajectories), tokenizer.temporal_factor)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    metadata = {**expected, "segment_len": str(cache.trajectory.shape[1])}
    save_file(
        {"indices": cache.indices.contiguous(), "trajectory": cache.trajectory.contiguous()},
        str(temporary),
        metadata=metadata,
    )
    os.replace(temporary, path)
    return cache
