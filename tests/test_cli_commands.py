"""`occsim eval forecast|generate|adherence|closed-loop|sweep`, `occsim bench` and
`occsim drive` run in-process on the tiny untrained model, each checked against what it
promises: one row per horizon, setting, manoeuvre or step (and a mean row where it makes
one), figures consistent with each other and across commands, and a clear error for bad
input.

Two things keep the file fast. The commands build their procedural worlds with the default
config, made a small map here (:func:`small_worlds`). And the tiny model decodes most voxels
free, as in a driving scene (:func:`model_path`): the untouched untrained model decodes
almost every voxel occupied, which the decoder and the frame registration of
``eval adherence`` handle several times slower.
"""

import contextlib
import io
import itertools
import json
import math
import re
from functools import partialmethod

import numpy as np
import pytest
import torch

from occsim.cli import main
from occsim.envs import OccEnvConfig
from occsim.evaluate.cli import HELD_OUT_SEED
from occsim.evaluate.forecast import HORIZON_SECONDS
from occsim.evaluate.report import Report
from occsim.grid import FRAME_DT
from occsim.procedural import WorldConfig

SMALL_WORLD = {"size": 128.0, "grid_nodes": 3, "vehicles": 4, "pedestrians": 4}
STEP_SECONDS = OccEnvConfig().frames_per_step * FRAME_DT  # world time of one env step
# The forecast and closed-loop runs use the sampler of the sweep's first setting (DDIM, one
# step, no guidance), so that the sweep's row can be checked against them.
SOLVER = ["--solver-steps", "1", "--guidance", "1"]


@pytest.fixture(scope="module")
def model_path(tiny_free_pipeline_path):
    """The tiny test model decoding most voxels free (see conftest)."""
    return tiny_free_pipeline_path


@pytest.fixture(scope="module", autouse=True)
def small_worlds():
    """Every ``WorldConfig()`` of this module is :data:`SMALL_WORLD` (fields given
    explicitly still win), so that the maps the commands generate are quick to build."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WorldConfig, "__init__", partialmethod(WorldConfig.__init__, **SMALL_WORLD))
        yield


def run(*argv: str) -> str:
    """``occsim *argv`` in this process; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(list(argv))
    return out.getvalue()


def run_report(path, *argv: str) -> tuple[dict, str]:
    """``occsim *argv --json path``: the JSON report and what was printed."""
    printed = run(*argv, "--json", str(path))
    return json.loads(path.read_text()), printed


def values(row: dict) -> dict:
    """A JSON row with its nulls (NaN in the table) back as NaN."""
    return {k: float("nan") if v is None else v for k, v in row.items()}


def assert_printed(report: dict, printed: str) -> None:
    """The printed markdown table holds the JSON rows, cell by cell."""
    rows = [values(row) for row in report["rows"]]
    table = Report(report["name"], "", list(rows[0]), rows).markdown().splitlines()
    lines = printed.splitlines()
    for line in table[2:]:  # the header, its rule and one line per row
        assert line in lines


@pytest.fixture(scope="module")
def forecast(model_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("forecast") / "forecast.json"
    argv = ["eval", "forecast", "--pipeline", str(model_path), "--clips", "1", *SOLVER]
    return run_report(path, *argv)


@pytest.fixture(scope="module")
def closed_loop(model_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("closed_loop") / "closed.json"
    argv = ["eval", "closed-loop", "--pipeline", str(model_path), "--clips", "1"]
    return run_report(path, *argv, "--steps", "2", *SOLVER)


def test_eval_forecast_scores_each_horizon(forecast):
    report, printed = forecast
    assert report["name"] == "eval:forecast"
    assert [row["horizon"] for row in report["rows"]] == [f"{s} s" for s in HORIZON_SECONDS]
    for row in report["rows"]:
        assert list(row) == ["horizon", "IoU", "mIoU"]
        assert 0.0 <= row["IoU"] <= 100.0 and 0.0 <= row["mIoU"] <= 100.0
    meta = report["meta"]
    assert (meta["data"], meta["clips"], meta["scene_memory"]) == ("procedural", 1, True)
    assert meta["timestep_spacing"] == "trailing"  # which sampler made the figures
    assert_printed(report, printed)


def test_eval_closed_loop_steps_mean_and_frozen_reference(closed_loop):
    from occsim.agents import ConstantSpeedAgent
    from occsim.envs import ProceduralEnv
    from occsim.evaluate.closed_loop import closed_loop_fidelity

    report, printed = closed_loop
    *steps, mean = report["rows"]
    episodes, learned_ends, exact_ends, learned_only = map(
        int,
        re.match(
            r"Episodes: (\d+); the learned world terminated in (\d+), the exact one in (\d+); "
            r"learned-only terminations: (\d+) %",
            report["notes"][0],
        ).groups(),
    )
    assert episodes == 1 and learned_ends <= episodes and exact_ends <= episodes
    assert learned_only <= 100 * learned_ends / episodes
    # One row per step driven (both unless the exact world ended the episode), then the mean.
    assert 1 <= len(steps) <= 2 and (exact_ends or len(steps) == 2)
    assert [row["step"] for row in steps] == list(range(1, len(steps) + 1))
    assert [row["seconds"] for row in steps] == [STEP_SECONDS * row["step"] for row in steps]
    assert mean["step"] == "mean"
    for column in mean:
        if column != "step":
            expected = np.nanmean([values(row)[column] for row in steps])
            assert values(mean)[column] == pytest.approx(expected, nan_ok=True), column
    for row in steps:
        assert 0.0 < row["seen %"] <= 100.0
        assert row["frozen new IoU"] == 0.0  # the frozen copy predicts unseen space free
    # The frozen copy is made of the exact world alone: the same figures whatever the
    # learned world is, here the exact world itself (which then scores 100).
    exact = ProceduralEnv()
    twin = closed_loop_fidelity(
        exact, ProceduralEnv(), ConstantSpeedAgent(exact, 6.0), [HELD_OUT_SEED], 2, progress=False
    )
    assert twin.exact_terminations == exact_ends and len(twin.steps) == len(steps)
    for row, step in zip(steps, twin.steps):
        assert step.learned["all"].iou == pytest.approx(100.0)
        for region in ("all", "seen", "new"):
            assert row[f"frozen {region} IoU"] == pytest.approx(step.frozen[region].iou)
            assert row[f"frozen {region} mIoU"] == pytest.approx(step.frozen[region].miou)
    meta = report["meta"]
    assert (meta["seeds"], meta["agent"], meta["scene_memory"]) == (
        [HELD_OUT_SEED],
        "constant",
        True,
    )
    assert_printed(report, printed)


def test_eval_road_users_scores_the_tracks_beside_the_closed_loops_frozen_copy(tmp_path):
    from occsim.agents import ConstantSpeedAgent
    from occsim.envs import ProceduralEnv
    from occsim.evaluate.closed_loop import class_group_miou, closed_loop_fidelity
    from occsim.labels import CLASS_NAMES, DYNAMIC_CLASSES

    argv = ["eval", "road-users", "--clips", "1", "--steps", "2"]
    report, printed = run_report(tmp_path / "road_users.json", *argv)
    assert report["name"] == "eval:road-users"
    names = [CLASS_NAMES[c] for c in DYNAMIC_CLASSES]
    exact = ProceduralEnv()
    twin = closed_loop_fidelity(
        exact, ProceduralEnv(), ConstantSpeedAgent(exact, 6.0), [HELD_OUT_SEED], 2, progress=False
    )
    assert len(report["rows"]) == 2
    for k, (row, step) in enumerate(zip(report["rows"], twin.steps)):
        row = values(row)
        assert list(row) == ["step", "seconds", "tracks mIoU", "frozen mIoU", *names]
        assert row["step"] == k + 1 and row["seconds"] == STEP_SECONDS * (k + 1)
        assert 0.0 <= row["tracks mIoU"] <= 100.0
        # The same frozen copy on the same drive as the closed loop's, its road users alone.
        frozen = class_group_miou(step.frozen["seen"], DYNAMIC_CLASSES)
        assert row["frozen mIoU"] == pytest.approx(frozen, nan_ok=True)
    assert report["meta"]["seeds"] == [HELD_OUT_SEED]
    assert_printed(report, printed)


def test_eval_sweep_rows_are_the_closed_loop_and_forecast_of_each_setting(
    model_path, tmp_path, forecast, closed_loop
):
    schedulers, solver_steps, guidances = ["DDIMScheduler", "UniPCMultistepScheduler"], [1], [1.0]
    spacings = ["trailing", "leading"]
    report, printed = run_report(
        tmp_path / "sweep.json",
        "eval",
        "sweep",
        "--pipeline",
        str(model_path),
        "--clips",
        "1",
        "--steps",
        "1",
        "--schedulers",
        ",".join(schedulers),
        "--spacings",
        ",".join(spacings),
        "--steps-list",
        ",".join(map(str, solver_steps)),
        "--guidances",
        ",".join(map(str, guidances)),
    )
    every = list(itertools.product(schedulers, spacings, solver_steps, guidances))
    # DDIM's one leading step is at t=0: refused and named, not run (UniPC's is at 500).
    refused = ("DDIMScheduler", "leading", 1, 1.0)
    settings = [setting for setting in every if setting != refused]
    assert report["meta"]["settings"] == [list(setting) for setting in settings]
    assert report["meta"]["refused"] == [list(refused)]
    assert "Not run: DDIM, leading spacing, 1 step(s)" in printed
    rows = report["rows"]
    assert [(r["scheduler"], r["spacing"], r["solver steps"], r["guidance"]) for r in rows] == [
        (name.removesuffix("Scheduler"), spacing, steps, guidance)
        for name, spacing, steps, guidance in settings
    ]
    # The reference setting (DDIM, 10 steps, guidance 2) was not run: no Δ columns.
    assert not any(column.startswith("Δ") for row in rows for column in row)
    for row in rows:
        assert row["step p50 ms"] > 0.0
        assert row["learned-only term. %"] in (0.0, 100.0)  # one episode: it ended or not
    # DDIM, 1 trailing step, guidance 1 is the sampler the forecast and closed-loop runs used
    # on the same held-out seeds: its figures are theirs (closed loop: step 1 of the episode;
    # forecast: the mean over the horizons).
    first, closed_step = values(rows[0]), values(closed_loop[0]["rows"][0])
    for column in ("all mIoU", "seen mIoU", "new mIoU", "all IoU"):
        assert first[column] == pytest.approx(closed_step[f"learned {column}"], nan_ok=True)
    forecast_miou = [row["mIoU"] for row in forecast[0]["rows"]]
    assert first["forecast mIoU"] == pytest.approx(float(np.mean(forecast_miou)))
    # One step from t=999 is the DiT's prediction whatever the solver; UniPC's one leading
    # step starts elsewhere (t=500), another world.
    assert rows[1]["all mIoU"] == rows[0]["all mIoU"] != rows[2]["all mIoU"]
    assert_printed(report, printed)


def test_eval_generate_checks_the_steps_it_samples_not_the_solver_steps_default(
    model_path, tmp_path
):
    argv = ["eval", "generate", "--pipeline", str(model_path), "--clips", "2"]
    argv += ["--strengths", "1.0", "--timestep-spacing", "leading"]
    # Two leading steps start at t=500: they run, whatever --solver-steps (1) would do.
    report, _ = run_report(tmp_path / "generate.json", *argv, "--steps-list", "2")
    assert [row["solver_steps"] for row in report["rows"]] == [2]
    with pytest.raises(SystemExit, match="--solver-steps 1 with --timestep-spacing leading"):
        run(*argv, "--steps-list", "1")


def test_eval_generate_scores_each_setting(model_path, tmp_path):
    steps, strengths, clips = [1], [1.0, 0.5], 2
    report, printed = run_report(
        tmp_path / "generate.json",
        "eval",
        "generate",
        "--pipeline",
        str(model_path),
        "--clips",
        str(clips),
        "--steps-list",
        ",".join(map(str, steps)),
        "--strengths",
        ",".join(map(str, strengths)),
        "--guidance",
        "1",
    )
    # Every solver step count from noise (strength 1), then the first count from noised
    # real latents at each strength below 1.
    expected = [(n, 1.0) for n in steps] + [(steps[0], r) for r in strengths if r < 1.0]
    rows = report["rows"]
    assert [(row["solver_steps"], row["strength"]) for row in rows] == expected
    for row in rows:
        assert row["clips"] == clips
        assert 0.0 <= row["class_jsd"] <= 1.0  # bits
        assert math.isfinite(row["fd"])
    assert report["meta"]["scheduler"] == "DDIMScheduler" and report["meta"]["clips"] == clips
    assert_printed(report, printed)


def test_eval_adherence_rows_per_maneuver(model_path, tmp_path, monkeypatch):
    from occsim.evaluate import adherence

    # One manoeuvre instead of five: registering the frames (ICP) is the slow part.
    maneuvers = ("stop",)
    monkeypatch.setattr(adherence, "ADHERENCE_MANEUVERS", maneuvers)
    report, printed = run_report(
        tmp_path / "adherence.json",
        "eval",
        "adherence",
        "--pipeline",
        str(model_path),
        "--clips",
        "1",
        *SOLVER,
    )
    rows = report["rows"]
    assert [(row["maneuver"], row["clips"]) for row in rows] == [(m, 1) for m in maneuvers]
    for row in rows:
        # The clip is either scored or counted as unregistrable, never both.
        assert row["failed"] in (0, 1) and (row["ade"] is None) == (row["failed"] == 1)
        assert (row["fde"] is None) == (row["ade"] is None)
        # The true clip's own frames give back the commanded path: the metric's floor.
        assert row["truth_ade"] < 1.0 and row["truth_fde"] < 1.5
    meta = report["meta"]
    assert (meta["data_seed"], meta["clips_per_maneuver"]) == (HELD_OUT_SEED, 1)
    assert_printed(report, printed)


def test_bench_figures_agree_with_each_other(model_path, tmp_path, monkeypatch):
    from occsim.evaluate import bench

    peak = 250.0  # GFLOP/s; timing the machine's matmul peak is tested in test_evaluate
    monkeypatch.setattr(bench, "matmul_peak_gflops", lambda: peak)
    batch = 1
    report, printed = run_report(
        tmp_path / "bench.json",
        "bench",
        "--pipeline",
        str(model_path),
        "--steps",
        "1",
        "--batch",
        str(batch),
        "--no-scaling",
        *SOLVER,
    )
    figures = {row["figure"]: row["value"] for row in report["rows"]}
    p50_s = figures["step_p50_ms"] / 1e3
    assert p50_s > 0.0
    # One timed step: it is the median, the 95th percentile and the mean.
    assert figures["step_p95_ms"] == figures["step_p50_ms"]
    assert figures["steps_per_s"] == pytest.approx(1.0 / p50_s)
    assert figures["real_time_factor"] == pytest.approx(STEP_SECONDS / p50_s)
    assert figures["achieved_gflops"] == pytest.approx(figures["gflop_per_step"] / p50_s)
    assert figures["matmul_peak_gflops"] == peak
    assert figures["utilisation_%"] == pytest.approx(100 * figures["achieved_gflops"] / peak)
    batched = figures[f"batched_{batch}_step_ms"]
    sequential = figures[f"sequential_{batch}_steps_ms"]
    assert figures["batched_speedup"] == pytest.approx(sequential / batched)
    assert figures["threads"] == torch.get_num_threads()
    assert list(tmp_path.iterdir()) == [tmp_path / "bench.json"]  # --no-scaling: no table
    assert_printed(report, printed)


def test_drive_headless_on_the_tiny_learned_world_replays(model_path, tmp_path):
    from occsim.drive import EpisodeRecord

    out, steps = tmp_path / "drive", 1
    printed = run(
        "drive",
        "--headless",
        "--world",
        "learned",
        "--pipeline",
        str(model_path),
        "--steps",
        str(steps),
        "--solver-steps",
        "1",
        "--agent",
        "constant",
        "--seed",
        "3",
        "--out",
        str(out),
    )
    # One step ends at most one episode.
    episodes = re.search(rf"drove {steps} steps \((\d+) episodes\) of the learned world", printed)
    assert int(episodes.group(1)) in (1, 2)
    record = EpisodeRecord.load(out / "episode.json")
    assert (record.env_id, record.seed) == ("occsim/OccSora-v0", 3)
    assert record.env_kwargs["pipeline_path"] == str(model_path)
    assert record.env_kwargs["num_inference_steps"] == 1
    assert len(record.actions) == len(record.digests) == steps
    # Every frame is drawn into the video; three of them, spread over the run, as PNG.
    assert (out / "drive.gif").is_file()
    chosen = np.linspace(0, steps * OccEnvConfig().frames_per_step - 1, 3).astype(int)
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:03d}.png" for i in chosen]
    assert "every frame identical" in run("replay", str(out / "episode.json"))
    assert record.env_kwargs["timestep_spacing"] == "trailing"
    # A record without a spacing predates the option: it replays with the "leading" spacing
    # it was made with.
    old = tmp_path / "old"
    argv = ["drive", "--headless", "--world", "learned", "--pipeline", str(model_path)]
    run(
        *argv,
        "--steps",
        "1",
        "--solver-steps",
        "2",
        "--timestep-spacing",
        "leading",
        "--agent",
        "constant",
        "--seed",
        "3",
        "--out",
        str(old),
    )
    record = EpisodeRecord.load(old / "episode.json")
    del record.env_kwargs["timestep_spacing"]
    record.save(old / "episode.json")
    assert "every frame identical" in run("replay", str(old / "episode.json"))
    # The same record replayed with one trailing step diverges at once.
    record.env_kwargs.update(timestep_spacing="trailing", num_inference_steps=1)
    record.save(old / "episode.json")
    with pytest.raises(AssertionError, match="step 0"):
        run("replay", str(old / "episode.json"))


OUTPUT_OPTION = {
    "forecast": ["eval", "forecast", "--json"],
    "generate": ["eval", "generate", "--json"],
    "adherence": ["eval", "adherence", "--json"],
    "closed-loop": ["eval", "closed-loop", "--json"],
    "sweep": ["eval", "sweep", "--json"],
    "bench": ["bench", "--json"],
    "drive": ["drive", "--headless", "--world", "learned", "--out"],
}


@pytest.mark.parametrize("command", OUTPUT_OPTION)
def test_a_folder_without_a_model_is_named(command, tmp_path):
    with pytest.raises(FileNotFoundError, match="not an OccSoraPipeline folder"):
        run(*OUTPUT_OPTION[command], str(tmp_path / "out"), "--pipeline", str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        pytest.param(
            ["eval", "generate", "--steps-list", "0"],
            SystemExit,
            "--steps-list needs counts >= 1",
            id="generate-steps",
        ),
        pytest.param(
            ["eval", "generate", "--strengths", "1.5"],
            SystemExit,
            "--strengths values in (0, 1]",
            id="generate-strength",
        ),
        pytest.param(
            ["eval", "generate", "--steps-list", "ten"],
            SystemExit,
            "--steps-list must be comma-separated numbers",
            id="generate-not-a-number",
        ),
        pytest.param(
            ["eval", "adherence", "--data", "occ3d"],
            SystemExit,
            "only --data procedural",
            id="adherence-data",
        ),
        pytest.param(
            ["eval", "sweep", "--schedulers", "NoScheduler"],
            ValueError,
            "scheduler 'NoScheduler' is not a diffusers scheduler class",
            id="sweep-scheduler",
        ),
        pytest.param(
            ["eval", "closed-loop", "--timestep-spacing", "leading"],
            SystemExit,
            "--solver-steps 1 with --timestep-spacing leading starts at t=0",
            id="closed-loop-first-step-at-zero",
        ),
        pytest.param(
            ["drive", "--headless", "--agent", "bogus"],
            ValueError,
            "agent 'bogus' unknown",
            id="drive-agent",
        ),
    ],
)
def test_bad_options_are_named(model_path, argv, error, message):
    with pytest.raises(error, match=re.escape(message)):
        run(*argv, "--pipeline", str(model_path))


def test_forecast_needs_an_occ3d_root(model_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="has no gts/ folder"):
        run("eval", "forecast", "--pipeline", str(model_path), "--data", str(tmp_path))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "closed-loop", "--agent", "bogus"], "argument --agent: invalid choice"),
        (["drive", "--world", "dream"], "argument --world: invalid choice"),
        (["eval", "closed-loop", "--solver-steps", "0"], "--solver-steps: must be at least 1"),
        (["eval", "closed-loop", "--clips", "0"], "argument --clips: must be at least 1, got 0"),
        (["eval", "forecast", "--clips", "0"], "argument --clips: must be at least 1, got 0"),
        (["eval", "adherence", "--clips", "-1"], "argument --clips: must be at least 1, got -1"),
        (["eval", "closed-loop", "--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["eval", "generate", "--clips", "1"], "argument --clips: must be at least 2, got 1"),
        (["eval", "sweep", "--steps-list", "x"], "--steps-list: must be comma-separated numbers"),
        (["eval", "sweep", "--steps-list", "0,2"], "--steps-list: must be one or more numbers"),
        (["eval", "sweep", "--guidances", "1,a"], "--guidances: must be comma-separated numbers"),
        (
            ["eval", "sweep", "--spacings", "leading,late"],
            "--spacings: must be comma-separated names from leading, trailing, linspace",
        ),
        (["eval", "closed-loop", "--timestep-spacing", "late"], "argument --timestep-spacing"),
        (["bench", "--steps", "0"], "argument --steps: must be at least 1, got 0"),
        (["bench", "--solver-steps", "two"], "--solver-steps: must be an integer, got 'two'"),
        (["drive", "--steps", "0"], "argument --steps: must be at least 1, got 0"),
    ],
)
def test_bad_values_stop_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        run(*argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err
