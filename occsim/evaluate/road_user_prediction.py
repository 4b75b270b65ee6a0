"""Road-user prediction alone: how well the learned world's tracks foresee the road users
the reset showed, with no world model in the loop.

The tracks (:class:`~occsim.road_user_tracks.RoadUserTracks`) take the exact world's reset
frames, predict the road users of every later frame, and at the end of each step observe
their own prediction of its last frame (as the rollout observes its composed frame, less
what a model would generate in unseen space). Each frame's prediction is scored against
the exact frame's road users on the **seen** region (what the reset's frames showed; see
:mod:`occsim.evaluate.closed_loop`), beside the frozen copy's road users (the reset's last
frame re-projected, road users frozen). It reproduces the closed loop's road-user figures
within a point or two in a minute, so a change of the tracks can be judged without
generating a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from occsim.evaluate.closed_loop import class_group_miou, seen_mask
from occsim.grid import FRAME_DT
from occsim.labels import CLASS_NAMES, DYNAMIC_CLASSES, FREE_ID, class_lookup
from occsim.metrics import OccupancyMetrics, OccupancyScores
from occsim.road_user_tracks import EMPTY, RoadUserTracks
from occsim.scene_memory import frozen_copy

_ROAD_USER = class_lookup(DYNAMIC_CLASSES)


@dataclass
class RoadUserPredictionResult:
    """Per step (all its frames), road-user scores on the seen region of the tracks'
    prediction and of the frozen copy."""

    tracks: list[OccupancyScores]
    frozen: list[OccupancyScores]
    episodes: int
    step_seconds: float = 2.0  # world time of one step


def road_users_only(frame: np.ndarray) -> np.ndarray:
    """``frame`` with every voxel that is not a road user free."""
    return np.where(np.take(_ROAD_USER, frame), frame, np.uint8(FREE_ID)).astype(np.uint8)


def road_user_prediction(
    exact: gym.Env, agent, seeds: list[int], steps: int, progress: bool = True
) -> RoadUserPredictionResult:
    """Drive the exact world with the agent for ``steps`` steps from each seed (or until it
    ends) and score the tracks' prediction of its road users; see the module docstring."""
    tracks_metrics = [OccupancyMetrics() for _ in range(steps)]
    frozen_metrics = [OccupancyMetrics() for _ in range(steps)]
    step_seconds = 2.0
    for seed in tqdm(seeds, desc="road users", disable=not progress):
        observation, info = exact.reset(seed=seed)
        agent.reset(seed)
        reset_poses = info["frame_poses"]
        reset_frame = observation["occupancy"][-1]
        tracks = RoadUserTracks()
        for frame, pose in zip(observation["occupancy"], reset_poses):
            tracks.observe(frame, pose, observed=True)
        for k in range(steps):
            observation, _, done, cut, info = exact.step(agent.act(observation))
            poses = info["frame_poses"]
            step_seconds = len(poses) * FRAME_DT
            for t, pose in enumerate(poses):
                truth = road_users_only(observation["occupancy"][t])
                predicted = tracks.predict(pose, frames_ahead=t + 1)
                predicted = np.where(predicted != EMPTY, predicted, np.uint8(FREE_ID))
                copy = road_users_only(frozen_copy(reset_frame, reset_poses[-1], pose))
                seen = seen_mask(reset_poses, pose, truth.shape)
                tracks_metrics[k].update(predicted, truth, seen)
                frozen_metrics[k].update(copy, truth, seen)
            tracks.observe(predicted, poses[-1], frames_since=len(poses))
            if done or cut:
                break
    return RoadUserPredictionResult(
        [m.compute() for m in tracks_metrics],
        [m.compute() for m in frozen_metrics],
        len(seeds),
        step_seconds,
    )


def road_user_prediction_report(result: RoadUserPredictionResult):
    """The result as a :class:`Report`: per step the road users' mIoU of the tracks and of
    the frozen copy, and the tracks' IoU per class."""
    from occsim.evaluate.report import Report

    names = [CLASS_NAMES[c] for c in DYNAMIC_CLASSES]
    columns = ["step", "seconds", "tracks mIoU", "frozen mIoU", *names]
    rows = []
    for k, (tracks, frozen) in enumerate(zip(result.tracks, result.frozen)):
        row = {
            "step": k + 1,
            "seconds": result.step_seconds * (k + 1),
            "tracks mIoU": class_group_miou(tracks, DYNAMIC_CLASSES),
            "frozen mIoU": class_group_miou(frozen, DYNAMIC_CLASSES),
        }
        row.update({name: tracks.per_class.get(name, np.nan) for name in names})
        rows.append(row)
    notes = [
        f"Episodes: {result.episodes} (a step scores those still running). Road users of the "
        "seen region only; a class counts at a step where the exact world or the prediction "
        "has it (per-class IoU: the tracks')."
    ]
    return Report(
        "eval:road-users",
        "Road-user prediction: the tracks alone against the exact world",
        columns,
        rows,
        notes=notes,
    )
