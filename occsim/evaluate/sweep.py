"""``occsim eval sweep``: fidelity and step time of the learned world over sampler settings.

Each setting (a diffusers scheduler, its timestep spacing and solver steps, guidance on or
off) drives the same held-out episodes in closed loop
(:func:`~occsim.evaluate.closed_loop.closed_loop_fidelity`: learned vs exact world, seen and
new region, learned-only terminations) and forecasts the same clips
(:func:`~occsim.evaluate.forecast.evaluate_forecast`); the learned env's steps are timed as
the closed loop runs them. The DiT predicts the clean latent, so DDIM with one step and
``"trailing"`` spacing is the one-pass clean-latent mode: one forward pass from noise at the
last training timestep, its prediction kept (``"leading"`` spacing would ask it at t=0, as
if the noise were clean).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import diffusers
import gymnasium as gym
import numpy as np

from occsim.evaluate.closed_loop import closed_loop_fidelity
from occsim.evaluate.forecast import evaluate_forecast
from occsim.evaluate.report import Report
from occsim.pipeline import OccSoraPipeline, first_step_error

SCHEDULERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler")
SOLVER_STEPS = (1, 2, 4, 10)
GUIDANCE = (1.0, 2.0)
# The setting the others are compared with: 10 guided DDIM steps, leading where that ran.
REFERENCES = (("DDIMScheduler", "leading", 10, 2.0), ("DDIMScheduler", "trailing", 10, 2.0))


@dataclass(frozen=True)
class SweepRow:
    """Figures of one sampler setting (means over the closed loop's steps)."""

    scheduler: str
    spacing: str
    solver_steps: int
    guidance: float
    step_p50_ms: float
    all_miou: float
    seen_miou: float
    new_miou: float
    all_iou: float
    learned_only_terminations: float
    forecast_miou: float


class StepTimer(gym.Wrapper):
    """Records the wall time of every ``step``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seconds: list[float] = []

    def step(self, action):
        begin = time.perf_counter()
        out = self.env.step(action)
        self.seconds.append(time.perf_counter() - begin)
        return out


def with_scheduler(pipe: OccSoraPipeline, name: str, spacing: str | None = None) -> OccSoraPipeline:
    """``pipe`` sampling with the diffusers scheduler class ``name`` (same config, the
    timestep ``spacing`` given, else its own)."""
    scheduler_class = getattr(diffusers, name, None)
    if not isinstance(scheduler_class, type):
        raise ValueError(f"scheduler {name!r} is not a diffusers scheduler class")
    config = dict(pipe.scheduler.config)
    if spacing is not None:
        config["timestep_spacing"] = spacing
    pipe.scheduler = scheduler_class.from_config(config)
    return pipe


def runnable(
    pipe: OccSoraPipeline, settings: list[tuple[str, str, int, float]]
) -> tuple[list[tuple[str, str, int, float]], list[tuple[str, str, int, float]]]:
    """``settings`` split into those a rollout can sample and those whose first solver
    step is at t=0 (one ``"leading"`` step), which the rollout refuses."""
    original = pipe.scheduler
    ok, refused = [], []
    try:
        for setting in settings:
            name, spacing, solver_steps, _ = setting
            pipe.scheduler = original  # each setting built from the pipeline's own config
            with_scheduler(pipe, name, spacing)
            error = first_step_error(pipe.scheduler, solver_steps)
            (refused if error else ok).append(setting)
    finally:
        pipe.scheduler = original
    return ok, refused


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def sweep(
    pipe: OccSoraPipeline,
    make_learned,
    exact: gym.Env,
    agent,
    seeds: list[int],
    steps: int,
    forecast_clips,
    settings: list[tuple[str, str, int, float]],
    progress: bool = False,
) -> list[SweepRow]:
    """One :class:`SweepRow` per ``(scheduler, spacing, solver steps, guidance)`` of
    ``settings``; ``make_learned(num_inference_steps, guidance_scale)`` builds the learned
    env on ``pipe``, whose scheduler is swapped per setting (and restored at the end)."""
    original = pipe.scheduler
    rows = []
    try:
        for name, spacing, solver_steps, guidance in settings:
            pipe.scheduler = original  # each setting built from the pipeline's own config
            with_scheduler(pipe, name, spacing)
            learned = StepTimer(make_learned(solver_steps, guidance))
            result = closed_loop_fidelity(exact, learned, agent, seeds, steps, progress=progress)
            forecast = evaluate_forecast(
                pipe,
                forecast_clips,
                num_inference_steps=solver_steps,
                guidance_scale=guidance,
                progress=progress,
                scene_memory=True,
            )
            scores = result.steps
            rows.append(
                SweepRow(
                    scheduler=name,
                    spacing=spacing,
                    solver_steps=solver_steps,
                    guidance=guidance,
                    step_p50_ms=float(np.percentile(learned.seconds, 50) * 1e3),
                    all_miou=_mean([s.learned["all"].miou for s in scores]),
                    seen_miou=_mean([s.learned["seen"].miou for s in scores]),
                    new_miou=_mean([s.learned["new"].miou for s in scores]),
                    all_iou=_mean([s.learned["all"].iou for s in scores]),
                    learned_only_terminations=100.0
                    * result.learned_only_terminations
                    / max(result.episodes, 1),
                    forecast_miou=_mean([s.miou for s in forecast]),
                )
            )
    finally:
        pipe.scheduler = original
    return rows


def sweep_report(rows: list[SweepRow]) -> Report:
    """The sweep as a table, each setting's mIoU beside the reference setting's."""
    by_setting = {(r.scheduler, r.spacing, r.solver_steps, r.guidance): r for r in rows}
    reference = next((by_setting[s] for s in REFERENCES if s in by_setting), None)
    table = []
    for row in rows:
        entry = {
            "scheduler": row.scheduler.replace("Scheduler", ""),
            "spacing": row.spacing,
            "solver steps": row.solver_steps,
            "guidance": row.guidance,
            "step p50 ms": row.step_p50_ms,
            "all mIoU": row.all_miou,
            "seen mIoU": row.seen_miou,
            "new mIoU": row.new_miou,
            "all IoU": row.all_iou,
            "learned-only term. %": row.learned_only_terminations,
            "forecast mIoU": row.forecast_miou,
        }
        if reference is not None:
            entry["Δ all mIoU"] = row.all_miou - reference.all_miou
            entry["Δ seen mIoU"] = row.seen_miou - reference.seen_miou
        table.append(entry)
    notes = [
        "Closed-loop figures are means over the steps of the held-out episodes (constant "
        "speed); forecast mIoU the mean over 1, 2 and 3 s. DDIM with 1 trailing step is "
        "the one-pass clean-latent mode.",
    ]
    if reference is not None:
        notes.append(f"Δ: against DDIM, {reference.spacing} spacing, 10 steps, guidance 2.")
    return Report(
        "eval:sweep", "Sampler sweep: fidelity and step time", list(table[0]), table, notes=notes
    )
