"""Agents that drive the occsim envs, imported as ``occsim.agents``."""

from occsim.agents.base import Agent
from occsim.agents.keyboard import KeyboardAgent, KeyboardState
from occsim.agents.planner import PlannerAgent, PlannerCosts
from occsim.agents.scripted import (
    MANEUVER_COMMANDS,
    ConstantSpeedAgent,
    ManeuverAgent,
    RandomAgent,
)

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
