"""Episode records and their replay: the actions, seed and per-step occupancy digests of
an episode, saved as JSON and checked step by step when replayed.

A record is data from outside: :meth:`EpisodeRecord.load` checks its whole schema before
anything runs (an env id of occsim's own, env options the env config knows, one action and
one digest per step), so a replay can neither import a module the file names nor pass a
step it has no digest for.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from occsim.io import write_json_atomic
from occsim.validation import check_int, check_real_array

# The only envs a record may name: gymnasium would import the module of a `module:Env-v0`
# id, so ids are never looked up in the open registry.
LEARNED_ENV_ID = "occsim/OccSora-v0"
REPLAYABLE_ENV_IDS = (LEARNED_ENV_ID, "occsim/Procedural-v0")
# Env arguments a JSON record may hold besides OccEnvConfig's fields (JSON null only).
NULL_ONLY_KWARGS = ("world_config", "render_mode")
_DIGEST = re.compile(r"^[0-9a-f]{16}$")


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
        write_json_atomic(path, asdict(self), indent=None, allow_nan=False)

    @classmethod
    def load(cls, path: str | Path) -> EpisodeRecord:
        """Read and check a record; any deviation from the schema is a ``ValueError``
        naming the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"episode record {path} does not exist")
        try:
            values = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise ValueError(f"{path} is not an occsim episode record: {error}") from None
        try:
            return check_record(values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} is not an occsim episode record: {error}") from None


def check_record(values: Any) -> EpisodeRecord:
    """An :class:`EpisodeRecord` from the JSON object ``values``, every field checked."""
    names = [f.name for f in fields(EpisodeRecord)]
    if not isinstance(values, dict) or set(values) != set(names):
        got = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise ValueError(f"expected an object with exactly the keys {names}, got {got}")
    env_id = values["env_id"]
    if env_id not in REPLAYABLE_ENV_IDS:
        raise ValueError(f"env_id {env_id!r} is not an occsim env; expected {REPLAYABLE_ENV_IDS}")
    seed = check_int(values["seed"], "seed", 0)
    env_kwargs = values["env_kwargs"]
    frames = check_env_kwargs(env_kwargs)
    actions, digests = values["actions"], values["digests"]
    if not isinstance(actions, list) or not isinstance(digests, list):
        raise ValueError("actions and digests must be lists, one entry per step")
    if len(actions) != len(digests):
        raise ValueError(
            f"{len(actions)} actions but {len(digests)} digests: every step needs its digest"
        )
    for step, (action, digest) in enumerate(zip(actions, digests)):
        check_action(action, frames, step)
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise ValueError(f"digest of step {step} must be 16 hex digits, got {digest!r}")
    return EpisodeRecord(env_id, seed, dict(env_kwargs), actions, digests)


def check_env_kwargs(env_kwargs: Any) -> int:
    """Check a record's env options against the env config; returns its frames per step."""
    from occsim.envs.config import OccEnvConfig  # layer above: imported when replaying

    if not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs must be an object, got {type(env_kwargs).__name__}")
    extra = {k: v for k, v in env_kwargs.items() if k in NULL_ONLY_KWARGS}
    if any(v is not None for v in extra.values()):
        raise ValueError(f"env_kwargs {sorted(extra)} may only be null in a record")
    config = OccEnvConfig.from_kwargs(
        **{k: v for k, v in env_kwargs.items() if k not in NULL_ONLY_KWARGS}
    )
    if "occupancy" not in config.observation_keys:
        raise ValueError("env_kwargs observation_keys must include 'occupancy' (it is replayed)")
    return config.frames_per_step


def check_action(action: Any, frames: int, step: int) -> np.ndarray:
    """One recorded action: ``(frames, 2)`` finite real numbers."""
    array = check_real_array(action, f"action of step {step}")
    if array.shape != (frames, 2) or not np.all(np.isfinite(array)):
        raise ValueError(f"action of step {step} must be {frames}x2 finite numbers, got {action!r}")
    return array


def occupancy_digest(occupancy: np.ndarray) -> str:
    """Short digest of an occupancy array (exact replays give the same digests)."""
    return hashlib.sha1(np.ascontiguousarray(occupancy).tobytes()).hexdigest()[:16]


def replay(path: str | Path, **env_overrides: Any) -> dict[str, Any]:
    """Replay a recorded episode; raises ``AssertionError`` naming the first step whose
    occupancy differs from the recording (``ValueError`` for a malformed record)."""
    import gymnasium as gym

    import occsim  # noqa: F401  (registers the envs)

    record = EpisodeRecord.load(path)
    if not record.actions:
        raise ValueError(f"{path} records no steps: there is nothing to replay")
    env_kwargs = dict(record.env_kwargs)
    if record.env_id == LEARNED_ENV_ID:
        # Records made before the spacing was an option sampled with the bundled training
        # scheduler's "leading" spacing.
        env_kwargs.setdefault("timestep_spacing", "leading")
    env = gym.make(record.env_id, **{**env_kwargs, **env_overrides})
    try:
        env.reset(seed=record.seed)
        for step, (action, digest) in enumerate(zip(record.actions, record.digests)):
            observation = env.step(np.asarray(action, dtype=np.float32))[0]
            got = occupancy_digest(observation["occupancy"])
            if got != digest:
                raise AssertionError(f"replay diverged at step {step}: {got} != recorded {digest}")
    finally:
        env.close()
    return {"steps": len(record.actions), "identical": True}
