"""Evaluation commands on tiny configs, checked against hand-computed cases."""

import json

import numpy as np
import pytest
import torch

from occsim.agents import ConstantSpeedAgent
from occsim.cli import main
from occsim.data import ProceduralClips
from occsim.envs import ProceduralEnv
from occsim.evaluate import (
    Report,
    closed_loop_agreement,
    evaluate_forecast,
    evaluate_reconstruction,
)
from occsim.evaluate.bench import run_bench
from occsim.evaluate.recon import recon_report
from occsim.pipeline import OccSoraPipeline
from occsim.world import WorldConfig

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)


class Identity(torch.nn.Module):
    """A perfect tokenizer: reconstruction is the input."""

    def reconstruct(self, occupancy):
        return occupancy

    @property
    def device(self):
        return torch.device("cpu")


class Shifted(Identity):
    """Every voxel of class 0 becomes class 1: IoU of both classes is hand-computable."""

    def reconstruct(self, occupancy):
        return torch.where(occupancy == 0, torch.ones_like(occupancy), occupancy)


def test_identical_worlds_agree_perfectly_in_closed_loop():
    exact = ProceduralEnv(map_seed=4, world_config=SMALL)
    twin = ProceduralEnv(map_seed=4, world_config=SMALL)
    scores = closed_loop_agreement(exact, twin, ConstantSpeedAgent(6.0), [0, 1], 2, False)
    assert len(scores) == 2
    assert all(s.iou == pytest.approx(100.0) and s.miou == pytest.approx(100.0) for s in scores)


def test_reconstruction_scores_and_table():
    clips = ProceduralClips(2, clip_len=4, seed=1, config=SMALL)
    perfect = evaluate_reconstruction(Identity(), clips, progress=False)
    assert perfect.iou == pytest.approx(100.0) and perfect.miou == pytest.approx(100.0)
    dataset = [{"occupancy": np.array([[[[0, 1, 17, 17]]]], dtype=np.uint8)}]
    shifted = evaluate_reconstruction(Shifted(), dataset, progress=False)
    # Class 0: nothing predicted -> IoU 0; class 1: 1 of 2 predicted voxels right -> 50.
    assert shifted.per_class["others"] == pytest.approx(0.0)
    assert shifted.per_class["barrier"] == pytest.approx(50.0)
    assert shifted.iou == pytest.approx(100.0)
    table = recon_report(shifted, "hand", {}).markdown()
    assert "| hand | 100.0 | 25.0 | 0.0 | 50.0 |" in table and "vegetation" in table


def test_report_splices_its_section_once(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nintro\n")
    report = Report("eval:x", "X", ["a", "b"], [{"a": 1, "b": 2.345}])
    report.update_benchmarks(path)
    report.rows[0]["b"] = 9.0
    report.update_benchmarks(path)
    text = path.read_text()
    assert text.count("<!-- occsim:eval:x -->") == 1 and "| 1 | 9.0 |" in text
    assert "intro" in text and "2.3" not in text
    report.save_json(tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text())["rows"][0]["b"] == 9.0


def test_forecast_on_a_tiny_model(tiny_pipeline_path):
    pipe = OccSoraPipeline.from_pretrained(tiny_pipeline_path)
    pipe.set_progress_bar_config(disable=True)
    clips = ProceduralClips(1, clip_len=10, seed=2, config=SMALL)
    scores = evaluate_forecast(pipe, clips, num_inference_steps=2, progress=False)
    assert len(scores) == 3
    assert all(0.0 <= s.iou <= 100.0 for s in scores)
    with pytest.raises(ValueError, match="10 frames"):
        evaluate_forecast(pipe, ProceduralClips(1, clip_len=8, seed=2, config=SMALL))


def test_bench_figures(tiny_pipeline_path):
    pipe = OccSoraPipeline.from_pretrained(tiny_pipeline_path)
    pipe.set_progress_bar_config(disable=True)
    figures = run_bench(pipe, steps=2, batch=2, progress=False, num_inference_steps=2, map_seed=4)
    assert figures["step_p95_ms"] >= figures["step_p50_ms"] > 0
    assert figures["gflop_per_step"] > 0 and figures["batched_speedup"] > 0
    assert figures["peak_rss_mib"] > 100


def test_eval_command_writes_json(tiny_pipeline_path, tmp_path, capsys):
    out = tmp_path / "recon.json"
    main(
        [
            "eval",
            "recon",
            "--pipeline",
            str(tiny_pipeline_path),
            "--clips",
            "1",
            "--json",
            str(out),
            "--benchmarks",
            str(tmp_path / "B.md"),
        ]
    )
    assert "Tokenizer reconstruction" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"][0]["model"] == tiny_pipeline_path.name
    assert "occsim:eval:recon" in (tmp_path / "B.md").read_text()
