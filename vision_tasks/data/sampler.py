"""A sampler whose order depends only on (seed, epoch): resumable and reproducible."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs; datasets use the epoch to seed augmentation.

    Call :meth:`set_epoch` before each epoch. With ``shuffle`` the order is a
    permutation drawn from a generator seeded with ``(seed, epoch)``. Under DDP, process
    ``rank`` of ``world`` takes every ``world``-th item of that order from position ``rank``
    (the order is padded by its own start to a multiple of ``world``, so every process has
    as many items): per-process batches of ``B / world`` make up, step by step, the very
    batches of ``B`` one process would take.
    """

    def __init__(self, size: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        padded = order + order[: len(self) * self.world - self.size]
        for index in padded[self.rank::self.world]:
            yield self.epoch, index
