"""Training on several processes: DDP, started by torchrun (``torch.distributed.run``).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` for each process it starts (on one
machine or, with ``--nnodes`` and ``--rdzv-endpoint``, on several); :func:`setup` reads them,
joins the process group (``nccl`` on GPUs, ``gloo`` on CPUs) and gives each process its GPU.
Without torchrun (``WORLD_SIZE`` unset or 1) nothing is set up and training is one process.

The rules a run follows under DDP (see README, "Training on several GPUs or machines"):

- ``train.batch_size`` is the GLOBAL batch: each of the N processes takes ``batch_size / N``
  images per step (it must divide), so one config gives the same steps, the same learning
  rate schedule and (without batch-norm statistics, or with ``train.sync_bn``) the same
  weights on 1 process or N: no learning-rate rule to apply by hand.
- Each process sees a disjoint shard of every epoch's order (:class:`EpochSampler`).
- Process 0 alone validates (the whole ``val`` set, so the numbers are a single process's)
  and writes the run folder; the others wait for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from vision_tasks.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes (``local_rank`` on
    its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def per_process_batch(self, batch_size: int) -> int:
        """This process's share of the global ``batch_size``."""
        if batch_size % self.world:
            raise ConfigError(f"train.batch_size: {batch_size} is the global batch and must divide "
                              f"among the {self.world} processes; use a multiple of {self.world}")
        return batch_size // self.world

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


SINGLE = Dist()


def from_environment() -> Dist:
    """The place torchrun gave this process (``SINGLE`` without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> Dist:
    """Join torchrun's process group (once per process) for training on ``device``."""
    dist = from_environment()
    if dist.enabled and not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch_dist.init_process_group(backend)
    return dist


def process_device(device: torch.device, dist: Dist) -> torch.device:
    """Each process its own GPU (``cuda:LOCAL_RANK``); CPUs are shared."""
    if dist.enabled and device.type == "cuda":
        return torch.device("cuda", dist.local_rank)
    return device


def gather(value: object, dist: Dist) -> list[object]:
    """Every process's ``value``, in rank order (``[value]`` on one process)."""
    if not dist.enabled:
        return [value]
    values: list[object] = [None] * dist.world
    torch_dist.all_gather_object(values, value)
    return values
