"""Agents that drive the occsim envs, imported as ``occsim.agents``.

Names are imported on first use (module ``__getattr__``), so importing one agent does not
load the others' dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from occsim.lazy import lazy_attributes

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


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
