"""The procedural driving world: a seeded city with traffic, rendered as 4D occupancy.

It is the training data of the bundled model, the exact reference against which the learned
world is measured, and a fast non-learned backend of the same environment API.
"""

from occsim.procedural.config import WorldConfig
from occsim.procedural.scene import opening_frames, starting_scene
from occsim.procedural.world import MANEUVERS, ProceduralWorld

__all__ = ["MANEUVERS", "ProceduralWorld", "WorldConfig", "opening_frames", "starting_scene"]
