"""The layering of the house: what may import what, and who may touch the rollout's state.

Layers, bottom up: contracts, data, procedural world, tokenizer, DiT, pipeline, rollout,
metrics, render (``LOWER``) < envs < agents < evaluation, driving, training, CLI. A lower
layer never imports a higher one; only ``occsim/world_model.py`` reads the rollout's
private state, and nothing outside the rollout and the learned env touches a pipeline
inside an env.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOWER = [
    "occsim/grid.py",
    "occsim/labels.py",
    "occsim/geometry.py",
    "occsim/validation.py",
    "occsim/io.py",
    "occsim/nearest_cell.py",
    "occsim/sampler_defaults.py",
    "occsim/lazy.py",
    "occsim/metrics.py",
    "occsim/consistency.py",
    "occsim/latent_warp.py",
    "occsim/dit.py",
    "occsim/diffusion.py",
    "occsim/pipeline.py",
    "occsim/world_model.py",
    "occsim/model_files.py",
    "occsim/scene_memory.py",
    "occsim/road_users.py",
    "occsim/road_user_tracks.py",
    "occsim/ground_prior.py",
    "occsim/memory_condition.py",
    "occsim/data",
    "occsim/procedural",
    "occsim/tokenizer",
    "occsim/render",
]
HIGHER = ("occsim.envs", "occsim.agents", "occsim.evaluate", "occsim.drive", "occsim.train")
ROLLOUT_STATE = (
    "_latents",
    "_cache",
    "_generator",
    "_pipe",
    "_version",
    "_memory",
    "_tracks",
    "_poses",
)


def python_files(*parts: str) -> list[Path]:
    files: list[Path] = []
    for part in parts:
        path = ROOT / part
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", python_files(*LOWER), ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_import_nothing_from_envs_agents_or_above(path):
    upward = {name for name in imported_modules(path) if name.startswith(HIGHER)}
    assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}"


def test_the_learned_stack_takes_only_the_starting_scene_from_the_procedural_world():
    learned = [
        ROOT / "envs/occsora_env.py",
        ROOT / "envs/vector_env.py",
        ROOT / "occsim/world_model.py",
    ]
    for path in learned:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "occsim.procedural"
            ):
                names = {alias.name for alias in node.names}
                assert names <= {"starting_scene", "WorldConfig"}, (path.name, names)
                # WorldConfig only as a type (the argument passed on to starting_scene).
                if "WorldConfig" in names:
                    assert "TYPE_CHECKING" in path.read_text()


def offending_lines(text: str) -> list[int]:
    """Lines that read a rollout's private state or reach into an env for its pipeline."""
    state = re.compile(r"rollout\w*(\(\))?\.(" + "|".join(ROLLOUT_STATE) + r")\b")
    env_internals = re.compile(r"\b(env|envs|unwrapped)\.(pipe|learned|_backend)\b")
    return [
        number
        for number, line in enumerate(text.splitlines(), 1)
        if state.search(line) or env_internals.search(line)
    ]


def test_no_module_outside_the_rollout_reads_its_private_state():
    offenders = []
    for path in python_files("occsim", "envs", "agents", "scripts", "examples", "tests"):
        if path.name in ("world_model.py", "test_layers.py"):
            continue
        lines = path.read_text().splitlines()
        offenders += [
            f"{path.relative_to(ROOT)}:{n}: {lines[n - 1].strip()}"
            for n in offending_lines(path.read_text())
        ]
    assert not offenders, "\n".join(offenders)


def test_the_check_catches_planted_accesses():
    planted = [
        "context = env.rollout._latents",
        "cache = self.env.unwrapped.rollout._cache",
        "out = env.unwrapped.pipe(trajectory)",
        "latents = env.learned.latents",
        "window = env._backend.rollout.propose(t)",
    ]
    clean = "context = env.rollout.context_latents()\nframes = env.imagine(actions, gen)"
    assert offending_lines("\n".join(planted)) == [1, 2, 3, 4, 5]
    assert offending_lines(clean) == []
