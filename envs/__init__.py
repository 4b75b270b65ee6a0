"""Gymnasium environments of occsim, imported as ``occsim.envs``."""

from occsim.envs.config import OBSERVATION_KEYS, OccEnvConfig, RewardWeights
from occsim.envs.occsora_env import OccSoraEnv
from occsim.envs.procedural_env import ProceduralEnv
from occsim.envs.registration import register_envs
from occsim.envs.vector_env import OccSoraVectorEnv
from occsim.envs.wrappers import META_ACTIONS, BicycleControl, BicycleModel, MetaActions

__all__ = [
    "META_ACTIONS",
    "OBSERVATION_KEYS",
    "BicycleControl",
    "BicycleModel",
    "MetaActions",
    "OccEnvConfig",
    "OccSoraEnv",
    "OccSoraVectorEnv",
    "ProceduralEnv",
    "RewardWeights",
    "register_envs",
]
