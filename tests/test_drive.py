"""Driving sessions: keyboard events, headless runs, exact replay, the open3d view, agents."""

import os

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
pygame = pytest.importorskip("pygame")

from occsim.agents import (  # noqa: E402
    Agent,
    ConstantSpeedAgent,
    KeyboardAgent,
    ManeuverAgent,
    PlannerAgent,
    RandomAgent,
)
from occsim.agents.planner import bev_maps, pose_costs  # noqa: E402
from occsim.cli import main  # noqa: E402
from occsim.drive import EpisodeRecord, make_env, replay, run_headless, run_keyboard  # noqa: E402
from occsim.envs.rewards import offroad  # noqa: E402
from occsim.labels import CAR, DRIVEABLE_SURFACE, FREE_ID, TERRAIN  # noqa: E402
from occsim.procedural import WorldConfig  # noqa: E402

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)


def key(kind, code):
    return pygame.event.Event(kind, key=code)


def test_keyboard_events_map_to_commands():
    agent = KeyboardAgent(make_env("procedural", world_config=SMALL))
    state = agent.process_event(key(pygame.KEYDOWN, pygame.K_UP))
    assert state.throttle > 0 and state.steering == 0
    state = agent.process_event(key(pygame.KEYDOWN, pygame.K_a))
    assert state.steering > 0  # left
    waypoints = agent.act({"ego": np.array([5.0, 0.0, 0.0])})
    assert waypoints.shape == (4, 2) and waypoints[-1, 1] > 0 and waypoints[-1, 0] > 0
    agent.process_event(key(pygame.KEYUP, pygame.K_a))
    assert agent.state.steering == 0
    state = agent.process_event(key(pygame.KEYDOWN, pygame.K_SPACE))
    assert state.brake and state.throttle == -1.0
    assert agent.process_event(key(pygame.KEYDOWN, pygame.K_p)).pause
    assert not agent.process_event(key(pygame.KEYDOWN, pygame.K_p)).pause
    assert agent.process_event(key(pygame.KEYDOWN, pygame.K_r)).reset
    assert agent.process_event(key(pygame.KEYDOWN, pygame.K_ESCAPE)).quit
    assert isinstance(agent, Agent)


def test_keyboard_window_records_and_replays_exactly(tmp_path):
    kwargs = dict(map_seed=4, world_config=SMALL)
    env = make_env("procedural", **kwargs)
    script = iter([[key(pygame.KEYDOWN, pygame.K_UP)], [], [key(pygame.KEYDOWN, pygame.K_a)]])
    record = run_keyboard(env, seed=3, max_frames=3, events=lambda: next(script), fast=True)
    assert len(record.actions) == 3 and len(record.digests) == 3
    record.env_kwargs = {"map_seed": 4, "world_config": None}
    path = tmp_path / "episode.json"
    record.save(path)
    assert replay(path, world_config=SMALL)["identical"]
    record.digests[1] = "0" * 16
    record.save(path)
    with pytest.raises(AssertionError, match="diverged at step 1"):
        replay(path, world_config=SMALL)


def test_keyboard_agent_stands_still_until_asked_and_holds_its_speed():
    agent = KeyboardAgent(make_env("procedural", world_config=SMALL))
    moving = {"ego": np.array([8.0, 0.0, 0.0])}  # the env's opening frames drive
    np.testing.assert_array_equal(agent.act(moving), 0.0)
    agent.process_event(key(pygame.KEYDOWN, pygame.K_UP))
    first = agent.act(moving)
    agent.process_event(key(pygame.KEYUP, pygame.K_UP))
    held = agent.act(moving)
    assert 0 < first[-1, 0] < held[-1, 0]  # accelerated, then kept the speed
    np.testing.assert_allclose(np.diff(held[:, 0]), held[0, 0], rtol=1e-6)
    agent.state.pause = True
    agent.reset()
    assert agent.speed == 0 and not agent.state.pause  # a reset resumes, standing still


def test_fast_window_says_what_ended_the_episode_and_r_resumes(monkeypatch):
    import occsim.drive as drive

    env = make_env("procedural", map_seed=4, world_config=SMALL)
    calls = {"steps": 0}
    step = env.step

    def crash_at_two(action):
        observation, reward, terminated, truncated, info = step(action)
        calls["steps"] += 1
        if calls["steps"] == 2:
            return observation, reward, True, truncated, {**info, "offroad": True}
        return observation, reward, terminated, truncated, info

    env.step = crash_at_two
    banners = []
    view = drive.driving_view
    monkeypatch.setattr(
        drive, "driving_view", lambda *a, **k: banners.append(k.get("banner")) or view(*a, **k)
    )
    script = iter([[], [], [], [key(pygame.KEYDOWN, pygame.K_r)], [], []])
    record = run_keyboard(env, seed=3, max_frames=6, events=lambda: next(script), fast=True)
    crashed = "off road: press R"
    assert banners == [None, crashed, crashed, None, None, None]  # waits for R, then drives
    assert record.seed == 4 and len(record.actions) == 2  # the new episode drives on


def test_real_time_window_runs_on_the_wall_clock(tmp_path):
    env = make_env("procedural", map_seed=4, world_config=SMALL)
    record = run_keyboard(env, seed=3, max_frames=30, screenshot=tmp_path / "window.png")
    assert (tmp_path / "window.png").stat().st_size > 10_000
    # The first step is generated while the start plays; no key: the car stands still.
    assert len(record.actions) >= 1
    np.testing.assert_array_equal(record.actions, 0.0)


def test_headless_run_writes_video_frames_and_record(tmp_path):
    env = make_env("procedural", map_seed=4, world_config=SMALL)
    summary = run_headless(env, ConstantSpeedAgent(env, 6.0), 3, 0, tmp_path, {"map_seed": 4})
    assert (tmp_path / "drive.gif").stat().st_size > 10_000
    assert len(list(tmp_path.glob("frame_*.png"))) == 3
    record = EpisodeRecord.load(tmp_path / "episode.json")
    assert record.seed == 0 and len(record.actions) == summary["steps"] == 3
    with pytest.raises(ValueError, match="not an occsim episode record"):
        (tmp_path / "bad.json").write_text("[1, 2]")
        EpisodeRecord.load(tmp_path / "bad.json")


def test_cli_drive_headless_on_the_procedural_world(tmp_path, capsys):
    main(
        [
            "drive",
            "--world",
            "procedural",
            "--headless",
            "--steps",
            "2",
            "--agent",
            "maneuver:left",
            "--out",
            str(tmp_path),
        ]
    )
    assert "drove 2 steps" in capsys.readouterr().out
    main(["replay", str(tmp_path / "episode.json")])
    assert "identical" in capsys.readouterr().out


def test_planner_cost_sees_obstacles_and_road():
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[:, :, 2] = TERRAIN
    frame[:, 90:110, 2] = DRIVEABLE_SURFACE  # an 8 m road along x
    frame[130:135, 95:105, 3:6] = CAR  # a car 12-14 m ahead
    obstacle, driveable = bev_maps(frame)
    poses = np.array([[0.0, 0, 0], [8.0, 0, 0], [13.0, 0, 0], [0.0, 8.0, 0]])
    hit, off = pose_costs(poses, obstacle, driveable)
    assert hit.tolist() == [False, False, True, False]
    assert off.tolist() == [False, False, False, True]
    # The planner's off-road test agrees with the env's on the ego box.
    assert not offroad(frame)
    planner = PlannerAgent(make_env("procedural", world_config=SMALL), seed=0)
    waypoints = planner.act({"occupancy": frame[None], "ego": np.array([6.0, 0, 0])})
    assert waypoints.shape == (4, 2)
    _, off = pose_costs(np.c_[planner.last_plan, np.zeros(4)], obstacle, driveable)
    hit, _ = pose_costs(np.c_[planner.last_plan, np.zeros(4)], obstacle, driveable)
    assert not off.any() and not hit.any()


def test_scripted_agents():
    observation = {"ego": np.array([6.0, 0.0, 0.0])}
    env = make_env("procedural", map_seed=4, world_config=SMALL)
    # 8 m/s for 0.5 s frames is 4, 8, 12, 16 m; an action of 1 is 20 m.
    np.testing.assert_allclose(
        ConstantSpeedAgent(env, 8.0).act(observation)[:, 0], [0.2, 0.4, 0.6, 0.8]
    )
    left = ManeuverAgent(env, "left").act(observation)
    right = ManeuverAgent(env, "right").act(observation)
    assert left[-1, 1] > 0 > right[-1, 1]
    stop = ManeuverAgent(env, "stop").act(observation)
    assert stop[-1, 0] < ConstantSpeedAgent(env, 6.0).act(observation)[-1, 0]
    with pytest.raises(ValueError, match="maneuver"):
        ManeuverAgent(env, "backflip")
    a, b = RandomAgent(env.action_space, seed=1), RandomAgent(env.action_space, seed=1)
    np.testing.assert_array_equal(a.act({}), b.act({}))


def test_open3d_view_renders_voxels_offscreen():
    try:
        from occsim.render.voxels import render_voxels
    except ImportError as error:
        pytest.skip(f"open3d unavailable: {error}")
    frame = np.full((200, 200, 16), FREE_ID, dtype=np.uint8)
    frame[:, :, 2] = DRIVEABLE_SURFACE
    frame[120:130, 90:100, 3:7] = CAR
    try:
        image = render_voxels(frame, width=160, height=90)
    except RuntimeError as error:
        pytest.skip(f"no EGL/display for open3d: {error}")
    assert image.shape == (90, 160, 3)
    # Road, car and background make at least three distinct colours.
    assert len(np.unique(image.reshape(-1, 3), axis=0)) >= 3
