"""The learned world behind ``occsim/OccSora-v0``: a pipeline plus the latent history."""

from __future__ import annotations

from pathlib import Path

import diffusers
import numpy as np
import torch

from occsim.envs.config import OccEnvConfig
from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import StreamCache

DEFAULT_MODEL = "default_model"


def load_pipeline(config: OccEnvConfig) -> OccSoraPipeline:
    """The pipeline of ``config.pipeline_path`` (default: the bundled model), with the
    configured scheduler, device and dtype."""
    if config.pipeline_path is None:
        from occsim.assets import asset_path

        path = asset_path(DEFAULT_MODEL)
    else:
        path = Path(config.pipeline_path)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"pipeline_path {path} is not an OccSoraPipeline folder (no model_index.json)"
            )
    pipe = OccSoraPipeline.from_pretrained(path, dtype=getattr(torch, config.dtype))
    scheduler_class = getattr(diffusers, config.scheduler, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
        raise ValueError(f"scheduler {config.scheduler!r} is not a diffusers scheduler class")
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    pipe.to(torch.device(config.device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


class LearnedWorld:
    """Latent history of one episode: clean context for the DiT and the decoder's stream.

    ``context_frames`` latent frames are kept (the DiT window minus the frames one step
    generates); decoding carries a :class:`StreamCache`, so only new frames are decoded.
    """

    def __init__(self, pipe: OccSoraPipeline, frames_per_step: int) -> None:
        tokenizer, dit = pipe.tokenizer, pipe.transformer.config
        factor = tokenizer.temporal_factor
        if frames_per_step % factor:
            raise ValueError(
                f"frames_per_step={frames_per_step} must be a multiple of the tokenizer's "
                f"temporal factor {factor}"
            )
        self.new_frames = frames_per_step // factor
        self.context_frames = dit.latent_frames - self.new_frames
        if self.context_frames < 1:
            raise ValueError(
                f"frames_per_step={frames_per_step} fills the DiT window of {dit.latent_frames} "
                f"latent frames; at most {(dit.latent_frames - 1) * factor} frames leave context"
            )
        self.pipe, self.temporal_factor = pipe, factor
        self.window_frames = dit.latent_frames * factor
        self.latents: torch.Tensor | None = None
        self.cache = StreamCache()

    @property
    def history_frames(self) -> int:
        """Occupancy frames covered by the context latents."""
        return self.context_frames * self.temporal_factor

    @torch.no_grad()
    def start_from_occupancy(self, occupancy: np.ndarray) -> None:
        """Encode observed frames ``(T, X, Y, Z)`` as the history and prime the decoder."""
        tokenizer = self.pipe.tokenizer
        frames = torch.from_numpy(np.ascontiguousarray(occupancy)[None]).to(tokenizer.device)
        self.cache = StreamCache()
        latents = tokenizer.encode(frames).latents
        tokenizer.decode_classes(latents, self.cache)
        self.latents = latents[:, :, -self.context_frames :]

    def generate(
        self,
        trajectory: np.ndarray,
        generator: torch.Generator,
        steps: int,
        guidance: float,
        context: bool = True,
    ) -> np.ndarray:
        """Generate the next frames along ``trajectory`` (the window's poses); with
        ``context=False`` the whole window comes from noise. Returns the new frames."""
        out = self.pipe(
            trajectory[None, :, :2],
            context=self.latents if context else None,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
            output_type="latent",
        )
        return self.accept(out.latents, context)

    @torch.no_grad()
    def accept(self, window: torch.Tensor, context: bool = True) -> np.ndarray:
        """Take a generated window ``(1, C, t, h, w)`` as the new history; decode and return
        its new frames ``(K, X, Y, Z)`` (all of them when it came without context)."""
        if not context:
            self.cache = StreamCache()
        new = window[:, :, self.context_frames :] if context else window
        frames = self.pipe.tokenizer.decode_classes(new, self.cache)
        self.latents = window[:, :, -self.context_frames :]
        return frames[0].cpu().numpy()
