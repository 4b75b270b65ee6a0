"""Training data of both stages: datasets from a :class:`DataConfig` and resumable batches."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from occsim.data import Occ3DDataset, ProceduralClips
from occsim.train.config import DataConfig, OptimConfig


def build_datasets(config: DataConfig) -> tuple[Dataset, Dataset]:
    """``(train, val)`` datasets; raises a clear error for an unknown source or bad root."""
    if config.source == "procedural":
        train = ProceduralClips(config.num_clips, clip_len=config.clip_len, seed=config.seed)
        val = ProceduralClips(config.num_val_clips, clip_len=config.clip_len, seed=config.val_seed)
        return train, val
    if config.source == "occ3d":
        if not config.root:
            raise ValueError("data.source=occ3d needs data.root (the folder holding gts/)")
        poses = config.poses or None
        common = dict(clip_len=config.clip_len, poses=poses, drop_short_scenes=True)
        train = Occ3DDataset(config.root, split=config.train_split, **common)
        val = Occ3DDataset(config.root, split=config.val_split, stride=config.clip_len, **common)
        return train, val
    raise ValueError(f"unknown data.source {config.source!r}; expected 'procedural' or 'occ3d'")


def build_segments(config: DataConfig, segment_len: int) -> Dataset:
    """The training data cut into non-overlapping segments of ``segment_len`` frames (the
    unit of the DiT stage's latent cache)."""
    if config.source == "procedural":
        return ProceduralClips(config.num_clips, clip_len=segment_len, seed=config.seed)
    if config.source == "occ3d":
        if not config.root:
            raise ValueError("data.source=occ3d needs data.root (the folder holding gts/)")
        return Occ3DDataset(
            config.root,
            split=config.train_split,
            clip_len=segment_len,
            stride=segment_len,
            poses=config.poses or None,
            drop_short_scenes=True,
        )
    raise ValueError(f"unknown data.source {config.source!r}; expected 'procedural' or 'occ3d'")


def step_indices(num_items: int, step: int, batch: int, seed: int) -> torch.Tensor:
    """Clip indices of one optimiser step for all processes: a pure function of the step,
    so a resumed run draws exactly the batches of an uninterrupted one."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, num_items, (batch,), generator=generator)


def micro_batches(
    num_items: int, step: int, batch_size: int, accumulation: int, seed: int, world: int, rank: int
) -> list[torch.Tensor]:
    """This process's clip indices of one optimiser step, split into micro-batches."""
    per_rank = batch_size * accumulation
    mine = step_indices(num_items, step, per_rank * world, seed)[rank * per_rank :][:per_rank]
    return list(mine.split(batch_size))


def load_clips(dataset: Dataset, indices: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stack the items at ``indices``: ``occupancy (B, T, X, Y, Z)`` long and
    ``trajectory (B, T, 3)`` float32."""
    items = [dataset[int(i)] for i in indices]
    return {
        "occupancy": torch.from_numpy(np.stack([it["occupancy"] for it in items])).long(),
        "trajectory": torch.from_numpy(np.stack([it["trajectory"] for it in items])),
    }


def image_clip(val_set: Dataset, train_set: Dataset) -> dict[str, torch.Tensor]:
    """The clip of the periodic tensorboard images (batch of one): the first validation
    clip, or the first training clip where there is no validation data."""
    return load_clips(val_set if len(val_set) else train_set, torch.tensor([0]))


class StepBatches(Dataset):
    """Item ``k``: this process's micro-batches of optimiser step ``steps[k]``, each a dict
    of ``indices`` and, with a ``dataset``, its :func:`load_clips` tensors.

    An item is a pure function of its step (:func:`micro_batches`), so worker processes
    may load steps ahead in any order and a resumed run still sees the batches of an
    uninterrupted one. Without a ``dataset`` (the DiT's latent cache, already in memory)
    an item holds the indices alone.
    """

    def __init__(
        self,
        dataset: Dataset | None,
        num_items: int,
        steps: range,
        optim: OptimConfig,
        seed: int,
        world: int,
        rank: int,
    ) -> None:
        self.dataset, self.num_items, self.steps, self.optim = dataset, num_items, steps, optim
        self.seed, self.world, self.rank = seed, world, rank

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, k: int) -> list[dict[str, torch.Tensor]]:
        parts = micro_batches(
            self.num_items,
            self.steps[k],
            self.optim.batch_size,
            self.optim.gradient_accumulation,
            self.seed,
            self.world,
            self.rank,
        )
        if self.dataset is None:
            return [{"indices": part} for part in parts]
        return [{"indices": part, **load_clips(self.dataset, part)} for part in parts]


def step_loader(batches: StepBatches, num_workers: int) -> DataLoader:
    """Iterate ``batches`` in step order, loaded by ``num_workers`` processes (0: here;
    always here for indices alone, which cost nothing to make)."""
    return DataLoader(
        batches,
        batch_size=None,  # an item is already a step's micro-batches
        shuffle=False,
        num_workers=num_workers if batches.dataset is not None else 0,
        # Its own generator: a loader otherwise draws its workers' base seed from the
        # global torch RNG and shifts every random number the run draws after it.
        generator=torch.Generator().manual_seed(0),
    )
