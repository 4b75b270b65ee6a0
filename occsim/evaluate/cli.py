"""``occsim eval recon|forecast|generate|adherence|closed-loop|persistence|sweep|road-users``
and ``occsim bench``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from occsim.cli_types import at_least, choices_list, numbers
from occsim.sampler_defaults import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_SOLVER_STEPS,
    DEFAULT_TIMESTEP_SPACING,
    TIMESTEP_SPACINGS,
)

HELD_OUT_SEED = 10_000  # procedural dataset seed never used in training (DataConfig.val_seed)


def _dataset(args: argparse.Namespace, clip_len: int):
    from occsim.data import Occ3DDataset, ProceduralClips

    if args.data == "procedural":
        return ProceduralClips(args.clips, clip_len=clip_len, seed=args.data_seed)
    return Occ3DDataset(
        args.data, split=args.split, clip_len=clip_len, stride=clip_len, drop_short_scenes=True
    )


def _pipeline(args: argparse.Namespace, solver_steps: list[int] | None = None):
    """The model of ``--pipeline`` with ``--timestep-spacing``; stops the command when one
    of the ``solver_steps`` it will sample with (default ``--solver-steps``) would start at
    t=0 (the pipeline would refuse it mid-run)."""
    from occsim.pipeline import first_step_error
    from occsim.world_model import load_world_model

    pipe = load_world_model(args.pipeline, timestep_spacing=args.timestep_spacing)
    for steps in [args.solver_steps] if solver_steps is None else solver_steps:
        if first_step_error(pipe.scheduler, steps):
            raise SystemExit(
                f"--solver-steps {steps} with --timestep-spacing {args.timestep_spacing} "
                "starts at t=0, where the DiT reads pure noise as a clean latent: use "
                "--timestep-spacing trailing or more solver steps"
            )
    return pipe


def _finish(report, args: argparse.Namespace) -> None:
    report.meta["command"] = "occsim " + shlex.join(sys.argv[1:])
    spacing = getattr(args, "timestep_spacing", None)  # road-users samples nothing
    if spacing and getattr(args, "eval_command", None) != "sweep":  # a sweep's rows say theirs
        report.meta.setdefault("timestep_spacing", spacing)
    print(report.markdown())
    if args.json:
        report.save_json(args.json)
    if args.benchmarks:
        report.update_benchmarks(args.benchmarks)


def _recon(args: argparse.Namespace) -> None:
    from occsim.evaluate.recon import evaluate_reconstruction, recon_report

    if args.tokenizer is not None:
        from occsim.tokenizer import OccTokenizer

        tokenizer = OccTokenizer.from_pretrained(str(args.tokenizer)).float()
        label = Path(args.tokenizer).name
    else:
        tokenizer = _pipeline(args).tokenizer
        label = "bundled default" if args.pipeline is None else Path(args.pipeline).name
    scores = evaluate_reconstruction(tokenizer, _dataset(args, 4 * tokenizer.temporal_factor))
    _finish(recon_report(scores, label, {"data": args.data, "clips": args.clips}), args)


def _forecast(args: argparse.Namespace) -> None:
    from occsim.evaluate.forecast import HORIZON_SECONDS, evaluate_forecast
    from occsim.evaluate.report import Report

    scores = evaluate_forecast(
        _pipeline(args),
        _dataset(args, 10),
        args.clips,
        args.solver_steps,
        args.guidance,
        scene_memory=not args.no_scene_memory,
    )
    rows = [
        {"horizon": f"{s} s", "IoU": x.iou, "mIoU": x.miou} for s, x in zip(HORIZON_SECONDS, scores)
    ]
    _finish(
        Report(
            "eval:forecast",
            "Forecast (2 s history -> 3 s)",
            ["horizon", "IoU", "mIoU"],
            rows,
            {"data": args.data, "clips": args.clips, "scene_memory": not args.no_scene_memory},
        ),
        args,
    )


def _numbers(text: str, kind: type, name: str) -> list:
    try:
        return [kind(part) for part in text.split(",") if part]
    except ValueError:
        raise SystemExit(f"{name} must be comma-separated numbers, got {text!r}") from None


def _generate(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from occsim.assets import asset_path
    from occsim.evaluate.features import FD_ENCODER, OccupancyFeatureNet
    from occsim.evaluate.generate import evaluate_generation
    from occsim.evaluate.report import Report

    steps = _numbers(args.steps_list, int, "--steps-list")
    pipe = _pipeline(args, [n for n in steps if n >= 1])
    encoder = OccupancyFeatureNet.from_pretrained(asset_path(FD_ENCODER)).eval()
    strengths = _numbers(args.strengths, float, "--strengths")
    if not steps or any(n < 1 for n in steps) or any(not 0 < r <= 1 for r in strengths):
        raise SystemExit("--steps-list needs counts >= 1 and --strengths values in (0, 1]")
    settings = [(n, 1.0) for n in steps] + [(steps[0], r) for r in strengths if r < 1.0]
    dataset = _dataset(args, pipe.transformer.config.trajectory_length)
    rows = evaluate_generation(pipe, encoder, dataset, args.clips, settings, args.guidance)
    _finish(
        Report(
            "eval:generate",
            "Generation: Fréchet distance (fixed occupancy encoder) and class-frequency JSD",
            ["solver_steps", "strength", "clips", "fd", "class_jsd"],
            [asdict(row) for row in rows],
            {"data": args.data, "clips": args.clips, "scheduler": type(pipe.scheduler).__name__},
        ),
        args,
    )


def _adherence(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from occsim.data import ProceduralClips
    from occsim.evaluate.adherence import ADHERENCE_MANEUVERS, evaluate_adherence
    from occsim.evaluate.report import Report

    if args.data != "procedural":
        raise SystemExit("eval adherence drives scripted manoeuvres: only --data procedural")
    pipe = _pipeline(args)
    window = pipe.transformer.config.trajectory_length
    datasets = {
        maneuver: ProceduralClips(
            args.clips, clip_len=window, seed=args.data_seed, maneuvers=(maneuver,)
        )
        for maneuver in ADHERENCE_MANEUVERS
    }
    rows = evaluate_adherence(pipe, datasets, args.clips, args.solver_steps, args.guidance)
    columns = ["maneuver", "clips", "ade", "fde", "truth_ade", "truth_fde", "failed"]
    _finish(
        Report(
            "eval:adherence",
            "Trajectory adherence (ego motion registered from generated occupancy, metres)",
            columns,
            [asdict(row) for row in rows],
            {"data_seed": args.data_seed, "clips_per_maneuver": args.clips},
        ),
        args,
    )


def _closed_loop(args: argparse.Namespace) -> None:
    from occsim.agents import ConstantSpeedAgent, PlannerAgent
    from occsim.assets import asset_path
    from occsim.envs import OccSoraEnv, ProceduralEnv
    from occsim.evaluate.closed_loop import closed_loop_fidelity, closed_loop_report
    from occsim.evaluate.features import FD_ENCODER, OccupancyFeatureNet

    pipe = _pipeline(args)
    learned = OccSoraEnv(
        pipeline=pipe,
        num_inference_steps=args.solver_steps,
        guidance_scale=args.guidance,
        scene_memory=not args.no_scene_memory,
    )
    exact = ProceduralEnv()
    if args.agent == "planner":
        agent = PlannerAgent(exact, seed=0)
    else:
        agent = ConstantSpeedAgent(exact, args.speed)
    seeds = list(range(args.data_seed, args.data_seed + args.clips))
    encoder = OccupancyFeatureNet.from_pretrained(asset_path(FD_ENCODER)).eval()
    result = closed_loop_fidelity(exact, learned, agent, seeds, args.steps, encoder)
    report = closed_loop_report(result)
    report.meta.update(
        {"seeds": seeds, "agent": args.agent, "scene_memory": not args.no_scene_memory}
    )
    _finish(report, args)


def _road_users(args: argparse.Namespace) -> None:
    from occsim.agents import ConstantSpeedAgent
    from occsim.envs import ProceduralEnv
    from occsim.evaluate.road_user_prediction import (
        road_user_prediction,
        road_user_prediction_report,
    )

    exact = ProceduralEnv()
    seeds = list(range(args.data_seed, args.data_seed + args.clips))
    result = road_user_prediction(exact, ConstantSpeedAgent(exact, args.speed), seeds, args.steps)
    report = road_user_prediction_report(result)
    report.meta.update({"seeds": seeds, "speed": args.speed})
    _finish(report, args)


def _sweep(args: argparse.Namespace) -> None:
    from occsim.agents import ConstantSpeedAgent
    from occsim.envs import OccSoraEnv, ProceduralEnv
    from occsim.evaluate.forecast import HISTORY_FRAMES, HORIZON_SECONDS
    from occsim.evaluate.sweep import runnable, sweep, sweep_report

    pipe = _pipeline(args, [])  # each setting's spacing: --spacings
    settings = [
        (scheduler, spacing, int(steps), float(guidance))
        for scheduler in args.schedulers.split(",")
        for spacing in args.spacings
        for steps in args.steps_list
        for guidance in args.guidances
    ]
    settings, refused = runnable(pipe, settings)
    if not settings:
        raise SystemExit(f"every sampler setting starts at t=0, none can run: {refused}")

    def make_learned(solver_steps: int, guidance: float) -> OccSoraEnv:
        return OccSoraEnv(pipeline=pipe, num_inference_steps=solver_steps, guidance_scale=guidance)

    exact = ProceduralEnv()
    seeds = list(range(args.data_seed, args.data_seed + args.clips))
    rows = sweep(
        pipe,
        make_learned,
        exact,
        ConstantSpeedAgent(exact, 6.0),
        seeds,
        args.steps,
        _dataset(args, HISTORY_FRAMES + 2 * HORIZON_SECONDS[-1]),
        settings,
        progress=True,
    )
    report = sweep_report(rows)
    report.meta.update({"seeds": seeds, "settings": settings, "refused": refused})
    for name, spacing, solver_steps, guidance in refused:
        report.notes.append(
            f"Not run: {name.replace('Scheduler', '')}, {spacing} spacing, {solver_steps} "
            f"step(s), guidance {guidance:g}: its first step is at t=0, which the rollout "
            "refuses (the DiT would read pure noise as a clean latent)."
        )
    _finish(report, args)


def _persistence(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    import numpy as np

    from occsim.envs import OccSoraEnv, ProceduralEnv
    from occsim.evaluate.persistence import evaluate_persistence
    from occsim.evaluate.report import Report

    seeds = list(range(args.data_seed, args.data_seed + args.clips))
    rows = []
    worlds = {"exact": lambda: ProceduralEnv()}
    worlds["learned"] = lambda: OccSoraEnv(
        pipeline=_pipeline(args),
        num_inference_steps=args.solver_steps,
        guidance_scale=args.guidance,
        scene_memory=not args.no_scene_memory,
    )
    for world, make in worlds.items():
        for score in evaluate_persistence(make(), seeds, still_steps=args.steps):
            row = {"world": world, **asdict(score)}
            for key in ("still_static", "back_static", "back_static_tolerant"):
                row[key] *= 100.0  # percent
            rows.append(row)
    for world in worlds:
        mine = [row for row in rows if row["world"] == world]
        rows.append(
            {
                "world": world,
                "seed": "mean",
                "still_terminated": sum(row["still_terminated"] for row in mine),
                **{
                    key: float(np.nanmean([row[key] for row in mine]))
                    for key in ("still_static", "back_static", "back_static_tolerant")
                },
            }
        )
    columns = ["world", "seed", "still_terminated", "still_static", "back_static"]
    columns.append("back_static_tolerant")
    _finish(
        Report(
            "eval:persistence",
            "Persistence: standing still, and out and back (static agreement, %)",
            columns,
            rows,
            {"seeds": seeds, "still_steps": args.steps, "scene_memory": not args.no_scene_memory},
        ),
        args,
    )


def _bench(args: argparse.Namespace) -> None:
    from occsim.evaluate.bench import run_bench
    from occsim.evaluate.report import Report

    pipe = _pipeline(args)
    figures = run_bench(
        pipe,
        steps=args.steps,
        batch=args.batch,
        num_inference_steps=args.solver_steps,
        guidance_scale=args.guidance,
    )
    rows = [{"figure": k, "value": v} for k, v in figures.items()]
    _finish(Report("bench", "occsim bench (OccSora-v0)", ["figure", "value"], rows), args)
    if args.no_scaling:
        return
    from occsim.evaluate.cost import scaling_report, scaling_table

    table = scaling_table(pipe, num_inference_steps=args.solver_steps, guidance_scale=args.guidance)
    report = scaling_report(table, args.solver_steps * (2 if args.guidance != 1.0 else 1))
    if args.json:  # beside the figures' file, not over it
        args.json = args.json.with_name(f"{args.json.stem}-scaling{args.json.suffix}")
    _finish(report, args)


def _common(
    parser: argparse.ArgumentParser, clips: int, steps: int, fd_clips: bool = False
) -> None:
    parser.add_argument("--pipeline", type=Path, help="world model folder (default: bundled)")
    parser.add_argument(
        "--data", default="procedural", help="'procedural' (held-out seeds) or an Occ3D root"
    )
    parser.add_argument("--split", default="val", help="Occ3D split")
    parser.add_argument("--data-seed", type=int, default=HELD_OUT_SEED)
    # generate's Fréchet distance needs two clips at least; a stepping command one step.
    parser.add_argument(
        "--clips", type=at_least(2 if fd_clips else 1), default=clips, help="clips / episodes"
    )
    stepping = at_least(1 if steps else 0)
    parser.add_argument("--steps", type=stepping, default=steps, help="env steps")
    parser.add_argument("--solver-steps", type=at_least(1), default=DEFAULT_SOLVER_STEPS)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE_SCALE, help="1: off")
    parser.add_argument(
        "--timestep-spacing",
        choices=TIMESTEP_SPACINGS,
        default=DEFAULT_TIMESTEP_SPACING,
        help="which timesteps the solver steps take (sweep: --spacings)",
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--benchmarks", type=Path, help="splice the table into this markdown")


def add_commands(commands) -> None:
    """Add ``eval`` and ``bench`` to the ``occsim`` sub-commands."""
    evaluate = commands.add_parser("eval", help="evaluate a world model")
    kinds = evaluate.add_subparsers(dest="eval_command", required=True)
    for name, handler, help_text, clips, steps in (
        ("recon", _recon, "tokenizer reconstruction IoU/mIoU per class", 64, 0),
        ("forecast", _forecast, "2 s history -> IoU/mIoU at 1, 2, 3 s", 32, 0),
        ("generate", _generate, "Fréchet distance and class JSD of generated clips", 16, 0),
        ("adherence", _adherence, "ego motion of generated clips vs the commanded one", 4, 0),
        ("closed-loop", _closed_loop, "learned vs exact world, same seeds and actions", 8, 10),
        ("persistence", _persistence, "standing still; out and back to the start", 4, 10),
        ("sweep", _sweep, "fidelity and step time over sampler settings", 8, 10),
    ):
        parser = kinds.add_parser(name, help=help_text)
        _common(parser, clips, steps, fd_clips=name == "generate")
        parser.set_defaults(handler=handler)
        if name == "generate":
            parser.add_argument("--steps-list", default="10,100", help="solver steps to sweep")
            parser.add_argument(
                "--strengths", default="1.0,0.75,0.5", help="denoising ratios to sweep"
            )
        if name == "closed-loop":
            parser.add_argument(
                "--agent", choices=("constant", "planner"), default="constant", help="driver"
            )
            parser.add_argument("--speed", type=float, default=6.0, help="m/s of 'constant'")
        if name in ("closed-loop", "forecast", "persistence"):
            parser.add_argument(
                "--no-scene-memory", action="store_true", help="regenerate everything each step"
            )
        if name == "sweep":
            parser.add_argument(
                "--steps-list", type=numbers(int, 1), default="1,2,4,10", help="solver steps"
            )
            parser.add_argument(
                "--schedulers",
                default="DDIMScheduler,DPMSolverMultistepScheduler,UniPCMultistepScheduler",
                help="diffusers scheduler classes",
            )
            parser.add_argument(
                "--guidances", type=numbers(float, 0.0), default="1,2", help="scales (1: off)"
            )
            parser.add_argument(
                "--spacings",
                type=choices_list(TIMESTEP_SPACINGS),
                default="trailing",
                help="timestep spacings to sweep (leading,trailing: both)",
            )
        if name == "recon":
            parser.add_argument(
                "--tokenizer", type=Path, help="a tokenizer folder instead of a pipeline's"
            )
    road_users = kinds.add_parser(
        "road-users", help="seen road users foreseen by the tracks alone (no model)"
    )
    road_users.add_argument("--data-seed", type=int, default=HELD_OUT_SEED)
    road_users.add_argument("--clips", type=at_least(1), default=24, help="episodes")
    road_users.add_argument("--steps", type=at_least(1), default=5, help="env steps")
    road_users.add_argument("--speed", type=float, default=6.0, help="m/s of the driver")
    road_users.add_argument("--json", type=Path, help="write the results as JSON here")
    road_users.add_argument("--benchmarks", type=Path, help="splice the table into this markdown")
    road_users.set_defaults(handler=_road_users)
    bench = commands.add_parser("bench", help="latency, throughput, memory, FLOPs")
    _common(bench, 0, 20)
    bench.add_argument("--batch", type=at_least(1), default=8, help="envs of the batched figure")
    bench.add_argument(
        "--no-scaling", action="store_true", help="skip the frames-per-step x batch table"
    )
    bench.set_defaults(handler=_bench)
