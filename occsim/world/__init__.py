"""The procedural driving world: a seeded city with traffic, rendered as 4D occupancy.

It is the training data of the bundled model, the exact reference against which the learned
world is measured, and a fast non-learned backend of the same environment API.
"""

from occsim.world.config import WorldConfig
from occsim.world.world import MANEUVERS, EgoState, ProceduralWorld

__all__ = ["MANEUVERS", "EgoState", "ProceduralWorld", "WorldConfig"]
