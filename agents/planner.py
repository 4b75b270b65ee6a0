"""Sampling-based MPC: the cross-entropy method over bicycle controls, scored on occupancy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from occsim.agents.base import ControlSpec
from occsim.agents.forecast import body_masks, dilate, forecast_obstacles
from occsim.envs.kinematics import BicycleModel
from occsim.envs.occsora_env import OccSoraEnv
from occsim.grid import EGO_LENGTH, EGO_WIDTH, OCC3D_GRID

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
        edge: per pose, times the share of the ego box off the driveable surface (the
            env only fails a box entirely off the road; this keeps the plan clear of the
            edge, where a small pose error is enough to leave it).
        effort: per unit of squared normalised control.
        target_speed: m/s above which progress earns nothing more (keep the step's distance
            within the action's reach, ``action_scale[0]``).
    """

    collision: float = 200.0
    offroad: float = 100.0
    progress: float = -1.0
    edge: float = 10.0
    effort: float = 0.5
    target_speed: float = 7.0


def bev_maps(frame: np.ndarray, moving_margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(obstacle, driveable)`` boolean ``(X, Y)`` maps of one occupancy frame, with the
    same height bands as the env's collision and off-road checks; moving road users grown
    by ``moving_margin`` cells."""
    static, moving, driveable = body_masks(frame)
    return static | dilate(moving, moving_margin), driveable


def _box_cells(poses: np.ndarray, shape: tuple[int, ...]):
    """BEV cells ``(..., points)`` under the ego box at poses ``(..., 3)`` and which of
    them lie inside the grid."""
    cos, sin = np.cos(poses[..., 2:3]), np.sin(poses[..., 2:3])
    px = poses[..., None, 0] + cos * _BOX_POINTS[:, 0] - sin * _BOX_POINTS[:, 1]
    py = poses[..., None, 1] + sin * _BOX_POINTS[:, 0] + cos * _BOX_POINTS[:, 1]
    index = OCC3D_GRID.metric_to_index(np.stack([px, py], axis=-1))
    inside = OCC3D_GRID.contains(index)
    ix = np.clip(index[..., 0], 0, shape[0] - 1)
    iy = np.clip(index[..., 1], 0, shape[1] - 1)
    return ix, iy, inside


def pose_costs(
    poses: np.ndarray, obstacle: np.ndarray, driveable: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Collision and off-road flags ``(...)`` of poses ``(..., 3)`` (x, y, yaw in the
    frame's ego frame). Cells outside the grid count as free and driveable."""
    ix, iy, inside = _box_cells(poses, obstacle.shape)
    hit = (obstacle[ix, iy] & inside).any(axis=-1)
    road = (driveable[ix, iy] | ~inside).any(axis=-1)
    return hit, ~road


def offroad_share(poses: np.ndarray, driveable: np.ndarray) -> np.ndarray:
    """Share ``(...)`` of the ego box off the driveable surface at poses ``(..., 3)``:
    0 in the middle of a lane, near 1 about to leave the road."""
    ix, iy, inside = _box_cells(poses, driveable.shape)
    return 1.0 - (driveable[ix, iy] | ~inside).mean(axis=-1)


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
    ``lookahead`` frames). Each pose is judged against the obstacles forecast for its time
    from the last two observed frames (``scorer="occupancy"``: static structure stays,
    road users move on at their observed velocity, see :mod:`occsim.agents.forecast`); with
    ``scorer="world_model"`` the step's poses are judged instead against the frames the
    world model imagines for each candidate (``env.imagine``, one batch, nothing committed;
    ``env`` must be the learned world). The step length, action scale and frame period come
    from ``env``. Forecast road users are grown by ``moving_margin`` cells (0.4 m
    each): 4 gave 0 % collisions on Procedural-v0 and fewer in the blurrier learned world
    than 2 did (BENCHMARKS.md).
    """

    def __init__(
        self,
        env: gym.Env,
        population: int = 64,
        elites: int = 8,
        iterations: int = 3,
        lookahead: int = 4,
        moving_margin: int = 4,
        costs: PlannerCosts | None = None,
        model: BicycleModel | None = None,
        scorer: str = "occupancy",
        seed: int | None = None,
    ) -> None:
        if scorer not in ("occupancy", "world_model"):
            raise ValueError(f"scorer must be 'occupancy' or 'world_model', got {scorer!r}")
        if scorer == "world_model" and not isinstance(env.unwrapped, OccSoraEnv):
            raise ValueError("scorer='world_model' needs the learned env (occsim/OccSora-v0)")
        if not 0 < elites <= population:
            raise ValueError(f"need 0 < elites <= population, got {elites} and {population}")
        self.controls = ControlSpec.of(env)
        self.frames, self.population, self.elites = self.controls.frames, population, elites
        self.iterations, self.lookahead = iterations, lookahead
        self.moving_margin = moving_margin
        self.costs = costs or PlannerCosts()
        # Capped so that a step's waypoints stay within reach of the action (20 m in 2 s).
        self.model = model or self.controls.bicycle()
        self.scorer, self.env = scorer, env
        self.rng = np.random.default_rng(seed)
        self.last_plan: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.last_plan = None

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if "occupancy" not in observation:
            raise ValueError("PlannerAgent needs the 'occupancy' observation key")
        ego = observation.get("ego", np.zeros(3))
        speed, yaw_rate = float(ego[0]), float(ego[1])
        frames = np.asarray(observation["occupancy"])
        horizon = self.frames + self.lookahead
        obstacles, driveable = forecast_obstacles(
            frames, speed, yaw_rate, horizon, self.controls.frame_period, self.moving_margin
        )
        mean, std = np.zeros(4), np.array([0.6, 0.7, 0.6, 0.7])
        best, best_cost = np.zeros(4), np.inf
        for _ in range(self.iterations):
            controls = np.clip(self.rng.normal(mean, std, (self.population, 4)), -1, 1)
            controls[0] = mean  # keep the incumbent
            scores = self._score(obstacles, driveable, speed, controls)
            order = np.argsort(scores)
            if scores[order[0]] < best_cost:
                best, best_cost = controls[order[0]], scores[order[0]]
            elite = controls[order[: self.elites]]
            mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.05
        waypoints = self.model.waypoints(speed, *best[:2], self.frames)
        self.last_plan = waypoints
        return self.controls.normalise(waypoints)

    def _score(
        self, obstacles: np.ndarray, driveable: np.ndarray, speed: float, controls: np.ndarray
    ) -> np.ndarray:
        horizon = self.frames + self.lookahead
        poses = rollout_poses(self.model, speed, controls, self.frames, horizon)
        # Pose j is j + 1 frames ahead: judged against the obstacles forecast for then.
        hit, off = zip(*(pose_costs(poses[:, j], obstacles[j], driveable) for j in range(horizon)))
        hit, off = np.stack(hit, 1), np.stack(off, 1)
        if self.scorer == "world_model":
            step = slice(0, self.frames)
            hit[:, step], off[:, step] = self._world_model_flags(controls, speed)
        # The step's own poses count fully, the look-ahead's less (it is replanned anyway).
        weights = np.where(np.arange(horizon) < self.frames, 1.0, 0.5)
        # Progress is the path length of the step: turning into a bend earns as much as
        # going straight, which the env's along-heading reward would not.
        steps = np.diff(
            np.concatenate([np.zeros((len(poses), 1, 2)), poses[:, : self.frames, :2]], 1), axis=1
        )
        progress = np.minimum(
            np.hypot(*steps.transpose(2, 0, 1)).sum(1),
            self.costs.target_speed * self.controls.step_seconds,
        )
        return (
            self.costs.collision * (hit * weights).sum(1)
            + self.costs.offroad * (off * weights).sum(1)
            + self.costs.edge * (offroad_share(poses, driveable) * weights).sum(1)
            + self.costs.progress * progress
            + self.costs.effort * (controls[:, :2] ** 2).sum(1)
        )

    def _world_model_flags(self, controls: np.ndarray, speed: float):
        """Imagine each candidate's frames with the env's world model (one batch) and test
        the ego box against each frame generated for it (centred on the ego's pose then)."""
        actions = np.stack(
            [
                self.controls.normalise(self.model.waypoints(speed, *c[:2], self.frames))
                for c in controls
            ]
        )
        generator = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        imagined = self.env.unwrapped.imagine(actions, generator)
        hit = np.zeros((len(controls), self.frames), dtype=bool)
        off = np.zeros((len(controls), self.frames), dtype=bool)
        for n, frames in enumerate(imagined):
            for k in range(self.frames):
                # Frame k is centred on the ego at pose k: test the box at the origin.
                h, o = pose_costs(np.zeros((1, 3)), *bev_maps(frames[k]))
                hit[n, k], off[n, k] = h[0], o[0]
        return hit, off
