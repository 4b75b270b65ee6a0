"""Each example runs end to end (tiny world model, a few steps)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, tmp_path: Path) -> str:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_random_rollout(tiny_pipeline_path, tmp_path):
    out = run_example(
        "random_rollout.py",
        "--pipeline",
        str(tiny_pipeline_path),
        "--steps",
        "2",
        tmp_path=tmp_path,
    )
    assert out.count("step ") == 2 and "return" in out


def test_planner_rollout(tiny_pipeline_path, tmp_path):
    out = run_example(
        "planner_rollout.py",
        "--pipeline",
        str(tiny_pipeline_path),
        "--steps",
        "2",
        "--out",
        "planner",
        tmp_path=tmp_path,
    )
    assert (tmp_path / "planner" / "drive.gif").is_file() and "episode" in out


def test_generate_clip(tiny_pipeline_path, tmp_path):
    out = run_example(
        "generate_clip.py",
        "--pipeline",
        str(tiny_pipeline_path),
        "--seconds",
        "6",
        "--maneuver",
        "left",
        "--out",
        "clip.gif",
        tmp_path=tmp_path,
    )
    assert "wrote 12 frames (6.0 s)" in out and (tmp_path / "clip.gif").is_file()


def test_drive_keyboard(tmp_path):
    out = run_example(
        "drive_keyboard.py",
        "--world",
        "procedural",
        "--fast",
        "--max-frames",
        "2",
        "--record",
        "episode.json",
        tmp_path=tmp_path,
    )
    assert "drove 2 steps" in out and (tmp_path / "episode.json").is_file()


def test_train_ppo(tiny_pipeline_path, tmp_path):
    pytest.importorskip("stable_baselines3")
    out = run_example(
        "train_ppo.py",
        "--pipeline",
        str(tiny_pipeline_path),
        "--timesteps",
        "64",
        "--eval-episodes",
        "1",
        "--eval-steps",
        "1",
        tmp_path=tmp_path,
    )
    assert "OccSora-v0 episode 0" in out
