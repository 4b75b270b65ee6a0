"""Driving sessions: headless runs to video, the keyboard window, recording and replay."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from occsim.render.hud import driving_view
from occsim.replay import EpisodeRecord, occupancy_digest, replay

__all__ = [
    "WORLDS",
    "EpisodeRecord",
    "make_env",
    "occupancy_digest",
    "replay",
    "run_headless",
    "run_keyboard",
]

WORLDS = {"learned": "occsim/OccSora-v0", "procedural": "occsim/Procedural-v0"}


def make_env(world: str = "learned", **kwargs: Any) -> gym.Env:
    """``occsim/OccSora-v0`` (``learned``) or ``occsim/Procedural-v0`` (``procedural``)
    with the occupancy and ego observations the agents use."""
    if world not in WORLDS:
        raise ValueError(f"world {world!r} not in {sorted(WORLDS)}")
    import occsim  # noqa: F401  (registers the environments)

    kwargs.setdefault("observation_keys", ("occupancy", "ego"))
    return gym.make(WORLDS[world], **kwargs)


def hud_lines(info: dict, episode_return: float, step_time: float, extra: str = "") -> list[str]:
    """The HUD's text: speed, step time, reward terms, episode return."""
    lines = [extra] if extra else []
    speed = info.get("speed")
    if speed is not None:
        lines.append(f"speed {speed * 3.6:5.1f} km/h")
    lines.append(f"step {step_time * 1000:5.0f} ms")
    for name, value in info.get("rewards", {}).items():
        lines.append(f"{name:>9} {value:+6.2f}")
    lines.append(f"return {episode_return:+7.2f}")
    return lines


def run_headless(
    env: gym.Env,
    agent: Any,
    steps: int,
    seed: int,
    out_dir: str | Path,
    env_kwargs: dict | None = None,
    png_frames: int = 3,
    fps: int = 4,
) -> dict[str, Any]:
    """Drive ``steps`` steps with ``agent`` (resetting on episode end) and write
    ``drive.gif`` (every frame), a few ``frame_NNN.png`` and ``episode.json`` (the
    record of the first episode) to ``out_dir``. Returns a summary."""
    import imageio.v2 as imageio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = EpisodeRecord(env.spec.id if env.spec else "", seed, dict(env_kwargs or {}))
    observation, info = env.reset(seed=seed)
    agent.reset(seed)
    images, episode_return, latencies, episodes, recording = [], 0.0, [], 1, True
    for step in range(steps):
        action = agent.act(observation)
        start = time.perf_counter()
        observation, reward, terminated, truncated, info = env.step(action)
        latencies.append(time.perf_counter() - start)
        episode_return += reward
        if recording:
            record.actions.append(np.asarray(action).tolist())
            record.digests.append(occupancy_digest(observation["occupancy"]))
        info = {**info, "speed": float(observation["ego"][0])} if "ego" in observation else info
        plan = getattr(agent, "last_plan", None)
        lines = hud_lines(info, episode_return, latencies[-1], f"step {step + 1}/{steps}")
        for frame in observation["occupancy"]:
            images.append(driving_view(frame, lines, plan))
        if terminated or truncated:
            recording = False
            observation, info = env.reset()
            agent.reset()
            episode_return, episodes = 0.0, episodes + 1
    imageio.mimsave(out / "drive.gif", images, duration=1000 / fps, loop=0)
    chosen = np.linspace(0, len(images) - 1, min(png_frames, len(images))).astype(int)
    for i in chosen:
        imageio.imwrite(out / f"frame_{i:03d}.png", images[i])
    record.save(out / "episode.json")
    return {
        "steps": steps,
        "episodes": episodes,
        "step_ms_p50": float(np.median(latencies) * 1000),
        "video": str(out / "drive.gif"),
    }


def run_keyboard(
    env: gym.Env,
    seed: int = 0,
    three_d: bool = False,
    record_path: str | Path | None = None,
    env_kwargs: dict | None = None,
    max_frames: int | None = None,
    events: Callable[[], list] | None = None,
    screenshot: str | Path | None = None,
    fast: bool = False,
) -> EpisodeRecord:
    """The interactive window: BEV + HUD in pygame (and the open3d view with ``three_d``).

    The world plays in real time (:class:`~occsim.realtime.RealtimeDriver`: frames at their
    own time, smooth motion between them, the next step generated while the current one
    plays); ``fast`` steps once per displayed frame instead, as fast as the world goes.
    The car stands still until a key drives it; an episode ends on a collision or off
    road, says so and waits for R. Returns the record of the last episode (written to
    ``record_path`` if given). ``events`` replaces ``pygame.event.get`` (scripted input);
    ``max_frames`` bounds the loop (display frames); ``screenshot`` saves the last window
    (PNG) and, with ``three_d``, the open3d view next to it (``*_3d.png``)."""
    import pygame

    from occsim.agents import KeyboardAgent
    from occsim.render.window import DriveWindow

    agent = KeyboardAgent(env)
    window = DriveWindow(three_d)
    events = events or pygame.event.get
    try:
        if fast:
            record = _run_fast(env, agent, window, seed, events, max_frames, env_kwargs)
        else:
            from occsim.realtime import RealtimeDriver

            driver = RealtimeDriver(
                env,
                agent,
                seed,
                events=events,
                display=window.show,
                on_frame=window.show_3d if three_d else None,
                env_kwargs=env_kwargs,
            )
            record = driver.run(max_frames)
        if record_path is not None:
            record.save(record_path)
        if screenshot is not None:
            window.save(screenshot)
    finally:
        window.close()
    return record


def _run_fast(
    env: gym.Env,
    agent: Any,
    window: Any,
    seed: int,
    events: Callable[[], list],
    max_frames: int | None,
    env_kwargs: dict | None,
) -> EpisodeRecord:
    """One env step per displayed frame (``occsim drive --fast``)."""
    import pygame

    from occsim.realtime import ending

    observation, info = env.reset(seed=seed)
    record = EpisodeRecord(env.spec.id if env.spec else "", seed, dict(env_kwargs or {}))
    clock, episode_return, step_time, frames, ended = pygame.time.Clock(), 0.0, 0.0, 0, None
    while not agent.state.quit and (max_frames is None or frames < max_frames):
        frames += 1
        for event in events():
            agent.process_event(event)
        if agent.state.reset:  # a new episode, standing still and playing
            seed += 1
            observation, info = env.reset(seed=seed)
            record = EpisodeRecord(record.env_id, seed, record.env_kwargs)
            agent.reset()
            episode_return, ended = 0.0, None
        elif not (agent.state.pause or ended):
            action = agent.act(observation)
            start = time.perf_counter()
            observation, reward, terminated, truncated, info = env.step(action)
            step_time = time.perf_counter() - start
            episode_return += reward
            record.actions.append(np.asarray(action).tolist())
            record.digests.append(occupancy_digest(observation["occupancy"]))
            ended = ending(terminated, truncated, info)
        speed = float(observation["ego"][0])
        status = f"keys: gas {agent.state.throttle:+.1f} steer {agent.state.steering:+.1f}"
        lines = hud_lines({**info, "speed": speed}, episode_return, step_time, status)
        banner = f"{ended}: press R" if ended else "paused (P)" if agent.state.pause else None
        window.show(driving_view(observation["occupancy"][-1], lines, banner=banner))
        window.show_3d(observation["occupancy"][-1])
        clock.tick(30)
    return record
