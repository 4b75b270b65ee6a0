"""What the DiT sees of the scene memory: the memory's view of a window, as latents.

The scene memory re-projected into each pose of the frames a window generates
(:meth:`~occsim.scene_memory.SceneMemory.project`) is encoded by the tokenizer, unknown
voxels as free, and the fraction of known voxels of each latent cell is added as one more
channel, the way diffusers' inpainting pipelines feed the masked image's latents and the
mask. Training (:mod:`occsim.train.latent_cache`) and the rollout build it with this one
function, from memories filled the same way (:func:`memory_views`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from occsim.labels import FREE_ID
from occsim.scene_memory import UNKNOWN, SceneMemory
from occsim.tokenizer import OccTokenizer, TokenizerEncoding


@torch.no_grad()
def encode_views(
    tokenizer: OccTokenizer, views: np.ndarray
) -> tuple[TokenizerEncoding, torch.Tensor]:
    """The tokenizer's encoding of the memory ``views`` ``(B, T, X, Y, Z)`` uint8
    (:data:`~occsim.scene_memory.UNKNOWN` where the memory knows nothing, encoded as free)
    and the fraction ``(B, t, h, w)`` of known voxels of each latent cell."""
    views = np.asarray(views)
    if views.ndim != 5 or views.dtype != np.uint8:
        raise ValueError(f"views must be uint8 (B, T, X, Y, Z), got {views.dtype} {views.shape}")
    known = views != UNKNOWN
    classes = np.where(known, views, np.uint8(FREE_ID))
    clip = torch.from_numpy(np.ascontiguousarray(classes)).to(tokenizer.device)
    encoding = tokenizer.encode_clips(clip)  # a fresh encode: no stream before it
    _, _, t, h, w = encoding.latents.shape
    columns = torch.from_numpy(known.mean(axis=-1, dtype=np.float32)).to(encoding.latents)
    fraction = F.adaptive_avg_pool3d(columns[:, None], (t, h, w))[:, 0]
    return encoding, fraction


def memory_condition(tokenizer: OccTokenizer, views: np.ndarray) -> torch.Tensor:
    """``(B, C + 1, t, h, w)``: the latents of the memory ``views`` (see
    :func:`encode_views`), then the known fraction of each latent cell."""
    encoding, fraction = encode_views(tokenizer, views)
    return torch.cat([encoding.latents, fraction[:, None]], dim=1)


def memory_views(
    frames: np.ndarray, poses: np.ndarray, start_frames: int, step_frames: int
) -> np.ndarray:
    """The memory's views ``(S, step_frames, X, Y, Z)`` of every step of a recorded
    episode, built as a rollout builds them: the first ``start_frames`` frames
    ``(T, X, Y, Z)`` at world ``poses (T, 3)`` fill the memory, each following step of
    ``step_frames`` frames is seen through it, then its last frame enters it (known voxels
    kept), as :class:`~occsim.world_model.WorldModelRollout` does with what it generated."""
    count = (len(frames) - start_frames) // step_frames
    if count < 1 or len(poses) != len(frames):
        raise ValueError(
            f"need {start_frames} start frames and at least one step of {step_frames} with a "
            f"pose each, got {len(frames)} frames and {len(poses)} poses"
        )
    memory = SceneMemory()
    for frame, pose in zip(frames[:start_frames], poses[:start_frames]):
        memory.insert(frame, pose)
    views = np.empty((count, step_frames, *frames.shape[1:]), dtype=np.uint8)
    for s in range(count):
        first = start_frames + s * step_frames
        for k in range(step_frames):
            views[s, k] = memory.project(poses[first + k])
        last = first + step_frames - 1
        memory.insert(frames[last], poses[last], only_unknown=True)
    return views
