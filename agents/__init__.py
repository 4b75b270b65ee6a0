"""Agents that drive the occsim envs, imported as ``occsim.agents``."""

from occsim.agents.base import Agent
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
    "ManeuverAgent",
    "PlannerAgent",
    "PlannerCosts",
    "RandomAgent",
]
