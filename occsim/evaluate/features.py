"""The fixed occupancy encoder whose features the generation Fréchet distance is taken in.

A small BEV CNN over a clip's per-frame class-fraction maps (the share of each class in
every voxel column), trained once on procedural clips to tell the ego manoeuvre and its
mean speed (``scripts/train_fd_encoder.py``), then frozen and shipped in
``assets/fd_encoder``. It shares nothing with the tokenizer under test.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from occsim.labels import NUM_CLASSES

FD_ENCODER = "fd_encoder"


class OccupancyFeatureNet(ModelMixin, ConfigMixin):
    """``(B, T, X, Y, Z)`` uint8 clips -> ``(B, feature_dim)`` features (+ training heads).

    Args:
        frames: clip length T the encoder reads.
        feature_dim: width of the feature (the Fréchet space).
        num_maneuvers: classes of the manoeuvre head used in training.
        pool: BEV average pooling before the convolutions (200 -> 100 cells).
    """

    @register_to_config
    def __init__(
        self, frames: int = 8, feature_dim: int = 64, num_maneuvers: int = 7, pool: int = 2
    ) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(frames * NUM_CLASSES, feature_dim // 2, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(feature_dim // 2, feature_dim, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(feature_dim, feature_dim, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(feature_dim, feature_dim, 3, stride=2, padding=1),
        )
        self.maneuver_head = nn.Linear(feature_dim, num_maneuvers)
        self.speed_head = nn.Linear(feature_dim, 1)

    def class_fractions(self, occupancy: torch.Tensor) -> torch.Tensor:
        """``(B, T * classes, X / pool, Y / pool)`` share of each class per column."""
        if occupancy.ndim != 5 or occupancy.shape[1] != self.config.frames:
            raise ValueError(
                f"occupancy must have shape (B, {self.config.frames}, X, Y, Z), "
                f"got {tuple(occupancy.shape)}"
            )
        # Class by class: a one-hot of the whole clip would be 18x its float size.
        shares = torch.stack(
            [(occupancy == k).float().mean(dim=4) for k in range(NUM_CLASSES)], dim=2
        )  # (B, T, K, X, Y)
        maps = rearrange(shares, "b t k x y -> b (t k) x y")
        return F.avg_pool2d(maps, self.config.pool)

    def features_of_fractions(self, fractions: torch.Tensor) -> torch.Tensor:
        """Features of precomputed :meth:`class_fractions` maps."""
        return self.convs(fractions).mean(dim=(2, 3))

    def forward(self, occupancy: torch.Tensor) -> torch.Tensor:
        """Features ``(B, feature_dim)``: global average of the last convolution."""
        return self.features_of_fractions(self.class_fractions(occupancy))

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Manoeuvre logits and mean speed (m/s) of features (training only)."""
        return self.maneuver_head(F.gelu(features)), self.speed_head(F.gelu(features))[:, 0]
