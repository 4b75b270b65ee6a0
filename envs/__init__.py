"""Gymnasium environments of occsim, imported as ``occsim.envs``.

Names are imported on first use (module ``__getattr__``): ``import occsim`` registers the
envs through ``occsim.envs.registration`` alone, so it stays free of torch and diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from occsim.envs.registration import register_envs
from occsim.lazy import lazy_attributes

# Public name -> the submodule that defines it.
_LAZY = {
    "META_ACTIONS": "wrappers",
    "OBSERVATION_KEYS": "config",
    "BicycleControl": "wrappers",
    "BicycleModel": "wrappers",
    "MetaActions": "wrappers",
    "OccEnvConfig": "config",
    "OccSoraEnv": "occsora_env",
    "OccSoraVectorEnv": "vector_env",
    "ProceduralEnv": "procedural_env",
    "RewardWeights": "config",
}

if TYPE_CHECKING:
    from occsim.envs.config import OBSERVATION_KEYS, OccEnvConfig, RewardWeights
    from occsim.envs.occsora_env import OccSoraEnv
    from occsim.envs.procedural_env import ProceduralEnv
    from occsim.envs.vector_env import OccSoraVectorEnv
    from occsim.envs.wrappers import META_ACTIONS, BicycleControl, BicycleModel, MetaActions


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


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
