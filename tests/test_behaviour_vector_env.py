"""The natively batched learned env against N single envs run separately (issue #22).

The reference is gymnasium's own ``SyncVectorEnv`` over single ``OccSoraEnv``s, each
behind gymnasium's ``TimeLimit``, in next-step autoreset mode: the documented semantics
the batched env claims (sub-env ``i`` seeded ``seed + i``, a finished sub-env returns its
reset observation with reward 0 on the next step). Nothing of the batched env's own
bookkeeping is reused to build the expectation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import tiny_world_model
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit

from occsim.envs import OccSoraEnv, OccSoraVectorEnv
from occsim.procedural import WorldConfig

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)
# Guided (two passes per sample) so that the batched cond/null halves are exercised too.
OPTIONS = dict(map_seed=4, num_inference_steps=1, guidance_scale=1.5, world_config=SMALL)
LIMIT = 2  # max_episode_steps


def straight(speed: float = 6.0) -> np.ndarray:
    """4 waypoints 0.5 s apart at ``speed`` straight ahead (an action of 1 is 20 m)."""
    return np.stack([speed * 0.5 * np.arange(1, 5) / 20.0, np.zeros(4)], 1).astype(np.float32)


# 2.5, 5, 7.5, 10 m to the left within 2 s: through the kerb into the roadside.
SIDEWAYS = np.stack([np.zeros(4), np.linspace(0.25, 1.0, 4)], 1).astype(np.float32)


@pytest.fixture(scope="module")
def pipe():
    pipe = tiny_world_model()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def assert_same(a, b, path: str = "") -> None:
    """Nested dicts of arrays equal (floats to 1e-9, occupancy up to rare arg-max ties)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, sorted(a), sorted(b))
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (path, a.shape, b.shape, a.dtype, b.dtype)
    if path.endswith("occupancy"):
        # Batched and single matrix products sum in different orders: a class may flip
        # only where two logits tie to float precision.
        assert np.mean(a != b) < 1e-4, path
    elif a.dtype.kind == "f":
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=path)
    else:
        np.testing.assert_array_equal(a, b, err_msg=path)


def test_vector_env_equals_single_envs_that_end_and_reset_at_different_steps(pipe):
    batched = OccSoraVectorEnv(2, pipeline=pipe, max_episode_steps=LIMIT, **OPTIONS)
    reference = SyncVectorEnv(
        [lambda: TimeLimit(OccSoraEnv(pipeline=pipe, **OPTIONS), LIMIT) for _ in range(2)],
        autoreset_mode=AutoresetMode.NEXT_STEP,
    )
    # Sub-env 1 drives off the road at once and terminates on step 1; sub-env 0 drives on
    # and is truncated on step 2 (LIMIT), the step on which sub-env 1 autoresets: the two
    # episodes end, and restart, at different steps.
    actions = [
        np.stack([straight(), SIDEWAYS]),
        np.stack([straight(), straight()]),
    ]
    obs_b, info_b = batched.reset(seed=0)
    obs_r, info_r = reference.reset(seed=0)
    assert_same(obs_b, obs_r, "reset")
    assert_same(info_b, info_r, "reset info")
    trace = []
    for k, action in enumerate(actions):
        got = batched.step(action)
        want = reference.step(action)
        for name, a, b in zip(("obs", "reward", "terminated", "truncated", "info"), got, want):
            assert_same(a, b, f"step {k + 1} {name}")
        trace.append(want[1:4])
    rewards, terminated, truncated = map(np.array, zip(*trace))
    # The scenario the test is about (read off the reference, i.e. the single envs):
    assert terminated.tolist() == [[False, True], [False, False]]
    assert truncated.tolist() == [[False, False], [True, False]]
    # A terminated step pays the collision or off-road weight (-10 or -5) plus the progress
    # of a sideways step (0 along the starting heading) and the comfort term.
    assert rewards[0, 1] <= -5.0 + 1e-6
    # Autoreset steps give reward 0; moving steps earn progress (6 m/s for 2 s = 12 m).
    assert rewards[1, 1] == 0.0
    assert rewards[0, 0] == pytest.approx(1.2, abs=0.2)


def test_gym_make_vec_builds_the_batched_env_with_its_time_limit(tiny_pipeline_path):
    envs = gym.make_vec(
        "occsim/OccSora-v0",
        num_envs=2,
        pipeline_path=str(tiny_pipeline_path),
        max_episode_steps=LIMIT,
        **OPTIONS,
    )
    assert isinstance(envs, OccSoraVectorEnv) and envs.max_episode_steps == LIMIT


def test_the_batched_env_takes_seed_lists_and_options_and_renders_every_sub_env(pipe):
    with pytest.raises(ValueError, match=r"^num_envs must be >= 1, got 0$"):
        OccSoraVectorEnv(0, pipeline=pipe, **OPTIONS)
    assert OccSoraVectorEnv(1, pipeline=pipe, **OPTIONS).num_envs == 1
    batched = OccSoraVectorEnv(2, pipeline=pipe, render_mode="rgb_array", **OPTIONS)
    single = OccSoraEnv(pipeline=pipe, render_mode="rgb_array", **OPTIONS)
    assert batched.single_observation_space == single.observation_space
    assert batched.single_action_space == single.action_space
    assert batched.observation_space == gym.vector.utils.batch_space(single.observation_space, 2)
    # A list gives each sub-env its own seed, in order (not seed + i).
    observations, _ = batched.reset(seed=[7, 3])
    for i, seed in enumerate([7, 3]):
        alone, _ = single.reset(seed=seed)
        assert_same({k: v[i] for k, v in observations.items()}, alone, f"sub-env {i}")
    frames = batched.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    np.testing.assert_array_equal(frames[1], single.render())  # the last reset: seed 3
    with pytest.raises(ValueError, match=r"^got 1 seeds for 2 envs$"):
        batched.reset(seed=[7])
    with pytest.raises(ValueError, match=r"unknown reset options \['bogus'\]"):
        batched.reset(seed=0, options={"bogus": 1})  # the options reach every sub-env
    with pytest.raises(ValueError, match=r"^actions must have shape \(2, 4, 2\), got \(4, 2\)$"):
        batched.step(straight())
    # What a step returns is the caller's: the next step does not write into it.
    batched.reset(seed=0)
    first = batched.step(np.stack([straight(), straight()]))[0]
    kept = {k: v.copy() for k, v in first.items()}
    batched.step(np.stack([straight(12.0), straight(12.0)]))
    assert_same(first, kept, "the first step's observation")
    assert OccSoraVectorEnv(2, pipeline=pipe, **OPTIONS).render() is None
