"""occsim: a closed-loop driving simulator whose world is a learned 4D occupancy model."""

from occsim.grid import OCC3D_GRID, GridSpec
from occsim.labels import CLASS_NAMES, FREE_ID, NUM_CLASSES, PALETTE

__version__ = "0.1.0"


def _register_envs() -> None:
    # Imported lazily by gymnasium through string entry points; registering is cheap.
    from occsim.envs.registration import register_envs

    register_envs()


_register_envs()

__all__ = ["CLASS_NAMES", "FREE_ID", "NUM_CLASSES", "OCC3D_GRID", "PALETTE", "GridSpec"]
