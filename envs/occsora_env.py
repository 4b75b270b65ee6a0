"""``occsim/OccSora-v0``: closed-loop driving in the learned 4D occupancy world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from occsim.envs.config import OccEnvConfig
from occsim.envs.kinematics import follow_waypoints, states_from_trajectory, window_trajectory
from occsim.envs.learned_world import LearnedWorld, load_pipeline
from occsim.envs.procedural_env import ProceduralEnv
from occsim.grid import FRAME_DT, EgoState
from occsim.pipeline import OccSoraPipeline
from occsim.procedural import WorldConfig
from occsim.validation import check_occupancy, check_trajectory

STARTS = ("procedural", "clip", "noise")
RESET_OPTIONS = ("start", "maneuver", "clip", "trajectory")
DEFAULT_START_SPEED = 5.0  # m/s of the straight trajectory a noise start is generated along


@dataclass
class StepPlan:
    """One step before generation: metric ``waypoints (K, 2)``, the ego ``states`` they
    lead to and the DiT window's ``trajectory (T, 3)`` (history and new poses)."""

    waypoints: np.ndarray
    states: list[EgoState]
    trajectory: np.ndarray


class OccSoraEnv(ProceduralEnv):
    """Drive the learned world: each step generates the next K frames along the action.

    The DiT continues the latent history (a sliding window of clean context frames) along
    the commanded waypoints; the causal tokenizer decodes only the new frames. The action
    and observation spaces, rewards and episode ends are those of ``occsim/Procedural-v0``
    (see :class:`ProceduralEnv`), judged on the generated occupancy.

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
    As :class:`ProceduralEnv`, plus ``pipeline`` (an :class:`OccSoraPipeline`, overriding
    ``config.pipeline_path``; share one between envs to save memory).
    """

    def __init__(
        self,
        config: OccEnvConfig | None = None,
        render_mode: str | None = None,
        world_config: WorldConfig | None = None,
        pipeline: OccSoraPipeline | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, render_mode, world_config, **kwargs)
        self.pipe = pipeline if pipeline is not None else load_pipeline(self.config)
        self.learned = LearnedWorld(self.pipe, self.config.frames_per_step)
        if self.learned.history_frames > self.config.frames_per_step:
            raise ValueError(
                f"the DiT keeps {self.learned.history_frames} frames of context but a step "
                f"observes only frames_per_step={self.config.frames_per_step}; raise it"
            )
        self._history: list[EgoState] = []
        self._generator = torch.Generator()

    # ------------------------------------------------------------------ episode
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; valid: {list(RESET_OPTIONS)}")
        start = options.pop("start", "procedural")
        if start not in STARTS:
            raise ValueError(f"start {start!r} not in {STARTS}")
        if start == "procedural":
            maneuver = {"maneuver": options.get("maneuver", "straight")}
            super().reset(seed=seed, options=maneuver)
            frames, states = self._frames, list(self._states)
        else:
            gym.Env.reset(self, seed=seed)
            self._world = None
        self._generator = torch.Generator().manual_seed(int(self.np_random.integers(2**62)))
        k = self.config.frames_per_step
        if start == "procedural":
            self.learned.start_from_occupancy(frames)
        elif start == "clip":
            frames, states = self._clip_start(options.get("clip"))
        else:
            trajectory = self._noise_trajectory(options.get("trajectory"))
            states = states_from_trajectory(trajectory)
            generated = self.learned.generate(
                window_trajectory(states),
                self._generator,
                self.config.num_inference_steps,
                self.config.guidance_scale,
                context=False,
            )
            frames = generated[-k:]
        self._history = states[-self.learned.history_frames :]
        self._begin(frames[-k:], states[-k:])
        return self._observation(), self._info({}, False, False)

    def _clip_start(self, clip: Any) -> tuple[np.ndarray, list[EgoState]]:
        if not isinstance(clip, dict) or not {"occupancy", "trajectory"} <= set(clip):
            raise ValueError("start='clip' needs options['clip'] = {'occupancy', 'trajectory'}")
        occupancy = check_occupancy(np.asarray(clip["occupancy"]), "clip occupancy", ndim=4)
        trajectory = check_trajectory(np.asarray(clip["trajectory"])[None], "clip trajectory")[0]
        frames, factor = occupancy.shape[0], self.learned.temporal_factor
        if frames % factor or frames < self.config.frames_per_step or len(trajectory) != frames:
            raise ValueError(
                f"clip has {frames} frames and {len(trajectory)} poses; expected equal counts, "
                f"a multiple of {factor} and at least {self.config.frames_per_step}"
            )
        self.learned.start_from_occupancy(occupancy)
        return occupancy, states_from_trajectory(trajectory)

    def _noise_trajectory(self, trajectory: Any) -> np.ndarray:
        frames = self.learned.window_frames
        if trajectory is None:
            distance = DEFAULT_START_SPEED * FRAME_DT * np.arange(frames)
            return np.stack([distance, np.zeros(frames)], axis=1)
        trajectory = check_trajectory(np.asarray(trajectory, dtype=np.float64)[None], "trajectory")
        if trajectory.shape[1] != frames:
            raise ValueError(f"start='noise' needs a trajectory of {frames} poses")
        return trajectory[0]

    def step(self, action):
        if not self._history:
            raise RuntimeError("call reset() before step()")
        plan = self.plan(action)
        frames = self.learned.generate(
            plan.trajectory,
            self._generator,
            self.config.num_inference_steps,
            self.config.guidance_scale,
        )
        return self.commit(frames, plan)

    @property
    def generator(self) -> torch.Generator:
        """The episode's diffusion noise source (seeded from ``self.np_random``)."""
        return self._generator

    # The vector env batches the DiT across envs between these two halves of a step.
    def plan(self, action: Any) -> StepPlan:
        """Validate an action; the ego follows its waypoints exactly."""
        waypoints = self._waypoints(action)
        states = follow_waypoints(self._states[-1], waypoints)
        return StepPlan(waypoints, states, window_trajectory(self._history + states))

    def commit(self, frames: np.ndarray, plan: StepPlan):
        """Finish a step once its frames are generated; returns the step tuple."""
        self._history = (self._history + plan.states)[-self.learned.history_frames :]
        return self._finish_step(frames, plan.states, plan.waypoints)
