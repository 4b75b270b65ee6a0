"""The protocol every occsim agent follows."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Agent(Protocol):
    """Drives an occsim env: ``reset()`` at an episode start, then ``act(obs)`` each step,
    returning an action of the env's (unwrapped) action space: ``(K, 2)`` normalised
    waypoints."""

    def reset(self, seed: int | None = None) -> None:
        """Forget the last episode (and reseed, where the agent is random)."""

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        """The action for ``observation``."""
