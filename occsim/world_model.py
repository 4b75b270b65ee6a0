"""The learned world's rollout: one episode of the world model, window after window.

:class:`WorldModelRollout` owns everything that makes the generated world continue: the
latent history the DiT takes as clean context, the decoder's stream cache (so only new
frames are decoded) and the episode's noise generator. The envs, the vector env, the
forecast evaluation and the planner's imagination all go through its public methods.

    rollout = WorldModelRollout(load_world_model(), frames_per_step=4, scene_memory=True)
    rollout.start(first_frames, their_poses, torch.Generator().manual_seed(0))
    frames = rollout.step(next_poses)                 # propose + commit
    candidates = rollout.imagine(candidate_poses, gen)  # N futures, nothing committed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from occsim.geometry import poses_to_trajectory
from occsim.ground_prior import ground_prior
from occsim.memory_condition import memory_condition
from occsim.pipeline import OccSoraPipeline, first_step_error
from occsim.road_user_tracks import RoadUserTracks
from occsim.road_users import keep_road_users
from occsim.sampler_defaults import (
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_SOLVER_STEPS,
    DEFAULT_TIMESTEP_SPACING,
    TIMESTEP_SPACINGS,
)
from occsim.scene_memory import UNKNOWN, SceneMemory, compose
from occsim.tokenizer import StreamCache
from occsim.validation import check_float, check_int

DEFAULT_MODEL = "default_model"


def load_world_model(
    path: str | Path | None = None,
    scheduler: str = "DDIMScheduler",
    device: str = "cpu",
    dtype: str = "float32",
    timestep_spacing: str = DEFAULT_TIMESTEP_SPACING,
) -> OccSoraPipeline:
    """The pipeline in ``path`` (default: the bundled model) with the diffusers
    ``scheduler`` class of that name and ``timestep_spacing`` (see
    :mod:`occsim.sampler_defaults`), on ``device`` in ``dtype``, progress bars off.

    Every argument is checked before anything loads, and the folder's files by
    ``OccSoraPipeline.from_pretrained`` (configs, weights, parts that fit), each error
    naming what was wrong."""
    from occsim.grid import OCC3D_GRID

    if path is None:
        from occsim.assets import asset_path

        path = asset_path(DEFAULT_MODEL)
    else:
        path = Path(path)
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"pipeline_path {path} is not an OccSoraPipeline folder (no model_index.json)"
            )
    torch_dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else None
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise ValueError(f"dtype {dtype!r} is not a torch floating dtype name (e.g. 'float32')")
    scheduler_class = getattr(diffusers, scheduler, None) if isinstance(scheduler, str) else None
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
        raise ValueError(f"scheduler {scheduler!r} is not a diffusers scheduler class")
    if timestep_spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing {timestep_spacing!r} is not one of {TIMESTEP_SPACINGS}")
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device (e.g. 'cpu'): {error}") from None
    pipe = OccSoraPipeline.from_pretrained(path, dtype=torch_dtype)
    grid = tuple(pipe.tokenizer.config.grid_size)
    if grid != tuple(OCC3D_GRID.shape):  # the envs and their rewards live on this grid
        raise ValueError(f"{path}: the tokenizer's grid {grid} is not the Occ3D grid")
    pipe.scheduler = scheduler_class.from_config(
        pipe.scheduler.config, timestep_spacing=timestep_spacing
    )
    pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class Window:
    """A generated window that is not part of the world yet: ``latents (1, C, t, h, w)``
    of the whole window (the context frames, then the new ones) and the world ``poses
    (K, 3)`` of its new frames. Only the rollout that proposed it can commit it, and only
    before anything else is committed."""

    latents: torch.Tensor
    poses: np.ndarray
    rollout_id: int
    version: int
    memory_views: np.ndarray | None = None  # the scene memory seen from ``poses``


def _poses(poses: np.ndarray, frames: int, name: str) -> np.ndarray:
    array = np.asarray(poses, dtype=np.float64)
    if array.shape != (frames, 3) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (x, y, yaw) of {frames} frames, got {array.shape}")
    return array


class WorldModelRollout:
    """One episode of the learned world.

    Poses are ``(x, y, yaw)`` in one world frame of the caller's choice (the procedural
    world's, or a clip's first frame); the rollout turns its history poses and the new ones
    into the DiT's window trajectory itself.

    With ``scene_memory``, what was seen stays as it was: a :class:`SceneMemory` of static
    structure and free space is filled from the start frames and every committed frame; each
    generated frame keeps only plausible road users (:func:`keep_road_users`) and is composed
    onto what the memory knows of its pose (:func:`compose`). The next window continues the
    DiT's own latents: composition corrects what a step shows, and re-encoding the composed
    frames as context moved no figure of ``occsim eval closed-loop`` by more than 0.2 while
    it cost about 35 ms a step (BENCHMARKS.md).

    Args:
        pipe: the world model (tokenizer + DiT + scheduler); several rollouts may share one.
        frames_per_step: occupancy frames one step generates (a multiple of the tokenizer's
            temporal factor, leaving at least one latent frame of context in the window).
        num_inference_steps: solver steps per generated window.
        guidance_scale: classifier-free guidance towards the commanded trajectory.
        scene_memory: keep a persistent memory of the static scene (see above).
    """

    def __init__(
        self,
        pipe: OccSoraPipeline,
        frames_per_step: int,
        num_inference_steps: int = DEFAULT_SOLVER_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        scene_memory: bool = False,
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
        self.num_inference_steps = check_int(num_inference_steps, "num_inference_steps", 1)
        self.guidance_scale = check_float(guidance_scale, "guidance_scale", 0.0)
        # Fail at construction, not at the first step (the pipeline refuses it then too).
        error = first_step_error(pipe.scheduler, self.num_inference_steps)
        if error:
            raise ValueError(error)
        self._pipe = pipe
        self._latents: torch.Tensor | None = None
        self._poses = np.zeros((0, 3))
        self._cache = StreamCache()
        self._memory = SceneMemory() if scene_memory else None
        self._tracks = RoadUserTracks()
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

    @property
    def has_scene_memory(self) -> bool:
        """Whether generated frames are composed onto a persistent scene memory."""
        return self._memory is not None

    def context_latents(self) -> torch.Tensor:
        """A copy of the clean context ``(1, C, k, h, w)`` the next window continues."""
        return self._require_started().clone()

    def memory_view(self, pose: np.ndarray) -> np.ndarray:
        """What the scene memory knows seen from ``pose``: classes ``(X, Y, Z)``,
        :data:`~occsim.scene_memory.UNKNOWN` where it knows nothing."""
        if self._memory is None:
            raise RuntimeError("this rollout keeps no scene memory (scene_memory=False)")
        return self._memory.project(pose)

    def memory_tiles(self) -> int:
        """Tiles the scene memory holds (bounded: it evicts what lies far behind)."""
        return 0 if self._memory is None else len(self._memory)

    def _require_started(self) -> torch.Tensor:
        if self._latents is None:
            raise RuntimeError("the rollout has no history: call start() or start_from_noise()")
        return self._latents

    def window_trajectory(self, poses: np.ndarray) -> np.ndarray:
        """The DiT's condition ``(window_frames, 3)``: the history poses then ``poses``, in
        the ego frame of the window's first frame."""
        poses = _poses(poses, self.frames_per_step, "poses")
        window = np.concatenate([self._poses, poses])
        return poses_to_trajectory(window[:, :2], window[:, 2])

    # ------------------------------------------------------------------ starting
    @torch.no_grad()
    def start(self, occupancy: np.ndarray, poses: np.ndarray, generator: torch.Generator) -> None:
        """Begin an episode from observed frames ``(T, X, Y, Z)`` at world ``poses (T, 3)``:
        encode them as the history (T a multiple of the temporal factor, at least
        :attr:`history_frames`) and prime the decoder's stream; ``generator`` is the
        episode's noise source from now on."""
        frames = len(occupancy)
        if frames % self.temporal_factor or frames < self.history_frames:
            raise ValueError(
                f"start needs a multiple of {self.temporal_factor} frames and at least "
                f"{self.history_frames}, got {frames}"
            )
        poses = _poses(poses, frames, "poses")
        tokenizer = self._pipe.tokenizer
        clip = torch.from_numpy(np.ascontiguousarray(occupancy)[None]).to(tokenizer.device)
        cache = StreamCache()
        latents = tokenizer.encode(clip).latents
        tokenizer.decode_classes(latents, cache)
        self._begin(latents, poses, cache, generator)
        self._remember(np.asarray(occupancy), poses)

    @torch.no_grad()
    def start_from_noise(self, poses: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """Begin an episode with a whole window generated from noise along world ``poses``
        ``(window_frames, 3)`` (paper mode); returns all its frames ``(T, X, Y, Z)``."""
        poses = _poses(poses, self.window_frames, "poses")
        out = self._pipe(
            poses_to_trajectory(poses[:, :2], poses[:, 2])[None, :, :2],
            context=None,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            generator=generator,
            output_type="latent",
        )
        cache = StreamCache()
        frames = self._pipe.tokenizer.decode_classes(out.latents, cache)[0].cpu().numpy()
        self._begin(out.latents, poses, cache, generator)
        if self._memory is not None:
            frames = self._compose(frames, poses)
        return frames

    def _begin(
        self,
        latents: torch.Tensor,
        poses: np.ndarray,
        cache: StreamCache,
        generator: torch.Generator,
    ) -> None:
        self._latents = latents[:, :, -self.context_frames :]
        self._poses = poses[-self.history_frames :]
        self._cache, self._generator = cache, generator
        if self._memory is not None:
            self._memory.clear()
        self._tracks.clear()
        self._version += 1

    # ------------------------------------------------------------------ memory
    def _remember(self, frames: np.ndarray, poses: np.ndarray) -> None:
        if self._memory is not None:
            for frame, pose in zip(frames, poses):
                self._memory.insert(frame, pose)
                self._tracks.observe(frame, pose, observed=True)

    def _memory_views(self, poses: np.ndarray) -> np.ndarray | None:
        """What the memory knows seen from each of ``poses`` ``(K, X, Y, Z)``, or ``None``
        without a memory."""
        if self._memory is None:
            return None
        return np.stack([self._memory.project(pose) for pose in poses])

    def _compose(
        self, frames: np.ndarray, poses: np.ndarray, views: np.ndarray | None = None
    ) -> np.ndarray:
        """Each frame is composed onto what the memory knows and the road users it has seen,
        moved on. The step's last frame then enters the memory (what it generated anew stays
        from now on) and the road-user tracks; its view covers what the frames before it
        generated ahead, and one write and one observation a step keep the step fast."""
        if views is None:
            views = self._memory_views(poses)
        composed = np.empty_like(frames)
        for k, (frame, pose) in enumerate(zip(frames, poses)):
            predicted, parked = self._tracks.predict_with_parked(pose, frames_ahead=k + 1)
            composed[k] = compose(keep_road_users(frame), views[k], predicted, parked)
        self._memory.insert(composed[-1], poses[-1], only_unknown=True)
        self._tracks.observe(composed[-1], poses[-1], frames_since=len(frames))
        return composed

    # ------------------------------------------------------------------ stepping
    def propose(self, poses: np.ndarray) -> Window:
        """Generate the window that continues the history to the world ``poses
        (frames_per_step, 3)`` of its new frames, with the episode's noise; nothing is
        committed."""
        return propose_together([self], [poses])[0]

    @torch.no_grad()
    def commit(self, window: Window) -> np.ndarray:
        """Make a proposed window part of the world: it becomes the history; returns its
        new frames ``(frames_per_step, X, Y, Z)``, decoded through the stream (and, with a
        scene memory, composed onto it)."""
        if window.rollout_id != id(self) or window.version != self._version:
            raise ValueError(
                "this window was proposed by another rollout or before the last commit; "
                "propose a new one"
            )
        new = window.latents[:, :, self.context_frames :]
        wanted = None
        if window.memory_views is not None:
            # Composition keeps the memory's voxels: only what it does not know is read.
            wanted = torch.from_numpy(window.memory_views == UNKNOWN)[None]
        tokenizer = self._pipe.tokenizer
        frames = tokenizer.decode_classes(new, self._cache, wanted)[0].cpu().numpy()
        self._latents = window.latents[:, :, -self.context_frames :]
        self._poses = np.concatenate([self._poses, window.poses])[-self.history_frames :]
        if self._memory is not None:
            frames = self._compose(frames, window.poses, window.memory_views)
        self._version += 1
        return frames

    def step(self, poses: np.ndarray) -> np.ndarray:
        """:meth:`propose` then :meth:`commit`: the next frames, at world ``poses``."""
        return self.commit(self.propose(poses))

    @torch.no_grad()
    def imagine(self, poses: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """The frames ``(N, frames_per_step, X, Y, Z)`` of N candidate futures at world
        ``poses (N, frames_per_step, 3)``, generated as one batch with noise from
        ``generator`` and decoded from the episode's stream; the episode is unchanged.
        (Raw generated frames: the scene memory is neither shown to the DiT nor applied, to
        keep a planner fast.)"""
        poses = np.asarray(poses, dtype=np.float64)
        count = len(poses)
        trajectories = np.stack([self.window_trajectory(p) for p in poses])
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
def propose_together(rollouts: list[WorldModelRollout], poses: list[np.ndarray]) -> list[Window]:
    """One batched denoising loop proposing the next window of each rollout to its new world
    ``poses (frames_per_step, 3)``, each with its own noise (so a rollout's window does not
    depend on its batch mates). The rollouts must share one pipeline and its settings."""
    if not rollouts or len(rollouts) != len(poses):
        raise ValueError(f"need one set of poses per rollout, got {len(poses)} for {len(rollouts)}")
    first = rollouts[0]
    settings = (first._pipe, first.num_inference_steps, first.guidance_scale)
    if any((r._pipe, r.num_inference_steps, r.guidance_scale) != settings for r in rollouts):
        raise ValueError("rollouts proposed together must share a pipeline and its settings")
    new_poses = [_poses(p, r.frames_per_step, "poses") for r, p in zip(rollouts, poses)]
    trajectories = [r.window_trajectory(p) for r, p in zip(rollouts, new_poses)]
    views = [r._memory_views(p) for r, p in zip(rollouts, new_poses)]
    out = first._pipe(
        np.stack([t[:, :2] for t in trajectories]),
        context=torch.cat([r._require_started() for r in rollouts]),
        num_inference_steps=first.num_inference_steps,
        guidance_scale=first.guidance_scale,
        generator=[r._generator for r in rollouts] if len(rollouts) > 1 else first._generator,
        output_type="latent",
        memory=_memory_input(first._pipe, views),
        new_space=_new_space_input(first._pipe, views),
    )
    return [
        Window(out.latents[j : j + 1], p, id(r), r._version, v)
        for j, (r, p, v) in enumerate(zip(rollouts, new_poses, views))
    ]


def _new_space_input(pipe: OccSoraPipeline, views: list[np.ndarray | None]) -> torch.Tensor | None:
    """The ground each rollout's memory carries into new space (the data mean for a rollout
    without a memory), or ``None`` when the DiT's prior does not take it or no rollout keeps
    a memory."""
    present = [v for v in views if v is not None]
    if pipe.transformer.config.prior_padding != "ground" or not present:
        return None
    latents = ground_prior(pipe.tokenizer, np.stack(present))
    if len(present) == len(views):
        return latents
    # The data mean, in tokenizer space: what normalises to zeros.
    out = latents.new_full((len(views), *latents.shape[1:]), pipe.transformer.config.latent_shift)
    out[[j for j, v in enumerate(views) if v is not None]] = latents
    return out


def _memory_input(pipe: OccSoraPipeline, views: list[np.ndarray | None]) -> torch.Tensor | None:
    """The DiT's view of each rollout's memory (nothing known for one without a memory), or
    ``None`` when the DiT takes no memory or no rollout keeps one."""
    present = [v for v in views if v is not None]
    if not pipe.transformer.config.memory_conditioning or not present:
        return None
    condition = memory_condition(pipe.tokenizer, np.stack(present))
    if len(present) == len(views):
        return condition
    out = condition.new_zeros(len(views), *condition.shape[1:])
    out[[j for j, v in enumerate(views) if v is not None]] = condition
    return out
