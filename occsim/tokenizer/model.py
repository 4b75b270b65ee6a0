"""OccTokenizer: the 4D occupancy scene tokenizer of OccSora section 3.2 (a VQ-VAE).

Occupancy ``(B, T, X, Y, Z)`` -> class embedding (height folded into channels)
``(B, Z*c', T, X, Y)`` -> causal 3D conv encoder that downsamples time and space, with
axial attention at the latent -> nearest-code quantisation -> mirrored decoder ->
per-voxel class logits ``(B, T, X, Y, Z, 18)``, tied to the class embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from occsim.labels import (
    DRIVEABLE_SURFACE,
    FREE,
    MANMADE,
    NUM_CLASSES,
    SIDEWALK,
    TERRAIN,
    VEGETATION,
)
from occsim.tokenizer.layers import (
    AxialAttention,
    CausalConv3d,
    ResBlock3d,
    StreamCache,
    frame_norm,
)
from occsim.tokenizer.patches import ClassPatchEmbed, ClassPatchHead, PatchMerge3d, PatchSplit3d
from occsim.tokenizer.quantizer import QuantizerOutput, VectorQuantizer

TOKENIZER_PRESETS: dict[str, dict] = {
    # The paper's Table 3 first row: 32x200x200x16 -> 128x4x25x25, 512 codes, c' = 8.
    "paper": dict(
        class_embed_dim=8,
        stem_patch=(1, 1, 1),
        block_channels=(128, 256, 512, 512),
        downsample=((2, 2, 2), (2, 2, 2), (2, 2, 2)),
        num_res_blocks=2,
        latent_channels=128,
        codebook_size=512,
        codebook_groups=1,
        attention_heads=8,
        dropout=0.1,
    ),
    # Sized for a 2-core CPU: 4 frames of 200x200x16 -> one 50x50 latent frame.
    "default": dict(
        class_embed_dim=8,
        stem_patch=(1, 4, 4),
        block_channels=(32, 64),
        downsample=((4, 1, 1),),
        num_res_blocks=1,
        latent_channels=32,
        codebook_size=1024,
        codebook_groups=4,
        attention_heads=4,
        dropout=0.0,
    ),
    # For tests: small and fast.
    "tiny": dict(
        class_embed_dim=4,
        stem_patch=(1, 4, 4),
        block_channels=(8, 16),
        downsample=((2, 1, 1),),
        num_res_blocks=1,
        latent_channels=8,
        codebook_size=64,
        codebook_groups=2,
        attention_heads=2,
        dropout=0.0,
        head_upsample=(1, 2, 2),
        head_channels=8,
    ),
}

# The default with 8 codes of 512 per latent cell (72 bits per 4x4 columns) and a
# decoder-only 100x100 level, so the head predicts 2x2 columns. Trained on the bundled
# model's data it gains thin classes and loses common ones: same held-out mIoU, lower IoU
# (see BENCHMARKS.md, "Tokenizer reconstruction").
TOKENIZER_PRESETS["default_fine"] = {
    **TOKENIZER_PRESETS["default"],
    "codebook_size": 512,
    "codebook_groups": 8,
    "head_upsample": (1, 2, 2),
    "head_channels": 16,
}


def has_head_level(head_upsample: tuple[int, int, int]) -> bool:
    """Whether ``head_upsample`` (the config value) adds the decoder-only level before the
    head: ``head_split`` and ``head_block`` exist exactly when this holds."""
    return tuple(head_upsample) != (1, 1, 1)


@dataclass
class TokenizerOutput:
    """Training forward pass: logits of the supervised voxels, their target class ids, and
    the quantiser's output. ``logits`` is ``(N, classes)`` and ``target`` ``(N,)``."""

    logits: torch.Tensor
    target: torch.Tensor
    quantizer: QuantizerOutput


CPU_CLIPS_PER_CALL = 2  # clips a CPU encode of unrelated clips takes at once (encode_clips)


@dataclass
class TokenizerEncoding:
    """``latents (B, C, t, h, w)`` (quantised) and code ``indices (B, G, t, h, w)``."""

    latents: torch.Tensor
    indices: torch.Tensor


class OccTokenizer(ModelMixin, ConfigMixin):
    """4D occupancy VQ-VAE with causal-in-time convolutions, so clips can be streamed.

    Args:
        num_classes: occupancy classes (18 for Occ3D-nuScenes).
        grid_size: ``(X, Y, Z)`` voxels per frame.
        class_embed_dim: c', the learned embedding size of each class.
        stem_patch: ``(t, h, w)`` patch of the first (patchifying) layer.
        block_channels: channels of each level, from the finest to the latent resolution.
        downsample: ``(t, h, w)`` patch merge between consecutive levels.
        num_res_blocks: residual blocks per level.
        latent_channels: C, channels of the latent.
        codebook_size: N codes.
        codebook_groups: sub-vectors of the latent quantised independently (1 = paper).
        attention_heads: heads of the axial attention at the latent resolution.
        dropout: dropout in residual blocks and attention.
        head_upsample: ``(t, h, w)`` split of each stem patch by a decoder-only level
            before the head, so the head predicts smaller patches from finer features
            than the encoder's first level; ``(1, 1, 1)`` for none (the decoder mirrors
            the encoder exactly).
        head_channels: channels of that decoder-only level.
        commitment_cost: weight of the commitment loss.
        codebook_decay: EMA decay of the codebook.
    """

    @register_to_config
    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        grid_size: tuple[int, int, int] = (200, 200, 16),
        class_embed_dim: int = 8,
        stem_patch: tuple[int, int, int] = (1, 4, 4),
        block_channels: tuple[int, ...] = (32, 64),
        downsample: tuple[tuple[int, int, int], ...] = ((4, 1, 1),),
        num_res_blocks: int = 1,
        latent_channels: int = 32,
        codebook_size: int = 1024,
        codebook_groups: int = 4,
        attention_heads: int = 4,
        dropout: float = 0.0,
        head_upsample: tuple[int, int, int] = (1, 1, 1),
        head_channels: int = 16,
        commitment_cost: float = 0.25,
        codebook_decay: float = 0.99,
    ) -> None:
        super().__init__()
        stem_patch = tuple(stem_patch)
        downsample = tuple(tuple(d) for d in downsample)
        if len(downsample) != len(block_channels) - 1:
            raise ValueError(
                f"downsample has {len(downsample)} factors for {len(block_channels)} levels; "
                "give one factor between each pair of consecutive levels"
            )
        head_upsample = tuple(head_upsample)
        if len(head_upsample) != 3 or any(s % u for s, u in zip(stem_patch, head_upsample)):
            raise ValueError(
                f"head_upsample {head_upsample} must divide the stem patch {stem_patch} "
                "on each of (t, h, w)"
            )
        head_patch = tuple(s // u for s, u in zip(stem_patch, head_upsample))
        factors = [stem_patch, *downsample]
        self.temporal_factor = math.prod(f[0] for f in factors)
        self.spatial_factor = (math.prod(f[1] for f in factors), math.prod(f[2] for f in factors))
        x, y, z = grid_size
        if x % self.spatial_factor[0] or y % self.spatial_factor[1]:
            raise ValueError(
                f"grid {tuple(grid_size[:2])} is not divisible by the spatial factor "
                f"{self.spatial_factor}"
            )
        self.class_embedding = nn.Embedding(num_classes, class_embed_dim)
        # Classes common enough that patches made only of them may be subsampled in training.
        self.register_buffer(
            "_common_classes",
            torch.tensor([DRIVEABLE_SURFACE, SIDEWALK, TERRAIN, MANMADE, VEGETATION, FREE]),
            persistent=False,
        )
        top = block_channels[-1]

        # Encoder: fused class embedding + patchify, levels of residual blocks joined by
        # patch merges, axial attention at the latent resolution, projection to C.
        self.stem = ClassPatchEmbed(class_embed_dim, z, block_channels[0], stem_patch)
        self.encoder_blocks = nn.ModuleList(
            nn.ModuleList(ResBlock3d(ch, dropout) for _ in range(num_res_blocks))
            for ch in block_channels
        )
        self.encoder_merges = nn.ModuleList(
            PatchMerge3d(block_channels[i], block_channels[i + 1], f)
            for i, f in enumerate(downsample)
        )
        self.encoder_mid = ResBlock3d(top, dropout)
        self.encoder_attention = AxialAttention(top, attention_heads, dropout)
        self.encoder_norm = nn.GroupNorm(min(8, top), top)
        self.to_latent = PatchMerge3d(top, latent_channels, (1, 1, 1))
        self.quantizer = VectorQuantizer(
            codebook_size, latent_channels, codebook_groups, commitment_cost, codebook_decay
        )

        # Decoder: the mirror image, ending in logits tied to the class embeddings.
        self.from_latent = CausalConv3d(latent_channels, top)
        self.decoder_mid = ResBlock3d(top, dropout)
        self.decoder_attention = AxialAttention(top, attention_heads, dropout)
        self.decoder_blocks = nn.ModuleList(
            nn.ModuleList(ResBlock3d(ch, dropout) for _ in range(num_res_blocks))
            for ch in reversed(block_channels)
        )
        self.decoder_splits = nn.ModuleList(
            PatchSplit3d(block_channels[i + 1], block_channels[i], downsample[i])
            for i in reversed(range(len(downsample)))
        )
        head_in = block_channels[0]
        if has_head_level(head_upsample):
            head_in = head_channels
            self.head_split = PatchSplit3d(block_channels[0], head_channels, head_upsample)
            self.head_block = ResBlock3d(head_channels, dropout)
        self.decoder_norm = nn.GroupNorm(min(8, head_in), head_in)
        self.head = ClassPatchHead(head_in, class_embed_dim, num_classes, z, head_patch)
        self._encoder_frozen = False

    # What maps occupancy to codes: fixed by freeze_encoder, compared by encoder_state_dict.
    ENCODER_PARTS = (
        "class_embedding",
        "stem",
        "encoder_blocks",
        "encoder_merges",
        "encoder_mid",
        "encoder_attention",
        "encoder_norm",
        "to_latent",
        "quantizer",
    )

    def _encoder_modules(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.ENCODER_PARTS]

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers that determine codes and latents (the decoder excluded):
        two tokenizers with equal encoder states share one latent space."""
        return {
            key: value
            for key, value in self.state_dict().items()
            if key.split(".")[0] in self.ENCODER_PARTS
        }

    def freeze_encoder(self) -> None:
        """Fix the encoder, the class embeddings and the codebook for decoder fine-tuning.

        Their parameters stop receiving gradients and stay in eval mode (no dropout, no
        codebook EMA), so every clip keeps its codes and latents: a DiT trained on this
        latent space stays valid while the decoder improves (as Stable Diffusion's
        fine-tuned VAE decoders do).
        """
        for module in self._encoder_modules():
            module.requires_grad_(False)
        self._encoder_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> OccTokenizer:
        super().train(mode)
        if self._encoder_frozen:
            for module in self._encoder_modules():
                module.eval()
        return self

    @classmethod
    def from_preset(cls, name: str, **overrides) -> OccTokenizer:
        """A tokenizer of a named size: ``paper``, ``default``, ``default_fine`` or ``tiny``."""
        if name not in TOKENIZER_PRESETS:
            raise ValueError(
                f"unknown tokenizer preset {name!r}; expected one of {sorted(TOKENIZER_PRESETS)}"
            )
        return cls(**{**TOKENIZER_PRESETS[name], **overrides})

    # ------------------------------------------------------------------ shapes
    def latent_shape(self, num_frames: int) -> tuple[int, int, int, int]:
        """``(C, t, h, w)`` of the latent of a clip of ``num_frames`` frames."""
        self._check_frames(num_frames)
        x, y, _ = self.config.grid_size
        return (
            self.config.latent_channels,
            num_frames // self.temporal_factor,
            x // self.spatial_factor[0],
            y // self.spatial_factor[1],
        )

    def _check_frames(self, num_frames: int) -> None:
        if num_frames < 1 or num_frames % self.temporal_factor:
            raise ValueError(
                f"clip length {num_frames} must be a positive multiple of the temporal factor "
                f"{self.temporal_factor} (pad the clip by repeating its last frame)"
            )

    def _check_occupancy(self, occupancy: torch.Tensor) -> torch.Tensor:
        if not isinstance(occupancy, torch.Tensor):
            raise TypeError(f"occupancy must be a torch tensor, got {type(occupancy).__name__}")
        if occupancy.ndim != 5:
            raise ValueError(
                f"occupancy must have shape (B, T, X, Y, Z), got {tuple(occupancy.shape)}"
            )
        if occupancy.dtype.is_floating_point or occupancy.dtype == torch.bool:
            raise TypeError(f"occupancy must hold integer class ids, got {occupancy.dtype}")
        if tuple(occupancy.shape[2:]) != tuple(self.config.grid_size):
            raise ValueError(
                f"occupancy frames must be {tuple(self.config.grid_size)}, got "
                f"{tuple(occupancy.shape[2:])}"
            )
        self._check_frames(occupancy.shape[1])
        low, high = int(occupancy.min()), int(occupancy.max())
        if low < 0 or high >= self.config.num_classes:
            raise ValueError(
                f"occupancy holds class ids in [{low}, {high}], expected "
                f"0..{self.config.num_classes - 1}"
            )
        return occupancy

    # ------------------------------------------------------------------ encoder
    def _encode_features(self, occupancy: torch.Tensor, cache: StreamCache | None):
        h = self.stem(self._check_occupancy(occupancy), self.class_embedding.weight)
        for i, blocks in enumerate(self.encoder_blocks):
            for block in blocks:
                h = block(h, cache)
            if i < len(self.encoder_merges):
                h = self.encoder_merges[i](h)
        h = self.encoder_attention(self.encoder_mid(h, cache))
        return self.to_latent(F.silu(frame_norm(self.encoder_norm, h)))

    def encode(
        self, occupancy: torch.Tensor, cache: StreamCache | None = None
    ) -> TokenizerEncoding:
        """Quantised latents and code indices of occupancy ``(B, T, X, Y, Z)``.

        Pass the same :class:`StreamCache` to consecutive calls to encode a long clip chunk
        by chunk (each chunk a multiple of the temporal factor) exactly as a whole.
        """
        quantized = self.quantizer(self._encode_features(occupancy, cache))
        return TokenizerEncoding(quantized.quantized, quantized.indices)

    @torch.no_grad()
    def encode_clips(self, occupancy: torch.Tensor) -> TokenizerEncoding:
        """:meth:`encode` of a batch of unrelated clips ``(B, T, X, Y, Z)`` (no stream),
        computed on the CPU :data:`CPU_CLIPS_PER_CALL` clips a call. There one call of 4
        clips takes 1.2x the time of four calls of one (its activations outgrow the caches),
        and two calls of two 0.9x (BENCHMARKS.md). The features differ from one batch call's
        by float rounding (about 1e-6), so a code may flip only where two codes tie."""
        if self.device.type != "cpu" or len(occupancy) <= CPU_CLIPS_PER_CALL:
            return self.encode(occupancy)
        parts = [self.encode(part) for part in occupancy.split(CPU_CLIPS_PER_CALL)]
        return TokenizerEncoding(
            torch.cat([part.latents for part in parts]),
            torch.cat([part.indices for part in parts]),
        )

    # ------------------------------------------------------------------ decoder
    def decode(self, latents: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        """Class logits ``(B, T, X, Y, Z, num_classes)`` of latents ``(B, C, t, h, w)``."""
        return self.head(self._decode_features(latents, cache), self.class_embedding.weight)

    def _decode_features(self, latents: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
        expected = self.config.latent_channels
        if latents.ndim != 5 or latents.shape[1] != expected:
            raise ValueError(
                f"latents must have shape (B, {expected}, t, h, w), got {tuple(latents.shape)}"
            )
        h = self.from_latent(latents, cache)
        h = self.decoder_attention(self.decoder_mid(h, cache))
        for i, blocks in enumerate(self.decoder_blocks):
            for block in blocks:
                h = block(h, cache)
            if i < len(self.decoder_splits):
                h = self.decoder_splits[i](h)
        if has_head_level(self.config.head_upsample):
            h = self.head_block(self.head_split(h), cache)
        return F.silu(frame_norm(self.decoder_norm, h))

    @torch.no_grad()
    def decode_classes(
        self,
        latents: torch.Tensor,
        cache: StreamCache | None = None,
        wanted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Occupancy ``(B, T, X, Y, Z)`` uint8 of latents, without holding all logits.

        ``wanted`` (bool ``(B, T, X, Y, Z)``) names the voxels the caller will read: the
        head then decodes only its patches that hold one (the features, and with them the
        stream, are computed whole), and the others come back free (class 0 for a label
        set without ``free``). A world that knows most of what it sees skips most of the
        head's work."""
        # With the Occ3D label set, most voxels are free: the head finds them first.
        free = FREE if self.config.num_classes == NUM_CLASSES else None
        cells = None
        if wanted is not None:
            cells = self.head.patch_targets(wanted.bool()).any(dim=-1)
        return self.head.classes(
            self._decode_features(latents, cache), self.class_embedding.weight, free, cells=cells
        )

    def decode_indices(
        self, indices: torch.Tensor, cache: StreamCache | None = None
    ) -> torch.Tensor:
        """Class logits of code indices ``(B, G, t, h, w)``."""
        return self.decode(self.quantizer.lookup(indices), cache)

    @torch.no_grad()
    def reconstruct(self, occupancy: torch.Tensor) -> torch.Tensor:
        """Occupancy ``(B, T, X, Y, Z)`` uint8 after an encode-decode round trip."""
        return self.decode_classes(self.encode(occupancy).latents)

    def forward(
        self,
        occupancy: torch.Tensor,
        patch_fraction: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> TokenizerOutput:
        """Training pass over occupancy ``(B, T, X, Y, Z)``.

        Args:
            occupancy: the clip to reconstruct.
            patch_fraction: share of the head's patches (``stem_patch`` x height voxels
                each) whose logits are computed and supervised; patches holding a rare
                class (anything but free, flat ground, manmade and vegetation) are always
                kept. Below 1 this saves most of the cost of full-volume logits.
            generator: random source of the patch subset.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self._encoder_frozen):
            quantized = self.quantizer(self._encode_features(occupancy, None))
        h = self._decode_features(quantized.quantized, None)
        targets = self.head.patch_targets(occupancy.long())  # (B, t, x, y, P)
        flat_targets = targets.reshape(-1, targets.shape[-1])
        if patch_fraction >= 1.0:
            positions = torch.arange(len(flat_targets), device=h.device)
        else:
            rare = (~torch.isin(flat_targets, self._common_classes.to(h.device))).any(dim=1)
            keep = torch.rand(len(flat_targets), generator=generator, device=h.device)
            positions = torch.nonzero(rare | (keep < patch_fraction)).squeeze(1)
        logits = self.head.sampled_logits(h, self.class_embedding.weight, positions)
        return TokenizerOutput(
            logits=logits.reshape(-1, logits.shape[-1]),
            target=flat_targets[positions].reshape(-1),
            quantizer=quantized,
        )
