"""Episode records and their replay: the actions, seed and per-step occupancy digests of
an episode, saved as JSON and checked step by step when replayed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from occsim.io import write_json_atomic


@dataclass
class EpisodeRecord:
    """Everything needed to replay an episode exactly: env, options, seed and actions, plus
    a digest of each step's occupancy to check the replay against."""

    env_id: str
    seed: int
    env_kwargs: dict = field(default_factory=dict)
    actions: list = field(default_factory=list)
    digests: list = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, asdict(self), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> EpisodeRecord:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"episode record {path} does not exist")
        try:
            values = json.loads(path.read_text())
            return cls(**values)
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path} is not an occsim episode record: {error}") from None


def occupancy_digest(occupancy: np.ndarray) -> str:
    """Short digest of an occupancy array (exact replays give the same digests)."""
    return hashlib.sha1(np.ascontiguousarray(occupancy).tobytes()).hexdigest()[:16]


def replay(path: str | Path, **env_overrides: Any) -> dict[str, Any]:
    """Replay a recorded episode; raises ``AssertionError`` naming the first step whose
    occupancy differs from the recording."""
    record = EpisodeRecord.load(path)
    env = gym.make(record.env_id, **{**record.env_kwargs, **env_overrides})
    env.reset(seed=record.seed)
    for step, (action, digest) in enumerate(zip(record.actions, record.digests)):
        observation = env.step(np.asarray(action, dtype=np.float32))[0]
        got = occupancy_digest(observation["occupancy"])
        if got != digest:
            raise AssertionError(f"replay diverged at step {step}: {got} != recorded {digest}")
    env.close()
    return {"steps": len(record.actions), "identical": True}
