"""What the motion prior holds in space the ego has never seen: the ground carried on.

The ego-motion-warped context ends at the old view's edge. Beyond it the bundled DiT used
to start from the data mean, and what it generated there was a patchwork of terrain and
vegetation: only 42 % of the road ahead came out as road, and the ego drove into what it
made up. Repeating the old view's edge latents (``prior_padding="border"``) finds the road
but draws parked cars and hedges out into streaks.

Here the scene memory's view of each generated frame gives every column it knows nothing
about the **ground** of the nearest column it does know (road, sidewalk, terrain, other
flat; nothing above them), and the tokenizer encodes that. A road leaving the seen area goes
on straight, a sidewalk beside it too, and nothing that stands on the ground is repeated:
the DiT generates what stands there (``OccDiT(prior_padding="ground")``).
"""

from __future__ import annotations

import numpy as np
import torch

from occsim.grid import column_any
from occsim.labels import FREE_ID, GROUND_CLASSES, ClassMask
from occsim.nearest_cell import nearest_set_cell
from occsim.scene_memory import UNKNOWN
from occsim.tokenizer import OccTokenizer

_IS_GROUND = ClassMask(GROUND_CLASSES)


def carry_ground(view: np.ndarray) -> np.ndarray:
    """``view (X, Y, Z)`` uint8 of the scene memory (:data:`UNKNOWN` where it knows
    nothing) with every wholly unknown column given the ground voxels of the nearest column
    that has ground (free above and below them); other voxels as they were. Unchanged when
    no column has ground or none is unknown."""
    view = np.asarray(view)
    if view.ndim != 3 or view.dtype != np.uint8:
        raise ValueError(f"view must be uint8 (X, Y, Z), got {view.dtype} {view.shape}")
    unknown = ~column_any(view != UNKNOWN)
    has_ground = column_any(_IS_GROUND(view)) & ~unknown
    if not unknown.any() or not has_ground.any():
        return view
    # The nearest column with ground of every unknown column (exact Euclidean).
    ux, uy = np.nonzero(unknown)
    source = view[nearest_set_cell(has_ground, ux, uy)]  # (N, Z) of the unknown columns
    out = view.copy()
    out[ux, uy] = np.where(_IS_GROUND(source), source, np.uint8(FREE_ID))
    return out


def carry_ground_views(views: np.ndarray) -> np.ndarray:
    """Memory ``views`` ``(B, T, X, Y, Z)`` uint8 with the ground carried into unknown
    columns (:func:`carry_ground`) and any other unknown voxel free: what the tokenizer
    encodes for the prior's new space."""
    views = np.asarray(views)
    if views.ndim != 5 or views.dtype != np.uint8:
        raise ValueError(f"views must be uint8 (B, T, X, Y, Z), got {views.dtype} {views.shape}")
    carried = np.stack([np.stack([carry_ground(frame) for frame in clip]) for clip in views])
    carried[carried == UNKNOWN] = FREE_ID
    return carried


@torch.no_grad()
def ground_prior(tokenizer: OccTokenizer, views: np.ndarray) -> torch.Tensor:
    """``(B, C, t, h, w)`` tokenizer latents of the memory ``views`` ``(B, T, X, Y, Z)``
    carried on (:func:`carry_ground_views`), for ``OccDiT(prior_padding="ground")``."""
    clip = torch.from_numpy(carry_ground_views(views)).to(tokenizer.device)
    return tokenizer.encode_clips(clip).latents  # a fresh encode: no stream before it
