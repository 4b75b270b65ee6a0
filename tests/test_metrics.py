import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from occsim.labels import CAR, CLASS_NAMES, DRIVEABLE_SURFACE, FREE_ID
from occsim.metrics import HorizonMetrics, OccupancyMetrics, OccupancyScores, confusion_counts


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


# ---------------------------------------------------------------- masks, ranks and messages
# Messages are matched whole (^...$) so that a changed message fails.


def car_with_one_wrong_voxel():
    """2 x 2 x 1 voxels, all car in the truth; the prediction says road at (0, 0, 0)."""
    gt = np.full((2, 2, 1), CAR, dtype=np.uint8)
    pred = gt.copy()
    pred[0, 0, 0] = DRIVEABLE_SURFACE
    return pred, gt


@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
def test_a_0_1_integer_mask_works_like_a_boolean_one(dtype):
    pred, gt = car_with_one_wrong_voxel()
    mask = np.ones(gt.shape, dtype=dtype)
    mask[0, 0, 0] = 0
    metrics = OccupancyMetrics()
    metrics.update(pred, gt, mask=mask)
    # The wrong voxel is masked out: car TP 3, nothing else -> 100; road never seen -> NaN.
    scores = metrics.compute()
    assert scores.per_class["car"] == 100.0 and scores.miou == 100.0
    assert np.isnan(scores.per_class["driveable_surface"])
    # All ones keeps it: car TP 3, FN 1 -> 75; road FP 1 -> 0; mIoU 37.5; every voxel
    # occupied in both -> geometric IoU 100.
    metrics = OccupancyMetrics()
    metrics.update(pred, gt, mask=np.ones(gt.shape, dtype=dtype))
    scores = metrics.compute()
    assert scores.per_class["car"] == 75.0 and scores.per_class["driveable_surface"] == 0.0
    assert scores.miou == 37.5 and scores.iou == 100.0


def test_bad_masks_are_refused_by_name_and_count_nothing():
    pred, gt = car_with_one_wrong_voxel()
    metrics = OccupancyMetrics()
    with pytest.raises(ValueError, match=r"^mask must hold only 0 and 1 \(or booleans\)$"):
        metrics.update(pred, gt, mask=np.array([[[0], [1]], [[2], [1]]]))
    with pytest.raises(
        TypeError, match=r"^mask must be boolean \(or 0/1 integers\), got dtype float64$"
    ):
        metrics.update(pred, gt, mask=np.ones(gt.shape, dtype=np.float64))
    with pytest.raises(
        ValueError, match=r"^mask must have the shape of gt \(2, 2, 1\), got \(2, 2\)$"
    ):
        metrics.update(pred, gt, mask=np.ones((2, 2), dtype=bool))
    assert not metrics.confusion.any()


def test_confusion_counts_rows_are_truth_columns_prediction():
    # truth car, car, free; prediction car, road, car.
    gt = np.array([[[CAR, CAR, FREE_ID]]], dtype=np.uint8)
    pred = np.array([[[CAR, DRIVEABLE_SURFACE, CAR]]], dtype=np.uint8)
    expected = np.zeros((18, 18), dtype=np.int64)
    expected[CAR, CAR] = 1
    expected[CAR, DRIVEABLE_SURFACE] = 1
    expected[FREE_ID, CAR] = 1
    counts = confusion_counts(pred, gt)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, expected)


def test_confusion_counts_takes_ranks_3_to_7_only():
    one = np.full((1,) * 7, CAR, dtype=np.uint8)
    expected = np.zeros((18, 18), dtype=np.int64)
    expected[CAR, CAR] = 1
    np.testing.assert_array_equal(confusion_counts(one, one), expected)
    ranks = r"rank 3 or 4 or 5 or 6 or 7 \(\.\.\., X, Y, Z\)"
    flat = np.zeros((2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"^pred must have {ranks}, got shape \(2, 2\)$"):
        confusion_counts(flat, flat)
    with pytest.raises(ValueError, match=rf"^gt must have {ranks}, got shape \(2, 2\)$"):
        confusion_counts(flat[..., None], flat)
    eight = np.zeros((1,) * 8, dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"^pred must have {ranks}, got shape \(1(, 1){{7}}\)$"):
        confusion_counts(eight, eight)
    with pytest.raises(
        ValueError, match=r"^pred and gt must have the same shape, got \(2, 2, 1\) and \(2, 2, 2\)$"
    ):
        confusion_counts(np.zeros((2, 2, 1), np.uint8), np.zeros((2, 2, 2), np.uint8))


def test_a_class_seen_in_one_voxel_scores_100_and_absent_ones_warn_nothing():
    one = np.full((1, 1, 1), CAR, dtype=np.uint8)
    metrics = OccupancyMetrics()
    metrics.update(one, one)
    # Car TP 1, FP 0, FN 0: 1 / 1 -> 100 (a denominator of 1 is a real one).
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 16 absent classes: NaN without a 0 / 0 warning
        scores = metrics.compute()
        empty = OccupancyMetrics().compute()
    assert scores.per_class["car"] == 100.0 and scores.miou == 100.0 and scores.iou == 100.0
    assert sum(np.isnan(v) for v in scores.per_class.values()) == 16
    assert np.isnan(empty.iou) and np.isnan(empty.miou)
    assert all(np.isnan(v) for v in empty.per_class.values())


def test_to_dict_rounds_to_4_places_and_turns_nan_into_none():
    gt = np.array([[[CAR, CAR, CAR, DRIVEABLE_SURFACE]]], dtype=np.uint8)
    pred = np.array([[[CAR, CAR, FREE_ID, DRIVEABLE_SURFACE]]], dtype=np.uint8)
    metrics = OccupancyMetrics()
    metrics.update(pred, gt)
    # Car TP 2, FN 1 -> 66.666..; road 100; mIoU (66.666.. + 100) / 2 = 83.333..;
    # occupied TP 3 (2 car + 1 road), FN 1 -> 75.
    per_class = {name: None for name in CLASS_NAMES[:FREE_ID]}
    per_class["car"] = 66.6667
    per_class["driveable_surface"] = 100.0
    assert metrics.compute().to_dict() == {"iou": 75.0, "miou": 83.3333, "per_class": per_class}
    nothing = OccupancyScores(iou=float("nan"), miou=float("nan"))
    assert nothing.to_dict() == {"iou": None, "miou": None, "per_class": {}}


def test_reset_forgets_what_was_seen():
    gt = np.full((2, 1, 1), CAR, dtype=np.uint8)
    metrics = OccupancyMetrics()
    metrics.update(np.full_like(gt, FREE_ID), gt)  # all wrong: car 0
    metrics.reset()
    assert not metrics.confusion.any()
    assert metrics.confusion.dtype == np.int64  # voxel counts stay exact integers
    metrics.update(gt, gt)
    assert metrics.compute().per_class["car"] == 100.0


# ---------------------------------------------------------------- horizon metrics


def test_horizon_metrics_need_at_least_one_horizon():
    with pytest.raises(ValueError, match=r"^num_horizons must be >= 1, got 0$"):
        HorizonMetrics(0)
    # One horizon: (1, X, Y, Z) and (B, 1, X, Y, Z) both work.
    gt = np.full((1, 2, 1, 1), CAR, dtype=np.uint8)
    pred = gt.copy()
    pred[0, 0] = FREE_ID  # car TP 1, FN 1 -> 50
    single = HorizonMetrics(1)
    single.update(pred, gt)
    single.update(pred[None], gt[None])
    (scores,) = single.compute()
    assert scores.per_class["car"] == 50.0


def test_horizon_metrics_add_counts_over_updates_and_reset():
    gt = np.full((1, 2, 1, 1), CAR, dtype=np.uint8)
    horizon = HorizonMetrics(1)
    horizon.update(gt, gt)  # car TP 2
    horizon.update(np.full_like(gt, FREE_ID), gt)  # car FN 2
    assert horizon.compute()[0].per_class["car"] == 50.0  # 2 / (2 + 2), not 0 or 100
    horizon.reset()
    assert np.isnan(horizon.compute()[0].iou)


def test_horizon_metrics_mask_each_horizon_with_its_own_slice():
    # (H=2, X=2, Y=1, Z=1), all car. Horizon 0 wrong at x = 0, horizon 1 wrong at x = 1.
    gt = np.full((2, 2, 1, 1), CAR, dtype=np.uint8)
    pred = gt.copy()
    pred[0, 0] = FREE_ID
    pred[1, 1] = FREE_ID
    mask = np.ones(gt.shape, dtype=bool)
    mask[0, 0] = False  # hides horizon 0's wrong voxel only
    horizon = HorizonMetrics(2)
    horizon.update(pred, gt, mask=mask)
    # Horizon 0: car TP 1 -> 100. Horizon 1: TP 1, FN 1 -> 50.
    assert [s.per_class["car"] for s in horizon.compute()] == [100.0, 50.0]


def test_horizon_metrics_refuse_bad_shapes_by_name_and_count_nothing():
    horizon = HorizonMetrics(2)
    wrong_h = np.zeros((3, 2, 2, 1), dtype=np.uint8)
    with pytest.raises(
        ValueError, match=r"^pred must have shape \(\[B,\] 2, X, Y, Z\), got \(3, 2, 2, 1\)$"
    ):
        horizon.update(wrong_h, wrong_h)
    six = np.zeros((1, 1, 2, 2, 2, 1), dtype=np.uint8)  # right horizon axis, rank 6
    with pytest.raises(ValueError, match=r"^pred must have shape .*, got \(1, 1, 2, 2, 2, 1\)$"):
        horizon.update(six, six)
    with pytest.raises(
        ValueError,
        match=r"^pred and gt must have the same shape, got \(2, 2, 2, 1\) and \(2, 2, 2, 2\)$",
    ):
        horizon.update(np.zeros((2, 2, 2, 1), np.uint8), np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"^mask must have the shape of gt"):
        good = np.zeros((2, 2, 2, 1), np.uint8)
        horizon.update(good, good, mask=np.ones((2, 2, 2), dtype=bool))
    # A bad value in the last horizon: nothing is added to the first either.
    bad = np.full((2, 1, 1, 1), CAR, dtype=np.uint8)
    bad[1] = 18
    with pytest.raises(ValueError, match="pred holds class ids"):
        horizon.update(bad, np.full_like(bad, CAR))
    assert all(not m.confusion.any() for m in horizon.per_horizon)
