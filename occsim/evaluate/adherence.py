"""Trajectory adherence: the ego motion a generated world implies against the commanded one.

The static structure (buildings, vegetation, barriers, cones, "others") of consecutive
frames is registered: a BEV cross-correlation gives a coarse translation (frames 0.5 s apart
can be several metres apart, beyond ICP's basin), then open3d point-to-point ICP refines the
rigid motion. Chaining the frame-to-frame motions gives the ego path of the generated clip.
Flat ground is left out: its regular voxel lattice pins ICP to whole-cell offsets and says
nothing about motion along the road.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from occsim.geometry import local_to_world, poses_to_trajectory, rotation_2d
from occsim.grid import OCC3D_GRID, GridSpec
from occsim.labels import BARRIER, MANMADE, OTHERS, TRAFFIC_CONE, VEGETATION

STRUCTURE_CLASSES: tuple[int, ...] = (OTHERS, BARRIER, TRAFFIC_CONE, MANMADE, VEGETATION)
ADHERENCE_MANEUVERS: tuple[str, ...] = ("straight", "left", "right", "stop", "accelerate")
MIN_POINTS = 30  # fewer structure voxels than this: the motion is not observable
ICP_DISTANCE = 1.0  # metres: correspondences after the coarse alignment
MAX_SHIFT = 12.0  # metres: largest frame-to-frame translation searched (24 m/s at 2 Hz)
# Frame-to-frame yaws searched (radians; 0.5 s apart: up to 1 rad/s), 0.05 rad apart.
YAW_CANDIDATES: np.ndarray = np.round(np.arange(-0.5, 0.5 + 1e-9, 0.05), 2)


def _structure(frame: np.ndarray) -> np.ndarray:
    return np.isin(frame, STRUCTURE_CLASSES)


def structure_points(frame: np.ndarray, grid: GridSpec = OCC3D_GRID) -> np.ndarray:
    """Metric centres ``(N, 3)`` of the static-structure voxels of one ``(X, Y, Z)`` frame."""
    return grid.index_to_metric(np.argwhere(_structure(frame)))


def _bev_mask(points_xy: np.ndarray, grid: GridSpec) -> np.ndarray:
    """BEV occupancy ``(X, Y)`` float32 of metric points ``(N, 2)`` (outside points dropped)."""
    cells = grid.metric_to_index(points_xy)
    inside = np.all((cells >= 0) & (cells < grid.shape[:2]), axis=1)
    mask = np.zeros(grid.shape[:2], dtype=np.float32)
    mask[cells[inside, 0], cells[inside, 1]] = 1.0
    return mask


def coarse_pose(
    previous: np.ndarray, current: np.ndarray, grid: GridSpec = OCC3D_GRID
) -> np.ndarray:
    """Coarse pose ``(dx, dy, yaw)`` of ``current``'s ego in ``previous``'s ego frame: for
    each yaw of :data:`YAW_CANDIDATES`, ``current``'s BEV structure turned by it is overlaid
    on ``previous``'s by circular FFT cross-correlation (whole cells, within
    :data:`MAX_SHIFT`); the yaw and shift of the highest peak. ICP's basin is about a metre:
    a turn of 0.1 rad already moves structure 30 m away by 3 m."""
    a = np.fft.rfft2(_structure(previous).any(-1).astype(np.float32))
    points = structure_points(current, grid)[:, :2]
    cells = (
        np.fft.fftfreq(grid.shape[0], 1.0 / grid.shape[0]),
        np.fft.fftfreq(grid.shape[1], 1.0 / grid.shape[1]),
    )
    sx, sy = np.meshgrid(*cells, indexing="ij")
    size = grid.voxel_size
    out_of_reach = np.hypot(sx * size, sy * size) > MAX_SHIFT
    best, pose = -np.inf, np.zeros(3)
    for yaw in YAW_CANDIDATES:
        turned = points @ rotation_2d(yaw).T
        b = np.fft.rfft2(_bev_mask(turned, grid))
        correlation = np.fft.irfft2(a * np.conj(b), s=grid.shape[:2])
        correlation[out_of_reach] = -np.inf
        i, j = np.unravel_index(np.argmax(correlation), correlation.shape)
        if correlation[i, j] > best:
            best, pose = correlation[i, j], np.array([sx[i, j] * size, sy[i, j] * size, yaw])
    return pose


def register_frames(
    previous: np.ndarray, current: np.ndarray, grid: GridSpec = OCC3D_GRID
) -> np.ndarray | None:
    """Pose ``(x, y, yaw)`` of ``current``'s ego in ``previous``'s ego frame, or ``None``
    when either frame has too little structure to register."""
    import open3d as o3d

    target_points = structure_points(previous, grid)
    source_points = structure_points(current, grid)
    if min(len(target_points), len(source_points)) < MIN_POINTS:
        return None
    dx, dy, yaw = coarse_pose(previous, current, grid)
    initial = np.eye(4)
    initial[:2, :2] = rotation_2d(yaw)
    initial[:2, 3] = dx, dy
    source = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(source_points))
    target = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(target_points))
    result = o3d.pipelines.registration.registration_icp(
        source,
        target,
        ICP_DISTANCE,
        initial,
        o3d.pipelines.registration.TransformationEstimationPointToPoint(),
        o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=50),
    )
    transform = np.asarray(result.transformation)
    return np.array(
        [transform[0, 3], transform[1, 3], np.arctan2(transform[1, 0], transform[0, 0])]
    )


def recover_trajectory(frames: np.ndarray, grid: GridSpec = OCC3D_GRID) -> np.ndarray:
    """Ego poses ``(T, 3)`` of ``frames (T, X, Y, Z)`` in the first frame's ego frame, by
    chaining frame-to-frame registrations; ``NaN`` from the first unregistrable pair on."""
    poses = np.full((len(frames), 3), np.nan)
    poses[0] = 0.0
    for k in range(1, len(frames)):
        step = register_frames(frames[k - 1], frames[k], grid)
        if step is None:
            break
        position = local_to_world(step[None, :2], poses[k - 1, :2], poses[k - 1, 2])[0]
        poses[k] = [*position, poses[k - 1, 2] + step[2]]
    return poses


def displacement_errors(recovered: np.ndarray, commanded: np.ndarray) -> tuple[float, float]:
    """Mean and final displacement error (metres) of ``(T, 2+)`` paths, first pose excluded
    (it is the common origin)."""
    errors = np.linalg.norm(recovered[1:, :2] - commanded[1:, :2], axis=-1)
    return float(errors.mean()), float(errors[-1])


@dataclass
class AdherenceRow:
    """Displacement errors of one manoeuvre, for the generated clips and, as the metric's
    own floor, for the true clips of the same trajectories."""

    maneuver: str
    clips: int
    ade: float
    fde: float
    truth_ade: float
    truth_fde: float
    failed: int


@torch.no_grad()
def evaluate_adherence(
    pipe,
    datasets: dict[str, object],
    clips: int,
    num_inference_steps: int = 10,
    guidance_scale: float = 2.0,
    seed: int = 0,
    progress: bool = True,
) -> list[AdherenceRow]:
    """Per manoeuvre: the DiT continues the first latent frame of each true clip along the
    clip's own trajectory; the path recovered from the last context frame through the
    generated frames is compared with the commanded one.

    ``datasets`` maps a manoeuvre name to clips of ``pipe``'s window length driven with it.
    """
    tokenizer, config = pipe.tokenizer, pipe.transformer.config
    context_frames = config.latent_frames - 1
    anchor = context_frames * tokenizer.temporal_factor - 1  # last frame given as context
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for maneuver, dataset in datasets.items():
        errors, truth_errors, failed = [], [], 0
        for i in tqdm(range(min(clips, len(dataset))), desc=maneuver, disable=not progress):
            item = dataset[i]
            occupancy, trajectory = item["occupancy"], item["trajectory"]
            frames = torch.from_numpy(occupancy[None]).to(tokenizer.device)
            latents = tokenizer.encode(frames).latents
            out = pipe(
                trajectory[None, :, :2],
                context=latents[:, :, :context_frames],
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generator,
                output_type="latent",
            )
            generated = tokenizer.decode_classes(out.latents)[0].cpu().numpy()
            commanded = poses_to_trajectory(trajectory[anchor:, :2], trajectory[anchor:, 2])
            recovered = recover_trajectory(generated[anchor:])
            truth = recover_trajectory(occupancy[anchor:])
            if np.isnan(recovered).any():
                failed += 1
            else:
                errors.append(displacement_errors(recovered, commanded))
            if not np.isnan(truth).any():
                truth_errors.append(displacement_errors(truth, commanded))
        mean = np.mean(errors, axis=0) if errors else (np.nan, np.nan)
        truth_mean = np.mean(truth_errors, axis=0) if truth_errors else (np.nan, np.nan)
        rows.append(
            AdherenceRow(
                maneuver, len(errors) + failed, *map(float, mean), *map(float, truth_mean), failed
            )
        )
    return rows
