"""Generation quality: clips from noise (or from noised real latents) against real clips.

Two numbers per setting: the Fréchet distance between Gaussians fitted to the features of
the shipped, fixed :class:`~occsim.evaluate.features.OccupancyFeatureNet` (never the
tokenizer under test), and the Jensen-Shannon divergence of the class frequencies. Settings
sweep solver steps and the denoising ratio ``strength`` (the paper's Table 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from occsim.labels import NUM_CLASSES


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows ``a (N, D)``, ``b (M, D)``:
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"features must be (N, D) and (M, D) with N, M >= 2, got {a.shape} and {b.shape}"
        )
    mean = np.sum((a.mean(0) - b.mean(0)) ** 2)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of S_a S_b, which
    # are real and non-negative for covariance matrices (up to round-off).
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b)
    cross = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    return float(mean + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def class_frequencies(occupancy: np.ndarray) -> np.ndarray:
    """Share of each of the 18 classes over all voxels of ``occupancy``."""
    counts = np.bincount(np.asarray(occupancy).ravel(), minlength=NUM_CLASSES)
    return counts / max(counts.sum(), 1)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (bits, in [0, 1]) of two distributions."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return 0.5 * kl(p) + 0.5 * kl(q)


@dataclass
class GenerationRow:
    """Scores of one sampling setting over ``clips`` generated clips."""

    solver_steps: int
    strength: float
    clips: int
    fd: float
    class_jsd: float


@torch.no_grad()
def evaluate_generation(
    pipe,
    encoder,
    dataset,
    clips: int,
    settings: list[tuple[int, float]],
    guidance_scale: float = 2.0,
    seed: int = 0,
    progress: bool = True,
) -> list[GenerationRow]:
    """Generate one window per real clip for each ``(solver_steps, strength)`` setting,
    with the clip's own trajectory and no context (paper mode; ``strength < 1`` starts from
    the clip's own latents noised to that level), and score against the real clips."""
    tokenizer = pipe.tokenizer
    window = pipe.transformer.config.trajectory_length
    if encoder.config.frames != window:
        raise ValueError(
            f"the feature encoder reads {encoder.config.frames}-frame clips, the world model "
            f"generates {window}"
        )
    count = min(clips, len(dataset))
    real, trajectories, latents = [], [], []
    for i in range(count):
        item = dataset[i]
        real.append(item["occupancy"][:window])
        trajectories.append(item["trajectory"][:window, :2])
        frames = torch.from_numpy(real[-1][None]).to(tokenizer.device)
        latents.append(tokenizer.encode(frames).latents)
    real_features = torch.cat([encoder(torch.from_numpy(c[None])) for c in real]).numpy()
    real_frequencies = class_frequencies(np.stack(real))
    rows = []
    for steps, strength in settings:
        generator = torch.Generator().manual_seed(seed)
        generated = []
        for i in tqdm(
            range(count), desc=f"{steps} steps, strength {strength}", disable=not progress
        ):
            out = pipe(
                trajectories[i][None],
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                strength=strength,
                latents=latents[i] if strength < 1.0 else None,
                generator=generator,
            )
            generated.append(out.occupancy[0])
        features = torch.cat([encoder(torch.from_numpy(c[None])) for c in generated]).numpy()
        rows.append(
            GenerationRow(
                steps,
                strength,
                count,
                frechet_distance(features, real_features),
                js_divergence(class_frequencies(np.stack(generated)), real_frequencies),
            )
        )
    return rows
