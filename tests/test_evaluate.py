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
    closed_loop_fidelity,
    evaluate_adherence,
    evaluate_forecast,
    evaluate_reconstruction,
    recover_trajectory,
)
from occsim.evaluate.adherence import displacement_errors, register_frames
from occsim.evaluate.bench import run_bench
from occsim.evaluate.forecast import forecast_clip
from occsim.evaluate.recon import recon_report
from occsim.pipeline import OccSoraPipeline
from occsim.procedural import WorldConfig

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
    agent = ConstantSpeedAgent(exact, 6.0)
    result = closed_loop_fidelity(exact, twin, agent, [0, 1], 2, progress=False)
    assert len(result.steps) == 2 and result.episodes == 2
    for step in result.steps:
        assert all(step.learned[r].iou == pytest.approx(100.0) for r in ("all", "seen", "new"))
        assert step.learned["all"].miou == pytest.approx(100.0)
        # The frozen copy knows nothing of the new region: it predicts it free.
        assert step.frozen["new"].iou == pytest.approx(0.0)
        assert step.frozen["seen"].iou < 100.0
        assert 0.0 < step.seen_fraction < 1.0
    assert result.learned_only_terminations == 0
    assert result.learned_terminations == result.exact_terminations


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
    # The protocol: frames 0..3 are history (2 s at 2 Hz), frames 4..9 are generated; the
    # horizon of s seconds is frame 3 + 2 s (5, 7, 9), generated frame 2 s - 1 (1, 3, 5).
    # Geometric IoU recounted from its definition (occupied = not free) on those frames.
    item = clips[0]
    generated = forecast_clip(
        pipe, item["occupancy"], item["trajectory"], 6, 2, 2.0, torch.Generator().manual_seed(0)
    )
    for s, score in zip((1, 2, 3), scores):
        predicted, truth = generated[2 * s - 1] != 17, item["occupancy"][3 + 2 * s] != 17
        tp = np.sum(predicted & truth)
        expected = 100.0 * tp / (tp + np.sum(predicted & ~truth) + np.sum(~predicted & truth))
        assert score.iou == pytest.approx(expected), s
    with pytest.raises(ValueError, match="10 frames"):
        evaluate_forecast(pipe, ProceduralClips(1, clip_len=8, seed=2, config=SMALL))


def test_bench_figures(tiny_free_pipeline_path):
    pipe = OccSoraPipeline.from_pretrained(tiny_free_pipeline_path)
    pipe.set_progress_bar_config(disable=True)
    figures = run_bench(pipe, steps=2, batch=2, progress=False, num_inference_steps=2, map_seed=4)
    assert figures["step_p95_ms"] >= figures["step_p50_ms"] > 0
    assert figures["gflop_per_step"] > 0 and figures["batched_speedup"] > 0
    assert figures["peak_rss_mib"] > 100
    # 4 frames of 0.5 s a step: the real-time factor is 2 s of world per p50 step.
    p50_s = figures["step_p50_ms"] / 1e3
    assert figures["real_time_factor"] == pytest.approx(2.0 / p50_s)
    assert figures["achieved_gflops"] == pytest.approx(figures["gflop_per_step"] / p50_s)
    assert figures["utilisation_%"] == pytest.approx(
        100 * figures["achieved_gflops"] / figures["matmul_peak_gflops"]
    )


def test_matmul_peak_is_what_a_timed_matmul_achieves(monkeypatch):
    from occsim.evaluate import cost

    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 3.0])  # two timed runs: 0.5 s and 0.25 s
    monkeypatch.setattr(cost.time, "perf_counter", lambda: next(ticks))
    # 2 * 64^3 FLOP in the best run of 0.25 s.
    assert cost.matmul_peak_gflops(size=64, repeats=2) == pytest.approx(2 * 64**3 / 0.25 / 1e9)


def test_gpu_estimate_is_a_roofline():
    from occsim.evaluate import cost

    efficient = cost.H100_BF16_TFLOPS * 1e12 * cost.GPU_EFFICIENCY
    # A small step sits at the launch floor of its 20 passes; a big one is compute-bound;
    # one with huge weights reads them once a pass.
    assert cost.gpu_step_seconds(1.0, 20, 0) == pytest.approx(20 * cost.GPU_PASS_OVERHEAD_S)
    assert cost.gpu_step_seconds(1e6, 20, 0) == pytest.approx(1e15 / efficient)
    big = 10**12
    assert cost.gpu_step_seconds(1.0, 2, big) == pytest.approx(2 * big / 3350e9)
    # The saturation batch: where batch x per-sample compute reaches the floor.
    batch = cost.gpu_saturation_batch(16.6, 20)
    assert batch * 16.6e9 / efficient == pytest.approx(20 * cost.GPU_PASS_OVERHEAD_S)


def test_scaling_table_grows_with_batch_and_frames(tiny_free_pipeline_path):
    from occsim.evaluate.cost import scaling_report, scaling_table

    pipe = OccSoraPipeline.from_pretrained(tiny_free_pipeline_path)
    pipe.set_progress_bar_config(disable=True)
    rows = scaling_table(pipe, (4, 8), (1, 2), repeats=1, num_inference_steps=1)
    assert [(r.frames, r.batch) for r in rows] == [(4, 1), (4, 2), (8, 1), (8, 2)]
    by = {(r.frames, r.batch): r for r in rows}
    # Every part of a step (denoising, decode) is done per sample: FLOPs double
    # with the batch, and grow with the frames generated.
    assert by[4, 2].gflop == pytest.approx(2 * by[4, 1].gflop, rel=0.02)
    assert by[8, 1].gflop > 1.5 * by[4, 1].gflop
    for row in rows:
        assert row.world_seconds_per_second == pytest.approx(
            row.batch * row.frames * 0.5 / (row.step_ms / 1e3)
        )
    report = scaling_report(rows, passes=2)
    assert len(report.rows) == 4 and "launch floor" in report.notes[1]


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


def needs_open3d():
    try:
        import open3d  # noqa: F401
    except (ImportError, OSError) as error:
        pytest.skip(f"open3d unavailable: {error}")


def shifted_view(frame: np.ndarray, cells_x: int, cells_y: int) -> np.ndarray:
    """``frame`` as seen after the ego moved by whole cells (new space is free)."""
    out = np.full_like(frame, 17)
    sx, sy = frame.shape[0] - cells_x, frame.shape[1] - cells_y
    out[:sx, :sy] = frame[cells_x:, cells_y:]
    return out


def test_adherence_recovers_a_known_translation():
    needs_open3d()
    frame = ProceduralClips(1, clip_len=1, seed=3, config=SMALL)[0]["occupancy"][0]
    moved = shifted_view(frame, 5, 3)  # ego moved 2.0 m forward, 1.2 m left
    pose = register_frames(frame, moved)
    np.testing.assert_allclose(pose, [2.0, 1.2, 0.0], atol=0.1)
    path = recover_trajectory(np.stack([frame, moved, shifted_view(moved, 5, 3)]))
    np.testing.assert_allclose(path[:, :2], [[0, 0], [2.0, 1.2], [4.0, 2.4]], atol=0.1)
    assert displacement_errors(path, np.array([[0, 0], [2.0, 1.2], [4.0, 3.4]])) == (
        pytest.approx(0.5, abs=0.1),
        pytest.approx(1.0, abs=0.1),
    )
    empty = np.full_like(frame, 17)
    assert register_frames(frame, empty) is None
    assert np.isnan(recover_trajectory(np.stack([frame, empty]))[1]).all()


def test_adherence_recovers_a_turn_beyond_the_reach_of_icp_alone():
    # Turned by 0.3 rad, structure 30 m away moves by 9 m: far outside ICP's 1 m basin, so
    # registration needs the coarse yaw search. Seen from the new pose, the old frame is
    # re-projected exactly (nearest voxel); what the new view reaches beyond it is free.
    from occsim.scene_memory import UNKNOWN, reproject

    needs_open3d()
    frame = ProceduralClips(1, clip_len=1, seed=3, config=SMALL)[0]["occupancy"][0]
    for pose in ([2.0, 0.8, 0.3], [2.0, -0.8, -0.3]):
        turned = reproject(frame, np.zeros(3), np.array(pose))
        turned[turned == UNKNOWN] = 17
        registered = register_frames(frame, turned)
        np.testing.assert_allclose(registered[:2], pose[:2], atol=0.3)
        assert registered[2] == pytest.approx(pose[2], abs=0.02)


def test_adherence_of_true_procedural_motion():
    """The exact world's own frames give back the driven path to well under a metre."""
    needs_open3d()
    item = ProceduralClips(1, clip_len=5, seed=10_000, maneuvers=("accelerate",))[0]
    recovered = recover_trajectory(item["occupancy"])
    commanded = item["trajectory"]
    assert np.linalg.norm(commanded[-1, :2]) > 2.0  # the ego does move
    ade, fde = displacement_errors(recovered, commanded)
    assert ade < 0.5 and fde < 0.8


def test_adherence_on_a_tiny_model(tiny_free_pipeline_path):
    needs_open3d()
    pipe = OccSoraPipeline.from_pretrained(tiny_free_pipeline_path)
    pipe.set_progress_bar_config(disable=True)
    datasets = {
        m: ProceduralClips(1, clip_len=8, seed=2, config=SMALL, maneuvers=(m,))
        for m in ("straight", "stop")
    }
    rows = evaluate_adherence(pipe, datasets, clips=1, num_inference_steps=2, progress=False)
    assert [row.maneuver for row in rows] == ["straight", "stop"]
    for row in rows:
        assert row.clips == 1 and row.truth_ade < 1.0
        # The one clip is either scored or counted as unregistrable, never both.
        assert row.failed + int(np.isfinite(row.ade)) == 1


def test_frechet_distance_and_class_divergence_hand_cases():
    from occsim.evaluate.generate import class_frequencies, frechet_distance, js_divergence

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, means 2 apart along one axis: the distance is 2^2.
    assert frechet_distance(a, a + np.array([2.0, 0.0, 0.0])) == pytest.approx(4.0, abs=1e-6)
    # 1-D: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2 for Gaussians of std 1 and 3.
    one = rng.normal(size=(200_000, 1))
    assert frechet_distance(one, 3.0 * one) == pytest.approx(4.0, rel=0.01)
    with pytest.raises(ValueError, match="features"):
        frechet_distance(a, a[:, :2])
    p = class_frequencies(np.array([0, 0, 17, 17], dtype=np.uint8))
    assert p[0] == p[17] == 0.5 and p.sum() == pytest.approx(1.0)
    assert js_divergence(p, p) == 0.0
    q = class_frequencies(np.array([1, 1, 2, 2], dtype=np.uint8))
    assert js_divergence(p, q) == pytest.approx(1.0)  # disjoint supports: 1 bit


class Recording:
    """A pipeline that keeps each clip it generates (``outputs``)."""

    def __init__(self, pipe: OccSoraPipeline) -> None:
        self.pipe, self.tokenizer, self.transformer = pipe, pipe.tokenizer, pipe.transformer
        self.outputs: list[np.ndarray] = []

    def __call__(self, *args, **kwargs):
        out = self.pipe(*args, **kwargs)
        self.outputs.append(out.occupancy[0])
        return out


def test_generation_scores_on_a_tiny_model(tiny_free_pipeline_path):
    from scipy.spatial.distance import jensenshannon

    from occsim.evaluate.features import OccupancyFeatureNet
    from occsim.evaluate.generate import evaluate_generation, frechet_distance

    pipe = OccSoraPipeline.from_pretrained(tiny_free_pipeline_path)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(0)
    encoder = OccupancyFeatureNet(frames=8, feature_dim=8).eval()
    clips = ProceduralClips(3, clip_len=8, seed=2, config=SMALL)
    recording = Recording(pipe)
    rows = evaluate_generation(recording, encoder, clips, 3, [(2, 1.0), (2, 0.5)], progress=False)
    assert [(r.solver_steps, r.strength, r.clips) for r in rows] == [(2, 1.0, 3), (2, 0.5, 3)]
    # Each row compares its own 3 generated clips with the 3 real ones: the class JSD
    # recomputed with scipy's independent Jensen-Shannon distance (squared: divergence,
    # base 2: bits), the FD on features of the clips computed here.
    real = np.stack([clips[i]["occupancy"][:8] for i in range(3)])
    with torch.no_grad():
        real_features = encoder(torch.from_numpy(real)).numpy()
    for r, row in enumerate(rows):
        generated = np.stack(recording.outputs[3 * r : 3 * r + 3])
        p = np.bincount(generated.ravel(), minlength=18) / generated.size
        q = np.bincount(real.ravel(), minlength=18) / real.size
        assert row.class_jsd == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-6)
        with torch.no_grad():
            features = encoder(torch.from_numpy(generated)).numpy()
        assert row.fd == pytest.approx(frechet_distance(features, real_features), rel=1e-3)
    assert rows[0].class_jsd > 0.0  # an untrained model does not draw the real classes
    with pytest.raises(ValueError, match="4-frame"):
        evaluate_generation(pipe, OccupancyFeatureNet(frames=4), clips, 1, [(2, 1.0)])


def test_the_shipped_feature_encoder_loads_and_reads_clips():
    from occsim.assets import asset_path
    from occsim.evaluate.features import FD_ENCODER, OccupancyFeatureNet

    encoder = OccupancyFeatureNet.from_pretrained(asset_path(FD_ENCODER)).eval()
    clip = torch.from_numpy(ProceduralClips(1, clip_len=8, seed=2, config=SMALL)[0]["occupancy"])
    with torch.no_grad():
        features = encoder(clip[None])
    assert features.shape == (1, encoder.config.feature_dim) and torch.isfinite(features).all()
    with pytest.raises(ValueError, match="occupancy must have shape"):
        encoder(clip[None, :4])


def test_eval_recon_takes_a_tokenizer_folder(tiny_pipeline_path, tmp_path):
    common = ["eval", "recon", "--clips", "1", "--json"]
    main([*common, str(tmp_path / "a.json"), "--pipeline", str(tiny_pipeline_path)])
    folder = tiny_pipeline_path / "tokenizer"
    main([*common, str(tmp_path / "b.json"), "--tokenizer", str(folder)])
    via_pipeline = json.loads((tmp_path / "a.json").read_text())["rows"][0]
    direct = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert direct["model"] == "tokenizer"
    assert direct["IoU"] == via_pipeline["IoU"] and direct["mIoU"] == via_pipeline["mIoU"]


def test_sweep_runs_each_setting_as_labelled(tiny_free_pipeline_path):
    from diffusers import DDIMScheduler

    from occsim.envs import OccSoraEnv
    from occsim.evaluate.closed_loop import closed_loop_fidelity
    from occsim.evaluate.sweep import sweep

    pipe = OccSoraPipeline.from_pretrained(tiny_free_pipeline_path)
    pipe.set_progress_bar_config(disable=True)
    original = pipe.scheduler

    def make_learned(solver_steps, guidance):
        return OccSoraEnv(
            pipeline=pipe,
            num_inference_steps=solver_steps,
            guidance_scale=guidance,
            map_seed=4,
            world_config=SMALL,
        )

    exact = ProceduralEnv(map_seed=4, world_config=SMALL)
    clips = ProceduralClips(1, clip_len=10, seed=2, config=SMALL)
    settings = [
        ("DDIMScheduler", "trailing", 1, 1.0),
        ("DDIMScheduler", "leading", 2, 1.0),
        ("UniPCMultistepScheduler", "leading", 2, 2.0),
    ]
    agent = ConstantSpeedAgent(exact, 6.0)
    rows = sweep(pipe, make_learned, exact, agent, [0], 1, clips, settings)
    assert pipe.scheduler is original  # restored
    assert [(r.scheduler, r.spacing, r.solver_steps, r.guidance) for r in rows] == settings
    # Each row is what a closed loop with its setting scores on its own.
    pipe.scheduler = DDIMScheduler.from_config(original.config, timestep_spacing="trailing")
    pipe.scheduler.set_timesteps(1)
    assert pipe.scheduler.timesteps.tolist() == [999]  # one pass from pure noise
    direct = closed_loop_fidelity(exact, make_learned(1, 1.0), agent, [0], 1, progress=False)
    assert rows[0].all_miou == pytest.approx(direct.steps[0].learned["all"].miou)
    assert rows[0].seen_miou == pytest.approx(direct.steps[0].learned["seen"].miou)
    # Another spacing and step count (500 then 0) or sampler, another world.
    assert rows[1].all_miou != rows[0].all_miou and rows[2].all_miou != rows[0].all_miou


def test_sweep_report_compares_with_ten_step_ddim():
    from occsim.evaluate.sweep import SweepRow, sweep_report

    def row(scheduler, spacing, steps, guidance, all_miou, seen_miou):
        return SweepRow(
            scheduler, spacing, steps, guidance, 100.0, all_miou, seen_miou, 5.0, 50.0, 0.0, 20.0
        )

    rows = [
        row("DDIMScheduler", "trailing", 1, 1.0, 30.0, 55.5),
        row("DDIMScheduler", "trailing", 10, 2.0, 40.0, 70.0),  # not the reference
        row("DDIMScheduler", "leading", 10, 2.0, 32.5, 60.0),
    ]
    report = sweep_report(rows)
    assert report.rows[0]["Δ all mIoU"] == -2.5 and report.rows[0]["Δ seen mIoU"] == -4.5
    assert report.rows[2]["Δ all mIoU"] == 0.0
    assert report.rows[0]["scheduler"] == "DDIM" and report.rows[0]["spacing"] == "trailing"
    assert "Δ all mIoU" not in sweep_report(rows[:1]).rows[0]  # no reference: no Δ
