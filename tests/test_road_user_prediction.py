"""`occsim eval road-users`: the tracks' prediction scored against a world whose answer is
worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from occsim.evaluate.road_user_prediction import (
    road_user_prediction,
    road_user_prediction_report,
    road_users_only,
)
from occsim.grid import OCC3D_GRID
from occsim.labels import CAR, DRIVEABLE_SURFACE, FREE_ID, MANMADE, PEDESTRIAN

G = OCC3D_GRID.ground_index
FRAMES = 4


def _frame(k: int) -> np.ndarray:
    """Frame ``k``: a road, a building, and a car 11 voxels long driving +x two voxels
    (0.8 m) a frame."""
    frame = np.full(OCC3D_GRID.shape, FREE_ID, dtype=np.uint8)
    frame[:, 90:110, G] = DRIVEABLE_SURFACE
    frame[150:160, 130:140, G + 1 : G + 6] = MANMADE
    frame[40 + 2 * k : 51 + 2 * k, 120:125, G : G + 4] = CAR
    return frame


class _CarWorld:
    """An exact world of that scene seen from a standing ego: the reset shows frames 0-3,
    step ``s`` frames 4s+4 ... 4s+7."""

    def reset(self, seed=None):
        self.step_count = 0
        frames = np.stack([_frame(k) for k in range(FRAMES)])
        return {"occupancy": frames}, {"frame_poses": np.zeros((FRAMES, 3))}

    def step(self, action):
        self.step_count += 1
        first = FRAMES * self.step_count
        frames = np.stack([_frame(first + t) for t in range(FRAMES)])
        return {"occupancy": frames}, 0.0, False, False, {"frame_poses": np.zeros((FRAMES, 3))}


class _StandStill:
    def reset(self, seed=None):
        pass

    def act(self, observation):
        return np.zeros((FRAMES, 2))


def test_a_steady_car_is_foreseen_exactly_and_the_frozen_copy_loses_it():
    result = road_user_prediction(_CarWorld(), _StandStill(), [0], steps=2, progress=False)
    report = road_user_prediction_report(result)
    step_1, step_2 = report.rows
    assert step_1["tracks mIoU"] == pytest.approx(100.0)
    assert step_2["tracks mIoU"] == pytest.approx(100.0)
    # The frozen car stands where the reset's last frame had it: step 1's frames are 2, 4,
    # 6 and 8 voxels on, overlapping 9, 7, 5 and 3 of its 11 columns: 24 / (4 * 22 - 24).
    assert step_1["frozen mIoU"] == pytest.approx(100.0 * 24 / 64)
    # Step 2's are 10-16 voxels on: one column of overlap in its first frame, 1 / (21 + 66).
    assert step_2["frozen mIoU"] == pytest.approx(100.0 / 87)
    assert np.isnan(step_1["pedestrian"])  # neither world has one


def test_road_users_only_frees_everything_else():
    frame = _frame(0)
    frame[10, 10, G : G + 4] = PEDESTRIAN
    kept = road_users_only(frame)
    assert set(np.unique(kept)) == {CAR, PEDESTRIAN, FREE_ID}
    assert np.count_nonzero(kept == CAR) == np.count_nonzero(frame == CAR)
