"""The contract every occsim env shares (``envs/base.py``): spaces, argument errors, the
clipped action, the ego vector, info after reset, failed calls and rendering.

Expected values come from the contract, not from running the code:

- the action is ``Box(-1, 1, (K, 2), float32)`` of waypoints scaled by 20 m (x) and 10 m (y)
  in the ego frame at the start of the step; frames are 0.5 s apart.
- the procedural world moves the ego onto each waypoint exactly, heading along the motion
  and at speed = segment length / 0.5 s, so a step's speeds, headings and accelerations
  follow from the action by hand (``TURN`` below).
- the ego vector is (speed, yaw rate, acceleration): yaw rate = wrapped yaw change over the
  last frame / 0.5 s, acceleration = speed change over the last frame / 0.5 s (0 right
  after a reset), clipped to ``EGO_LOW``..``EGO_HIGH``.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest
from gymnasium import spaces

import occsim  # noqa: F401  (registers the environments)
from occsim.envs import OccEnvConfig, ProceduralEnv
from occsim.envs.base import EGO_HIGH, EGO_LOW, OccEnv, ResetNeeded
from occsim.grid import EgoState
from occsim.labels import DRIVEABLE_SURFACE, FREE_ID
from occsim.procedural import WorldConfig
from occsim.render import render_bev, top_visible

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)
DT = 0.5  # seconds between frames

# Waypoints (2.5, 0), (5, 0.625), (10, 2.5), (15, 6.25) m: every value is exact in float32.
# Segments (2.5, 0), (2.5, 0.625), (5, 1.875), (5, 3.75): each turns further left and the
# speed changes unevenly, so the last frame's yaw rate and acceleration differ from any
# other frame's.
TURN = np.array([[0.125, 0.0], [0.25, 0.0625], [0.5, 0.25], [0.75, 0.625]], dtype=np.float32)


def exactly(message: str) -> str:
    """A ``pytest.raises`` pattern matching ``message`` and nothing more or less."""
    return f"^{re.escape(message)}$"


def wrap(angle: float) -> float:
    """``angle`` in [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


@pytest.fixture(scope="module")
def env() -> ProceduralEnv:
    """One procedural env with every observation key, reset by each test that uses it."""
    return ProceduralEnv(
        world_config=SMALL,
        map_seed=4,
        render_mode="rgb_array",
        observation_keys=("occupancy", "ego", "bev"),
    )


@pytest.fixture(scope="module")
def single_frame_env() -> ProceduralEnv:
    """K = 1: after a reset the episode holds one ego state, after a step two."""
    return ProceduralEnv(world_config=SMALL, map_seed=4, frames_per_step=1)


# ---------------------------------------------------------------- spaces and arguments


def test_spaces_are_the_documented_boxes(env):
    assert env.action_space == spaces.Box(-1.0, 1.0, (4, 2), dtype=np.float32)
    assert env.observation_space == spaces.Dict(
        {
            "occupancy": spaces.Box(0, 17, (4, 200, 200, 16), dtype=np.uint8),
            "ego": spaces.Box(EGO_LOW, EGO_HIGH, (3,), dtype=np.float32),
            "bev": spaces.Box(0, 17, (200, 200), dtype=np.uint8),
        }
    )


def test_an_unknown_render_mode_is_refused_naming_the_valid_ones():
    with pytest.raises(
        ValueError, match=exactly("render_mode 'rgb' not in ['human', 'rgb_array']")
    ):
        ProceduralEnv(world_config=SMALL, map_seed=4, render_mode="rgb")


def test_before_the_first_reset_step_and_ego_state_ask_for_a_reset():
    fresh = ProceduralEnv(world_config=SMALL, map_seed=4)
    with pytest.raises(RuntimeError, match=exactly("call reset() before step()")) as error:
        fresh.step(np.zeros((4, 2), np.float32))
    assert not isinstance(error.value, ResetNeeded)  # nothing failed: there is no episode yet
    with pytest.raises(
        RuntimeError, match=exactly("call reset() first: the episode has no ego state yet")
    ):
        _ = fresh.ego_state


def test_bad_seeds_and_options_are_refused_with_their_name(env):
    with pytest.raises(ValueError, match=exactly("seed must lie in [0, inf), got -1")):
        env.reset(seed=-1)
    with pytest.raises(TypeError, match=exactly("seed must be an integer, got 1.5 (float)")):
        env.reset(seed=1.5)
    with pytest.raises(TypeError, match=exactly("options must be a dict, got list")):
        env.reset(seed=0, options=[("maneuver", "left")])
    with pytest.raises(
        ValueError, match=exactly("unknown reset options ['weather']; valid: ['maneuver']")
    ):
        env.reset(seed=0, options={"weather": "rain"})


def test_bad_actions_are_refused_naming_the_action(env):
    env.reset(seed=0)
    with pytest.raises(
        TypeError,
        match=exactly("action must hold real numbers (int or float), got dtype complex128"),
    ):
        env.step(np.zeros((4, 2), complex))
    nan = np.zeros((4, 2), np.float32)
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=exactly("action must be finite, got NaN or inf")):
        env.step(nan)
    with pytest.raises(
        ValueError,
        match=exactly("action must have shape (4, 2) (K waypoints x (x, y)), got (3, 2)"),
    ):
        env.step(np.zeros((3, 2), np.float32))


def test_an_action_beyond_the_box_steps_like_the_clipped_action(env):
    # Past +1 in x (1.5 and 3 mean 30 m and 60 m, clipped to 20 m) and past -1 in y (-1.5
    # and -3: 15 m and 30 m to the right, clipped to 10 m): both signs, inside and beyond 2.
    beyond = np.array([[0.5, -0.5], [1.0, -1.0], [1.5, -1.5], [3.0, -3.0]], np.float32)
    clipped = np.array([[0.5, -0.5], [1.0, -1.0], [1.0, -1.0], [1.0, -1.0]], np.float32)
    results = []
    for action in (beyond, clipped):
        start = env.reset(seed=3)[1]["ego_pose"]
        obs, reward, terminated, _, info = env.step(action)
        results.append((obs, reward, terminated, info))
    (obs_a, reward_a, term_a, info_a), (obs_b, reward_b, term_b, info_b) = results
    np.testing.assert_array_equal(info_a["frame_poses"], info_b["frame_poses"])
    np.testing.assert_array_equal(obs_a["occupancy"], obs_b["occupancy"])
    np.testing.assert_array_equal(obs_a["ego"], obs_b["ego"])
    assert (reward_a, term_a, info_a["rewards"]) == (reward_b, term_b, info_b["rewards"])
    # Both end at the clipped last waypoint: 20 m ahead, 10 m to the right of the start.
    x, y, yaw = start
    forward, left = np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])
    expected = np.array([x, y]) + 20.0 * forward - 10.0 * left
    np.testing.assert_allclose(info_a["ego_pose"][:2], expected, atol=1e-6)


# ---------------------------------------------------------------- reset, info, ego vector


def test_reset_reports_a_clean_start_of_k_frames(env):
    # Seed 2 opens on a bend: the ego's heading changes between the opening frames.
    obs, info = env.reset(seed=2)
    assert info["rewards"] == {}
    assert info["collision"] is False and info["offroad"] is False
    assert info["map_seed"] == 4
    poses = info["frame_poses"]
    assert poses.shape == (4, 3)
    np.testing.assert_array_equal(info["ego_pose"], poses[-1])
    yaw_rate = wrap(poses[-1, 2] - poses[-2, 2]) / DT
    assert abs(yaw_rate) > 0.01  # the test needs a turning opening to mean anything
    assert obs["ego"][1] == pytest.approx(yaw_rate, rel=1e-5)
    assert obs["ego"][2] == 0.0  # no step yet: no acceleration
    assert obs["ego"].dtype == np.float32
    assert obs["occupancy"].dtype == np.uint8 and obs["occupancy"].shape == (4, 200, 200, 16)


def test_ego_vector_after_a_turning_step_is_that_of_the_last_frame(env):
    env.reset(seed=0)
    obs, _, _, _, info = env.step(TURN)
    # By hand from TURN: the last two segments (5, 1.875) and (5, 3.75) m.
    heading_3, heading_4 = math.atan2(1.875, 5.0), math.atan2(3.75, 5.0)
    speed_3, speed_4 = math.hypot(5.0, 1.875) / DT, math.hypot(5.0, 3.75) / DT  # 12.5 m/s
    expected = [speed_4, (heading_4 - heading_3) / DT, (speed_4 - speed_3) / DT]
    np.testing.assert_allclose(obs["ego"], expected, rtol=1e-5)
    # The same from the poses the env reports.
    poses = info["frame_poses"]
    assert obs["ego"][1] == pytest.approx(wrap(poses[-1, 2] - poses[-2, 2]) / DT, rel=1e-5)
    assert obs["ego"][0] == pytest.approx(np.linalg.norm(poses[-1, :2] - poses[-2, :2]) / DT)
    assert info["map_seed"] == 4


def test_one_frame_steps_measure_the_ego_vector_across_the_step(single_frame_env):
    env = single_frame_env
    obs, info = env.reset(seed=0)
    assert info["frame_poses"].shape == (1, 3)
    # One ego state: no yaw rate can be measured yet, and no acceleration.
    assert obs["ego"][1:].tolist() == [0.0, 0.0]
    start_speed, start_yaw = float(obs["ego"][0]), info["ego_pose"][2]
    # One waypoint 8 m ahead, 3 m left: the heading turns by atan2(3, 8) in 0.5 s.
    obs, _, _, _, info = env.step(np.array([[0.4, 0.3]], np.float32))
    speed = math.hypot(8.0, 3.0) / DT
    expected = [speed, math.atan2(3.0, 8.0) / DT, (speed - start_speed) / DT]
    np.testing.assert_allclose(obs["ego"], expected, rtol=1e-5)
    assert obs["ego"][1] == pytest.approx(wrap(info["ego_pose"][2] - start_yaw) / DT, rel=1e-5)


class ScriptedWorld:
    """A backend that replays hand-written ego states over an empty road (no collision, no
    off-road), so every expected ego vector follows from these states by hand."""

    name, reset_options = "scripted world", ()

    def __init__(self, opening: list[EgoState], steps: list[list[EgoState]]) -> None:
        self.opening, self.steps, self.starts = opening, list(steps), []

    @staticmethod
    def frames(count: int) -> np.ndarray:
        frames = np.full((count, 200, 200, 16), FREE_ID, dtype=np.uint8)
        frames[..., 2] = DRIVEABLE_SURFACE
        return frames

    def reset(self, rng, options):
        return self.frames(len(self.opening)), list(self.opening), None

    def advance(self, start, waypoints):
        self.starts.append(start)
        states = self.steps.pop(0)
        return self.frames(len(states)), states


def test_ego_vector_wraps_the_yaw_change_and_is_clipped_to_its_bounds():
    opening = [EgoState(0.0, 0.0, 3.1, 10.0), EgoState(5.0, 0.0, -3.1, 300.0)]
    steps = [
        [EgoState(10.0, 0.0, -3.1, 300.0), EgoState(10.0, 0.0, -3.1, 0.0)],
        [EgoState(10.0, 0.0, -3.1, 0.0), EgoState(20.0, 0.0, -3.1, 300.0)],
    ]
    world = ScriptedWorld(opening, steps)
    env = OccEnv(world, OccEnvConfig(frames_per_step=2))
    obs, _ = env.reset(seed=0)
    # 3.1 -> -3.1 rad is a turn of 2 pi - 6.2 rad to the left, not 6.2 rad to the right;
    # 300 m/s is beyond the 100 m/s bound.
    np.testing.assert_allclose(obs["ego"], [100.0, (2 * math.pi - 6.2) / DT, 0.0], rtol=1e-5)
    # 300 -> 0 m/s in 0.5 s is -600 m/s^2, clipped to -500.
    obs, *_ = env.step(np.zeros((2, 2), np.float32))
    assert obs["ego"].tolist() == [0.0, 0.0, -500.0]
    # 0 -> 300 m/s: +600 m/s^2 clipped to +500, speed to 100.
    obs, *_ = env.step(np.zeros((2, 2), np.float32))
    assert obs["ego"].tolist() == [100.0, 0.0, 500.0]
    # Each step starts from the ego state at the last frame.
    assert world.starts == [opening[-1], steps[0][-1]]


# ---------------------------------------------------------------- failed calls


def scripted_env(steps: int = 3) -> tuple[OccEnv, ScriptedWorld]:
    """An env over a :class:`ScriptedWorld` the test holds (and may break), 2 frames a step."""
    still = [EgoState(0.0, 0.0, 0.0, 5.0)] * 2
    world = ScriptedWorld(still, [still] * steps)
    return OccEnv(world, OccEnvConfig(frames_per_step=2)), world


STAY = np.zeros((2, 2), np.float32)


def test_a_failed_reset_needs_a_new_reset_and_says_what_failed(monkeypatch):
    env, world = scripted_env()
    env.reset(seed=0)

    def no_scene(rng, options):
        raise ValueError("no scene here")

    monkeypatch.setattr(world, "reset", no_scene)
    with pytest.raises(ValueError, match=exactly("no scene here")):
        env.reset(seed=1)
    message = (
        "the last reset() failed (ValueError: no scene here); call reset() to start a new episode"
    )
    with pytest.raises(ResetNeeded, match=exactly(message)):
        env.step(STAY)
    with pytest.raises(ResetNeeded, match=exactly(message)):
        _ = env.ego_state
    monkeypatch.undo()
    env.reset(seed=1)
    env.step(STAY)


def test_a_failed_step_needs_a_new_reset_and_says_what_failed(monkeypatch):
    env, world = scripted_env()
    env.reset(seed=0)

    def broken(start, waypoints):
        raise ValueError("the world broke half-way")

    monkeypatch.setattr(world, "advance", broken)
    with pytest.raises(ValueError, match=exactly("the world broke half-way")):
        env.step(STAY)
    monkeypatch.undo()
    message = (
        "the last step() failed (ValueError: the world broke half-way); "
        "call reset() to start a new episode"
    )
    with pytest.raises(ResetNeeded, match=exactly(message)):
        env.step(STAY)
    env.reset(seed=0)
    env.step(STAY)


class Interrupted(BaseException):
    """Like ``KeyboardInterrupt``: not an ``Exception``, so nothing records it as a failure."""


def test_an_interrupted_reset_leaves_no_episode_to_continue(monkeypatch):
    env, world = scripted_env()
    env.reset(seed=0)

    def interrupted(rng, options):
        raise Interrupted

    monkeypatch.setattr(world, "reset", interrupted)
    with pytest.raises(Interrupted):
        env.reset(seed=1)
    monkeypatch.undo()
    message = "reset() is running; call reset() to start a new episode"
    with pytest.raises(ResetNeeded, match=exactly(message)):
        env.step(STAY)
    env.reset(seed=0)
    env.step(STAY)


# ---------------------------------------------------------------- views and rendering


def test_render_and_bev_show_the_last_frame_of_the_step(env, single_frame_env):
    fresh = ProceduralEnv(world_config=SMALL, map_seed=4, render_mode="rgb_array")
    assert fresh.render() is None  # nothing to show before the first reset
    single_frame_env.reset(seed=0)
    assert single_frame_env.render() is None  # no render_mode: render() returns nothing
    env.reset(seed=0)
    obs, *_ = env.step(TURN)
    frames = obs["occupancy"]
    assert not np.array_equal(frames[-1], frames[-2])  # the world moved within the step
    assert not np.array_equal(frames[-1], frames[1])
    image = env.render()
    np.testing.assert_array_equal(image, render_bev(frames[-1], trajectory=None))
    np.testing.assert_array_equal(obs["bev"], top_visible(frames[-1])[0])


@pytest.fixture
def pygame_display(monkeypatch):
    """pygame on SDL's dummy video driver, with no display left open afterwards."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    import pygame

    pygame.display.quit()
    yield pygame
    pygame.display.quit()


def test_human_mode_draws_each_step_in_a_window_that_close_drops(pygame_display):
    pygame = pygame_display
    env = ProceduralEnv(world_config=SMALL, map_seed=4, render_mode="human")
    obs, _ = env.reset(seed=0)  # reset shows its last frame, as gymnasium's envs do
    shown = pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1)
    np.testing.assert_array_equal(shown, render_bev(obs["occupancy"][-1], trajectory=None))
    for _ in range(2):  # the second time after close(): a new window opens
        obs, *_ = env.step(TURN)  # the step draws, nobody calls render()
        window = pygame.display.get_surface()
        assert window is not None
        image = render_bev(obs["occupancy"][-1], trajectory=None)
        assert window.get_size() == (image.shape[1], image.shape[0])  # (width, height)
        assert pygame.display.get_caption()[0] == "occsim: procedural world"
        # surfarray indexes pixels (x, y): transposed, it is the image row by row.
        shown = pygame.surfarray.array3d(window).swapaxes(0, 1)
        np.testing.assert_array_equal(shown, image)
        assert env.render() is None  # human mode shows, returns nothing
        env.close()
        assert pygame.display.get_surface() is None


def test_human_mode_without_pygame_says_how_to_install_it(monkeypatch):
    env = OccEnv(
        ScriptedWorld([EgoState(0.0, 0.0, 0.0, 5.0)] * 2, []),
        OccEnvConfig(frames_per_step=2),
        render_mode="human",
    )
    monkeypatch.setitem(sys.modules, "pygame", None)  # makes `import pygame` fail
    with pytest.raises(
        ImportError, match=exactly("render_mode='human' needs pygame: pip install pygame")
    ):
        env.reset(seed=0)
