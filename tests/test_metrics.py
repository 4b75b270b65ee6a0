import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from occsim.labels import CLASS_NAMES, FREE_ID
from occsim.metrics import HorizonMetrics, OccupancyMetrics


def brute_force(preds, gts):
    """Per-class IoU, mIoU and geometric IoU by explicit loops over classes."""
    per_class = []
    for c in range(FREE_ID):
        tp = fp = fn = 0
        for p, g in zip(preds, gts):
            tp += int(np.sum((p == c) & (g == c)))
            fp += int(np.sum((p == c) & (g != c)))
            fn += int(np.sum((p != c) & (g == c)))
        per_class.append(np.nan if tp + fp + fn == 0 else 100.0 * tp / (tp + fp + fn))
    tp = fp = fn = 0
    for p, g in zip(preds, gts):
        tp += int(np.sum((p != FREE_ID) & (g != FREE_ID)))
        fp += int(np.sum((p != FREE_ID) & (g == FREE_ID)))
        fn += int(np.sum((p == FREE_ID) & (g != FREE_ID)))
    iou = np.nan if tp + fp + fn == 0 else 100.0 * tp / (tp + fp + fn)
    return per_class, np.nanmean(per_class) if not np.all(np.isnan(per_class)) else np.nan, iou


def test_matches_brute_force_on_random_data():
    rng = np.random.default_rng(1)
    metrics = OccupancyMetrics()
    preds, gts = [], []
    for _ in range(4):
        gt = rng.integers(0, 18, size=(12, 10, 4), dtype=np.uint8)
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 18, gt.shape)).astype(
            np.uint8
        )
        metrics.update(pred, gt)
        preds.append(pred)
        gts.append(gt)
    per_class, miou, iou = brute_force(preds, gts)
    scores = metrics.compute()
    assert np.allclose([scores.per_class[n] for n in CLASS_NAMES[:FREE_ID]], per_class)
    assert np.isclose(scores.miou, miou) and np.isclose(scores.iou, iou)


def test_hand_made_cases():
    gt = np.full((4, 4, 2), FREE_ID, dtype=np.uint8)
    gt[0, :, 0] = 4
    gt[1, :, 0] = 11
    perfect = OccupancyMetrics()
    perfect.update(gt, gt)
    scores = perfect.compute()
    assert scores.iou == 100.0 and scores.miou == 100.0
    # Absent classes are NaN and left out of the mean (not counted as 100 or 0).
    assert np.isnan(scores.per_class["bus"])
    assert sum(not np.isnan(v) for v in scores.per_class.values()) == 2

    disjoint = np.full_like(gt, FREE_ID)
    disjoint[2, :, 0] = 4
    disjoint[3, :, 0] = 11
    metrics = OccupancyMetrics()
    metrics.update(disjoint, gt)
    scores = metrics.compute()
    assert scores.iou == 0.0 and scores.miou == 0.0

    # Half the cars right: car IoU = 4 / (4 + 0 + 4) = 50, driveable 100 -> mIoU 75.
    half = gt.copy()
    half[0, :2, 0] = FREE_ID
    half[0, 2:, 0] = 4
    half[0, :2, 0] = FREE_ID
    metrics = OccupancyMetrics()
    metrics.update(half, gt)
    scores = metrics.compute()
    assert scores.per_class["car"] == 50.0 and scores.miou == 75.0
    assert scores.iou == pytest.approx(100.0 * 6 / 8)


def test_mask_restricts_evaluation():
    gt = np.full((2, 2, 1), 4, dtype=np.uint8)
    pred = gt.copy()
    pred[0, 0, 0] = 11
    mask = np.ones_like(gt, dtype=bool)
    mask[0, 0, 0] = False
    metrics = OccupancyMetrics()
    metrics.update(pred, gt, mask=mask)
    assert metrics.compute().miou == 100.0


def test_horizon_metrics_per_step():
    gt = np.full((2, 3, 4, 4, 2), 4, dtype=np.uint8)
    pred = gt.copy()
    pred[:, 2] = FREE_ID  # last horizon completely wrong
    horizon = HorizonMetrics(3)
    horizon.update(pred, gt)
    scores = horizon.compute()
    assert [s.iou for s in scores] == [100.0, 100.0, 0.0]
    with pytest.raises(ValueError, match="shape"):
        horizon.update(pred[:, :2], gt[:, :2])


def test_bad_input_is_named():
    metrics = OccupancyMetrics()
    good = np.zeros((2, 2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="pred holds class ids"):
        metrics.update(np.full_like(good, 18), good)
    with pytest.raises(TypeError, match="gt must hold integer"):
        metrics.update(good, good.astype(np.float32))
    with pytest.raises(ValueError, match="same shape"):
        metrics.update(good, np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="rank"):
        metrics.update(good[0], good[0])


def test_full_size_batch():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 18, size=(4, 200, 200, 16), dtype=np.uint8)
    pred = gt.copy()
    pred[:, :100] = FREE_ID
    metrics = OccupancyMetrics()
    metrics.update(pred, gt)
    _, miou, iou = brute_force(pred, gt)
    scores = metrics.compute()
    assert np.isclose(scores.miou, miou) and np.isclose(scores.iou, iou)


@settings(max_examples=40, deadline=None, derandomize=True)
@example(np.full((3, 4, 2), 17, np.uint8), np.full((3, 4, 2), 17, np.uint8))  # all free
@given(
    arrays(np.uint8, (3, 4, 2), elements=st.integers(0, 17)),
    arrays(np.uint8, (3, 4, 2), elements=st.integers(0, 17)),
)
def test_property_matches_brute_force(pred, gt):
    metrics = OccupancyMetrics()
    metrics.update(pred, gt)
    scores = metrics.compute()
    per_class, miou, _ = brute_force([pred], [gt])
    assert np.allclose(
        [scores.per_class[n] for n in CLASS_NAMES[:FREE_ID]], per_class, equal_nan=True
    )
    assert np.isclose(scores.miou, miou, equal_nan=True)
    # IoU values are percentages of a bounded ratio.
    finite = [v for v in scores.per_class.values() if not np.isnan(v)]
    assert all(0.0 <= v <= 100.0 for v in finite)
