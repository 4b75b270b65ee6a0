"""Reconstruction losses of the tokenizer: cross-entropy and Lovasz-softmax.

Lovasz-softmax (Berman et al., 2018) is a convex surrogate of the per-class IoU, the metric
the tokenizer is judged by; cross-entropy alone under-weights small classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _lovasz_grad(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors."""
    total = sorted_truth.sum()
    intersection = total - sorted_truth.cumsum(0)
    union = total + (1.0 - sorted_truth).cumsum(0)
    jaccard = 1.0 - intersection / union
    if len(sorted_truth) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(
    probabilities: torch.Tensor, labels: torch.Tensor, ignore_free: bool = False, free_id: int = 17
) -> torch.Tensor:
    """Lovasz-softmax loss averaged over the classes present in ``labels``.

    Args:
        probabilities: ``(N, C)`` class probabilities.
        labels: ``(N,)`` class ids.
        ignore_free: leave the free class out of the average.
    """
    num_classes = probabilities.shape[1]
    losses = []
    for c in range(num_classes):
        if ignore_free and c == free_id:
            continue
        truth = (labels == c).float()
        if truth.sum() == 0:
            continue
        errors = (truth - probabilities[:, c]).abs()
        # Stable: tied errors (equal logits are common) get one fixed order, and with it
        # one gradient, whatever the sort kernel's threading.
        errors_sorted, order = torch.sort(errors, descending=True, stable=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(truth[order])))
    if not losses:
        return probabilities.sum() * 0.0
    return torch.stack(losses).mean()


def inverse_sqrt_frequency_weights(
    occupancy: torch.Tensor, num_classes: int, max_weight: float = 20.0
) -> torch.Tensor:
    """Cross-entropy class weights ``(num_classes,)`` proportional to ``1/sqrt(frequency)``
    of the classes in ``occupancy`` (any shape of class ids), scaled so that an average
    voxel weighs 1 and capped at ``max_weight``; absent classes get the cap."""
    counts = torch.bincount(occupancy.reshape(-1).long(), minlength=num_classes).double()
    if counts.sum() == 0:
        raise ValueError("class weights need at least one voxel")
    frequency = counts / counts.sum()
    weights = torch.full((num_classes,), max_weight, dtype=torch.float64)
    present = frequency > 0
    weights[present] = frequency[present].rsqrt() / frequency[present].sqrt().sum()
    return weights.clamp(max=max_weight).float()


def reconstruction_losses(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    lovasz_weight: float = 1.0,
    lovasz_voxels: int = 100_000,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Cross-entropy and Lovasz-softmax of logits ``(..., C)`` against class ids ``(...)``.

    Lovasz sorts every voxel per class; on a random subset of ``lovasz_voxels`` voxels it
    costs a fraction and estimates the same loss.
    """
    num_classes = logits.shape[-1]
    flat_logits = logits.reshape(-1, num_classes)
    flat_target = target.reshape(-1).long()
    ce = F.cross_entropy(flat_logits.float(), flat_target, weight=class_weights)
    losses = {"ce": ce}
    if lovasz_weight > 0:
        if flat_target.numel() > lovasz_voxels:
            pick = torch.randint(
                0, flat_target.numel(), (lovasz_voxels,), device=logits.device, generator=generator
            )
            flat_logits, flat_target = flat_logits[pick], flat_target[pick]
        losses["lovasz"] = lovasz_weight * lovasz_softmax(
            flat_logits.float().softmax(-1), flat_target
        )
    return losses


def tokenizer_losses(
    output,
    class_weights: torch.Tensor | None = None,
    lovasz_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Every loss term of a tokenizer training step, and their sum under ``"total"``.

    Args:
        output: the :class:`~occsim.tokenizer.TokenizerOutput` of a training forward pass,
            which carries the logits and the target ids of the supervised voxels.
    """
    losses = reconstruction_losses(
        output.logits, output.target, class_weights, lovasz_weight, generator=generator
    )
    losses["commitment"] = output.quantizer.commitment_loss
    losses["total"] = sum(losses.values())
    # Reported, not optimised: the EMA updates move the codebook, not a gradient.
    losses["codebook"] = output.quantizer.codebook_loss
    return losses
