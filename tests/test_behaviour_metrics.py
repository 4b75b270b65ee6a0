"""Every evaluation figure on predictions that are wrong in a known way (issue #22).

IoU is ``TP / (TP + FP + FN)`` (percent); mIoU the mean over classes 0..16 present in
prediction or truth; geometric IoU counts every class but free (17) as occupied
(docs/architecture.md, Metrics). The expected numbers are counted by hand in comments.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import occsim.evaluate.forecast as forecast_module
from occsim.agents import ConstantSpeedAgent
from occsim.envs import ProceduralEnv
from occsim.evaluate import closed_loop_fidelity, evaluate_forecast
from occsim.labels import CAR, DRIVEABLE_SURFACE, FREE_ID
from occsim.metrics import HorizonMetrics, OccupancyMetrics, OccupancyScores
from occsim.procedural import WorldConfig

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)


# ---------------------------------------------------------------- occupancy metrics


def scene(car_x: int, length: int = 5) -> np.ndarray:
    """20 x 10 x 4 voxels: road (driveable) on the whole z = 0 layer (200 voxels) and a car
    ``length`` voxels long in x from ``car_x``, y 4..5, z 1..2 (``length`` x 2 x 2)."""
    frame = np.full((20, 10, 4), FREE_ID, dtype=np.uint8)
    frame[:, :, 0] = DRIVEABLE_SURFACE
    frame[car_x : car_x + length, 4:6, 1:3] = CAR
    return frame


def shifted(frame: np.ndarray, k: int) -> np.ndarray:
    """The whole frame moved k voxels along +x; the k vacated rows are free."""
    out = np.full_like(frame, FREE_ID)
    out[k:] = frame[: frame.shape[0] - k]
    return out


@pytest.mark.parametrize(
    ("k", "car", "road", "miou", "iou"),
    [
        # k = 0: perfect.
        (0, 100.0, 100.0, 100.0, 100.0),
        # k = 2: car voxels 5..9 -> 7..11 in x (4 per x row): TP 3 rows = 12, FP 2 rows = 8,
        # FN 2 rows = 8 -> 12 / 28. Road: 18 of 20 rows kept (TP 180), FN 20 -> 180 / 200.
        # Occupied: TP 180 + 12 = 192, FP 8 (car over free), FN 20 (road) + 8 (car) = 28
        # -> 192 / 228.
        (2, 100 * 12 / 28, 90.0, (100 * 12 / 28 + 90.0) / 2, 100 * 192 / 228),
        # k = 5: the car moved off itself: car 0. Road 150 / 200 = 75. Occupied: TP 150,
        # FP 20, FN 50 + 20 -> 150 / 240.
        (5, 0.0, 75.0, 37.5, 100 * 150 / 240),
    ],
)
def test_occupancy_metrics_of_a_frame_shifted_by_k_voxels(k, car, road, miou, iou):
    truth = scene(5)
    metrics = OccupancyMetrics()
    metrics.update(shifted(truth, k), truth)
    scores = metrics.compute()
    assert scores.per_class["car"] == pytest.approx(car)
    assert scores.per_class["driveable_surface"] == pytest.approx(road)
    assert scores.miou == pytest.approx(miou)
    assert scores.iou == pytest.approx(iou)
    # The 15 classes in neither frame are left out (NaN), not counted as 0 or 100.
    assert sum(np.isnan(v) for v in scores.per_class.values()) == 15


def test_scores_accumulate_over_frames_not_average_per_frame():
    # Frame A perfect (car TP 20), frame B shifted by 5 (car TP 0, FP 20, FN 20):
    # pooled car IoU = 20 / (20 + 20 + 20) = 33.3, not the per-frame mean 50.
    truth = np.stack([scene(5), scene(5)])
    prediction = np.stack([scene(5), shifted(scene(5), 5)])
    metrics = OccupancyMetrics()
    metrics.update(prediction, truth)
    assert metrics.compute().per_class["car"] == pytest.approx(100 / 3)


def test_horizon_metrics_score_each_horizon_on_its_own_frames():
    # Horizon h is shifted by h voxels: car IoU (5 - h) / (5 + h) (4 voxels per row):
    # h = 0 -> 100, h = 1 -> 4 / 6, h = 2 -> 3 / 7.
    truth = np.stack([scene(5)] * 3)
    prediction = np.stack([shifted(scene(5), h) for h in range(3)])
    horizons = HorizonMetrics(3)
    horizons.update(prediction[None], truth[None])
    cars = [s.per_class["car"] for s in horizons.compute()]
    assert cars == pytest.approx([100.0, 100 * 4 / 6, 100 * 3 / 7])


# ---------------------------------------------------------------- forecast evaluation


def moving_car_clip() -> dict:
    """10 frames (4 history + 6 future) of a road with a car 4 voxels long driving +1
    voxel per frame: frame t has the car at x = 2 + t .. 5 + t (2 x 1 voxels across)."""
    frames = np.full((10, 24, 10, 4), FREE_ID, dtype=np.uint8)
    frames[:, :, :, 0] = DRIVEABLE_SURFACE
    for t in range(10):
        frames[t, 2 + t : 6 + t, 4:6, 1] = CAR
    return {"occupancy": frames, "trajectory": np.zeros((10, 3), dtype=np.float32)}


def forecast_with(monkeypatch, predict) -> list:
    """``evaluate_forecast`` with the world model replaced by ``predict(clip) -> (6, ...)``:
    only its scoring runs."""

    def fake_forecast_clip(pipe, occupancy, poses, future, *args, **kwargs):
        assert future == 6
        return predict(occupancy)

    monkeypatch.setattr(forecast_module, "forecast_clip", fake_forecast_clip)
    return evaluate_forecast(None, [moving_car_clip()], progress=False)


def test_forecast_scores_the_frame_of_each_horizon(monkeypatch):
    # Frames 4..9 are predicted; 1, 2, 3 s after the history are frames 5, 7, 9, i.e.
    # predicted indices 1, 3, 5. A forecaster right on exactly those (and free elsewhere)
    # scores 100 at every horizon.
    def right_at_the_horizons(clip):
        predicted = np.full_like(clip[4:], FREE_ID)
        predicted[[1, 3, 5]] = clip[[5, 7, 9]]
        return predicted

    scores = forecast_with(monkeypatch, right_at_the_horizons)
    assert [s.iou for s in scores] == pytest.approx([100.0, 100.0, 100.0])
    assert [s.miou for s in scores] == pytest.approx([100.0, 100.0, 100.0])


def test_a_forecast_that_repeats_its_first_frame_scores_lower_later(monkeypatch):
    # Frame 4 everywhere: the car is 1, 3, 5 voxels behind the truth at 1, 2, 3 s.
    # Car (2 voxels per row of 4): shift d -> TP 2 (4 - d), FP = FN = 2 d: d = 1: 6 / 10,
    # d = 3: 2 / 14, d = 5: 0 (FP = FN = 8, the whole car). The road is always right
    # (24 x 10 = 240 voxels, 100): mIoU = (car + 100) / 2; geometric IoU
    # (240 + TP) / (240 + TP + FP + FN): 246 / 250, 242 / 254, 240 / 256.
    scores = forecast_with(monkeypatch, lambda clip: np.repeat(clip[4:5], 6, axis=0))
    cars = [s.per_class["car"] for s in scores]
    assert cars == pytest.approx([60.0, 100 * 2 / 14, 0.0])
    assert [s.miou for s in scores] == pytest.approx([80.0, 50 + 50 * 2 / 14, 50.0])
    assert [s.iou for s in scores] == pytest.approx(
        [100 * 246 / 250, 100 * 242 / 254, 100 * 240 / 256]
    )


# ---------------------------------------------------------------- closed-loop evaluation


class ScriptedLearnedWorld:
    """A stand-in for the learned env in ``closed_loop_fidelity``: the exact world's
    ego motion but a known-wrong picture of it.

    ``picture``: ``"free"`` (nothing anywhere) or ``"frozen"`` (the reset's last frame
    forever, never moved with the ego). Terminates on step ``end_at`` if given.
    """

    def __init__(self, picture: str, end_at: int | None = None) -> None:
        self.exact = ProceduralEnv(map_seed=4, world_config=SMALL)
        self.picture, self.end_at = picture, end_at
        self.first = None
        self.steps = 0

    def reset(self, seed=None):
        observation, info = self.exact.reset(seed=seed)
        self.first, self.steps = observation["occupancy"][-1], 0
        return observation, info

    def step(self, action):
        observation, reward, _, truncated, info = self.exact.step(action)
        self.steps += 1
        if self.picture == "free":
            frames = np.full_like(observation["occupancy"], FREE_ID)
        else:
            frames = np.repeat(self.first[None], len(observation["occupancy"]), axis=0)
        done = self.end_at is not None and self.steps == self.end_at
        return {**observation, "occupancy": frames}, reward, done, truncated, info


def test_closed_loop_scores_a_world_that_shows_nothing_at_zero():
    exact = ProceduralEnv(map_seed=4, world_config=SMALL)
    learned = ScriptedLearnedWorld("free", end_at=1)
    result = closed_loop_fidelity(
        exact, learned, ConstantSpeedAgent(exact, 6.0), [0, 1], 2, progress=False
    )
    assert len(result.steps) == 2
    for step in result.steps:
        # No voxel predicted occupied: TP = 0 everywhere while the truth has ground and
        # objects in every region, so IoU = 0, and every class present is at 0 -> mIoU 0.
        for region in ("all", "seen", "new"):
            assert step.learned[region].iou == 0.0, region
            assert step.learned[region].miou == 0.0, region
        # The frozen-copy reference does not depend on the learned world.
        assert step.frozen["seen"].iou > 50.0
    # The learned world ended on step 1 of both episodes; the exact one drove on.
    assert result.learned_only_terminations == 2 and result.learned_terminations == 2
    assert result.exact_terminations == 0 and result.termination_steps == [1, 1]


def test_closed_loop_scores_a_frozen_world_as_its_frames_against_the_truth():
    """A world that keeps showing the reset's last frame while the ego drives 12 m per
    step is scored exactly as those frames against the exact world's (accumulated over
    the step's frames and both episodes); it is far below 100."""
    exact = ProceduralEnv(map_seed=4, world_config=SMALL)
    twin = ProceduralEnv(map_seed=4, world_config=SMALL)
    agent = ConstantSpeedAgent(exact, 6.0)
    result = closed_loop_fidelity(
        exact, ScriptedLearnedWorld("frozen"), agent, [0, 1], 2, progress=False
    )
    expected = [OccupancyMetrics() for _ in range(2)]
    for seed in (0, 1):
        observation, _ = twin.reset(seed=seed)
        first = observation["occupancy"][-1]
        for k in range(2):
            observation = twin.step(agent.act(observation))[0]
            for frame in observation["occupancy"]:
                expected[k].update(first, frame)
    for step, metrics in zip(result.steps, expected):
        want = metrics.compute()
        assert step.learned["all"].iou == pytest.approx(want.iou)
        assert step.learned["all"].miou == pytest.approx(want.miou)
        assert step.learned["all"].iou < 80.0


# ---------------------------------------------------------------- generation evaluation


class ReplayPipe:
    """A stand-in pipeline for ``evaluate_generation`` that "generates" given clips in
    turn (``clips``) or all-free clips (``None``)."""

    def __init__(self, clips: list[np.ndarray] | None, frames: int = 8) -> None:
        self.clips, self.calls = clips, 0
        self.transformer = SimpleNamespace(config=SimpleNamespace(trajectory_length=frames))
        self.tokenizer = SimpleNamespace(
            device=torch.device("cpu"), encode=lambda frames: SimpleNamespace(latents=None)
        )

    def __call__(self, trajectory, **kwargs):
        if self.clips is None:
            clip = np.full((8, 200, 200, 16), FREE_ID, dtype=np.uint8)
        else:
            clip = self.clips[self.calls % len(self.clips)]
        self.calls += 1
        return SimpleNamespace(occupancy=clip[None])


@pytest.fixture(scope="module")
def generation_inputs():
    from occsim.data import ProceduralClips
    from occsim.evaluate.features import OccupancyFeatureNet

    torch.manual_seed(0)
    encoder = OccupancyFeatureNet(frames=8, feature_dim=8).eval()
    clips = ProceduralClips(2, clip_len=8, seed=2, config=SMALL)
    return encoder, [clips[i] for i in range(2)]


def test_generation_scores_a_perfect_and_an_empty_generator(generation_inputs):
    from occsim.evaluate.generate import evaluate_generation

    encoder, items = generation_inputs
    real = [item["occupancy"] for item in items]
    (perfect,) = evaluate_generation(
        ReplayPipe(real), encoder, items, 2, [(2, 1.0)], progress=False
    )
    # The real clips themselves: identical features and class frequencies.
    assert perfect.fd == pytest.approx(0.0, abs=1e-4)
    assert perfect.class_jsd == pytest.approx(0.0, abs=1e-12)
    (empty,) = evaluate_generation(ReplayPipe(None), encoder, items, 2, [(2, 1.0)], progress=False)
    # All free against real frequencies p with free share f: m = (p + q) / 2 is p_c / 2 for
    # every other class and (f + 1) / 2 for free, so
    #   KL(p || m) = sum_c p_c log2(2) + f log2(2 f / (1 + f)) = (1 - f) + f log2(2f/(1+f))
    #   KL(q || m) = log2(2 / (1 + f)),   JSD = (KL(p || m) + KL(q || m)) / 2.
    f = float(np.mean(np.stack(real) == FREE_ID))
    jsd = 0.5 * ((1 - f) + f * np.log2(2 * f / (1 + f))) + 0.5 * np.log2(2 / (1 + f))
    assert 0.01 < jsd < 0.5  # a real street is mostly, not only, free space
    assert empty.class_jsd == pytest.approx(jsd, rel=1e-9)


def test_seen_drift_splits_what_the_memory_keeps_from_what_moves_on():
    from occsim.evaluate.closed_loop import (
        ClosedLoopResult,
        StepScores,
        closed_loop_report,
        last_seen_step,
        seen_drift,
    )
    from occsim.labels import CLASS_NAMES, DYNAMIC_CLASSES, STATIC_CLASSES

    def scores(static: float, road_user: float, missing: tuple[int, ...] = ()) -> OccupancyScores:
        per_class = {CLASS_NAMES[c]: static for c in STATIC_CLASSES}
        per_class.update({CLASS_NAMES[c]: road_user for c in DYNAMIC_CLASSES})
        for c in missing:  # a class absent from the frames scores NaN and does not count
            per_class[CLASS_NAMES[c]] = float("nan")
        return OccupancyScores(iou=0.0, miou=0.0, per_class=per_class)

    def step(learned: OccupancyScores, coverage: float) -> StepScores:
        frozen = scores(50.0, 10.0)
        regions = ("all", "seen", "new")
        return StepScores({r: learned for r in regions}, {r: frozen for r in regions}, coverage)

    # Steps 1-3 cover >= 20 % of the view, step 4 only 10 %: step 3 is the last judged.
    result = ClosedLoopResult(
        [
            step(scores(90.0, 60.0), 0.9),
            step(scores(89.0, 40.0), 0.6),
            step(scores(88.0, 20.0, missing=DYNAMIC_CLASSES[:2]), 0.2),
            step(scores(0.0, 0.0), 0.1),
        ],
        episodes=1,
        learned_only_terminations=0,
        exact_terminations=0,
        learned_terminations=0,
    )
    assert last_seen_step(result) == 3
    assert seen_drift(result) == {"static": (90.0, 88.0), "road users": (60.0, 20.0)}
    assert seen_drift(result, "frozen") == {"static": (50.0, 50.0), "road users": (10.0, 10.0)}
    note = " ".join(closed_loop_report(result).notes)
    assert "step 1 -> 3" in note and "static classes: 90.0 -> 88.0" in note
    assert "road users: 60.0 -> 20.0 (frozen copy 10.0 -> 10.0)" in note
    result.steps = result.steps[3:]  # no step covers 20 %: nothing is judged
    assert last_seen_step(result) == 0 and seen_drift(result) == {}


class _IdentityFeatures(torch.nn.Module):
    """An 'encoder' whose features are a window's numbers themselves."""

    config = SimpleNamespace(frames=1)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return window.reshape(1, -1).double()


def test_closed_loop_fd_scores_its_own_windows_as_real_and_a_shift_by_its_square():
    from occsim.evaluate.closed_loop import _frechet

    rng = np.random.default_rng(3)
    exact = [rng.normal(size=(1, 4)) for _ in range(40)]
    same, real = _frechet(_IdentityFeatures(), exact, exact)
    # Learned windows equal to the exact ones score exactly as one half of the exact windows
    # against the other, split for split.
    assert same == pytest.approx(real, abs=1e-9) and real > 0
    # Shifted by 10 in each of 4 features: the mean term adds 4 * 10^2; the cross term
    # 2 c . (mean of one half - mean of the other) averages out over the splits.
    shifted, real_again = _frechet(_IdentityFeatures(), [w + 10.0 for w in exact], exact)
    assert real_again == real
    assert shifted - real == pytest.approx(400.0, rel=0.03)
    # The same splits every time: the figure does not depend on the call.
    assert _frechet(_IdentityFeatures(), exact, exact) == (same, real)


def test_closed_loop_fd_halves_split_whole_episodes():
    from occsim.evaluate.closed_loop import _frechet

    rng = np.random.default_rng(4)
    # Four drives, five windows each, 10 apart in every feature: halves of whole drives
    # differ in their means by whole drives, halves of windows mix every drive into both.
    exact = [rng.normal(size=(1, 4)) * 0.1 + 10.0 * (k // 5) for k in range(20)]
    episodes = [k // 5 for k in range(20)]
    by_window = _frechet(_IdentityFeatures(), exact, exact)[1]
    by_episode = _frechet(_IdentityFeatures(), exact, exact, episodes=episodes)[1]
    assert by_episode > 3 * by_window  # measured: 722 against 129
    # One drive only: its windows are split instead (a figure, not an empty half).
    assert np.isfinite(_frechet(_IdentityFeatures(), exact[:5], exact[:5], episodes=[0] * 5)[1])
