"""Bad episode files: schema errors name the file, tampering never replays as identical, and
no record makes ``occsim replay`` import a module of its choosing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from bad_input_tally import FUZZ, FUZZ_SLOW, expect_error
from hypothesis import given
from hypothesis import strategies as st

import occsim  # noqa: F401  (registers the environments)
from occsim.cli import main
from occsim.procedural import WorldConfig
from occsim.replay import EpisodeRecord, occupancy_digest, replay

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)
RECORD = "episode record (occsim replay)"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    """A genuine three-step record of the procedural world."""
    env = gym.make("occsim/Procedural-v0", map_seed=4, world_config=SMALL)
    env.reset(seed=2)
    record = EpisodeRecord("occsim/Procedural-v0", 2, {"map_seed": 4, "world_config": None})
    for step in range(3):
        action = np.full((4, 2), 0.1 * (step + 1), np.float32)
        action[:, 1] = 0.0
        observation = env.step(action)[0]
        record.actions.append(action.tolist())
        record.digests.append(occupancy_digest(observation["occupancy"]))
    path = tmp_path_factory.mktemp("episode") / "episode.json"
    record.save(path)
    assert replay(path, world_config=SMALL)["identical"]
    return json.loads(path.read_text())


def changed(content: dict, key: str, value) -> dict:
    content = json.loads(json.dumps(content))
    if value is DELETE:
        del content[key]
    else:
        content[key] = value
    return content


DELETE = object()


def with_kwargs(recorded: dict, **kwargs) -> dict:
    return changed(recorded, "env_kwargs", {**recorded["env_kwargs"], **kwargs})


SCHEMA = {
    "digests removed": lambda r: changed(r, "digests", DELETE),
    "digests emptied": lambda r: changed(r, "digests", []),
    "one digest short": lambda r: changed(r, "digests", r["digests"][:-1]),
    "digest not hex": lambda r: changed(r, "digests", ["z" * 16] * 3),
    "digest too short": lambda r: changed(r, "digests", [d[:8] for d in r["digests"]]),
    "digest a number": lambda r: changed(r, "digests", [1, 2, 3]),
    "module:Env id": lambda r: changed(r, "env_id", "evil_replay_module:Env-v0"),
    "stdlib module id": lambda r: changed(r, "env_id", "os:system-v0"),
    "gymnasium env id": lambda r: changed(r, "env_id", "CartPole-v1"),
    "unknown occsim id": lambda r: changed(r, "env_id", "occsim/Evil-v0"),
    "env id a number": lambda r: changed(r, "env_id", 5),
    "negative seed": lambda r: changed(r, "seed", -1),
    "seed a string": lambda r: changed(r, "seed", "2"),
    "seed a float": lambda r: changed(r, "seed", 2.5),
    "seed a bool": lambda r: changed(r, "seed", True),
    "env_kwargs a list": lambda r: changed(r, "env_kwargs", [1]),
    "unknown env option": lambda r: with_kwargs(r, weather="rain"),
    "world_config not null": lambda r: with_kwargs(r, world_config={"size": 1}),
    "render_mode set": lambda r: with_kwargs(r, render_mode="human"),
    "no occupancy observed": lambda r: with_kwargs(r, observation_keys=["ego"]),
    "zero solver steps": lambda r: with_kwargs(r, num_inference_steps=0),
    "pipeline_path a number": lambda r: with_kwargs(r, pipeline_path=5),
    "actions not a list": lambda r: changed(r, "actions", "left"),
    "action wrong shape": lambda r: changed(r, "actions", [[[0, 0]]] * 3),
    "action of strings": lambda r: changed(r, "actions", [[["0", "0"]] * 4] * 3),
    "action of bools": lambda r: changed(r, "actions", [[[True, False]] * 4] * 3),
    "action ragged": lambda r: changed(r, "actions", [[[0, 0], [0]]] * 3),
    "action None": lambda r: changed(r, "actions", [None] * 3),
    "extra key": lambda r: changed(r, "notes", "hi"),
    "seed missing": lambda r: changed(r, "seed", DELETE),
    "top level a list": lambda r: [r],
}


@pytest.mark.parametrize("kind", sorted(SCHEMA))
def test_bad_records_name_the_file(tmp_path, recorded, kind):
    path = tmp_path / "episode.json"
    path.write_text(json.dumps(SCHEMA[kind](recorded)))
    expect_error(RECORD, kind, lambda: replay(path, world_config=SMALL), (ValueError,), "episode")


RAW = {
    "NaN in an action": lambda r: json.dumps(r).replace("0.1", "NaN", 1),
    "Infinity in an action": lambda r: json.dumps(r).replace("0.1", "Infinity", 1),
    "not JSON": lambda r: "{env_id:",
    "not UTF-8": lambda r: "\udcff",
    "no steps": lambda r: json.dumps({**r, "actions": [], "digests": []}),
}


@pytest.mark.parametrize("kind", sorted(RAW))
def test_unreadable_records(tmp_path, recorded, kind):
    path = tmp_path / "episode.json"
    path.write_bytes(RAW[kind](recorded).encode("utf-8", "surrogateescape"))
    expect_error(RECORD, kind, lambda: replay(path, world_config=SMALL), (ValueError,), "episode")


def test_a_record_cannot_import_a_module(tmp_path, recorded, monkeypatch):
    (tmp_path / "evil_replay_module.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').write_text('!')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "episode.json"
    path.write_text(json.dumps(changed(recorded, "env_id", "evil_replay_module:Env-v0")))
    expect_error(
        RECORD,
        "module:Env id via the CLI",
        lambda: main(["replay", str(path)]),
        (SystemExit,),
        "not an occsim env",
    )
    assert not (tmp_path / "imported").exists() and "evil_replay_module" not in sys.modules


@FUZZ_SLOW
@given(step=st.integers(0, 2), column=st.integers(0, 1), shift=st.sampled_from([0.3, -0.3, 0.5]))
def test_changed_actions_never_replay_as_identical(tmp_path_factory, recorded, step, column, shift):
    content = json.loads(json.dumps(recorded))
    for row in content["actions"][step]:
        row[column] = float(np.clip(row[column] + shift, -1, 1))
    path = Path(tmp_path_factory.mktemp("tampered")) / "episode.json"
    path.write_text(json.dumps(content))
    expect_error(
        RECORD,
        "fuzzed action change (digests kept)",
        lambda: replay(path, world_config=SMALL),
        (AssertionError,),
        "diverged at step",
    )


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(tmp_path_factory, data):
    path = Path(tmp_path_factory.mktemp("noise")) / "episode.json"
    path.write_bytes(data)
    expect_error(RECORD, "random bytes", lambda: EpisodeRecord.load(path), (ValueError,), "episode")
