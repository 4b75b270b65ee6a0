"""The learned world's rollout: one episode of the world model, window after window.

:class:`WorldModelRollout` owns everything that makes the generated world continue: the
latent history the DiT takes as clean context, the decoder's stream cache (so only new
frames are decoded) and the episode's noise generator. The envs, the vector env, the
forecast evaluation and the planner's imagination all go through its public methods.

    rollout = WorldModelRollout(load_world_model(), frames_per_step=4)
    rollout.start(first_frames, torch.Generator().manual_seed(0))
    frames = rollout.step(window_trajectory)        # propose + commit
    candidates = rollout.imagine(trajectories, gen)  # N futures, nothing committed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import torch

from occsim.pipeline import OccSoraPipeline
from occsim.tokenizer import StreamCache

DEFAULT_MODEL = "default_model"


def load_world_model(
    path: str | Path | None = None,
    scheduler: str = "DDIMScheduler",
    device: str = "cpu",
    dtype: str = "float32",
) -> OccSoraPipeline:
    """The pipeline in ``path`` (default: the bundled model) with the diffusers
    ``scheduler`` class of that name, on ``device`` in ``dtype``, progress bars off."""
    if path is None:
        from occsim.assets import asset_path

        path = asset_path(DEFAULT_MODEL)
    else:
        path = Path(path)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"pipeline_path {path} is not an OccSoraPipeline folder (no model_index.json)"
            )
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype name (e.g. 'float32')")
    scheduler_class = getattr(diffusers, scheduler, None)
    if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
        raise ValueError(f"scheduler {scheduler!r} is not a diffusers scheduler class")
    pipe = OccSoraPipeline.from_pretrained(path, dtype=torch_dtype)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    pipe.to(torch.device(device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class Window:
    """A generated window that is not part of the world yet: ``latents (1, C, t, h, w)``
    of the whole window (the context frames, then the new ones). Only the rollout that
    proposed it can commit it, and only before anything else is committed."""

    latents: torch.Tensor
    rollout_id: int
    version: int


class WorldModelRollout:
    """One episode of the learned world.

    Args:
        pipe: the world model (tokenizer + DiT + scheduler); several rollouts may share one.
        frames_per_step: occupancy frames one step generates (a multiple of the tokenizer's
            temporal factor, leaving at least one latent frame of context in the window).
        num_inference_steps: solver steps per generated window.
        guidance_scale: classifier-free guidance towards the commanded trajectory.
    """

    def __init__(
        self,
        pipe: OccSoraPipeline,
        frames_per_step: int,
        num_inference_steps: int = 10,
        guidance_scale: float = 2.0,
    ) -> None:
        factor = pipe.tokenizer.temporal_factor
        latent_frames = pipe.transformer.config.latent_frames
        if frames_per_step % factor:
            raise ValueError(
                f"frames_per_step={frames_per_step} must be a multiple of the tokenizer's "
                f"temporal factor {factor}"
            )
        self.temporal_factor = factor
        self.context_frames = latent_frames - frames_per_step // factor
        if self.context_frames < 1:
            raise ValueError(
                f"frames_per_step={frames_per_step} fills the DiT window of {latent_frames} "
                f"latent frames; at most {(latent_frames - 1) * factor} frames leave context"
            )
        self.frames_per_step = frames_per_step
        self.window_frames = pipe.transformer.config.trajectory_length
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self._pipe = pipe
        self._latents: torch.Tensor | None = None
        self._cache = StreamCache()
        self._generator = torch.Generator()
        self._version = 0

    # ------------------------------------------------------------------ views
    @property
    def history_frames(self) -> int:
        """Occupancy frames the context latents cover (the past a window continues)."""
        return self.context_frames * self.temporal_factor

    @property
    def started(self) -> bool:
        """Whether the episode has a history to continue."""
        return self._latents is not None

    @property
    def pipeline(self) -> OccSoraPipeline:
        """The world model this rollout samples from."""
        return self._pipe

    def context_latents(self) -> torch.Tensor:
        """A copy of the clean context ``(1, C, k, h, w)`` the next window continues."""
        return self._require_started().clone()

    def _require_started(self) -> torch.Tensor:
        if self._latents is None:
            raise RuntimeError("the rollout has no history: call start() or start_from_noise()")
        return self._latents

    # ------------------------------------------------------------------ starting
    @torch.no_grad()
    def start(self, occupancy: np.ndarray, generator: torch.Generator) -> None:
        """Begin an episode from observed frames ``(T, X, Y, Z)``: encode them as the history
        (T a multiple of the temporal factor, at least :attr:`history_frames`) and prime the
        decoder's stream; ``generator`` is the episode's noise source from now on."""
        frames = len(occupancy)
        if frames % self.temporal_factor or frames < self.history_frames:
            raise ValueError(
                f"start needs a multiple of {self.temporal_factor} frames and at least "
                f"{self.history_frames}, got {frames}"
            )
        tokenizer = self._pipe.tokenizer
        clip = torch.from_numpy(np.ascontiguousarray(occupancy)[None]).to(tokenizer.device)
        cache = StreamCache()
        latents = tokenizer.encode(clip).latents
        tokenizer.decode_classes(latents, cache)
        self._begin(latents[:, :, -self.context_frames :], cache, generator)

    @torch.no_grad()
    def start_from_noise(self, trajectory: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """Begin an episode with a whole window generated from noise along ``trajectory``
        ``(window_frames, 2|3)`` (paper mode); returns all its frames ``(T, X, Y, Z)``."""
        out = self._pipe(
            np.asarray(trajectory)[None, :, :2],
            context=None,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            generator=generator,
            output_type="latent",
        )
        cache = StreamCache()
        frames = self._pipe.tokenizer.decode_classes(out.latents, cache)
        self._begin(out.latents[:, :, -self.context_frames :], cache, generator)
        return frames[0].cpu().numpy()

    def _begin(self, latents: torch.Tensor, cache: StreamCache, generator: torch.Generator) -> None:
        self._latents, self._cache, self._generator = latents, cache, generator
        self._version += 1

    # ------------------------------------------------------------------ stepping
    def propose(self, trajectory: np.ndarray) -> Window:
        """Generate the window that continues the history along ``trajectory``
        ``(window_frames, 2|3)`` (history poses, then the new ones, in the window's first
        frame) with the episode's noise; nothing is committed."""
        return propose_together([self], [trajectory])[0]

    @torch.no_grad()
    def commit(self, window: Window) -> np.ndarray:
        """Make a proposed window part of the world: it becomes the history; returns its
        new frames ``(frames_per_step, X, Y, Z)``, decoded through the stream."""
        if window.rollout_id != id(self) or window.version != self._version:
            raise ValueError(
                "this window was proposed by another rollout or before the last commit; "
                "propose a new one"
            )
        new = window.latents[:, :, self.context_frames :]
        frames = self._pipe.tokenizer.decode_classes(new, self._cache)
        self._latents = window.latents[:, :, -self.context_frames :]
        self._version += 1
        return frames[0].cpu().numpy()

    def step(self, trajectory: np.ndarray) -> np.ndarray:
        """:meth:`propose` then :meth:`commit`: the next frames along ``trajectory``."""
        return self.commit(self.propose(trajectory))

    @torch.no_grad()
    def imagine(self, trajectories: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """The frames ``(N, frames_per_step, X, Y, Z)`` of N candidate windows along
        ``trajectories (N, window_frames, 2|3)``, generated as one batch with noise from
        ``generator`` and decoded from the episode's stream; the episode is unchanged."""
        trajectories = np.asarray(trajectories)
        count = len(trajectories)
        context = self._require_started().expand(count, -1, -1, -1, -1)
        out = self._pipe(
            trajectories[:, :, :2],
            context=context,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            generator=generator,
            output_type="latent",
        )
        new = out.latents[:, :, self.context_frames :]
        frames = self._pipe.tokenizer.decode_classes(new, self._cache.expanded(count))
        return frames.cpu().numpy()


@torch.no_grad()
def propose_together(
    rollouts: list[WorldModelRollout], trajectories: list[np.ndarray]
) -> list[Window]:
    """One batched denoising loop proposing the next window of each rollout along its
    trajectory, each with its own noise (so a rollout's window does not depend on its batch
    mates). The rollouts must share one pipeline and generation settings."""
    if not rollouts or len(rollouts) != len(trajectories):
        raise ValueError(
            f"need one trajectory per rollout, got {len(trajectories)} for {len(rollouts)}"
        )
    first = rollouts[0]
    settings = (first._pipe, first.num_inference_steps, first.guidance_scale)
    if any((r._pipe, r.num_inference_steps, r.guidance_scale) != settings for r in rollouts):
        raise ValueError("rollouts proposed together must share a pipeline and its settings")
    out = first._pipe(
        np.stack([np.asarray(t)[:, :2] for t in trajectories]),
        context=torch.cat([r._require_started() for r in rollouts]),
        num_inference_steps=first.num_inference_steps,
        guidance_scale=first.guidance_scale,
        generator=[r._generator for r in rollouts] if len(rollouts) > 1 else first._generator,
        output_type="latent",
    )
    return [Window(out.latents[j : j + 1], id(r), r._version) for j, r in enumerate(rollouts)]
