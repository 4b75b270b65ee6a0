"""Bad env configs, reset arguments and actions: a clear error at the boundary, and an env
that is either as it was or refuses to go on (``ResetNeeded``)."""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest
from bad_input_tally import FUZZ, expect_error
from hypothesis import given
from hypothesis import strategies as st

import occsim  # noqa: F401  (registers the environments)
from occsim.envs import ProceduralEnv
from occsim.envs.base import OccEnv, ResetNeeded
from occsim.envs.config import OccEnvConfig
from occsim.grid import EgoState
from occsim.procedural import WorldConfig
from occsim.world_model import load_world_model

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)
CONFIG = "env config (gym.make kwargs)"
ACTION = "env.step action"
RESET = "env.reset seed / options"

BAD_CONFIG = {
    "frames_per_step": [0, -1, 65, True, 2.5, "4", None],
    "action_scale": [(0, 1), (1, np.inf), (np.nan, 1), (1,), (1, 2, 3), "ab", (True, 1), 5],
    "observation_keys": [(), ("lidar",), "occupancy", ("occupancy", "occupancy"), (1,), None],
    "rewards": [{"progress": np.nan}, {"speed": 1.0}, {"progress": "a"}, 5, {"comfort": True}],
    "map_seed": [-1, 1.5, "3", True],
    "pipeline_path": [5, ["a"]],
    "num_inference_steps": [0, -3, 1001, 2.0, True, None],
    "guidance_scale": [np.nan, np.inf, -1.0, 101.0, "2", None],
    "scene_memory": [1, "yes", None],
    "scheduler": ["", 5, None],
    "timestep_spacing": ["late", "", None],
    "device": ["", None],
    "dtype": ["", 3],
}
CASES = [(key, i) for key, values in BAD_CONFIG.items() for i in range(len(values))]


@pytest.mark.parametrize("world", ["occsim/OccSora-v0", "occsim/Procedural-v0"])
@pytest.mark.parametrize("key, index", CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_bad_config_fails_at_make(world, key, index, tiny_pipeline_path):
    value = BAD_CONFIG[key][index]
    kwargs = {"pipeline_path": str(tiny_pipeline_path), key: value}
    if key == "pipeline_path":
        kwargs[key] = value
    expect_error(CONFIG, key, lambda: gym.make(world, world_config=SMALL, **kwargs), match=key)


def test_the_issue_example_fails_before_any_sampling(tiny_pipeline_path):
    expect_error(
        CONFIG,
        "num_inference_steps",
        lambda: gym.make("occsim/OccSora-v0", num_inference_steps=0),
        match="num_inference_steps must lie in",
    )


LOADER = {
    "dtype int8": dict(dtype="int8"),
    "dtype unknown": dict(dtype="float99"),
    "scheduler not a scheduler": dict(scheduler="DiffusionPipeline"),
    "scheduler unknown": dict(scheduler="os"),
    "spacing unknown": dict(timestep_spacing="late"),
    "device unknown": dict(device="gpu:x"),
}


@pytest.mark.parametrize("kind", sorted(LOADER))
def test_bad_loader_arguments(kind, tiny_pipeline_path):
    call = lambda: load_world_model(tiny_pipeline_path, **LOADER[kind])  # noqa: E731
    expect_error("load_world_model arguments", kind, call, (ValueError,))


# ---------------------------------------------------------------- actions


@pytest.fixture(scope="module")
def env() -> ProceduralEnv:
    env = ProceduralEnv(world_config=SMALL, map_seed=4)
    env.reset(seed=0)
    return env


def fingerprint(env: ProceduralEnv) -> tuple:
    """What a failed call must not change: the ego, the frames, the random state."""
    frames = hashlib.sha1(np.ascontiguousarray(env._frames).tobytes()).hexdigest()
    return env.ego_state, frames, str(env.np_random.bit_generator.state), env._broken


BAD_ACTIONS = {
    "complex": np.zeros((4, 2), complex),
    "object array": np.array([[object(), 1]] * 4, dtype=object),
    "booleans": np.zeros((4, 2), bool),
    "strings": np.full((4, 2), "0.1"),
    "ragged lists": [[0.1, 0.2], [0.3]],
    "NaN": np.full((4, 2), np.nan),
    "inf": np.full((4, 2), np.inf),
    "wrong shape": np.zeros((3, 2)),
    "flat": np.zeros(8),
    "None": None,
    "a dict": {"x": 1},
    "bytes": b"\x00" * 64,
    "datetime64": np.zeros((4, 2), "datetime64[s]"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ACTIONS))
def test_bad_actions_change_nothing(env, kind):
    before = fingerprint(env)
    expect_error(ACTION, kind, lambda: env.step(BAD_ACTIONS[kind]))
    assert fingerprint(env) == before


@FUZZ
@given(
    dtype=st.sampled_from(["complex64", "complex128", "bool", "object", "U3", "S2"]),
    shape=st.sampled_from([(4, 2), (2, 4), (4, 2, 1), (1,)]),
)
def test_fuzzed_action_dtypes(env, dtype, shape):
    before = fingerprint(env)
    action = np.zeros(shape, dtype=dtype)
    expect_error(ACTION, f"fuzzed dtype {np.dtype(dtype).kind}", lambda: env.step(action))
    assert fingerprint(env) == before


@FUZZ
@given(
    position=st.tuples(st.integers(0, 3), st.integers(0, 1)),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
)
def test_fuzzed_non_finite_actions(env, position, value, dtype):
    before = fingerprint(env)
    action = np.zeros((4, 2), dtype)
    action[position] = value
    expect_error(ACTION, "fuzzed non-finite", lambda: env.step(action))
    assert fingerprint(env) == before


# ---------------------------------------------------------------- reset


BAD_RESETS = {
    "negative seed": dict(seed=-1),
    "float seed": dict(seed=1.5),
    "string seed": dict(seed="3"),
    "bool seed": dict(seed=True),
    "options a list": dict(options=[("maneuver", "left")]),
    "unknown option": dict(options={"weather": "rain"}),
}


@pytest.mark.parametrize("kind", sorted(BAD_RESETS))
def test_bad_reset_arguments_change_nothing(env, kind):
    before = fingerprint(env)
    expect_error(RESET, kind, lambda: env.reset(**BAD_RESETS[kind]))
    assert fingerprint(env) == before
    env.step(np.zeros((4, 2), np.float32))  # the episode goes on


def test_a_failed_reset_never_continues_the_old_episode():
    env = ProceduralEnv(world_config=SMALL, map_seed=4)
    env.reset(seed=0)
    env.step(np.zeros((4, 2), np.float32))
    expect_error(
        RESET, "backend refuses (maneuver)", lambda: env.reset(options={"maneuver": "fly"})
    )
    error = expect_error(
        RESET, "step after a failed reset", lambda: env.step(np.zeros((4, 2))), (ResetNeeded,)
    )
    assert "maneuver" in str(error) and isinstance(error, RuntimeError)
    expect_error(RESET, "ego_state after a failed reset", lambda: env.ego_state, (ResetNeeded,))
    env.reset(seed=1)
    env.step(np.zeros((4, 2), np.float32))


class BreakingWorld:
    """A world backend that resets fine and fails half-way through its first advance."""

    name, reset_options = "breaking world", ()

    def __init__(self) -> None:
        self.inner = ProceduralEnv(world_config=SMALL, map_seed=4)

    def reset(self, rng, options):
        observation, info = self.inner.reset(seed=int(rng.integers(2**31)))
        poses = info["frame_poses"]
        return observation["occupancy"], [EgoState(x, y, yaw, 5.0) for x, y, yaw in poses], 4

    def advance(self, start, waypoints):
        raise ValueError("the world broke half-way")


def test_a_failed_step_inside_the_world_needs_a_reset():
    env = OccEnv(BreakingWorld(), OccEnvConfig())
    env.reset(seed=0)
    expect_error(ACTION, "world fails mid-step", lambda: env.step(np.zeros((4, 2))))
    expect_error(
        ACTION, "step after a failed step", lambda: env.step(np.zeros((4, 2))), (ResetNeeded,)
    )
    env.reset(seed=1)  # a new episode is fine


def test_the_learned_env_refuses_steps_after_a_failed_reset(tiny_pipeline_path):
    env = gym.make(
        "occsim/OccSora-v0", pipeline_path=str(tiny_pipeline_path), world_config=SMALL
    ).unwrapped
    expect_error(RESET, "learned: bad start", lambda: env.reset(seed=0, options={"start": "dream"}))
    expect_error(
        RESET,
        "learned: step after failed reset",
        lambda: env.step(np.zeros((4, 2))),
        (ResetNeeded,),
    )
    expect_error(
        RESET,
        "learned: imagine after failed reset",
        lambda: env.imagine(np.zeros((2, 4, 2)), None),
        (ResetNeeded,),
    )
