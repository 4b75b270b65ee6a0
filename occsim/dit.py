"""OccDiT: the trajectory-conditioned diffusion transformer of OccSora section 3.3.

In the style of DiT's ``models.py``: one class per concept, explicit adaLN-Zero init, shape
comments in ``forward``, size presets in a small dict. Beyond the paper, latent frames can
be given clean as *context* (marked by a learned flag embedding) so that one model both
generates a clip from noise and continues a given history, and the trajectory can be
replaced by a learned *null* embedding, which makes classifier-free guidance work.

With ``context_prior`` (for ``prediction_type="sample"``), the last context frame warped
by the window's ego motion (:mod:`occsim.latent_warp`) is both an extra input of every token
and the baseline of the predicted clean latent: the trunk only adds what a static world
moved by the ego would not explain.

With ``memory_conditioning``, each generated frame also sees the scene memory's view of it
(:mod:`occsim.memory_condition`: the view's latents and the known fraction of each cell) as
extra input channels, the way inpainting models take the masked image and the mask.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from occsim.latent_warp import PADDINGS, motion_prior

DIT_PRESETS: dict[str, dict] = {
    # The paper's latent 128x4x25x25 (32 frames), DiT-XL-sized trunk of 28 blocks.
    "paper": dict(
        latent_channels=128,
        latent_frames=4,
        latent_size=(25, 25),
        patch_size=(1, 1, 1),
        trajectory_length=32,
        hidden_size=1152,
        depth=28,
        num_heads=16,
    ),
    # Sized with the default tokenizer for a 2-core CPU: 2 latent frames (one of context).
    "default": dict(
        latent_channels=32,
        latent_frames=2,
        latent_size=(50, 50),
        patch_size=(1, 5, 5),
        trajectory_length=8,
        hidden_size=144,
        depth=4,
        num_heads=4,
    ),
    "tiny": dict(
        latent_channels=8,
        latent_frames=2,
        latent_size=(10, 10),
        patch_size=(1, 2, 2),
        trajectory_length=4,
        hidden_size=48,
        depth=2,
        num_heads=2,
    ),
}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """``(len(positions), dim)`` sine-cosine embedding (half sines, half cosines)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_3d(dim: int, grid: tuple[int, int, int]) -> np.ndarray:
    """Fixed 3D positional embedding ``(t*h*w, dim)`` (paper eq. 2): a third of the
    channels encodes each of time, height and width."""
    if dim % 6:
        raise ValueError(f"hidden size {dim} must be divisible by 6 for a 3D sin-cos embedding")
    t, h, w = np.meshgrid(*(np.arange(n) for n in grid), indexing="ij")
    part = dim // 3
    return np.concatenate(
        [sincos_1d(part, t.ravel()), sincos_1d(part, h.ravel()), sincos_1d(part, w.ravel())],
        axis=1,
    ).astype(np.float32)


class TimestepEmbedder(nn.Module):
    """Diffusion timestep -> vector: sinusoidal frequencies, then an MLP."""

    def __init__(self, hidden_size: int, frequency_size: int = 256) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.frequency_size // 2
        freqs = torch.exp(
            -math.log(10000)
            * torch.arange(half, dtype=torch.float32, device=timesteps.device)
            / half
        )
        args = timesteps.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class TrajectoryEmbedder(nn.Module):
    """Flattened ego waypoints -> vector by an MLP (paper eq. 3), or a learned null vector.

    The null vector stands for "no trajectory" in classifier-free guidance; training swaps
    it in with some probability.
    """

    def __init__(self, trajectory_length: int, hidden_size: int, scale: float) -> None:
        super().__init__()
        self.scale = scale  # metres -> roughly unit inputs
        self.mlp = nn.Sequential(
            nn.Linear(trajectory_length * 2, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        self.null = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, trajectory: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        embedded = self.mlp(trajectory[..., :2].flatten(1) / self.scale)
        return torch.where(drop[:, None], self.null.expand_as(embedded), embedded)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        hidden = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(hidden, hidden_size),
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, 1)
        q, k, v = rearrange(
            self.qkv(modulate(self.norm1(x), shift_a, scale_a)),
            "b n (three h d) -> three b h n d",
            three=3,
            h=self.num_heads,
        )
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
        x = x + gate_a.unsqueeze(1) * self.proj(attended)
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    """adaLN, then a linear map of each token to its patch of noise and variance values."""

    def __init__(self, hidden_size: int, patch_volume: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_volume * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class OccDiT(ModelMixin, ConfigMixin):
    """Diffusion transformer over the tokenizer latent ``(C, t, h, w)``.

    Args:
        latent_channels: C of the tokenizer latent.
        latent_frames: t, latent frames in the model's window (context + generated).
        latent_size: ``(h, w)`` of the latent.
        patch_size: ``(pt, ph, pw)`` of the 3D patch embedding.
        trajectory_length: ego waypoints in the window's trajectory (frames, 2 Hz).
        hidden_size, depth, num_heads, mlp_ratio: transformer size.
        learn_sigma: also predict the variance (``learned_range``), as improved DDPM / DiT.
        trajectory_scale: metres that map to 1 at the trajectory MLP's input.
        latent_scale, latent_shift: normalisation of the tokenizer latents measured on the
            data (``(z - shift) * scale`` is what is diffused).
        context_prior: add the ego-motion-warped last context frame to the input and to the
            first ``latent_channels`` outputs; only meaningful when the model predicts the
            clean sample. It follows the given trajectory in both guidance passes, like
            the context itself; the null trajectory drops the embedding only.
        grid_half_extent: metres from the ego to the grid's edge (Occ3D: 40), for the warp.
        prior_padding: what the prior holds where the ego sees new space: ``"zeros"`` (the
            data mean), ``"border"`` (the nearest seen cell, so roads go on into it) or
            ``"ground"`` (the ``new_space`` latents of :meth:`forward`: the scene memory's
            ground carried on, :mod:`occsim.ground_prior`; zeros where none are given).
        memory_conditioning: take the scene memory's view of the window (``latent_channels``
            latents and one known-fraction channel per latent frame) as extra inputs.
            :meth:`with_memory_conditioning` adds them to a trained model with zero
            weights, so it starts out predicting exactly what it did.
    """

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 32,
        latent_frames: int = 2,
        latent_size: tuple[int, int] = (50, 50),
        patch_size: tuple[int, int, int] = (1, 5, 5),
        trajectory_length: int = 8,
        hidden_size: int = 192,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        trajectory_scale: float = 20.0,
        latent_scale: float = 1.0,
        latent_shift: float = 0.0,
        context_prior: bool = False,
        grid_half_extent: float = 40.0,
        memory_conditioning: bool = False,
        prior_padding: str = "zeros",
    ) -> None:
        super().__init__()
        if prior_padding not in PADDINGS:
            raise ValueError(f"prior_padding must be one of {PADDINGS}, got {prior_padding!r}")
        pt, ph, pw = patch_size
        h, w = latent_size
        if latent_frames % pt or h % ph or w % pw:
            raise ValueError(
                f"latent {(latent_frames, h, w)} is not divisible by patch size {tuple(patch_size)}"
            )
        self.out_channels = latent_channels * (2 if learn_sigma else 1)
        if trajectory_length % latent_frames:
            raise ValueError(
                f"trajectory_length {trajectory_length} must be a multiple of latent_frames "
                f"{latent_frames} (frames per latent frame)"
            )
        self.token_grid = (latent_frames // pt, h // ph, w // pw)
        self.memory_channels = latent_channels + 1 if memory_conditioning else 0
        in_channels = latent_channels * (2 if context_prior else 1) + self.memory_channels
        self.x_embedder = nn.Linear(in_channels * pt * ph * pw, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = TrajectoryEmbedder(trajectory_length, hidden_size, trajectory_scale)
        self.context_embed = nn.Parameter(torch.zeros(hidden_size))
        self.register_buffer(
            "pos_embed", torch.tensor(sincos_3d(hidden_size, self.token_grid)), persistent=False
        )
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, pt * ph * pw, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: Xavier linears, small embedder MLPs, zeroed adaLN and output."""

        def _basic(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(_basic)
        for mlp in (self.t_embedder.mlp, self.y_embedder.mlp):
            nn.init.normal_(mlp[0].weight, std=0.02)
            nn.init.normal_(mlp[2].weight, std=0.02)
        nn.init.normal_(self.y_embedder.null, std=0.02)
        nn.init.normal_(self.context_embed, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> OccDiT:
        """A DiT of a named size: ``paper``, ``default`` or ``tiny``."""
        if name not in DIT_PRESETS:
            raise ValueError(f"unknown DiT preset {name!r}; expected one of {sorted(DIT_PRESETS)}")
        return cls(**{**DIT_PRESETS[name], **overrides})

    def with_memory_conditioning(self) -> OccDiT:
        """A copy of this model that also takes the scene memory's view, with the new input
        weights zero: before any training it predicts exactly what this model does."""
        if self.config.memory_conditioning:
            raise ValueError("this DiT already takes the scene memory's view")
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        model = type(self)(**{**config, "memory_conditioning": True}).to(self.device)
        state = self.state_dict()
        weight = state["x_embedder.weight"]  # (D, in_channels * patch volume), channel-major
        grown = weight.new_zeros(weight.shape[0], model.x_embedder.in_features)
        grown[:, : weight.shape[1]] = weight
        state["x_embedder.weight"] = grown
        model.load_state_dict(state)
        return model if self.dtype == torch.float32 else model.to(dtype=self.dtype)

    def with_prior_padding(self, padding: str) -> OccDiT:
        """This model's weights in a DiT whose motion prior pads new space with ``padding``
        (see ``prior_padding``); itself when it already does."""
        if padding == self.config.prior_padding:
            return self
        config = {k: v for k, v in self.config.items() if not k.startswith("_")}
        model = type(self)(**{**config, "prior_padding": padding}).to(self.device)
        model.load_state_dict(self.state_dict())
        return model if self.dtype == torch.float32 else model.to(dtype=self.dtype)

    def memory_input(self, condition: torch.Tensor, shown: torch.Tensor) -> torch.Tensor:
        """The ``memory`` argument of :meth:`forward` from a memory condition ``(B, C + 1,
        t, h, w)`` in tokenizer space (:func:`~occsim.memory_condition.memory_condition`):
        view latents normalised as the diffused latents are, the known fraction as is, and
        zeros (nothing known) in the latent frames where ``shown (B, t)`` is False. The
        pipeline and the training loop both build it here."""
        channels = self.config.latent_channels
        latents = (condition[:, :channels] - self.config.latent_shift) * self.config.latent_scale
        view = torch.cat([latents, condition[:, channels:]], dim=1)
        return view * shown[:, None, :, None, None].to(view)

    def _new_space(
        self, new_space: torch.Tensor | None, latents: torch.Tensor
    ) -> torch.Tensor | None:
        """``new_space`` checked against this DiT and the latents, in their dtype."""
        if new_space is None:
            return None
        if self.config.prior_padding != "ground":
            raise ValueError(
                f"new_space was given but prior_padding is {self.config.prior_padding!r}, "
                "not 'ground'"
            )
        if tuple(new_space.shape) != tuple(latents.shape):
            raise ValueError(
                f"new_space must have the latents' shape {tuple(latents.shape)}, "
                f"got {tuple(new_space.shape)}"
            )
        return new_space.to(latents)

    def window_prior(
        self,
        latents: torch.Tensor,
        trajectory: torch.Tensor,
        context_mask: torch.Tensor,
        new_space: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The motion prior ``(B, C, t, h, w)`` of a window (``context_prior`` only): the
        last context frame of ``latents`` warped along ``trajectory`` to every later frame,
        ``new_space`` where it sees beyond it, and the context frames themselves. It reads
        only the clean context, so a sampling loop computes it once and passes it to every
        :meth:`forward` as ``prior``."""
        if not self.config.context_prior:
            raise ValueError("this DiT has no context_prior")
        return motion_prior(
            latents,
            context_mask,
            trajectory,
            self.config.trajectory_length // latents.shape[2],
            self.config.grid_half_extent,
            self.config.prior_padding,
            self._new_space(new_space, latents),
        )

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        trajectory: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        drop_trajectory: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        new_space: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted noise (and variance values) for ``latents``.

        Args:
            latents: ``(B, C, t, h, w)``; context frames clean, the others noised.
            timesteps: ``(B,)`` diffusion timesteps.
            trajectory: ``(B, trajectory_length, 2|3)`` ego waypoints of the window.
            context_mask: ``(B, t)`` bool, True for latent frames given as clean context.
            drop_trajectory: ``(B,)`` bool, True where the null trajectory is used.
            memory: ``(B, latent_channels + 1, t, h, w)``, the scene memory's view of each
                latent frame (normalised latents, then the known fraction); zeros (nothing
                known) where ``None`` or for context frames. Only with
                ``memory_conditioning``.
            new_space: ``(B, latent_channels, t, h, w)`` normalised latents the motion
                prior holds where a frame sees beyond the last context frame; only with
                ``prior_padding="ground"`` (zeros where ``None``).
            prior: the window's motion prior from :meth:`window_prior` (the same for every
                denoising step of a window), instead of ``new_space``; computed here when
                ``None``.

        Returns:
            ``(B, out_channels, t, h, w)``: the prediction (noise, or the clean sample with
            ``context_prior``; the scheduler's ``prediction_type``), then variance values
            if ``learn_sigma``.
        """
        b, _, t, h, w = latents.shape
        pt, ph, pw = self.config.patch_size
        expected = (
            self.config.latent_channels,
            self.config.latent_frames,
            *self.config.latent_size,
        )
        if tuple(latents.shape[1:]) != expected:
            raise ValueError(f"latents must have shape (B, {expected}), got {tuple(latents.shape)}")
        if context_mask is None:
            context_mask = torch.zeros(b, t, dtype=torch.bool, device=latents.device)
        if drop_trajectory is None:
            drop_trajectory = torch.zeros(b, dtype=torch.bool, device=latents.device)
        inputs = latents
        if self.config.context_prior:
            if prior is None:
                prior = self.window_prior(latents, trajectory, context_mask, new_space)
            elif new_space is not None:
                raise ValueError("give new_space or a prior built with it, not both")
            elif tuple(prior.shape) != tuple(latents.shape):
                raise ValueError(
                    f"prior must have the latents' shape {tuple(latents.shape)}, "
                    f"got {tuple(prior.shape)}"
                )
            prior = prior.to(latents)
            inputs = torch.cat([latents, prior], dim=1)
        elif new_space is not None or prior is not None:
            raise ValueError("new_space or prior was given but this DiT has no context_prior")
        if self.memory_channels:
            if memory is None:
                memory = latents.new_zeros(b, self.memory_channels, t, h, w)
            if tuple(memory.shape) != (b, self.memory_channels, t, h, w):
                raise ValueError(
                    f"memory must have shape {(b, self.memory_channels, t, h, w)}, "
                    f"got {tuple(memory.shape)}"
                )
            inputs = torch.cat([inputs, memory.to(inputs)], dim=1)
        elif memory is not None:
            raise ValueError("this DiT takes no memory (memory_conditioning=False)")
        tokens = rearrange(inputs, "b c (t i) (h j) (w k) -> b (t h w) (c i j k)", i=pt, j=ph, k=pw)
        x = self.x_embedder(tokens) + self.pos_embed  # (B, N, D)
        # A token is context when all latent frames of its patch are.
        token_context = context_mask.view(b, t // pt, pt).all(-1)  # (B, t')
        token_context = token_context.repeat_interleave((h // ph) * (w // pw), dim=1)
        x = x + token_context.unsqueeze(-1) * self.context_embed
        c = self.t_embedder(timesteps) + self.y_embedder(trajectory, drop_trajectory)  # (B, D)
        for block in self.blocks:
            x = block(x, c)
        x = self.final_layer(x, c)  # (B, N, patch * out_channels)
        out = rearrange(
            x,
            "b (t h w) (c i j k) -> b c (t i) (h j) (w k)",
            t=t // pt,
            h=h // ph,
            w=w // pw,
            i=pt,
            j=ph,
            k=pw,
        )
        if prior is None:
            return out
        channels = self.config.latent_channels
        return torch.cat([out[:, :channels] + prior, out[:, channels:]], dim=1)
