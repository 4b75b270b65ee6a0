"""The ``occsim`` command line: data, train, eval, bench, drive, replay, gallery."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from occsim.cli_types import at_least
from occsim.sampler_defaults import (
    DEFAULT_SOLVER_STEPS,
    DEFAULT_TIMESTEP_SPACING,
    TIMESTEP_SPACINGS,
)


def _data_procedural(args: argparse.Namespace) -> None:
    from occsim.data.procedural import ProceduralClips, export_occ3d

    clips = ProceduralClips(args.clips, clip_len=args.clip_len, seed=args.seed)
    written = export_occ3d(clips, args.out, split=args.split, workers=args.workers)
    print(f"wrote {written} new clips ({len(clips)} in all) to {args.out}")


def _gallery(args: argparse.Namespace) -> None:
    import imageio.v2 as imageio
    import numpy as np

    from occsim.procedural import MANEUVERS, ProceduralWorld
    from occsim.render import render_bev

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = ProceduralWorld(args.seed)
    frames = []
    steps_per_maneuver = max(args.steps // 3, 1)
    maneuvers = [m for m in MANEUVERS if m in ("right", "lane_change", "left")]
    for i, maneuver in enumerate(maneuvers):
        world.reset(args.seed * 100 + i, maneuver)
        clip = world.rollout(steps_per_maneuver)
        for t, occupancy in enumerate(clip["occupancy"]):
            future = clip["trajectory"][t:] - clip["trajectory"][t]
            yaw = clip["trajectory"][t, 2]
            rot = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
            frames.append(render_bev(occupancy, trajectory=future[:, :2] @ rot.T))
    video = out / "gallery.gif"
    imageio.mimsave(video, frames, duration=0.5, loop=0)
    for index in (0, len(frames) // 2, len(frames) - 1):
        imageio.imwrite(out / f"frame_{index:03d}.png", frames[index])
    print(f"wrote {len(frames)} frames of the procedural world to {video}")


def _make_agent(name: str, env, seed: int):
    from occsim.agents import ConstantSpeedAgent, ManeuverAgent, PlannerAgent, RandomAgent

    if name == "planner":
        return PlannerAgent(env, seed=seed)
    if name == "constant":
        return ConstantSpeedAgent(env)
    if name == "random":
        return RandomAgent(env.action_space, seed=seed)
    if name.startswith("maneuver:"):
        return ManeuverAgent(env, name.split(":", 1)[1])
    raise ValueError(
        f"agent {name!r} unknown; expected planner, constant, random or maneuver:<name>"
    )


def _drive(args: argparse.Namespace) -> None:
    import os

    from occsim.drive import make_env, run_headless, run_keyboard

    env_kwargs: dict = {"observation_keys": ["occupancy", "ego"]}
    if args.world == "learned":
        if args.pipeline:
            env_kwargs["pipeline_path"] = str(args.pipeline)
        env_kwargs["num_inference_steps"] = args.solver_steps
        env_kwargs["timestep_spacing"] = args.timestep_spacing
    if args.headless:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        env = make_env(args.world, **env_kwargs)
        agent = _make_agent(args.agent, env, args.seed)
        summary = run_headless(env, agent, args.steps, args.seed, args.out, env_kwargs)
        print(
            f"drove {summary['steps']} steps ({summary['episodes']} episodes) of the "
            f"{args.world} world, step p50 {summary['step_ms_p50']:.0f} ms; "
            f"wrote {summary['video']}"
        )
        return
    env = make_env(args.world, **env_kwargs)
    record = run_keyboard(env, args.seed, args.three_d, args.record, env_kwargs, fast=args.fast)
    print(
        f"drove {len(record.actions)} steps" + (f"; recorded {args.record}" if args.record else "")
    )


def _replay(args: argparse.Namespace) -> None:
    from occsim.drive import replay

    try:
        result = replay(args.record)
    except (OSError, ValueError) as error:  # a bad or tampered file: say why, no traceback
        raise SystemExit(f"occsim replay: {error}") from None
    print(f"replayed {result['steps']} steps: every frame identical to the recording")


# `eval` and `bench` are defined in occsim.evaluate, whose package imports torch: their full
# parsers are built only when the command line names them, so `occsim --help` stays fast.
EVAL_COMMANDS = {"eval": "evaluate a world model", "bench": "latency, throughput, memory, FLOPs"}


def build_parser(with_eval: bool = True) -> argparse.ArgumentParser:
    """The argument parser of the ``occsim`` command; without ``with_eval``, ``eval`` and
    ``bench`` are placeholders (their help line only)."""
    parser = argparse.ArgumentParser(prog="occsim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="build datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    procedural = data_commands.add_parser(
        "procedural", help="write procedural clips in the Occ3D-nuScenes layout (resumable)"
    )
    procedural.add_argument("--out", type=Path, required=True, help="output folder")
    procedural.add_argument("--clips", type=int, required=True, help="number of clips")
    procedural.add_argument("--clip-len", type=int, default=16, help="frames per clip (2 Hz)")
    procedural.add_argument("--seed", type=int, default=0, help="dataset seed")
    procedural.add_argument("--split", default="train", help="split name in annotations.json")
    procedural.add_argument(
        "--workers", type=int, default=1, help="processes building clips (same files as one)"
    )
    procedural.set_defaults(handler=_data_procedural)

    from occsim.train.cli import add_arguments as add_train_arguments
    from occsim.train.cli import run as run_training

    train = commands.add_parser(
        "train", help="train the tokenizer or the world model", add_help=False
    )
    add_train_arguments(train)
    train.set_defaults(handler=run_training)

    if with_eval:
        from occsim.evaluate.cli import add_commands as add_eval_commands

        add_eval_commands(commands)
    else:
        for name, help_text in EVAL_COMMANDS.items():
            commands.add_parser(name, help=help_text)

    drive = commands.add_parser(
        "drive", help="drive a world: keyboard window in real time, or headless"
    )
    drive.add_argument("--world", choices=("learned", "procedural"), default="learned")
    drive.add_argument("--pipeline", type=Path, help="world model folder (default: bundled)")
    drive.add_argument("--seed", type=int, default=0, help="episode seed")
    drive.add_argument("--headless", action="store_true", help="no window: agent + video")
    drive.add_argument(
        "--agent",
        default="planner",
        help="headless agent: planner, "
        "constant, random, maneuver:<straight|left|right|stop|accelerate>",
    )
    drive.add_argument("--steps", type=at_least(1), default=10, help="headless steps")
    drive.add_argument(
        "--solver-steps", type=at_least(1), default=DEFAULT_SOLVER_STEPS, help="denoising steps"
    )
    drive.add_argument(
        "--timestep-spacing",
        choices=TIMESTEP_SPACINGS,
        default=DEFAULT_TIMESTEP_SPACING,
        help="which timesteps the solver steps take",
    )
    drive.add_argument("--out", type=Path, default=Path("outputs/drive"), help="headless output")
    drive.add_argument("--3d", dest="three_d", action="store_true", help="open3d view too")
    drive.add_argument("--record", type=Path, help="write the episode record here (window)")
    drive.add_argument(
        "--fast", action="store_true", help="window: a step per frame instead of real time"
    )
    drive.set_defaults(handler=_drive)

    replay = commands.add_parser("replay", help="replay a recorded episode and check it")
    replay.add_argument("record", type=Path, help="episode record (episode.json)")
    replay.set_defaults(handler=_replay)

    gallery = commands.add_parser(
        "gallery", help="BEV video of scripted manoeuvres in the procedural world (no model)"
    )
    gallery.add_argument("--out", type=Path, default=Path("outputs/gallery"), help="folder")
    gallery.add_argument("--steps", type=int, default=36, help="frames to render")
    gallery.add_argument("--seed", type=int, default=0, help="world seed")
    gallery.set_defaults(handler=_gallery)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``occsim`` console script."""
    from occsim.train.cli import parse_with_overrides

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((item for item in argv if not item.startswith("-")), None)
    args = parse_with_overrides(build_parser(with_eval=command in EVAL_COMMANDS), argv)
    args.handler(args)
