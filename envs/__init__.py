"""Gymnasium environments of occsim, imported as ``occsim.envs``."""

from occsim.envs.config import OBSERVATION_KEYS, OccEnvConfig, RewardWeights
from occsim.envs.procedural_env import ProceduralEnv
from occsim.envs.registration import register_envs

__all__ = ["OBSERVATION_KEYS", "OccEnvConfig", "ProceduralEnv", "RewardWeights", "register_envs"]
