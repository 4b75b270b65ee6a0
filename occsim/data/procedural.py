"""Download-free training clips from the procedural world, built on the fly."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from occsim.data.occ3d_writer import Occ3DWriter
from occsim.procedural import MANEUVERS, ProceduralWorld, WorldConfig
from occsim.validation import check_int


def _seeds(seed: int, index: int, clips_per_map: int) -> tuple[int, int, int]:
    """(map seed, episode seed, manoeuvre draw) of clip ``index``; stable across versions."""
    map_seed = int(np.random.SeedSequence([seed, index // clips_per_map]).generate_state(1)[0])
    episode = np.random.SeedSequence([seed, index, 7]).generate_state(2)
    return map_seed, int(episode[0]), int(episode[1])


class ProceduralClips(Dataset):
    """Clips of the procedural world, clip ``i`` built deterministically from ``(seed, i)``.

    Items match :class:`occsim.data.Occ3DDataset`'s: ``occupancy (T, 200, 200, 16)`` uint8,
    ``trajectory (T, 3)`` float32, plus ``scene`` (a name), ``tokens`` and ``maneuver``.
    Consecutive clips share a map (``clips_per_map``) so that map generation is amortised.

    Args:
        num_clips: dataset length.
        clip_len: frames per clip (2 Hz).
        seed: dataset seed; held-out sets use seeds never used in training.
        clips_per_map: clips drawn from each generated map.
        config: world generation parameters.
        maneuvers: ego manoeuvres drawn uniformly per clip.
    """

    def __init__(
        self,
        num_clips: int,
        clip_len: int = 16,
        seed: int = 0,
        clips_per_map: int = 8,
        config: WorldConfig | None = None,
        maneuvers: tuple[str, ...] = MANEUVERS,
    ) -> None:
        num_clips = check_int(num_clips, "num_clips", 1)
        clip_len = check_int(clip_len, "clip_len", 1)
        clips_per_map = check_int(clips_per_map, "clips_per_map", 1)
        seed = check_int(seed, "seed", 0)  # numpy seed sequences take non-negative seeds
        unknown = sorted(set(maneuvers) - set(MANEUVERS))
        if unknown or not maneuvers:
            raise ValueError(
                f"maneuvers {unknown or '()'} invalid; expected a subset of {MANEUVERS}"
            )
        self.num_clips, self.clip_len, self.seed = num_clips, clip_len, seed
        self.clips_per_map, self.maneuvers = clips_per_map, tuple(maneuvers)
        self.config = config or WorldConfig()

    def __len__(self) -> int:
        return self.num_clips

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one map per dataset is the point
    def _world(self, map_seed: int) -> ProceduralWorld:
        return ProceduralWorld(map_seed, self.config)

    def clip(self, index: int) -> dict[str, Any]:
        """Clip ``index`` with its world poses (``poses (T, 3)``) as well."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range for {self.num_clips} clips")
        map_seed, episode_seed, draw = _seeds(self.seed, index, self.clips_per_map)
        maneuver = self.maneuvers[draw % len(self.maneuvers)]
        world = self._world(map_seed)
        world.reset(episode_seed, maneuver)
        out = world.rollout(self.clip_len)
        scene = f"proc-{self.seed}-{index:06d}"
        out.update(
            scene=scene,
            tokens=[f"{scene}-{t:04d}" for t in range(self.clip_len)],
            maneuver=maneuver,
        )
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += self.num_clips
        out = self.clip(index)
        del out["poses"]
        return out


def export_occ3d(clips: ProceduralClips, root: str | Path, split: str = "train") -> int:
    """Write ``clips`` under ``root`` in the Occ3D layout; resumes, returns clips written now."""
    writer = Occ3DWriter(root)
    done = set(writer.scenes)
    written = 0
    for index in tqdm(range(len(clips)), desc=f"export {split}", unit="clip"):
        scene = f"proc-{clips.seed}-{index:06d}"
        if scene in done:
            continue
        clip = clips.clip(index)
        writer.write_scene(scene, clip["occupancy"], clip["poses"], split=split)
        written += 1
    return written
