"""Driving sessions: headless runs to video, the keyboard window, recording and replay."""

from __future__ import annotations

import os
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
) -> EpisodeRecord:
    """The interactive window: BEV + HUD in pygame (and the open3d view with ``three_d``).
    Returns the record of the last episode (written to ``record_path`` if given).
    ``events`` replaces ``pygame.event.get`` (scripted input); ``max_frames`` bounds the
    loop (one step per frame unless paused); ``screenshot`` saves the last window (PNG)
    and, with ``three_d``, the open3d view next to it (``*_3d.png``)."""
    import pygame

    from occsim.agents import KeyboardAgent

    agent = KeyboardAgent(env)
    pygame.display.init()
    viewer = None
    if three_d:
        from occsim.render.voxels import VoxelViewer

        viewer = VoxelViewer(visible=os.environ.get("SDL_VIDEODRIVER") != "dummy")
    observation, info = env.reset(seed=seed)
    record = EpisodeRecord(env.spec.id if env.spec else "", seed, dict(env_kwargs or {}))
    screen, clock, episode_return, step_time, frames = None, pygame.time.Clock(), 0.0, 0.0, 0
    while not agent.state.quit and (max_frames is None or frames < max_frames):
        frames += 1
        for event in (events or pygame.event.get)():
            agent.process_event(event)
        if agent.state.reset:
            seed += 1
            observation, info = env.reset(seed=seed)
            record = EpisodeRecord(record.env_id, seed, record.env_kwargs)
            agent.reset()
            episode_return = 0.0
        elif not agent.state.pause:
            action = agent.act(observation)
            start = time.perf_counter()
            observation, reward, terminated, truncated, info = env.step(action)
            step_time = time.perf_counter() - start
            episode_return += reward
            record.actions.append(np.asarray(action).tolist())
            record.digests.append(occupancy_digest(observation["occupancy"]))
            if terminated or truncated:
                agent.state.pause = True
        speed = float(observation["ego"][0])
        status = "paused (P)" if agent.state.pause else f"steer {agent.state.steering:+.1f}"
        lines = hud_lines({**info, "speed": speed}, episode_return, step_time, status)
        image = driving_view(observation["occupancy"][-1], lines)
        if screen is None:
            screen = pygame.display.set_mode(image.shape[1::-1])
            pygame.display.set_caption("occsim drive: arrows/WASD, space brake, R reset, P pause")
        screen.blit(pygame.surfarray.make_surface(image.swapaxes(0, 1)), (0, 0))
        pygame.display.flip()
        if viewer is not None:
            viewer.update(observation["occupancy"][-1])
        clock.tick(30)
    if record_path is not None:
        record.save(record_path)
    if screenshot is not None and screen is not None:
        pygame.image.save(screen, str(screenshot))
        if viewer is not None:
            import imageio.v2 as imageio

            path = Path(screenshot)
            imageio.imwrite(path.with_name(path.stem + "_3d.png"), viewer.capture())
    if viewer is not None:
        viewer.close()
    pygame.display.quit()
    return record
