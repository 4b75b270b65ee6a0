import os

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import occsim  # noqa: F401  (registers the environments)
from occsim.envs import OccEnvConfig, ProceduralEnv
from occsim.procedural import WorldConfig

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)


def make(**kwargs) -> ProceduralEnv:
    kwargs.setdefault("map_seed", 4)
    return ProceduralEnv(world_config=SMALL, **kwargs)


def straight(speed: float = 8.0, k: int = 4) -> np.ndarray:
    """Waypoints at constant speed straight ahead, as a normalised action."""
    x = speed * 0.5 * np.arange(1, k + 1) / 20.0
    return np.stack([x, np.zeros(k)], axis=1).astype(np.float32)


def test_registered_and_check_env_passes():
    assert "occsim/Procedural-v0" in gym.registry
    env = gym.make(
        "occsim/Procedural-v0",
        render_mode="rgb_array",
        map_seed=4,
        world_config=SMALL,
        observation_keys=("occupancy", "ego", "bev"),
    )
    assert env.spec.max_episode_steps == 100
    check_env(env.unwrapped, skip_render_check=False)


def test_same_seed_and_actions_are_bit_identical():
    runs = []
    for _ in range(2):
        env = make(observation_keys=("occupancy", "ego", "bev"))
        obs, _ = env.reset(seed=7)
        trace = [obs]
        for _ in range(3):
            obs, reward, terminated, _, info = env.step(straight())
            trace.append((obs, reward, terminated, info["rewards"], info["ego_pose"]))
        runs.append(trace)
    first, second = runs
    assert all(np.array_equal(first[0][k], second[0][k]) for k in first[0])
    for a, b in zip(first[1:], second[1:]):
        assert all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
        assert a[1] == b[1] and a[2] == b[2] and a[3] == b[3]
        assert np.array_equal(a[4], b[4])


def test_driving_ahead_makes_progress_and_the_world_moves():
    env = make()
    obs, info = env.reset(seed=1)
    start = info["ego_pose"]
    obs2, _, _, _, info = env.step(straight(8.0))
    assert info["rewards"]["progress"] == pytest.approx(0.1 * 16.0, rel=1e-6)
    assert np.linalg.norm(info["ego_pose"][:2] - start[:2]) == pytest.approx(16.0, rel=1e-6)
    assert obs2["ego"][0] == pytest.approx(8.0, rel=1e-5)
    assert obs2["occupancy"].shape == (4, 200, 200, 16)
    assert not np.array_equal(obs2["occupancy"][-1], obs["occupancy"][-1])


def test_leaving_the_road_terminates():
    env = make()
    env.reset(seed=2)
    # 10 m per waypoint sideways: through the kerb, sidewalk and into whatever stands there.
    sideways = np.stack([np.zeros(4), np.linspace(0.25, 1.0, 4)], axis=1).astype(np.float32)
    terminated = False
    for _ in range(3):
        _, _, terminated, _, info = env.step(sideways)
        if terminated:
            break
    assert terminated and (info["collision"] or info["offroad"])
    assert info["rewards"]["collision"] < 0 or info["rewards"]["offroad"] < 0


def test_bad_input_is_rejected_and_the_env_stays_usable():
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.full((4, 2), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        env.step(np.zeros((3, 2), dtype=np.float32))
    _, _, terminated, _, _ = env.step(straight())
    assert not terminated
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(seed=0, options={"weather": "rain"})
    with pytest.raises(TypeError, match="unknown environment options"):
        make(frames=3)
    with pytest.raises(ValueError, match="observation_keys"):
        OccEnvConfig(observation_keys=("lidar",))
