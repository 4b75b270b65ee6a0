"""Download-free training clips from the procedural world, built on the fly."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from occsim.data.occ3d_writer import Occ3DWriter, write_scene_frames
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
        scene = _scene_name(self.seed, index)
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


def _scene_name(seed: int, index: int) -> str:
    return f"proc-{seed}-{index:06d}"


def export_occ3d(
    clips: ProceduralClips, root: str | Path, split: str = "train", workers: int = 1
) -> int:
    """Write ``clips`` under ``root`` in the Occ3D layout; resumes, returns clips written now.

    With ``workers > 1`` the clips are built and their frame files written in that many
    processes; this process registers them in ``annotations.json`` in clip order, so the
    files are the same as with one worker and an interrupted export resumes the same way.
    """
    workers = check_int(workers, "workers", 1)
    writer = Occ3DWriter(root)
    done = set(writer.scenes)
    todo = [i for i in range(len(clips)) if _scene_name(clips.seed, i) not in done]
    scenes = _written_scenes(clips, writer.root, todo, workers)
    progress = tqdm(total=len(todo), desc=f"export {split}", unit="clip")
    with contextlib.closing(scenes), progress:
        for scene, frames in scenes:
            writer.add_scene(scene, frames, split)
            progress.update()
    return len(todo)


def _written_scenes(
    clips: ProceduralClips, root: Path, indices: list[int], workers: int
) -> Iterator[tuple[str, dict]]:
    """``(scene, frame infos)`` of the clips ``indices``, in order, once their files exist."""
    tasks = _tasks(indices, clips.clips_per_map, workers)
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield from _write_clips(clips, root, task)
        return
    # spawn: a fresh interpreter per worker, never a fork of this one's threads and state.
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context)
    try:
        futures = [executor.submit(_write_clips, clips, root, task) for task in tasks]
        for future in futures:
            yield from future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _tasks(indices: list[int], clips_per_map: int, workers: int) -> list[list[int]]:
    """Runs of consecutive clips on one map (its world is built once per task), halved while
    there are fewer tasks than workers."""
    tasks: list[list[int]] = []
    for index in indices:
        if tasks and tasks[-1][-1] == index - 1 and index % clips_per_map:
            tasks[-1].append(index)
        else:
            tasks.append([index])
    while len(tasks) < workers and max((len(task) for task in tasks), default=1) > 1:
        longest = max(range(len(tasks)), key=lambda k: len(tasks[k]))
        task = tasks[longest]
        tasks[longest : longest + 1] = [task[: len(task) // 2], task[len(task) // 2 :]]
    return tasks


def _write_clips(clips: ProceduralClips, root: Path, indices: list[int]) -> list[tuple[str, dict]]:
    """Build the clips ``indices`` and write their frame files (in a worker or in-process)."""
    written = []
    for index in indices:
        clip = clips.clip(index)
        frames = write_scene_frames(root, clip["scene"], clip["occupancy"], clip["poses"])
        written.append((clip["scene"], frames))
    return written
