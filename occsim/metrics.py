"""Occupancy metrics in the Occ3D convention.

Per-class IoU is ``TP / (TP + FP + FN)`` accumulated over the whole evaluation set, in
percent. mIoU averages classes 0..16 (free excluded); a class absent from both prediction
and ground truth has IoU NaN and is left out of the mean, never counted as 100. Geometric
IoU treats every class except free (17) as occupied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from occsim.labels import CLASS_NAMES, FREE_ID, NUM_CLASSES
from occsim.validation import check_occupancy


@dataclass(frozen=True)
class OccupancyScores:
    """Scores in percent. ``per_class`` maps class name to IoU (NaN where undefined)."""

    iou: float
    miou: float
    per_class: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly view (NaN becomes ``None``)."""

        def clean(value: float) -> float | None:
            return None if np.isnan(value) else round(float(value), 4)

        return {
            "iou": clean(self.iou),
            "miou": clean(self.miou),
            "per_class": {name: clean(v) for name, v in self.per_class.items()},
        }


_CHUNK = 1 << 20


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return 100.0 * out


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"mask must have the shape of gt {shape}, got {mask.shape}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iu":
            raise TypeError(f"mask must be boolean (or 0/1 integers), got dtype {mask.dtype}")
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must hold only 0 and 1 (or booleans)")
    return mask.astype(bool, copy=False)


def confusion_counts(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """``(C, C)`` int64 confusion matrix (rows: truth) of one validated batch of volumes."""
    pred = check_occupancy(np.asarray(pred), "pred", ndim=tuple(range(3, 8)))
    gt = check_occupancy(np.asarray(gt), "gt", ndim=tuple(range(3, 8)))
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}")
    mask = _check_mask(mask, gt.shape)
    if mask is not None:
        pred, gt = pred[mask], gt[mask]
    # One bincount over gt * C + pred fills the whole confusion matrix at once; uint16
    # keeps the combined index small (widening to int64 first costs more than counting).
    gt, pred = gt.reshape(-1), pred.reshape(-1)
    counts = np.zeros(NUM_CLASSES * NUM_CLASSES, dtype=np.int64)
    for start in range(0, gt.size, _CHUNK):  # chunks stay in cache on big batches
        chunk = slice(start, start + _CHUNK)
        flat = gt[chunk].astype(np.uint16) * NUM_CLASSES + pred[chunk].astype(np.uint16)
        counts += np.bincount(flat, minlength=NUM_CLASSES * NUM_CLASSES)
    return counts.reshape(NUM_CLASSES, NUM_CLASSES)


class OccupancyMetrics:
    """Accumulates a confusion matrix over many volumes; ``compute`` gives IoU and mIoU.

    Example:
        >>> metrics = OccupancyMetrics()
        >>> metrics.update(prediction, ground_truth, mask=camera_mask)
        >>> metrics.compute().miou
    """

    def __init__(self) -> None:
        self.confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.confusion[:] = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add volumes ``(..., X, Y, Z)`` of predicted and true class ids.

        Args:
            pred: predicted class ids, any leading batch/time dims.
            gt: ground-truth class ids, same shape as ``pred``.
            mask: optional boolean (or 0/1) array of the same shape; only ``True`` voxels
                count (Occ3D evaluates inside the camera mask).

        Nothing is counted unless the whole input is valid.
        """
        self.confusion += confusion_counts(pred, gt, mask)

    def compute(self) -> OccupancyScores:
        """Scores over everything seen since construction or :meth:`reset`."""
        cm = self.confusion
        tp = np.diag(cm)
        fp = cm.sum(axis=0) - tp
        fn = cm.sum(axis=1) - tp
        per_class = _safe_ratio(tp, tp + fp + fn)
        semantic = per_class[:FREE_ID]
        miou = float(np.nanmean(semantic)) if np.any(~np.isnan(semantic)) else float("nan")

        occupied = np.arange(NUM_CLASSES) != FREE_ID
        geo_tp = cm[np.ix_(occupied, occupied)].sum()
        geo_fp = cm[FREE_ID, occupied].sum()
        geo_fn = cm[occupied, FREE_ID].sum()
        iou = float(_safe_ratio(geo_tp, geo_tp + geo_fp + geo_fn))
        return OccupancyScores(
            iou=iou,
            miou=miou,
            per_class={name: float(v) for name, v in zip(CLASS_NAMES[:FREE_ID], semantic)},
        )


class HorizonMetrics:
    """Forecasting metrics: one :class:`OccupancyMetrics` per future step.

    ``update`` takes ``(B, H, X, Y, Z)`` (or ``(H, X, Y, Z)``) volumes whose axis ``H`` is the
    horizon; ``compute`` returns a list of scores, one per horizon step.
    """

    def __init__(self, num_horizons: int) -> None:
        if num_horizons < 1:
            raise ValueError(f"num_horizons must be >= 1, got {num_horizons}")
        self.per_horizon = [OccupancyMetrics() for _ in range(num_horizons)]

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        for metrics in self.per_horizon:
            metrics.reset()

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add a batch of forecasts; the horizon axis is the 4th from the end."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.ndim not in (4, 5) or pred.shape[-4] != len(self.per_horizon):
            raise ValueError(
                f"pred must have shape ([B,] {len(self.per_horizon)}, X, Y, Z), got {pred.shape}"
            )
        if gt.shape != pred.shape:
            raise ValueError(
                f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}"
            )
        mask = _check_mask(mask, gt.shape)
        # Every horizon is counted before any is added: a bad input changes nothing.
        counts = [
            confusion_counts(
                pred[..., h, :, :, :],
                gt[..., h, :, :, :],
                None if mask is None else mask[..., h, :, :, :],
            )
            for h in range(len(self.per_horizon))
        ]
        for metrics, count in zip(self.per_horizon, counts):
            metrics.confusion += count

    def compute(self) -> list[OccupancyScores]:
        """Scores of each horizon step, nearest first."""
        return [metrics.compute() for metrics in self.per_horizon]
