"""Shared fixtures: a tiny synthetic classify set, a tiny config and a trained run.

Everything is small (32 px images, a few dozen of them, a model with a few thousand
weights) so that the whole suite stays fast on a 2-core CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vision_tasks.config import Config, load_config
from vision_tasks.engine.trainer import Trainer, TrainResult
from vision_tasks.task_api import get_task

TINY_MODEL = [
    "model.backbone.name=simple_cnn",
    "model.backbone.width=4",
    "model.backbone.depths=[1, 1, 1]",
    "data.image_size=32",
    "data.workers=0",
    "train.epochs=1",
    "train.batch_size=8",
    "train.lr=0.01",
    "train.warmup_epochs=0",
]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run as fast on one thread, and far faster when other jobs share the cores
    (two OpenMP threads spin-wait for each other when one of them is descheduled). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_classify_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder of synthetic shapes: 40 train / 20 val images, 32 px, 5 classes."""
    out = tmp_path_factory.mktemp("shapes-classify")
    get_task("classify").synthesize(out, 40, 20, 32, seed=0)
    return out


def tiny_classify_config(data: Path, *extra: str) -> Config:
    """The tiny classify config on ``data`` with extra ``--set`` overrides."""
    return load_config(None, [f"data.train={data / 'train'}", f"data.val={data / 'val'}",
                              *TINY_MODEL, *extra], base={"task": "classify"})


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(data, *overrides)``: the tiny classify config as a function."""
    return tiny_classify_config


@pytest.fixture(scope="session")
def tiny_classify_run(tiny_classify_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """One epoch of the tiny classify model; its run folder and checkpoints."""
    cfg = tiny_classify_config(tiny_classify_data)
    run = tmp_path_factory.mktemp("run-classify")
    return Trainer(cfg, run, progress=False, log=lambda _: None).fit()
