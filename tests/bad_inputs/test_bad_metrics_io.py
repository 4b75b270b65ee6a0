"""Bad metric inputs count nothing; failed atomic writes leave the old file whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bad_input_tally import FUZZ, dead_pid, expect_error, snapshot
from hypothesis import given
from hypothesis import strategies as st

from occsim.io import atomic_path, write_json_atomic
from occsim.metrics import HorizonMetrics, OccupancyMetrics
from occsim.replay import EpisodeRecord

METRICS = "OccupancyMetrics / HorizonMetrics.update"
WRITES = "atomic writes (io, episode records)"
SHAPE = (2, 6, 6, 4)


def volumes(seed: int = 0, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 18, shape, dtype=np.uint8)


BAD_UPDATES = {
    "pred float": lambda: (volumes().astype(float), volumes(), None),
    "pred bool": lambda: (volumes() > 3, volumes(), None),
    "pred complex": lambda: (volumes().astype(complex), volumes(), None),
    "gt id 18": lambda: (volumes(), np.full(SHAPE, 18, np.uint8), None),
    "pred negative": lambda: (volumes().astype(np.int8) - 1, volumes(), None),
    "shapes differ": lambda: (volumes(), volumes(shape=(2, 6, 6, 5)), None),
    "rank 2": lambda: (np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8), None),
    "mask float": lambda: (volumes(), volumes(), np.full(SHAPE, 0.5)),
    "mask value 2": lambda: (volumes(), volumes(), np.full(SHAPE, 2)),
    "mask wrong shape": lambda: (volumes(), volumes(), np.ones((6, 6, 4), bool)),
    "objects": lambda: (volumes().astype(object), volumes(), None),
}


@pytest.mark.parametrize("kind", sorted(BAD_UPDATES))
def test_bad_updates_count_nothing(kind):
    metrics = OccupancyMetrics()
    metrics.update(volumes(1), volumes(2))
    before = metrics.confusion.copy()
    expect_error(METRICS, kind, lambda: metrics.update(*BAD_UPDATES[kind]()))
    assert np.array_equal(metrics.confusion, before)


@FUZZ
@given(horizon=st.integers(0, 2), flat=st.integers(0, 6 * 6 * 4 - 1), bad=st.integers(18, 255))
def test_a_bad_voxel_in_any_horizon_counts_nothing(horizon, flat, bad):
    metrics = HorizonMetrics(3)
    pred, gt = volumes(3, (2, 3, 6, 6, 4)), volumes(4, (2, 3, 6, 6, 4))
    metrics.update(pred, gt)
    before = [m.confusion.copy() for m in metrics.per_horizon]
    gt[1, horizon].reshape(-1)[flat] = bad
    expect_error(METRICS, "fuzzed bad id in one horizon", lambda: metrics.update(pred, gt))
    assert all(np.array_equal(m.confusion, b) for m, b in zip(metrics.per_horizon, before))


def test_horizon_masks_are_checked_before_counting():
    metrics = HorizonMetrics(2)
    mask = np.ones((2, 6, 6, 4))
    mask[1] = 0.5
    expect_error(
        METRICS, "horizon mask of floats", lambda: metrics.update(volumes(), volumes(), mask)
    )
    assert all(not m.confusion.any() for m in metrics.per_horizon)


def test_nan_never_reaches_a_strict_json_file(tmp_path):
    path = tmp_path / "data.json"
    write_json_atomic(path, {"ok": 1})
    before = snapshot(tmp_path)
    for value in (float("nan"), float("inf")):
        expect_error(
            WRITES,
            "non-finite in strict JSON",
            lambda v=value: write_json_atomic(path, {"x": v}, allow_nan=False),
        )
    assert snapshot(tmp_path) == before


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "data.json"
    write_json_atomic(path, {"ok": 1})

    def interrupted() -> None:
        with atomic_path(path) as tmp:
            tmp.write_text("{half")
            raise ValueError("disk full")

    expect_error(WRITES, "write raises half-way", interrupted)
    assert json.loads(path.read_text()) == {"ok": 1} and len(list(tmp_path.iterdir())) == 1


def test_an_episode_with_nan_is_never_saved(tmp_path):
    path = tmp_path / "episode.json"
    EpisodeRecord("occsim/Procedural-v0", 0, {}, [[[0.0, 0.0]] * 4], ["0" * 16]).save(path)
    before = snapshot(tmp_path)
    bad = EpisodeRecord("occsim/Procedural-v0", 0, {}, [[[float("nan"), 0.0]] * 4], ["0" * 16])
    expect_error(WRITES, "episode with NaN action", lambda: bad.save(path))
    assert snapshot(tmp_path) == before


def test_each_atomic_write_clears_what_an_interrupted_one_left(tmp_path):
    path = tmp_path / "episode.json"
    stale = tmp_path / f".episode.json.{dead_pid()}-k.tmp"
    stale.write_text("{half")
    other = tmp_path / f".other.json.{dead_pid()}-k.tmp"  # another target's: not ours to judge
    other.write_text("{")
    write_json_atomic(path, {"ok": 1})
    assert not stale.exists() and other.exists()


def test_training_clears_interrupted_checkpoints(tmp_path):
    from occsim.train import TokenizerTrainConfig
    from occsim.train.checkpoint import list_checkpoints
    from occsim.train.tokenizer_stage import train_tokenizer

    checkpoints = tmp_path / "run" / "checkpoints"
    half = checkpoints / f".step-00000002.{dead_pid()}-z.tmp"
    half.mkdir(parents=True)
    (half / "training_state.json").write_text("{")
    config = TokenizerTrainConfig()
    config.run.output_dir = str(tmp_path / "run")
    config.data.source, config.data.root = "occ3d", str(tmp_path / "nowhere")  # stops early
    expect_error(
        "training start-up",
        "bad data source after a killed checkpoint",
        lambda: train_tokenizer(config),
    )
    assert not half.exists() and list_checkpoints(tmp_path / "run") == []
