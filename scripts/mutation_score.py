"""Mutation score of the modules that decide what the world does, one module at a time.

Usage: python scripts/mutation_score.py [--modules envs/rewards.py occsim/latent_warp.py]
           [--jobs 1] [--list]

Needs the `mutation` extra (mutmut 3). Not part of CI: a module takes minutes. On a shared
machine pin it, e.g. ``OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python
scripts/mutation_score.py --modules envs/rewards.py``.

For each module of :data:`MODULES` this runs ``mutmut run`` with only that module mutated
and only its tests selected, then prints a markdown table: mutants, killed, survived,
timeout, other (suspicious, segfault, not checked, no tests) and the score, the share
killed or timed out. Every mutant that was not killed goes, with its diff (``mutmut
show``), to ``mutants/<module>/not_killed.md`` for a person to read: kill it with a test or
say why it is equivalent.

mutmut names a mutant after the path of its file, and the tests import ``occsim.envs.*``
and ``occsim.agents.*`` from the root folders envs/ and agents/ (see
``[tool.setuptools] package-dir``). So each run works in a copy of the tree laid out as
installed, ``mutants/<module>/occsim/{envs,agents,assets}`` with tests/ and pyproject.toml
beside it, whose own ``mutants/`` folder is mutmut's. The shared settings come from
``[tool.mutmut]`` of pyproject.toml; source_paths, only_mutate and the test files are
added here. Every run starts from a fresh copy (no results are reused).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # mutmut itself reads its configuration with toml before 3.11
    import toml as tomllib

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutants"

# Tests run on a mutant: the test files that import the module (grep tests/ for it),
# fast ones only (`-m "not slow"` comes from [tool.mutmut]). A "file::test" entry selects
# one test of a slow file.
MODULES: dict[str, tuple[str, ...]] = {
    "envs/rewards.py": ("tests/test_behaviour_rewards.py", "tests/test_envs.py"),
    "envs/base.py": (
        "tests/test_envs.py",
        "tests/test_env_contract.py",
        "tests/test_behaviour_rewards.py",
        "tests/bad_inputs/test_bad_env.py",
    ),
    "envs/vector_env.py": (
        "tests/test_behaviour_vector_env.py",
        "tests/test_learned_env.py::test_vector_env_matches_single_envs_with_one_dit_call_per_step",
        "tests/test_learned_env.py::test_vector_env_autoresets_on_the_next_step",
    ),
    "occsim/pipeline.py": (
        "tests/test_behaviour_guidance.py",
        "tests/test_dit_pipeline.py",
        "tests/test_memory_condition.py",
        "tests/test_ground_prior.py",
        "tests/bad_inputs/test_bad_models.py",
    ),
    "occsim/latent_warp.py": ("tests/test_latent_warp.py", "tests/test_behaviour_geometry.py"),
    "occsim/geometry.py": (
        "tests/test_latent_warp.py",
        "tests/test_behaviour_geometry.py",
        "tests/test_labels_grid.py",
    ),
    "agents/planner.py": (
        "tests/test_behaviour_planner.py",
        "tests/test_forecast.py",
        "tests/test_drive.py::test_planner_cost_sees_obstacles_and_road",
    ),
    "occsim/metrics.py": ("tests/test_metrics.py", "tests/test_behaviour_metrics.py"),
}

# Root folder -> where it lies in the installed package (pyproject's package-dir).
INSTALLED = {"occsim": "occsim", "envs": "occsim/envs", "agents": "occsim/agents"}
INSTALLED["assets"] = "occsim/assets"

KILLED = {"killed", "caught by type check"}
TIMEOUT = {"timeout"}
SURVIVED = {"survived"}


@dataclass
class Score:
    module: str
    statuses: dict[str, str]  # mutant name -> mutmut status
    seconds: float

    @property
    def counts(self) -> Counter:
        return Counter(self.statuses.values())

    def count(self, statuses: set[str]) -> int:
        return sum(n for status, n in self.counts.items() if status in statuses)

    @property
    def other(self) -> int:
        return len(self.statuses) - self.count(KILLED | TIMEOUT | SURVIVED)

    @property
    def score(self) -> float:
        detected = self.count(KILLED | TIMEOUT)
        return 100.0 * detected / len(self.statuses) if self.statuses else float("nan")

    def not_killed(self) -> list[str]:
        return sorted(n for n, s in self.statuses.items() if s not in KILLED | TIMEOUT)


def slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def installed_path(module: str) -> str:
    top, _, rest = module.partition("/")
    return f"{INSTALLED[top]}/{rest}"


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def mutmut_settings(module: str, tests: tuple[str, ...]) -> dict:
    """[tool.mutmut] of the repository, with this module's paths and tests."""
    shared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"].get("mutmut", {})
    settings = dict(shared)
    settings["source_paths"] = ["occsim"]
    settings["only_mutate"] = [installed_path(module)]
    settings["pytest_add_cli_args_test_selection"] = [
        *shared.get("pytest_add_cli_args_test_selection", []),
        *tests,
    ]
    # Each run starts from a fresh copy: there is no cache to keep valid.
    settings["use_git_change_detection"] = False
    return settings


def stage(module: str, tests: tuple[str, ...]) -> Path:
    """A fresh copy of the tree laid out as installed, with a [tool.mutmut] for `module`."""
    where = WORK / slug(module)
    if where.exists():
        shutil.rmtree(where)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top, target in INSTALLED.items():
        shutil.copytree(ROOT / top, where / target, ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    lines = [
        f"{key} = {toml_value(value)}" for key, value in mutmut_settings(module, tests).items()
    ]
    (where / "pyproject.toml").write_text(
        text.rstrip() + "\n\n[tool.mutmut]\n" + "\n".join(lines) + "\n"
    )
    return where


def mutmut(where: Path, *args: str, log: Path | None = None) -> str:
    """Run the mutmut next to this interpreter in `where` and return its output; with
    `log`, the output goes to that file as it comes (follow a long run with tail -f)."""
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if log is None:
        done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True)
        output = done.stdout + done.stderr
    else:
        with log.open("w") as handle:
            done = subprocess.run(command, cwd=where, env=env, stdout=handle, stderr=handle)
        output = log.read_text()
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` in {where} failed:\n{output[-4000:]}")
    return output


def run_module(module: str, jobs: int) -> Score:
    tests = MODULES[module]
    for test in tests:
        path = ROOT / test.partition("::")[0]
        if not path.is_file():
            raise FileNotFoundError(f"{module}: test file {path} is missing")
    where = stage(module, tests)
    start = time.monotonic()
    mutmut(where, "run", "--max-children", str(jobs), log=where / "mutmut-run.log")
    seconds = time.monotonic() - start
    statuses = {}
    for line in mutmut(where, "results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            statuses[name] = status
    score = Score(module, statuses, seconds)
    report = [f"# Mutants of {module} that were not killed\n", f"Tests: {' '.join(tests)}\n"]
    for name in score.not_killed():
        report.append(f"## {name}: {statuses[name]}\n\n```diff\n{mutmut(where, 'show', name)}```\n")
    (where / "not_killed.md").write_text("\n".join(report))
    return score


def table(scores: list[Score]) -> str:
    rows = [
        "| module | mutants | killed | survived | timeout | other | score % | time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        rows.append(
            f"| {s.module} | {len(s.statuses)} | {s.count(KILLED)} | {s.count(SURVIVED)} "
            f"| {s.count(TIMEOUT)} | {s.other} | {s.score:.1f} | {s.seconds:.0f} s |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=list(MODULES))
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--list", action="store_true", help="print the module -> tests table")
    args = parser.parse_args()
    if args.list:
        for module, tests in MODULES.items():
            print(module, "->", " ".join(tests))
        return
    scores = []
    for module in args.modules:
        print(f"{module}: mutmut run on {' '.join(MODULES[module])}", flush=True)
        print(f"  progress: {WORK / slug(module) / 'mutmut-run.log'}", flush=True)
        score = run_module(module, args.jobs)
        others = {k: v for k, v in score.counts.items() if k not in KILLED | TIMEOUT | SURVIVED}
        print(f"  {score.score:.1f} % in {score.seconds:.0f} s {others or ''}", flush=True)
        print(f"  not killed: {WORK / slug(module) / 'not_killed.md'}", flush=True)
        scores.append(score)
    print()
    print("score = (killed + timeout) / mutants; other = suspicious, segfault, no tests, ...")
    print(table(scores))


if __name__ == "__main__":
    main()
