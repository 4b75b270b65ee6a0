"""Sampling-based MPC: the cross-entropy method over bicycle controls, scored on occupancy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from occsim.agents.scripted import DEFAULT_ACTION_SCALE, normalise
from occsim.envs.rewards import EGO_HEIGHT_VOXELS
from occsim.envs.wrappers import BicycleModel
from occsim.grid import EGO_LENGTH, EGO_WIDTH, OCC3D_GRID
from occsim.labels import DRIVEABLE_SURFACE, DYNAMIC_CLASSES, OBSTACLE_CLASSES, OTHER_FLAT

STATIC_OBSTACLES = tuple(c for c in OBSTACLE_CLASSES if c not in DYNAMIC_CLASSES)
MOVING_MARGIN = 4  # cells (1.6 m) around moving agents

# Points sampled over the ego box (length x width) to test a pose against a BEV map, half a
# voxel inside its edges so that they land on the cells of the env's footprint mask.
_INSET = OCC3D_GRID.voxel_size / 2
_BOX_POINTS = np.stack(
    np.meshgrid(
        np.linspace(-EGO_LENGTH / 2 + _INSET, EGO_LENGTH / 2 - _INSET, 9),
        np.linspace(-EGO_WIDTH / 2 + _INSET, EGO_WIDTH / 2 - _INSET, 4),
        indexing="ij",
    ),
    axis=-1,
).reshape(-1, 2)


@dataclass(frozen=True)
class PlannerCosts:
    """Weights of the planner's cost (lower is better).

    Attributes:
        collision: per pose whose box overlaps an obstacle voxel.
        offroad: per pose with no driveable cell under its box.
        progress: per metre of path driven in the step (negative: progress is rewarded).
        effort: per unit of squared normalised control.
        target_speed: m/s above which progress earns nothing more (keep the step's distance
            within the action's reach, ``action_scale[0]``).
    """

    collision: float = 200.0
    offroad: float = 100.0
    progress: float = -1.0
    effort: float = 0.5
    target_speed: float = 7.0


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Boolean ``(X, Y)`` mask grown by ``radius`` cells (square neighbourhood)."""
    if radius <= 0:
        return mask
    padded = np.pad(mask, radius)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1,) * 2)
    return windows.any(axis=(-1, -2))


def bev_maps(frame: np.ndarray, moving_margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(obstacle, driveable)`` boolean ``(X, Y)`` maps of one occupancy frame, with the
    same height bands as the env's collision and off-road checks. Agents that move
    (vehicles, cyclists, pedestrians) are grown by ``moving_margin`` cells: a frame shows
    where they were, not where they will be."""
    body = frame[:, :, EGO_HEIGHT_VOXELS]
    static = np.isin(body, STATIC_OBSTACLES).any(axis=-1)
    moving = dilate(np.isin(body, DYNAMIC_CLASSES).any(axis=-1), moving_margin)
    driveable = np.isin(frame[:, :, 2], (DRIVEABLE_SURFACE, OTHER_FLAT))
    return static | moving, driveable


def pose_costs(
    poses: np.ndarray, obstacle: np.ndarray, driveable: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Collision and off-road flags ``(...)`` of poses ``(..., 3)`` (x, y, yaw in the
    frame's ego frame). Cells outside the grid count as free and driveable."""
    cos, sin = np.cos(poses[..., 2:3]), np.sin(poses[..., 2:3])
    px = poses[..., None, 0] + cos * _BOX_POINTS[:, 0] - sin * _BOX_POINTS[:, 1]
    py = poses[..., None, 1] + sin * _BOX_POINTS[:, 0] + cos * _BOX_POINTS[:, 1]
    index = OCC3D_GRID.metric_to_index(np.stack([px, py], axis=-1))
    inside = OCC3D_GRID.contains(index)
    ix = np.clip(index[..., 0], 0, obstacle.shape[0] - 1)
    iy = np.clip(index[..., 1], 0, obstacle.shape[1] - 1)
    hit = (obstacle[ix, iy] & inside).any(axis=-1)
    road = (driveable[ix, iy] | ~inside).any(axis=-1)
    return hit, ~road


def rollout_poses(
    model: BicycleModel, speed: float, controls: np.ndarray, frames: int, horizon: int
):
    """Poses ``(N, horizon, 3)`` of N candidates ``(acceleration, steering, acceleration,
    steering)``: the first command held for the step's ``frames``, the second after it."""
    poses = np.zeros((len(controls), horizon, 3))
    for n, control in enumerate(controls):
        commands = np.repeat(control.reshape(2, 2), [frames, horizon - frames], axis=0)
        poses[n] = model.rollout(speed, commands)[:, :3]
    return poses


class PlannerAgent:
    """Cross-entropy method over two held (acceleration, steering) commands: one for the
    step, one for a look-ahead after it (so that "turn now, straighten later" is a plan).

    Each candidate is turned into waypoints by a kinematic bicycle, then scored by the
    collision, off-road and progress costs of its poses (plus a look-ahead of
    ``lookahead`` frames), judged against either the last observed frame (``scorer=
    "occupancy"``: the scene is taken as still, moving agents grown by a margin) or the
    frames the world model generates for each candidate (``scorer="world_model"``:
    candidates are rolled through the env's pipeline as one batch; pass ``env``).
    """

    def __init__(
        self,
        frames: int = 4,
        population: int = 64,
        elites: int = 8,
        iterations: int = 3,
        lookahead: int = 4,
        costs: PlannerCosts | None = None,
        model: BicycleModel | None = None,
        scorer: str = "occupancy",
        env: Any = None,
        action_scale=DEFAULT_ACTION_SCALE,
        seed: int | None = None,
    ) -> None:
        if scorer not in ("occupancy", "world_model"):
            raise ValueError(f"scorer must be 'occupancy' or 'world_model', got {scorer!r}")
        if scorer == "world_model" and env is None:
            raise ValueError("scorer='world_model' needs the OccSora env (env=...)")
        if not 0 < elites <= population:
            raise ValueError(f"need 0 < elites <= population, got {elites} and {population}")
        self.frames, self.population, self.elites = frames, population, elites
        self.iterations, self.lookahead = iterations, lookahead
        self.costs = costs or PlannerCosts()
        # Capped so that a step's waypoints stay within reach of the action (20 m in 2 s).
        self.model = model or BicycleModel(max_speed=0.95 * action_scale[0] / (0.5 * frames))
        self.scorer, self.env, self.action_scale = scorer, env, action_scale
        self.rng = np.random.default_rng(seed)
        self.last_plan: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.last_plan = None

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if "occupancy" not in observation:
            raise ValueError("PlannerAgent needs the 'occupancy' observation key")
        speed = float(observation["ego"][0]) if "ego" in observation else 0.0
        frame = observation["occupancy"][-1]
        mean, std = np.zeros(4), np.array([0.6, 0.7, 0.6, 0.7])
        best, best_cost = np.zeros(4), np.inf
        for _ in range(self.iterations):
            controls = np.clip(self.rng.normal(mean, std, (self.population, 4)), -1, 1)
            controls[0] = mean  # keep the incumbent
            scores = self._score(frame, speed, controls)
            order = np.argsort(scores)
            if scores[order[0]] < best_cost:
                best, best_cost = controls[order[0]], scores[order[0]]
            elite = controls[order[: self.elites]]
            mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.05
        waypoints = self.model.waypoints(speed, *best[:2], self.frames)
        self.last_plan = waypoints
        return normalise(waypoints, self.action_scale)

    def _score(self, frame: np.ndarray, speed: float, controls: np.ndarray) -> np.ndarray:
        horizon = self.frames + self.lookahead
        poses = rollout_poses(self.model, speed, controls, self.frames, horizon)
        if self.scorer == "occupancy":
            hit, off = pose_costs(poses, *bev_maps(frame, MOVING_MARGIN))
        else:
            hit, off = self._world_model_flags(poses[:, : self.frames], controls, speed)
            look_hit, look_off = pose_costs(
                poses[:, self.frames :], *bev_maps(frame, MOVING_MARGIN)
            )
            hit, off = np.concatenate([hit, look_hit], 1), np.concatenate([off, look_off], 1)
        # The step's own poses count fully, the look-ahead's less (it is replanned anyway).
        weights = np.where(np.arange(horizon) < self.frames, 1.0, 0.5)
        # Progress is the path length of the step: turning into a bend earns as much as
        # going straight, which the env's along-heading reward would not.
        steps = np.diff(
            np.concatenate([np.zeros((len(poses), 1, 2)), poses[:, : self.frames, :2]], 1), axis=1
        )
        progress = np.minimum(
            np.hypot(*steps.transpose(2, 0, 1)).sum(1), self.costs.target_speed * 0.5 * self.frames
        )
        return (
            self.costs.collision * (hit * weights).sum(1)
            + self.costs.offroad * (off * weights).sum(1)
            + self.costs.progress * progress
            + self.costs.effort * (controls[:, :2] ** 2).sum(1)
        )

    def _world_model_flags(self, poses: np.ndarray, controls: np.ndarray, speed: float):
        """Generate each candidate's frames with the env's world model (one batch) and test
        each pose against the frame generated at that time."""
        env = self.env.unwrapped
        waypoints = [self.model.waypoints(speed, *c[:2], self.frames) for c in controls]
        plans = [env.plan(normalise(w, self.action_scale)) for w in waypoints]
        trajectories = np.stack([plan.trajectory for plan in plans])
        with torch.no_grad():
            out = env.pipe(
                trajectories[:, :, :2],
                context=env.learned.latents.expand(len(controls), -1, -1, -1, -1),
                num_inference_steps=env.config.num_inference_steps,
                guidance_scale=env.config.guidance_scale,
                generator=torch.Generator().manual_seed(int(self.rng.integers(2**31))),
            )
        hit = np.zeros(poses.shape[:2], dtype=bool)
        off = np.zeros(poses.shape[:2], dtype=bool)
        for n, frames in enumerate(out.occupancy):
            for k in range(self.frames):
                # Frame k is centred on the ego at pose k: test the box at the origin.
                h, o = pose_costs(np.zeros((1, 3)), *bev_maps(frames[k]))
                hit[n, k], off[n, k] = h[0], o[0]
        return hit, off
