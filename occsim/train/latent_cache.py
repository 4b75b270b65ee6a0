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

for a DiT whose motion prior carries the memory's ground into new space
(``prior_padding="ground"``), the same views with the ground carried on
(:func:`~occsim.ground_prior.carry_ground_views`):

- ``ground_indices``: ``(N, G, t - 1, h, w)`` int16 code indices;

and, in the file's metadata, ``tokenizer`` (a digest of the tokenizer's config and
weights), ``segment_len``, ``data`` (a digest of the data config), ``memory`` and
``ground``. A cache
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
from occsim.ground_prior import carry_ground_views
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
        ground_indices: torch.Tensor | None = None,
    ):
        self.indices, self.trajectory, self.temporal_factor = indices, trajectory, temporal_factor
        self.memory_indices, self.memory_known = memory_indices, memory_known
        self.ground_indices = ground_indices

    @property
    def has_memory(self) -> bool:
        """Whether the cache holds the scene memory's views of its latent frames."""
        return self.memory_indices is not None

    @property
    def has_ground(self) -> bool:
        """Whether the cache holds the views with the ground carried into new space."""
        return self.ground_indices is not None

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
        latent_frames)``: False for a segment's first latent frame, which has no view. With
        the carried ground, also ``new_space (B, C, latent_frames, h, w)`` (tokenizer
        space; the data mean where there is no view) and ``new_space_present``."""
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
        if self.has_ground:
            out["new_space"], out["new_space_present"] = self._view_latents(
                tokenizer, self.ground_indices, segments, offsets, latent_frames
            )
        return out

    @staticmethod
    def _views_of_window(
        views: torch.Tensor, segments: torch.Tensor, offsets: torch.Tensor, latent_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each window frame's view ``(B, latent_frames, ...)`` from ``views (N, t - 1,
        ...)`` (zeros where there is none) and ``(B, latent_frames)`` whether it has one."""
        out = torch.zeros(len(segments), latent_frames, *views.shape[2:], dtype=views.dtype)
        present = torch.zeros(len(segments), latent_frames, dtype=torch.bool)
        for b, (s, o) in enumerate(zip(segments.tolist(), offsets.tolist())):
            # Latent frame j of a segment is seen through view j - 1; its first has none.
            first = 1 if o == 0 else 0
            out[b, first:] = views[s, o + first - 1 : o + latent_frames - 1]
            present[b, first:] = True
        return out, present

    def _view_latents(
        self,
        tokenizer: OccTokenizer,
        codes: torch.Tensor,
        segments: torch.Tensor,
        offsets: torch.Tensor,
        latent_frames: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``(B, C, latent_frames, h, w)`` of the views whose codes are ``codes (N,
        G, t - 1, h, w)``, and whether each window frame has one."""
        window, present = self._views_of_window(
            codes.transpose(1, 2), segments, offsets, latent_frames
        )
        latents = tokenizer.quantizer.lookup(window.transpose(1, 2).long().to(tokenizer.device))
        return latents, present

    def _memory_window(
        self,
        tokenizer: OccTokenizer,
        segments: torch.Tensor,
        offsets: torch.Tensor,
        latent_frames: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        latents, present = self._view_latents(
            tokenizer, self.memory_indices, segments, offsets, latent_frames
        )
        known, _ = self._views_of_window(self.memory_known, segments, offsets, latent_frames)
        return torch.cat([latents, known[:, None].to(latents)], dim=1), present


def _codes_sound(codes: torch.Tensor, shape: tuple[int, ...], tokenizer: OccTokenizer) -> bool:
    """Whether ``codes`` are integer codes of the tokenizer's codebook of ``shape``."""
    return (
        tuple(codes.shape) == shape
        and not codes.is_floating_point()
        and (
            codes.numel() == 0
            or 0 <= int(codes.min()) <= int(codes.max()) < tokenizer.quantizer.codebook_size
        )
    )


def _read_cache(
    path: Path, expected: dict, tokenizer: OccTokenizer, memory: bool, ground: bool = False
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
        ground_indices = handle.get_tensor("ground_indices") if ground else None
    sound = (
        indices.ndim == 5
        and _codes_sound(indices, tuple(indices.shape), tokenizer)
        and trajectory.ndim == 3
        and trajectory.shape[0] == indices.shape[0]
        and trajectory.shape[2] == 3
        and bool(torch.isfinite(trajectory).all())
    )
    if sound and (memory or ground):
        n, groups, frames, h, w = indices.shape
        views = (n, groups, frames - 1, h, w)
        if memory:
            sound = (
                _codes_sound(memory_indices, views, tokenizer)
                and tuple(memory_known.shape) == (n, frames - 1, h, w)
                and bool(((memory_known >= 0) & (memory_known <= 1)).all())
            )
        if ground:
            sound = sound and _codes_sound(ground_indices, views, tokenizer)
    if not sound:
        tqdm.write(f"latent cache {path} holds impossible codes or poses: rebuilding")
        return None
    return LatentCache(
        indices, trajectory, tokenizer.temporal_factor, memory_indices, memory_known, ground_indices
    )


def _view_indices(indices: torch.Tensor) -> torch.Tensor:
    """Codes ``(S, G, 1, h, w)`` of S views (one latent frame each) as one segment's
    ``(1, G, S, h, w)`` int16."""
    return indices[:, :, 0].permute(1, 0, 2, 3)[None].to(torch.int16).cpu()


def load_or_build_cache(
    path: str | Path,
    tokenizer: OccTokenizer,
    segments,
    data_digest: str,
    memory: bool = False,
    ground: bool = False,
) -> LatentCache:
    """Load the cache at ``path`` if it was built from this tokenizer and data (and holds
    the memory's views if ``memory``, with the ground carried on if ``ground``), otherwise
    encode every item of ``segments`` (a dataset of whole segments) and write it atomically
    (a temporary file, then a rename)."""
    path = Path(path)
    model_digest = tokenizer_digest(tokenizer)
    expected = {"tokenizer": model_digest, "data": data_digest}
    if memory:  # a cache without the views is still valid for a DiT that takes none
        expected["memory"] = "views"
    if ground:
        expected["ground"] = "carried"
    if path.is_file():
        try:
            cache = _read_cache(path, expected, tokenizer, memory, ground)
        except Exception as error:  # a cache is rebuilt, never trusted, when unreadable
            cache = None
            tqdm.write(f"latent cache {path} is unreadable ({error}): rebuilding")
        if cache is not None:
            return cache
    indices, trajectories, memory_indices, memory_known, ground_indices = [], [], [], [], []
    factor = tokenizer.temporal_factor
    with torch.no_grad():
        for i in tqdm(range(len(segments)), desc="latent cache", unit="segment"):
            clip = load_clips(segments, torch.tensor([i]))
            encoding = tokenizer.encode(clip["occupancy"].to(tokenizer.device))
            indices.append(encoding.indices.to(torch.int16).cpu())
            trajectories.append(clip["trajectory"])
            if not (memory or ground):
                continue
            frames = clip["occupancy"][0].numpy().astype(np.uint8)
            views = memory_views(frames, clip["trajectory"][0].numpy(), factor, factor)
            if memory:
                seen, known = encode_views(tokenizer, views)  # one latent frame per view
                memory_indices.append(_view_indices(seen.indices))
                memory_known.append(known[:, 0].to(torch.float16).cpu()[None])
            if ground:
                carried = torch.from_numpy(carry_ground_views(views)).to(tokenizer.device)
                ground_indices.append(_view_indices(tokenizer.encode_clips(carried).indices))
    cache = LatentCache(torch.cat(indices), torch.cat(trajectories), factor)
    tensors = {"indices": cache.indices.contiguous(), "trajectory": cache.trajectory.contiguous()}
    if memory:
        cache.memory_indices = torch.cat(memory_indices)
        cache.memory_known = torch.cat(memory_known)
        tensors["memory_indices"] = cache.memory_indices.contiguous()
        tensors["memory_known"] = cache.memory_known.contiguous()
    if ground:
        cache.ground_indices = torch.cat(ground_indices)
        tensors["ground_indices"] = cache.ground_indices.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    metadata = {**expected, "segment_len": str(cache.trajectory.shape[1])}
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)
    return cache
