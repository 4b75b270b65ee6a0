"""Agents that drive the occsim envs, imported as ``occsim.agents``.

Names are imported on first use (module ``__getattr__``), so importing one agent does not
load the others' dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the submodule that defines it.
_LAZY = {
    "MANEUVER_COMMANDS": "scripted",
    "Agent": "base",
    "ConstantSpeedAgent": "scripted",
    "KeyboardAgent": "keyboard",
    "KeyboardState": "keyboard",
    "ManeuverAgent": "scripted",
    "PlannerAgent": "planner",
    "PlannerCosts": "planner",
    "RandomAgent": "scripted",
}

if TYPE_CHECKING:
    from occsim.agents.base import Agent
    from occsim.agents.keyboard import KeyboardAgent, KeyboardState
    from occsim.agents.planner import PlannerAgent, PlannerCosts
    from occsim.agents.scripted import (
        MANEUVER_COMMANDS,
        ConstantSpeedAgent,
        ManeuverAgent,
        RandomAgent,
    )


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "MANEUVER_COMMANDS",
    "Agent",
    "ConstantSpeedAgent",
    "KeyboardAgent",
    "KeyboardState",
    "ManeuverAgent",
    "PlannerAgent",
    "PlannerCosts",
    "RandomAgent",
]
