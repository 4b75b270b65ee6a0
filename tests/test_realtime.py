"""Real-time driving on a fake clock with synthetic keys: frames at their time, the next
step asked for ahead, standing still without keys, pause, and a crash that R resumes."""

import math
import os

import gymnasium as gym
import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
pygame = pytest.importorskip("pygame")

from occsim.agents import KeyboardAgent  # noqa: E402
from occsim.drive import make_env  # noqa: E402
from occsim.procedural import WorldConfig  # noqa: E402
from occsim.realtime import RealtimeDriver, Timeline  # noqa: E402
from occsim.render.motion import interpolate_pose, view_from  # noqa: E402

SMALL = WorldConfig(size=192.0, grid_nodes=3, vehicles=12, pedestrians=10)
FPS, LATENCY, PERIOD, K = 20, 0.3, 0.5, 4


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class FakeJob:
    """Done ``latency`` seconds of fake time after it was submitted."""

    def __init__(self, value, ready: float, clock: FakeClock) -> None:
        self.value, self.ready, self.clock = value, ready, clock

    def done(self) -> bool:
        return self.clock.t >= self.ready - 1e-9

    def result(self):
        return self.value


class FakeWorker:
    def __init__(self, clock: FakeClock, latency: float) -> None:
        self.clock, self.latency, self.jobs = clock, latency, 0

    def submit(self, fn, *args):
        self.jobs += 1
        return FakeJob(fn(*args), self.clock.t + self.latency, self.clock)


class Keys:
    """Key events due at given seconds after the start, each delivered once."""

    def __init__(self, clock: FakeClock, script: list[tuple[float, int, int]]) -> None:
        self.clock, self.start, self.script = clock, clock.t, sorted(script)

    def __call__(self) -> list:
        due = [s for s in self.script if s[0] <= self.clock.t - self.start + 1e-9]
        self.script = self.script[len(due) :]
        return [pygame.event.Event(kind, key=key) for _, kind, key in due]


class Crashing(gym.Wrapper):
    """Ends the episode with a collision at step ``at``."""

    def __init__(self, env: gym.Env, at: int) -> None:
        super().__init__(env)
        self.at, self.steps = at, 0

    def reset(self, **kwargs):
        self.steps = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at:
            terminated, info = True, {**info, "collision": True}
        return observation, reward, terminated, truncated, info


def driver(script=(), env=None, latency=LATENCY) -> tuple[RealtimeDriver, FakeClock]:
    clock = FakeClock()
    env = env or make_env("procedural", map_seed=4, world_config=SMALL)
    agent = KeyboardAgent(env)
    worker = FakeWorker(clock, latency)
    keys = Keys(clock, list(script))
    return RealtimeDriver(
        env, agent, seed=3, events=keys, clock=clock, worker=worker, fps=FPS
    ), clock


def press(at: float, key: int) -> tuple[float, int, int]:
    return (at, pygame.KEYDOWN, key)


def test_frames_show_at_their_time_and_the_next_step_is_asked_for_ahead():
    drive, _ = driver()
    drive.run(max_ticks=int(7 * FPS))
    shown = list(drive.shown)
    start = next(s for s in shown if s.banner is None)
    played = [s for s in shown if s.time >= start.time]
    # The world keeps wall-clock time (no stall: it takes 0.3 s for 2 s of frames) ...
    for s in played:
        assert s.play == pytest.approx(s.time - start.time, abs=1e-6)
    # ... and each frame is on screen from its own time on: the reset's last frame at 0,
    # step n's frame i at (n - 1) * 2 s + (i + 1) * 0.5 s.
    for s in played:
        position = 0 if s.step == 0 else (s.step - 1) * K + s.index + 1
        assert position == math.floor(s.play / PERIOD + 1e-6)
    assert max(s.step for s in played) >= 3
    # Every step was asked for while the one before was still playing, early enough for it
    # to arrive in time.
    assert len(drive.requests) >= 3
    for request in drive.requests:
        assert request.frames_end - request.play >= LATENCY
        assert request.play < request.frames_end


def test_no_key_stands_still_and_the_arrow_drives_within_a_step():
    drive, _ = driver([press(3.0, pygame.K_UP)])
    ego = drive.env.unwrapped
    drive.run(max_ticks=int(3 * FPS))
    start = ego.ego_state
    assert len(drive.requests) >= 1 and ego.ego_state.speed == 0.0
    for request in drive.requests:
        np.testing.assert_array_equal(request.action, 0.0)
    before = len(drive.requests)
    drive.running = True
    drive.run(max_ticks=int(5 * FPS))
    # The first step asked for after the key press drives forward, the next one faster.
    first, second = drive.requests[before], drive.requests[before + 1]
    assert first.time - drive.shown[0].time >= 3.0 - LATENCY  # asked after the key went down
    assert first.action[-1, 0] > 0 and second.action[-1, 0] > first.action[-1, 0]
    assert ego.ego_state.speed > 0 and ego.ego_state.x != start.x


def test_pause_stops_the_world():
    drive, _ = driver([press(1.0, pygame.K_p), press(3.0, pygame.K_p)])
    drive.run(max_ticks=int(4 * FPS))
    paused = [s for s in drive.shown if s.banner == "paused (P)"]
    assert len(paused) == pytest.approx(2 * FPS, abs=1)
    assert len({s.play for s in paused}) == 1  # the play clock stood still
    first, last = drive.shown[0], drive.shown[-1]
    assert last.play == pytest.approx(last.time - first.time - 2.0, abs=0.06)


def test_a_crash_says_what_happened_and_r_resumes():
    env = Crashing(make_env("procedural", map_seed=4, world_config=SMALL), at=2)
    drive, _ = driver([press(0.5, pygame.K_UP), press(8.0, pygame.K_r)], env=env)
    drive.run(max_ticks=int(7.9 * FPS))
    assert drive.shown[-1].banner == "collision: press R"
    assert len(drive.requests) == 2  # nothing asked of an ended episode
    waiting = [s for s in drive.shown if s.banner == "collision: press R"]
    assert waiting[0].play == pytest.approx(4.5)  # after the crash step's frames played
    drive.running = True
    drive.run(max_ticks=int(4 * FPS))
    assert drive.seed == 4 and not drive.agent.state.pause
    assert drive.shown[-1].banner is None and drive.shown[-1].step >= 1
    assert len(drive.requests) >= 3 and drive.record.seed == 4
    assert len(drive.record.actions) == drive.shown[-1].step


def test_r_drops_a_step_of_the_episode_before():
    # R lands while step 1 is being generated: its frames never show in the new episode.
    drive, _ = driver([press(0.1, pygame.K_r)], latency=0.4)
    drive.run(max_ticks=int(0.6 * FPS))
    assert drive.episode == 1 and all(s.step == 0 for s in drive.shown)
    assert drive.record.actions == [] and drive.seed == 4


def test_timeline_moves_the_view_between_frames():
    timeline = Timeline(PERIOD)
    timeline.append(np.zeros((1,)), np.array([0.0, 0, 0]), 0, 3, [])
    frame, pose = timeline.at(0.25)
    np.testing.assert_allclose(pose, [0, 0, 0])  # nothing to move towards yet
    timeline.append(np.ones((1,)), np.array([2.0, 0, 0]), 1, 0, [])
    frame, pose = timeline.at(0.25)
    assert frame.index == 3 and pose[0] == pytest.approx(1.0)
    frame, pose = timeline.at(0.75)  # past the last frame: on at the same speed
    assert frame.index == 0 and frame.speed == pytest.approx(4.0) and pose[0] == pytest.approx(3.0)
    # Yaw turns the short way, through +-pi, not through 0.
    assert abs(interpolate_pose([0, 0, 3.0], [0, 0, -3.0], 0.5)[2]) == pytest.approx(np.pi)


def test_view_from_a_pose_ahead_moves_the_scene_back():
    frame = np.full((200, 200, 16), 17, dtype=np.uint8)
    frame[150, 100, 3] = 4  # a car 20 m ahead
    moved = view_from(frame, np.array([5.0, 1.0, 0.0]), np.array([9.0, 1.0, 0.0]))
    assert np.argwhere(moved == 4).tolist() == [[140, 100, 3]]  # 4 m closer
    turned = view_from(frame, np.zeros(3), np.array([0.0, 0.0, np.pi / 2]))
    assert np.argwhere(turned == 4).tolist() == [[100, 49, 3]]  # now on the right
