"""A sampler whose order depends only on (seed, epoch): resumable and reproducible."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs; datasets use the epoch to seed augmentation.

    Call :meth:`set_epoch` before each epoch. With ``shuffle`` the order is a
    permutation drawn from a generator seeded with ``(seed, epoch)``.
    """

    def __init__(self, size: int, seed: int, shuffle: bool) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = range(self.size)
        for index in order:
            yield self.epoch, index
