"""Gymnasium environments of occsim, imported as ``occsim.envs``.

Names are imported on first use (module ``__getattr__``): ``import occsim`` registers the
envs through ``occsim.envs.registration`` alone, so it stays free of torch and diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from occsim.envs.registration import register_envs

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
