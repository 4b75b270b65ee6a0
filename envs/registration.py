"""Registers the occsim environments with gymnasium (1.x has no plugin auto-loading)."""

from __future__ import annotations

import gymnasium as gym

MAX_EPISODE_STEPS = 100


def register_envs() -> None:
    """Register ``occsim/Procedural-v0`` and ``occsim/OccSora-v0`` (idempotent)."""
    if "occsim/Procedural-v0" not in gym.registry:
        gym.register(
            id="occsim/Procedural-v0",
            entry_point="occsim.envs.procedural_env:ProceduralEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
        )
    if "occsim/OccSora-v0" not in gym.registry:
        gym.register(
            id="occsim/OccSora-v0",
            entry_point="occsim.envs.occsora_env:OccSoraEnv",
            vector_entry_point="occsim.envs.vector_env:OccSoraVectorEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
        )
