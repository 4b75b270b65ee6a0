"""Natively batched ``occsim/OccSora-v0``: one DiT call per step for all sub-envs."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from occsim.envs.config import OccEnvConfig
from occsim.envs.occsora_env import OccSoraEnv
from occsim.pipeline import OccSoraPipeline
from occsim.world_model import load_world_model, propose_together

if TYPE_CHECKING:
    from occsim.procedural import WorldConfig


class OccSoraVectorEnv(VectorEnv):
    """``num_envs`` learned worlds stepped together: the denoising loop runs once over the
    batch (the expensive part), each sub-env then decodes its own new frames with its own
    stream. Built by ``gym.make_vec("occsim/OccSora-v0", num_envs=N)``; next-step
    autoreset, as gymnasium's ``SyncVectorEnv``. Sub-env ``i`` is seeded ``seed + i`` and
    draws its noise from its own generator, so it matches a single env of that seed (up to
    arg-max ties that batched float sums can flip).
    """

    metadata: ClassVar[dict] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": ["rgb_array"],
    }

    def __init__(
        self,
        num_envs: int,
        config: OccEnvConfig | None = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        pipeline: OccSoraPipeline | None = None,
        world_config: WorldConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        config = OccEnvConfig.from_kwargs(config, **kwargs)
        if pipeline is None:
            pipeline = load_world_model(
                config.pipeline_path,
                config.scheduler,
                config.device,
                config.dtype,
                config.timestep_spacing,
            )
        self.envs = [
            OccSoraEnv(config, render_mode, world_config, pipeline) for _ in range(num_envs)
        ]
        self.config, self.num_envs = config, num_envs
        self.max_episode_steps, self.render_mode = max_episode_steps, render_mode
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._observations = create_empty_array(self.single_observation_space, num_envs)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        seeds = [None] * self.num_envs
        if isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        elif seed is not None:
            if len(seed) != self.num_envs:
                raise ValueError(f"got {len(seed)} seeds for {self.num_envs} envs")
            seeds = list(seed)
        observations, infos = [], {}
        for i, (env, s) in enumerate(zip(self.envs, seeds)):
            observation, info = env.reset(seed=s, options=options)
            observations.append(observation)
            infos = self._add_info(infos, info, i)
        self._elapsed[:] = 0
        self._autoreset[:] = False
        return self._batch(observations), infos

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        expected = (self.num_envs, *self.single_action_space.shape)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        observations: list[Any] = [None] * self.num_envs
        infos: dict = {}
        moving = [i for i in range(self.num_envs) if not self._autoreset[i]]
        for i in np.flatnonzero(self._autoreset):
            observations[i], info = self.envs[i].reset()
            infos = self._add_info(infos, info, int(i))
            self._elapsed[i] = 0
        if moving:
            results = self.step_batch(moving, actions)
            for i, (observation, reward, term, _, info) in zip(moving, results):
                self._elapsed[i] += 1
                observations[i], rewards[i], terminated[i] = observation, reward, term
                limit = self.max_episode_steps
                truncated[i] = limit is not None and self._elapsed[i] >= limit
                infos = self._add_info(infos, info, i)
        self._autoreset = terminated | truncated
        return self._batch(observations), rewards, terminated, truncated, infos

    def step_batch(self, indices: list[int], actions: np.ndarray) -> list[tuple]:
        """Step the sub-envs ``indices`` with their rows of ``actions`` through one DiT call
        (no autoreset); returns each env's step tuple."""
        envs = [self.envs[i] for i in indices]
        plans = [env.plan(actions[i]) for env, i in zip(envs, indices)]
        windows = propose_together([env.rollout for env in envs], [plan.poses for plan in plans])
        return [env.step_window(plan, window) for env, plan, window in zip(envs, plans, windows)]

    def _batch(self, observations: list[Any]) -> Any:
        batched = concatenate(self.single_observation_space, observations, self._observations)
        return copy.deepcopy(batched)  # the buffer is reused next step

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
