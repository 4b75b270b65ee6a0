"""``occsim/OccSora-v0``: closed-loop driving in the learned 4D occupancy world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from occsim.envs.base import OccEnv
from occsim.envs.config import OccEnvConfig
from occsim.envs.kinematics import follow_waypoints, states_from_trajectory
from occsim.grid import FRAME_DT, EgoState
from occsim.pipeline import OccSoraPipeline
from occsim.procedural import starting_scene
from occsim.validation import check_occupancy, check_trajectory
from occsim.world_model import Window, WorldModelRollout, load_world_model

STARTS = ("procedural", "clip", "noise")
if TYPE_CHECKING:
    from occsim.procedural import WorldConfig

DEFAULT_START_SPEED = 5.0  # m/s of the straight trajectory a noise start is generated along


@dataclass(frozen=True)
class StepPlan:
    """One step before generation: metric ``waypoints (K, 2)`` and the ego ``states`` they
    lead to."""

    waypoints: np.ndarray
    states: list[EgoState]

    @property
    def poses(self) -> np.ndarray:
        """World poses ``(K, 3)`` of the step's frames."""
        return poses_of(self.states)


def poses_of(states: list[EgoState]) -> np.ndarray:
    """``(T, 3)`` array of the states' ``(x, y, yaw)``."""
    return np.array([[s.x, s.y, s.yaw] for s in states], dtype=np.float64)


class LearnedBackend:
    """The world model as an env backend: a :class:`WorldModelRollout` (which keeps the
    history, and with ``config.scene_memory`` the scene memory). After a reset it sees
    nothing but its own generated frames."""

    name = "learned world"
    reset_options = ("start", "maneuver", "clip", "trajectory")

    def __init__(
        self, config: OccEnvConfig, world_config: WorldConfig | None, pipe: OccSoraPipeline
    ) -> None:
        self.config, self.world_config = config, world_config
        self.rollout = WorldModelRollout(
            pipe,
            config.frames_per_step,
            config.num_inference_steps,
            config.guidance_scale,
            config.scene_memory,
        )
        if self.rollout.history_frames > config.frames_per_step:
            raise ValueError(
                f"the DiT keeps {self.rollout.history_frames} frames of context but a step "
                f"observes only frames_per_step={config.frames_per_step}; raise it"
            )

    def reset(
        self, rng: np.random.Generator, options: dict[str, Any]
    ) -> tuple[np.ndarray, list[EgoState], int | None]:
        start = options.get("start", "procedural")
        if start not in STARTS:
            raise ValueError(f"start {start!r} not in {STARTS}")
        map_seed = None
        if start == "procedural":
            map_seed = self.config.map_seed
            if map_seed is None:
                map_seed = int(rng.integers(2**31))
            frames, states = starting_scene(
                map_seed,
                int(rng.integers(2**31)),
                options.get("maneuver", "straight"),
                self.config.frames_per_step,
                self.world_config,
            )
        elif start == "clip":
            frames, states = self._clip(options.get("clip"))
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        if start == "noise":
            states = states_from_trajectory(self._noise_trajectory(options.get("trajectory")))
            frames = self.rollout.start_from_noise(poses_of(states), generator)
        else:
            self.rollout.start(frames, poses_of(states), generator)
        k = self.config.frames_per_step
        return frames[-k:], states[-k:], map_seed

    def _clip(self, clip: Any) -> tuple[np.ndarray, list[EgoState]]:
        if not isinstance(clip, dict) or not {"occupancy", "trajectory"} <= set(clip):
            raise ValueError("start='clip' needs options['clip'] = {'occupancy', 'trajectory'}")
        occupancy = check_occupancy(np.asarray(clip["occupancy"]), "clip occupancy", ndim=4)
        trajectory = check_trajectory(np.asarray(clip["trajectory"])[None], "clip trajectory")[0]
        frames, factor = occupancy.shape[0], self.rollout.temporal_factor
        if frames % factor or frames < self.config.frames_per_step or len(trajectory) != frames:
            raise ValueError(
                f"clip has {frames} frames and {len(trajectory)} poses; expected equal counts, "
                f"a multiple of {factor} and at least {self.config.frames_per_step}"
            )
        return occupancy, states_from_trajectory(trajectory)

    def _noise_trajectory(self, trajectory: Any) -> np.ndarray:
        frames = self.rollout.window_frames
        if trajectory is None:
            distance = DEFAULT_START_SPEED * FRAME_DT * np.arange(frames)
            return np.stack([distance, np.zeros(frames)], axis=1)
        trajectory = check_trajectory(np.asarray(trajectory, dtype=np.float64)[None], "trajectory")
        if trajectory.shape[1] != frames:
            raise ValueError(f"start='noise' needs a trajectory of {frames} poses")
        return trajectory[0]

    def plan(self, start: EgoState, waypoints: np.ndarray) -> StepPlan:
        """The ego follows its waypoints exactly."""
        return StepPlan(waypoints, follow_waypoints(start, waypoints))

    def finish(self, plan: StepPlan, window: Window) -> tuple[np.ndarray, list[EgoState]]:
        """Commit the window generated for ``plan``; returns its frames and ego states."""
        return self.rollout.commit(window), plan.states

    def advance(self, start: EgoState, waypoints: np.ndarray) -> tuple[np.ndarray, list[EgoState]]:
        plan = self.plan(start, waypoints)
        return self.finish(plan, self.rollout.propose(plan.poses))


class OccSoraEnv(OccEnv):
    """Drive the learned world: each step generates the next K frames along the action.

    The DiT continues the latent history (a sliding window of clean context frames) along
    the commanded waypoints; the causal tokenizer decodes only the new frames (see
    :class:`~occsim.world_model.WorldModelRollout`). Spaces, rewards and episode ends are
    those of every occsim env (:class:`~occsim.envs.base.OccEnv`), judged on the generated
    occupancy.

    ## Starting State
    ``options={"start": ...}``:

    - ``"procedural"`` (default): the procedural scene ``occsim/Procedural-v0`` starts from
      with the same seed (``"maneuver"`` picks how the ego drives it); its first K frames are
      the first observation and, encoded, the world model's context. The same seed and
      actions then drive both envs side by side.
    - ``"clip"``: ``options["clip"]``, a dict with ``occupancy (T, 200, 200, 16)`` and
      ``trajectory (T, 2|3)`` (e.g. an ``Occ3DDataset`` item), T a multiple of the
      tokenizer's temporal factor and at least K.
    - ``"noise"``: pure generation of a whole DiT window from noise along
      ``options["trajectory"]`` (window frames x 2|3, default straight at 5 m/s).

    Randomness comes from ``self.np_random`` only (the diffusion noise uses a
    ``torch.Generator`` seeded from it), so a seed fixes the episode.

    ## Arguments
    ``config`` (:class:`OccEnvConfig`) or its fields as keyword arguments, ``render_mode``,
    ``world_config`` (of the procedural starting scenes), ``pipeline`` (an
    :class:`OccSoraPipeline`, overriding ``config.pipeline_path``; share one between envs to
    save memory).
    """

    def __init__(
        self,
        config: OccEnvConfig | None = None,
        render_mode: str | None = None,
        world_config: WorldConfig | None = None,
        pipeline: OccSoraPipeline | None = None,
        **kwargs: Any,
    ) -> None:
        config = OccEnvConfig.from_kwargs(config, **kwargs)
        if pipeline is None:
            pipeline = load_world_model(
                config.pipeline_path,
                config.scheduler,
                config.device,
                config.dtype,
                config.timestep_spacing,
            )
        backend = LearnedBackend(config, world_config, pipeline)
        super().__init__(backend, config, render_mode)

    @property
    def rollout(self) -> WorldModelRollout:
        """The episode of the learned world this env drives."""
        return self._backend.rollout

    # The vector env batches the DiT across envs between these two halves of a step.
    def plan(self, action: Any) -> StepPlan:
        """Validate an action and plan the step: the ego follows its waypoints exactly."""
        return self._backend.plan(self.ego_state, self._waypoints(action))

    def step_window(self, plan: StepPlan, window: Window):
        """Finish the step of ``plan`` with the window generated for it (by
        :meth:`WorldModelRollout.propose` or ``propose_together``); the step tuple."""
        return self._finish_step(*self._backend.finish(plan, window))

    def imagine(self, actions: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """The frames ``(N, K, X, Y, Z)`` the world model generates for each of N candidate
        actions ``(N, K, 2)`` from the current state (one batch); the episode is unchanged.
        Frame k of a candidate is centred on the ego at its k-th waypoint."""
        plans = [self.plan(action) for action in np.asarray(actions)]
        return self.rollout.imagine(np.stack([plan.poses for plan in plans]), generator)
