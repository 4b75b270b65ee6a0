"""Latent cache of the DiT stage: a frozen tokenizer's codes of long segments, encoded once.

Format: one ``safetensors`` file holding

- ``indices``: ``(N, G, t, h, w)`` int16 code indices of N segments (G codebook groups,
  ``t = segment_len / temporal_factor`` latent frames);
- ``trajectory``: ``(N, segment_len, 3)`` float32 ``(x, y, yaw)`` of each frame in the
  segment's first ego frame;

and, for a DiT that takes the scene memory, the memory's view of every latent frame after
the first, built as the rollout builds it (:func:`~occsim.memory_condition.memory_views`:
the segment's first latent frame starts the memory, then one latent frame a step):

- ``memory_indices``: ``(N, G, t - 1, h, w)`` int16 code indices of the views;
- ``memory_known``: ``(N, t - 1, h, w)`` float16 known fraction of each latent cell;

and, in the file's metadata, ``tokenizer`` (a digest of the tokenizer's config and
weights), ``segment_len``, ``data`` (a digest of the data config) and ``memory``. A cache
whose metadata does not match is rebuilt, never silently reused. Segments are encoded whole
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
from occsim.memory_condition import encode_views, memory_views
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
    """Code indices and trajectories of encoded segments (and the memory's views of them);
    cuts training windows."""

    def __init__(
        self,
        indices: torch.Tensor,
        trajectory: torch.Tensor,
        temporal_factor: int,
        memory_indices: torch.Tensor | None = None,
        memory_known: torch.Tensor | None = None,
    ):
        self.indices, self.trajectory, self.temporal_factor = indices, trajectory, temporal_factor
        self.memory_indices, self.memory_known = memory_indices, memory_known

    @property
    def has_memory(self) -> bool:
        """Whether the cache holds the scene memory's views of its latent frames."""
        return self.memory_indices is not None

    def __len__(self) -> int:
        return self.indices.shape[0]

    def windows_per_segment(self, latent_frames: int) -> int:
        """Start offsets a segment offers to a window of ``latent_frames``."""
        return self.indices.shape[2] - latent_frames + 1

    def window(
        self, tokenizer: OccTokenizer, items: torch.Tensor, latent_frames: int
    ) -> dict[str, torch.Tensor]:
        """Latents ``(B, C, latent_frames, h, w)`` and trajectories ``(B, T, 3)`` of
        windows; ``items`` indexes ``segment * windows_per_segment + offset``. With the
        memory's views, also ``memory (B, C + 1, latent_frames, h, w)``: view latents and
        known fraction of each latent frame (tokenizer space), and ``memory_present (B,
        latent_frames)``: False for a segment's first latent frame, which has no view."""
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
        out = {"latents": latents, "trajectory": torch.from_numpy(np.stack(trajectories))}
        if self.has_memory:
            out["memory"], out["memory_present"] = self._memory_window(
                tokenizer, segments, offsets, latent_frames
            )
        return out

    def _memory_window(
        self,
        tokenizer: OccTokenizer,
        segments: torch.Tensor,
        offsets: torch.Tensor,
        latent_frames: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Latent frame j of a segment is seen through view j - 1; its first frame has none.
        views = torch.zeros(
            len(segments),
            *self.memory_indices.shape[1:2],
            latent_frames,
            *self.memory_indices.shape[3:],
            dtype=self.memory_indices.dtype,
        )
        known = torch.zeros(len(segments), latent_frames, *self.memory_known.shape[2:])
        present = torch.zeros(len(segments), latent_frames, dtype=torch.bool)
        for b, (s, o) in enumerate(zip(segments.tolist(), offsets.tolist())):
            first = 1 if o == 0 else 0  # window frames that have a view
            views[b, :, first:] = self.memory_indices[s, :, o + first - 1 : o + latent_frames - 1]
            known[b, first:] = self.memory_known[s, o + first - 1 : o + latent_frames - 1].float()
            present[b, first:] = True
        latents = tokenizer.quantizer.lookup(views.long().to(tokenizer.device))
        return torch.cat([latents, known[:, None].to(latents)], dim=1), present


def _read_cache(
    path: Path, expected: dict, tokenizer: OccTokenizer, memory: bool
) -> LatentCache | None:
    """The cache in ``path`` if it matches ``expected`` and its contents are sound (codes
    of the codebook, finite poses, one trajectory per segment); ``None`` to rebuild."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        if not all(metadata.get(k) == v for k, v in expected.items()):
            tqdm.write(f"latent cache {path} was built from another tokenizer or data: rebuilding")
            return None
        indices, trajectory = handle.get_tensor("indices"), handle.get_tensor("trajectory")
        memory_indices = handle.get_tensor("memory_indices") if memory else None
        memory_known = handle.get_tensor("memory_known") if memory else None
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
    if memory and sound:
        n, groups, frames, h, w = indices.shape
        sound = (
            tuple(memory_indices.shape) == (n, groups, frames - 1, h, w)
            and tuple(memory_known.shape) == (n, frames - 1, h, w)
            and not memory_indices.is_floating_point()
            and (
                memory_indices.numel() == 0
                or 0
                <= int(memory_indices.min())
                <= int(memory_indices.max())
                < tokenizer.quantizer.codebook_size
            )
            and bool(((memory_known >= 0) & (memory_known <= 1)).all())
        )
    if not sound:
        tqdm.write(f"latent cache {path} holds impossible codes or poses: rebuilding")
        return None
    return LatentCache(indices, trajectory, tokenizer.temporal_factor, memory_indices, memory_known)


def load_or_build_cache(
    path: str | Path,
    tokenizer: OccTokenizer,
    segments,
    data_digest: str,
    memory: bool = False,
) -> LatentCache:
    """Load the cache at ``path`` if it was built from this tokenizer and data (and holds
    the memory's views if ``memory``), otherwise encode every item of ``segments`` (a
    dataset of whole segments) and write it atomically (a temporary file, then a rename)."""
    path = Path(path)
    model_digest = tokenizer_digest(tokenizer)
    expected = {"tokenizer": model_digest, "data": data_digest}
    if memory:  # a cache without the views is still valid for a DiT that takes none
        expected["memory"] = "views"
    if path.is_file():
        try:
            cache = _read_cache(path, expected, tokenizer, memory)
        except Exception as error:  # a cache is rebuilt, never trusted, when unreadable
            cache = None
            tqdm.write(f"latent cache {path} is unreadable ({error}): rebuilding")
        if cache is not None:
            return cache
    indices, trajectories, memory_indices, memory_known = [], [], [], []
    factor = tokenizer.temporal_factor
    with torch.no_grad():
        for i in tqdm(range(len(segments)), desc="latent cache", unit="segment"):
            clip = load_clips(segments, torch.tensor([i]))
            encoding = tokenizer.encode(clip["occupancy"].to(tokenizer.device))
            indices.append(encoding.indices.to(torch.int16).cpu())
            trajectories.append(clip["trajectory"])
            if memory:
                frames = clip["occupancy"][0].numpy().astype(np.uint8)
                views = memory_views(frames, clip["trajectory"][0].numpy(), factor, factor)
                seen, known = encode_views(tokenizer, views)  # one latent frame per view
                memory_indices.append(
                    seen.indices[:, :, 0].permute(1, 0, 2, 3)[None].to(torch.int16).cpu()
                )
                memory_known.append(known[:, 0].to(torch.float16).cpu()[None])
    cache = LatentCache(torch.cat(indices), torch.cat(trajectories), factor)
    tensors = {"indices": cache.indices.contiguous(), "trajectory": cache.trajectory.contiguous()}
    if memory:
        cache.memory_indices = torch.cat(memory_indices)
        cache.memory_known = torch.cat(memory_known)
        tensors["memory_indices"] = cache.memory_indices.contiguous()
        tensors["memory_known"] = cache.memory_known.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    metadata = {**expected, "segment_len": str(cache.trajectory.shape[1])}
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)
    return cache
