"""Real-time driving: the world plays at wall-clock speed while its next step is generated.

An env step gives K frames 0.5 s apart. :class:`RealtimeDriver` shows each frame at its
own time on a *play clock* (wall time that stands still while paused, loading, or waiting
for a step the world has not finished), moves the view smoothly between frames
(:mod:`occsim.render.motion`), and asks a worker thread for the next step, with the keys
held at that moment, a little before the frames in hand run out. Clock, key events,
worker, renderer and display are injected, so a test drives the loop with a fake clock
and synthetic keys.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from occsim.render.hud import driving_view
from occsim.render.motion import interpolate_pose, view_from
from occsim.replay import EpisodeRecord, occupancy_digest

FPS = 25
# Until a step has been timed: a guess at the seconds the world takes for one.
FIRST_LATENCY_GUESS = 0.5


class Clock(Protocol):
    """Seconds, and waiting for them."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real clock."""

    def now(self) -> float:
        return time.perf_counter()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Job(Protocol):
    """What :meth:`Worker.submit` returns (a ``concurrent.futures.Future`` is one)."""

    def done(self) -> bool: ...

    def result(self) -> Any: ...


class Worker(Protocol):
    """Runs jobs one after another, off the display loop (a one-thread executor)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Job: ...


@dataclass
class StepResult:
    """One reset (``action is None``) or step of the env, as the worker returns it."""

    episode: int
    observation: dict[str, np.ndarray]
    info: dict[str, Any]
    action: np.ndarray | None = None
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    seconds: float = 0.0  # the world's compute time for it


@dataclass(eq=False)
class TimedFrame:
    """A frame on the play clock: shown from ``due`` seconds of play on."""

    due: float
    frame: np.ndarray
    pose: np.ndarray  # world (x, y, yaw) of the ego at this frame
    speed: float  # m/s of the ego arriving at this frame
    step: int  # env step that made it (0: the reset)
    index: int  # frame within its step
    lines: tuple[str, ...] = ()  # the HUD's text while it shows


@dataclass
class Shown:
    """What the display showed at one tick (for tests and debugging)."""

    time: float  # clock time
    play: float  # play time
    step: int
    index: int
    banner: str | None


@dataclass
class Request:
    """A step asked of the worker."""

    time: float  # clock time it was asked at
    play: float  # play time then
    frames_end: float  # play time at which the frames in hand run out
    step: int  # the step it asks for
    action: np.ndarray


@dataclass
class _Pending:
    job: Job
    episode: int
    submitted: float


@dataclass
class Timeline:
    """The frames in hand, ``period`` seconds of play apart, oldest first."""

    period: float
    frames: deque = field(default_factory=lambda: deque(maxlen=16))

    def clear(self) -> None:
        self.frames.clear()

    @property
    def end(self) -> float:
        """Play time at which the frames in hand run out."""
        return self.frames[-1].due + self.period if self.frames else 0.0

    def append(
        self, frame: np.ndarray, pose: np.ndarray, step: int, index: int, lines: Sequence[str]
    ) -> None:
        """Add the frame after the last one (``pose``: world pose of the ego there)."""
        speed = 0.0
        if self.frames:
            speed = float(np.hypot(*(pose[:2] - self.frames[-1].pose[:2]))) / self.period
        self.frames.append(TimedFrame(self.end, frame, pose, speed, step, index, tuple(lines)))

    def at(self, play: float) -> tuple[TimedFrame, np.ndarray]:
        """The frame due at ``play`` and the ego pose of that instant: on the way to the
        next frame's pose, or, until it exists, going on as from the frame before."""
        frames = list(self.frames)
        k = max(i for i, f in enumerate(frames) if f.due <= play + 1e-9) if frames else None
        if k is None:
            raise RuntimeError("no frame is due yet")
        current = frames[k]
        fraction = min(max((play - current.due) / self.period, 0.0), 1.0)
        if k + 1 < len(frames):
            return current, interpolate_pose(current.pose, frames[k + 1].pose, fraction)
        if k > 0:
            return current, interpolate_pose(frames[k - 1].pose, current.pose, 1.0 + fraction)
        return current, current.pose


ENDINGS = {"collision": "collision", "offroad": "off road"}


def ending(terminated: bool, truncated: bool, info: dict[str, Any]) -> str | None:
    """What ended the episode at a step, in words (``None``: it goes on)."""
    if terminated:
        reasons = [text for key, text in ENDINGS.items() if info.get(key)]
        return " + ".join(reasons) or "episode over"
    if truncated:
        return "time limit"
    return None


class RealtimeDriver:
    """The real-time keyboard loop. Call :meth:`run` (or :meth:`tick` at ``fps``).

    Args:
        env: an occsim env (``occupancy`` and ``ego`` observations); only the worker
            touches it.
        agent: a :class:`~occsim.agents.KeyboardAgent` (``process_event``, ``state``,
            ``act``, ``reset``).
        seed: seed of the first episode; each reset (R) takes the next.
        events: returns the key events since the last call (``pygame.event.get``).
        display: shows one RGB image; ``None`` shows (and renders) nothing.
        clock: the clock frames are timed on.
        worker: runs the env's resets and steps off the loop (default: one thread).
        render: ``(frame, lines, banner) -> image``, the driving view by default.
        fps: display ticks per second.
        on_frame: called with each newly due frame (e.g. the open3d view).
        env_kwargs: the env's keyword arguments, kept in the episode record.
    """

    def __init__(
        self,
        env: gym.Env,
        agent: Any,
        seed: int = 0,
        events: Callable[[], Sequence[Any]] = list,
        display: Callable[[np.ndarray], None] | None = None,
        clock: Clock | None = None,
        worker: Worker | None = None,
        render: Callable[[np.ndarray, Sequence[str], str | None], Any] | None = None,
        fps: int = FPS,
        on_frame: Callable[[np.ndarray], None] | None = None,
        env_kwargs: dict | None = None,
    ) -> None:
        self.env, self.agent, self.seed = env, agent, seed
        self.events, self.display, self.fps, self.on_frame = events, display, fps, on_frame
        self.clock = clock or WallClock()
        self._own_worker = worker is None
        self.worker = worker or ThreadPoolExecutor(1, thread_name_prefix="occsim-world")
        self.render = render or (
            lambda frame, lines, banner: driving_view(frame, lines, None, 2, banner)
        )
        self.period = float(env.unwrapped.frame_period)
        self.frames_per_step = int(env.unwrapped.config.frames_per_step)
        self.timeline = Timeline(self.period)
        self.env_id = env.spec.id if env.spec else ""
        self.env_kwargs = dict(env_kwargs or {})
        self.record = EpisodeRecord(self.env_id, seed, self.env_kwargs)
        self.shown: deque[Shown] = deque(maxlen=4096)
        self.requests: list[Request] = []
        self.running = True
        self.episode = 0
        self.play = 0.0  # seconds of world shown this episode
        self.ended: str | None = None  # what ended the episode
        self.latency = FIRST_LATENCY_GUESS  # seconds the world takes for a step (measured)
        self._pending: deque[_Pending] = deque()
        self._observation: dict[str, np.ndarray] | None = None
        self._loading = True
        self._return = 0.0
        self._steps = 0
        self._last_tick: float | None = None
        self._last_due: tuple[int, int] | None = None
        self._submit(self._reset_job, self.episode, seed)

    # ------------------------------------------------------------------ the worker's jobs
    def _reset_job(self, episode: int, seed: int) -> StepResult:
        start = time.perf_counter()
        observation, info = self.env.reset(seed=seed)
        return StepResult(episode, observation, info, seconds=time.perf_counter() - start)

    def _step_job(self, episode: int, action: np.ndarray) -> StepResult:
        start = time.perf_counter()
        observation, reward, terminated, truncated, info = self.env.step(action)
        seconds = time.perf_counter() - start
        return StepResult(
            episode, observation, info, action, reward, terminated, truncated, seconds
        )

    def _submit(self, fn: Callable[..., StepResult], *args: Any) -> None:
        now = self.clock.now()
        self._pending.append(_Pending(self.worker.submit(fn, *args), self.episode, now))

    # ------------------------------------------------------------------ the loop
    @property
    def lead(self) -> float:
        """Seconds of play left in hand when the next step is asked for: enough for the
        world to make it (twice its measured time) with the keys held as late as that."""
        step_seconds = self.period * self.frames_per_step
        return float(np.clip(2.0 * self.latency + 0.2, 0.3, max(step_seconds, 0.3)))

    def tick(self) -> None:
        """One display frame: keys, finished steps, the play clock, requests, the view."""
        now = self.clock.now()
        dt = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        for event in self.events():
            self.agent.process_event(event)
        if self.agent.state.quit:
            self.running = False
            return
        if self.agent.state.reset:
            self._restart()
        loading = self._loading  # the play clock starts at the tick the world is in
        self._collect(now)
        paused = self.agent.state.pause
        if not (paused or loading):
            self.play = min(self.play + dt, self.timeline.end)
        if not (paused or self._loading or self.ended or self._pending):
            if self.timeline.end - self.play <= self.lead:
                self._request(now)
        self._show(now, paused)

    def run(self, max_ticks: int | None = None) -> EpisodeRecord:
        """Tick at ``fps`` until Esc / window close (or ``max_ticks``); returns the record
        of the last episode."""
        ticks = 0
        try:
            while self.running and (max_ticks is None or ticks < max_ticks):
                start = self.clock.now()
                self.tick()
                ticks += 1
                self.clock.sleep(max(1.0 / self.fps - (self.clock.now() - start), 0.0))
        finally:
            self.close()
        return self.record

    def close(self) -> None:
        """Stop the worker (waiting for a step in progress)."""
        if self._own_worker:
            self.worker.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ pieces of a tick
    def _restart(self) -> None:
        """R: a new episode (the next seed), standing still and playing."""
        self.episode += 1
        self.seed += 1
        self.agent.reset()
        self.timeline.clear()
        self.play, self.ended, self._loading = 0.0, None, True
        self._observation, self._return, self._steps = None, 0.0, 0
        self.record = EpisodeRecord(self.env_id, self.seed, self.env_kwargs)
        self._submit(self._reset_job, self.episode, self.seed)

    def _collect(self, now: float) -> None:
        """Take the worker's finished jobs, in order; those of an earlier episode are dropped."""
        while self._pending and self._pending[0].job.done():
            pending = self._pending.popleft()
            result: StepResult = pending.job.result()
            if pending.episode != self.episode:
                continue
            self._observation = result.observation
            poses = np.asarray(result.info["frame_poses"], dtype=np.float64)
            if result.action is None:  # a reset: its frames start the play clock
                self._loading = False
                self.play = 0.0
            else:
                self.latency = 0.5 * self.latency + 0.5 * (now - pending.submitted)
                self._steps += 1
                self._return += result.reward
                self.record.actions.append(np.asarray(result.action).tolist())
                self.record.digests.append(occupancy_digest(result.observation["occupancy"]))
                self.ended = ending(result.terminated, result.truncated, result.info)
            lines = self._step_lines(result)
            frames = result.observation["occupancy"]
            # A reset's frames are the world's history; the drive starts at its last one.
            first = len(frames) - 1 if result.action is None else 0
            for index in range(first, len(frames)):
                self.timeline.append(frames[index], poses[index], self._steps, index, lines)

    def _step_lines(self, result: StepResult) -> list[str]:
        """The HUD text of a step's frames: generation time, rewards, return."""
        lines = [f"step {self._steps}: {result.seconds * 1000:5.0f} ms"]
        for name, value in result.info.get("rewards", {}).items():
            lines.append(f"{name:>9} {value:+6.2f}")
        lines.append(f"return {self._return:+7.2f}")
        return lines

    def _request(self, now: float) -> None:
        """Ask the worker for the next step, with the keys held now."""
        action = self.agent.act(self._observation)
        self.requests.append(
            Request(now, self.play, self.timeline.end, self._steps + 1, np.asarray(action))
        )
        self._submit(self._step_job, self.episode, action)

    def _banner(self, paused: bool) -> str | None:
        if self._loading:
            return "generating the world..."
        if self.ended and self.play >= self.timeline.end - 1e-9:
            return f"{self.ended}: press R"
        if paused:
            return "paused (P)"
        return None

    def _show(self, now: float, paused: bool) -> None:
        if not self.timeline.frames:
            return
        current, pose = self.timeline.at(self.play)
        if self.on_frame is not None and self._last_due != (current.step, current.index):
            self.on_frame(current.frame)
        self._last_due = (current.step, current.index)
        banner = self._banner(paused)
        self.shown.append(Shown(now, self.play, current.step, current.index, banner))
        if self.display is None:
            return
        state = self.agent.state
        lines = [
            f"speed {current.speed * 3.6:5.1f} km/h",
            f"keys: gas {state.throttle:+.1f} steer {state.steering:+.1f}",
            *current.lines,
        ]
        self.display(self.render(view_from(current.frame, current.pose, pose), lines, banner))
