"""Ego-motion warp of latent frames: the context as the new frame's ego would see it.

A static world moves in the ego frame exactly opposite to the ego, and the window's
trajectory says how the ego moves. Warping the last clean latent frame into each generated
frame's ego frame gives the DiT a motion-compensated prior (``OccDiT(context_prior=True)``):
it then predicts what differs from a static world (traffic, newly visible space) instead of
re-deriving the whole scene through its narrow trunk.

Space the ego has not seen yet is outside the old grid. With ``padding="zeros"`` it is the
data mean; with ``padding="border"`` each such cell repeats the nearest cell of the old
grid, so a road that leaves the old view at its edge goes on straight into the new space
(the common case), and the trunk only corrects where it does not. With ``padding="ground"``
it is what the caller gives for new space (:mod:`occsim.ground_prior`: the scene memory's
ground carried on from the nearest seen column, encoded), so roads go on without drawing
the edge's cars and hedges out into streaks; zeros where nothing is given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_STEP = 0.05  # metres: a step this short or shorter carries the heading over (standing still)
PADDINGS = ("zeros", "border", "ground")


def trajectory_headings(trajectory: torch.Tensor) -> torch.Tensor:
    """Headings ``(B, T)`` of waypoints ``(B, T, 2)`` from the path direction (central
    differences), holding the last heading where the ego barely moves. The first waypoint
    is the window's ego origin, heading 0."""
    b, n, _ = trajectory.shape
    padded = torch.cat([trajectory[:, :1], trajectory, trajectory[:, -1:]], dim=1)
    delta = padded[:, 2:] - padded[:, :-2]
    moving = delta.norm(dim=-1) > MIN_STEP
    raw = torch.atan2(delta[..., 1], delta[..., 0])
    headings = [torch.zeros(b, dtype=trajectory.dtype, device=trajectory.device)]
    for k in range(1, n):
        headings.append(torch.where(moving[:, k], raw[:, k], headings[-1]))
    return torch.stack(headings, dim=1)


def chunk_poses(trajectory: torch.Tensor, frames_per_latent: int) -> torch.Tensor:
    """Pose ``(x, y, yaw)`` of the last frame of each latent frame's chunk, ``(B, t, 3)``,
    from waypoints ``(B, T, 2|3)`` (a given yaw column is used as is)."""
    if trajectory.shape[-1] >= 3:
        poses = trajectory[..., :3]
    else:
        poses = torch.cat([trajectory, trajectory_headings(trajectory)[..., None]], dim=-1)
    return poses[:, frames_per_latent - 1 :: frames_per_latent]


def relative_pose(origin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pose ``(B, 3)`` of ``target`` in the ego frame of ``origin`` (both ``(B, 3)``)."""
    dx, dy = (target[:, 0] - origin[:, 0]), (target[:, 1] - origin[:, 1])
    c, s = torch.cos(origin[:, 2]), torch.sin(origin[:, 2])
    return torch.stack([c * dx + s * dy, -s * dx + c * dy, target[:, 2] - origin[:, 2]], dim=1)


def warp_to_pose(
    latent: torch.Tensor, pose: torch.Tensor, half_extent: float, padding: str = "zeros"
) -> torch.Tensor:
    """Latent BEV frames ``(B, C, h, w)`` (axes x, y of the ego grid, centred on the ego)
    resampled into the ego frame at ``pose (B, 3)`` of the frame they were seen from.

    Cells that come from outside the old grid are zero (the data mean after normalisation)
    with ``padding="zeros"`` (and ``"ground"``, whose fill :func:`motion_prior` adds), the
    nearest edge cell with ``padding="border"``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    h, w = latent.shape[-2:]
    xs = (torch.arange(h, device=latent.device, dtype=latent.dtype) + 0.5) / h * 2 - 1
    ys = (torch.arange(w, device=latent.device, dtype=latent.dtype) + 0.5) / w * 2 - 1
    gx, gy = torch.meshgrid(xs * half_extent, ys * half_extent, indexing="ij")  # metres
    c, s = torch.cos(pose[:, 2])[:, None, None], torch.sin(pose[:, 2])[:, None, None]
    # A point of the new ego frame, expressed in the old one.
    old_x = c * gx - s * gy + pose[:, 0, None, None]
    old_y = s * gx + c * gy + pose[:, 1, None, None]
    # grid_sample's last coordinate pair is (width, height) = (y, x), normalised to [-1, 1].
    grid = torch.stack([old_y / half_extent, old_x / half_extent], dim=-1)
    mode = "zeros" if padding == "ground" else padding
    return F.grid_sample(latent, grid, mode="bilinear", padding_mode=mode, align_corners=False)


def motion_prior(
    latents: torch.Tensor,
    context_mask: torch.Tensor,
    trajectory: torch.Tensor,
    frames_per_latent: int,
    half_extent: float,
    padding: str = "zeros",
    new_space: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(B, C, t, h, w)``: each frame after the context is the last context frame warped
    to its pose (``padding`` as :func:`warp_to_pose`); context frames are themselves;
    everything is zero without context.

    ``new_space`` ``(B, C, t, h, w)`` (``padding="ground"`` only) is what each frame's
    prior holds where it reaches beyond the old grid; cells on the old grid's edge blend
    the two by how much of them the old grid covers."""
    if new_space is not None and padding != "ground":
        raise ValueError(f"new_space is given but padding is {padding!r}, not 'ground'")
    b, c, t = latents.shape[:3]
    count = context_mask.sum(dim=1)  # context frames lead the window
    last = (count - 1).clamp(min=0)
    source = latents[torch.arange(b, device=latents.device), :, last]  # (B, C, h, w)
    if new_space is not None:  # a channel of ones, warped, is how much the old grid covers
        source = torch.cat([source, torch.ones_like(source[:, :1])], dim=1)
    poses = chunk_poses(trajectory.float(), frames_per_latent).to(latents.dtype)
    origin = poses[torch.arange(b, device=latents.device), last]
    frames = []
    for j in range(t):
        warped = warp_to_pose(source, relative_pose(origin, poses[:, j]), half_extent, padding)
        if new_space is not None:
            warped = warped[:, :c] + (1 - warped[:, c:]) * new_space[:, :, j]
        frames.append(torch.where(context_mask[:, j, None, None, None], latents[:, :, j], warped))
    prior = torch.stack(frames, dim=2)
    return prior * (count > 0).to(prior.dtype)[:, None, None, None, None]
