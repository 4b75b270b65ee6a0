"""Closed-loop fidelity: the same seeds and actions in the exact and the learned world.

Per step, the learned world's frames are scored against the exact world's overall, on the
region the reset showed (the **seen** region: voxel columns whose world position lay inside
one of the reset's observed frames) and on the rest (the **new** region). Beside them, the
**frozen-copy reference** (the reset's last frame re-projected into each pose, road users
frozen, unknown space free) is scored the same way: the figure a world model has to beat.
Episodes also count where the learned world terminates and the exact one, with the same
actions, does not; and windows of learned-world frames are compared with the exact world's
in the features of the shipped occupancy encoder (Fréchet distance), next to the distance
between two sets of exact-world windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from occsim.evaluate.generate import frechet_distance
from occsim.labels import CLASS_NAMES, DYNAMIC_CLASSES, STATIC_CLASSES
from occsim.metrics import OccupancyMetrics, OccupancyScores
from occsim.scene_memory import frozen_copy, view_overlap

REGIONS = ("all", "seen", "new")
SEEN_COVERAGE = 0.2  # the seen region is judged where it covers at least this share of the view
# Random halvings the closed-loop FD is averaged over: with a few dozen windows, one split's
# FD swings by about a third (24 held-out episodes: 3.2 +- 0.9 over 100 splits).
FD_SPLITS = 20


@dataclass
class StepScores:
    """Scores of one step (all its frames): ``learned`` and ``frozen`` per region, and the
    share of voxel columns in the seen region."""

    learned: dict[str, OccupancyScores]
    frozen: dict[str, OccupancyScores]
    seen_fraction: float


@dataclass
class ClosedLoopResult:
    """What :func:`closed_loop_fidelity` measured."""

    steps: list[StepScores]
    episodes: int
    learned_only_terminations: int
    exact_terminations: int
    learned_terminations: int
    fd_learned: float | None = None
    fd_real: float | None = None
    termination_steps: list[int | None] = field(default_factory=list)


class _StepMetrics:
    def __init__(self) -> None:
        self.learned = {region: OccupancyMetrics() for region in REGIONS}
        self.frozen = {region: OccupancyMetrics() for region in REGIONS}
        self.seen_columns = 0
        self.columns = 0

    def update(
        self, learned: np.ndarray, frozen: np.ndarray, exact: np.ndarray, seen: np.ndarray
    ) -> None:
        masks = {"all": None, "seen": seen, "new": ~seen}
        for region, mask in masks.items():
            self.learned[region].update(learned, exact, mask)
            self.frozen[region].update(frozen, exact, mask)
        self.seen_columns += int(seen[..., 0].sum())
        self.columns += seen[..., 0].size

    def compute(self) -> StepScores:
        return StepScores(
            {r: m.compute() for r, m in self.learned.items()},
            {r: m.compute() for r, m in self.frozen.items()},
            self.seen_columns / max(self.columns, 1),
        )


def seen_mask(reset_poses: np.ndarray, pose: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Voxels ``shape (X, Y, Z)`` of the frame at ``pose`` whose world column lay inside one
    of the frames observed at ``reset_poses (K, 3)``."""
    columns = np.zeros(shape[:2], dtype=bool)
    for reset_pose in reset_poses:
        columns |= view_overlap(reset_pose, pose)
    return np.broadcast_to(columns[:, :, None], shape)


def closed_loop_fidelity(
    exact: gym.Env,
    learned: gym.Env,
    agent,
    seeds: list[int],
    steps: int,
    fd_encoder: torch.nn.Module | None = None,
    progress: bool = True,
) -> ClosedLoopResult:
    """Drive both worlds with the agent's actions (it sees the exact world) and score the
    learned one against it; see the module docstring. An episode runs ``steps`` steps or
    until the exact world terminates; a learned-world termination is recorded, and the
    learned world keeps being driven (so later steps are not scored on survivors only).
    Frame poses come from ``info["frame_poses"]`` of the exact env."""
    per_step = [_StepMetrics() for _ in range(steps)]
    learned_windows: list[np.ndarray] = []
    exact_windows: list[np.ndarray] = []
    window_episodes: list[int] = []
    learned_only = exact_ends = learned_ends = 0
    termination_steps: list[int | None] = []
    for episode, seed in enumerate(tqdm(seeds, desc="closed loop", disable=not progress)):
        observation, info = exact.reset(seed=seed)
        learned.reset(seed=seed)
        agent.reset(seed)
        reset_frame = observation["occupancy"][-1]
        reset_poses = info["frame_poses"]
        previous_exact = previous_learned = None
        ended_at = exact_ended_at = None
        for k in range(steps):
            action = agent.act(observation)
            observation, _, exact_done, exact_cut, info = exact.step(action)
            generated, _, learned_done, _, _ = learned.step(action)
            truth, fake = observation["occupancy"], generated["occupancy"]
            for t, pose in enumerate(info["frame_poses"]):
                seen = seen_mask(reset_poses, pose, truth[t].shape)
                copy = frozen_copy(reset_frame, reset_poses[-1], pose)
                per_step[k].update(fake[t], copy, truth[t], seen)
            if previous_exact is not None:
                exact_windows.append(np.concatenate([previous_exact, truth]))
                learned_windows.append(np.concatenate([previous_learned, fake]))
                window_episodes.append(episode)
                previous_exact = previous_learned = None
            else:
                previous_exact, previous_learned = truth, fake
            if learned_done and ended_at is None:
                ended_at = k + 1
            if exact_done:
                exact_ended_at = k + 1
            if exact_done or exact_cut:
                break
        exact_ends += exact_ended_at is not None
        learned_ends += ended_at is not None
        # Learned-only: the learned world ended at a step the exact one came through.
        learned_only += ended_at is not None and (exact_ended_at or steps + 1) > ended_at
        termination_steps.append(ended_at)
    result = ClosedLoopResult(
        [m.compute() for m in per_step if m.columns],
        len(seeds),
        learned_only,
        exact_ends,
        learned_ends,
        termination_steps=termination_steps,
    )
    if fd_encoder is not None and len(exact_windows) >= 4:
        result.fd_learned, result.fd_real = _frechet(
            fd_encoder, learned_windows, exact_windows, episodes=window_episodes
        )
    return result


@torch.no_grad()
def _frechet(
    encoder: torch.nn.Module,
    learned: list[np.ndarray],
    exact: list[np.ndarray],
    splits: int = FD_SPLITS,
    episodes: list[int] | None = None,
) -> tuple[float, float]:
    """FD of learned windows against exact ones, and of one half of the exact windows
    against the other (the real-vs-real reference at the same sample size). Window ``i`` of
    both lists comes from the same episode and step; each figure is the mean over ``splits``
    seeded random halvings, the same for both, with learned windows of one half scored
    against exact windows of the other. The halvings split ``episodes`` (the episode of each
    window; each window its own without them): windows of one drive resemble each other,
    and in both halves they would make either figure smaller."""
    frames = encoder.config.frames

    def features(windows: list[np.ndarray]) -> np.ndarray:
        return torch.cat(
            [encoder(torch.from_numpy(np.ascontiguousarray(w[:frames])[None])) for w in windows]
        ).numpy()

    learned_features, exact_features = features(learned), features(exact)
    rng = np.random.default_rng(0)
    groups = np.arange(len(exact_features)) if episodes is None else np.asarray(episodes)
    if len(np.unique(groups)) < 2:  # one drive: its windows are all there is to split
        groups = np.arange(len(exact_features))
    names = np.unique(groups)
    learned_fd, real_fd = [], []
    for _ in range(splits):
        order = rng.permutation(names)
        # Whole episodes into the first half until it holds half of the windows.
        sizes = np.array([np.count_nonzero(groups == g) for g in order])
        first = order[: int(np.searchsorted(np.cumsum(sizes), len(groups) / 2)) + 1]
        in_first = np.isin(groups, first)
        one, other = np.flatnonzero(in_first), np.flatnonzero(~in_first)
        learned_fd.append(frechet_distance(learned_features[one], exact_features[other]))
        real_fd.append(frechet_distance(exact_features[one], exact_features[other]))
    return float(np.mean(learned_fd)), float(np.mean(real_fd))


def class_group_miou(scores: OccupancyScores, classes: tuple[int, ...]) -> float:
    """Mean IoU over those of ``classes`` present (NaN when none is)."""
    values = [scores.per_class.get(CLASS_NAMES[c], np.nan) for c in classes]
    return float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")


def last_seen_step(result: ClosedLoopResult) -> int:
    """The last step (1-based) whose seen region covers at least :data:`SEEN_COVERAGE` of the
    view; 0 if none does."""
    covered = [k + 1 for k, s in enumerate(result.steps) if s.seen_fraction >= SEEN_COVERAGE]
    return max(covered, default=0)


def seen_drift(result: ClosedLoopResult, who: str = "learned") -> dict[str, tuple[float, float]]:
    """Seen-region mIoU of the static classes and of the road users at step 1 and at
    :func:`last_seen_step`: what the memory keeps, and what moves on (``{"static": (first,
    last), "road users": (first, last)}``; empty when no step qualifies). ``who`` is
    ``"learned"`` or ``"frozen"``."""
    last = last_seen_step(result)
    if not last:
        return {}
    first, final = (
        getattr(result.steps[0], who)["seen"],
        getattr(result.steps[last - 1], who)["seen"],
    )
    return {
        name: (class_group_miou(first, classes), class_group_miou(final, classes))
        for name, classes in (("static", STATIC_CLASSES), ("road users", DYNAMIC_CLASSES))
    }


def closed_loop_report(result: ClosedLoopResult):
    """The result as a :class:`Report`: one row per step and a mean row, learned and frozen
    copy side by side (IoU / mIoU overall, seen, new), then the episode figures."""
    from occsim.evaluate.report import Report

    columns = ["step", "seconds", "seen %"]
    for who in ("learned", "frozen"):
        for region in REGIONS:
            columns += [f"{who} {region} IoU", f"{who} {region} mIoU"]
    rows = []
    for k, step in enumerate(result.steps):
        row = {"step": k + 1, "seconds": 2.0 * (k + 1), "seen %": 100.0 * step.seen_fraction}
        for who, scores in (("learned", step.learned), ("frozen", step.frozen)):
            for region in REGIONS:
                row[f"{who} {region} IoU"] = scores[region].iou
                row[f"{who} {region} mIoU"] = scores[region].miou
        rows.append(row)
    if rows:
        mean = {"step": "mean"}
        for column in columns[2:]:
            mean[column] = float(np.nanmean([row[column] for row in rows]))
        rows.append(mean)
    episodes = max(result.episodes, 1)
    notes = [
        f"Episodes: {result.episodes}; the learned world terminated in "
        f"{result.learned_terminations}, the exact one in {result.exact_terminations}; "
        f"learned-only terminations: {100.0 * result.learned_only_terminations / episodes:.0f} %.",
    ]
    last = last_seen_step(result)
    if last:
        learned, frozen = seen_drift(result, "learned"), seen_drift(result, "frozen")
        notes.append(
            f"Seen region, step 1 -> {last} (the last covering >= {SEEN_COVERAGE:.0%} of the "
            "view), mIoU of the static classes: "
            f"{learned['static'][0]:.1f} -> {learned['static'][1]:.1f} (frozen copy "
            f"{frozen['static'][0]:.1f} -> {frozen['static'][1]:.1f}); of the road users: "
            f"{learned['road users'][0]:.1f} -> {learned['road users'][1]:.1f} (frozen copy "
            f"{frozen['road users'][0]:.1f} -> {frozen['road users'][1]:.1f})."
        )
    if result.fd_learned is not None:
        notes.append(
            f"Fréchet distance of learned-world windows to exact-world windows: "
            f"{result.fd_learned:.1f} (exact vs exact, same sample size: {result.fd_real:.1f}; "
            f"both the mean over {FD_SPLITS} random halvings of the episodes)."
        )
    return Report(
        "eval:closed-loop",
        "Closed loop: learned world vs exact world, frozen-copy reference beside it",
        columns,
        rows,
        notes=notes,
    )
