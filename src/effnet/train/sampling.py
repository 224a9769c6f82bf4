"""Reproducible data order and augmentation: what makes a killed-and-resumed run equal an uninterrupted one."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled by seed + epoch, sharded by rank) that can start part-way into an epoch."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start_index = 0

    def set_position(self, epoch: int, start_index: int = 0) -> None:
        """Iterate epoch `epoch`, skipping this rank's first `start_index` samples (already trained on)."""
        self.set_epoch(epoch)
        self.start_index = start_index

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index :])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


class SeededDataset(Dataset):
    """Runs the wrapped dataset's random transforms from a seed derived from (seed, epoch, index).

    Augmentation is then a pure function of the sample and epoch, independent of the order, the number of
    workers or processes, and of what ran before: a resumed run sees exactly the crops it would have seen.
    The global generators are restored afterwards, so dropout/mixup randomness in the main process is untouched.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample_seed = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index
        with torch.random.fork_rng(devices=[]):
            py_state, np_state = random.getstate(), np.random.get_state()
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            np.random.seed(sample_seed % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class ShardedEval(Dataset):
    """Rank r of w evaluates samples r, r+w, r+2w, ... (no padding, so summed metrics are exact)."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int) -> None:
        self.dataset = dataset
        self.indices = list(range(rank, len(dataset), world_size))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]


class EpochTagged(Sampler):
    """Yields (epoch, index) pairs of a ResumableSampler, read when each epoch's iteration starts."""

    def __init__(self, sampler: ResumableSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochKeyed(Dataset):
    """A SeededDataset indexed by (epoch, index), so that each worker's copy augments with the right epoch."""

    def __init__(self, seeded: SeededDataset) -> None:
        self.seeded = seeded

    def __len__(self) -> int:
        return len(self.seeded)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.seeded.epoch = epoch
        return self.seeded[index]
