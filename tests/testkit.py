"""Helpers shared by several test modules (imported as ``testkit``: pytest puts ``tests/`` on
``sys.path``). Fixtures live in ``conftest.py``; plain functions live here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def noise(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    """A uint8 ``[h, w, 3]`` image of uniform noise."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(img: Image.Image, path: Path, **kwargs: object) -> Path:
    img.save(path, **kwargs)
    return path


def assert_rgb_uint8(arr: np.ndarray, h: int, w: int) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (h, w, 3)
    assert arr.flags.c_contiguous and arr.flags.writeable


def coco_split(root: Path, split: str) -> str:
    """The ``data.<split>`` value (JSON) of a synthetic COCO set written under ``root``."""
    return json.dumps({"images": str(root / split / "images"),
                       "annotations": str(root / split / "annotations.json")})


def coco_config(task: str, data: Path, *overrides: str):
    """A config of ``task`` on the synthetic COCO set at ``data`` with ``overrides``."""
    from vision_tasks.config import load_config

    return load_config(None, [f"data.train={coco_split(data, 'train')}",
                              f"data.val={coco_split(data, 'val')}", *overrides],
                       base={"task": task})


def overfit(cfg, task, items: int, steps: int,
            value: Callable = lambda loss, parts: float(loss.detach()),
            seed: int = 0) -> tuple[list, dict, object]:
    """Train a fresh 5-class model of ``task`` (initialised from torch seed ``seed``) on the
    first ``items`` training items (no augmentation) for ``steps`` steps; returns
    (``value(loss, parts)`` per step, the last step's loss parts, the batch's targets).
    benchmarks/test_margins.py measures the margins of the tests that use it over seeds."""
    import torch

    from vision_tasks.engine.optim import build_optimizer
    from vision_tasks.models.model import build_model

    torch.manual_seed(seed)
    dataset = task.build_dataset(cfg, "train", train=False)
    images, targets = task.collate([dataset[i] for i in range(items)])
    model = build_model(cfg, task, 5).train()
    loss_fn = task.build_loss(cfg, model.head)
    opt = build_optimizer(model, cfg.train)
    values, parts = [], {}
    for _ in range(steps):
        loss, parts = loss_fn(model(images.float())[task.name], targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(value(loss, parts))
    return values, parts, targets


def first_item_losses(cfg, task, change: Callable[[dict], dict]) -> tuple[dict, dict]:
    """Loss parts of a fresh 5-class model of ``task`` (eval mode, no gradients) on the first
    training item: with its targets as they are, and with ``change(targets)``."""
    import torch

    from vision_tasks.models.model import build_model

    torch.manual_seed(0)
    images, targets = task.collate([task.build_dataset(cfg, "train", train=False)[0]])
    model = build_model(cfg, task, 5).eval()
    loss_fn = task.build_loss(cfg, model.head)
    with torch.no_grad():
        outputs = model(images.float())[task.name]
        return loss_fn(outputs, targets)[1], loss_fn(outputs, change(targets))[1]


def assert_runs_without_torch(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must succeed without importing torch,
    torchvision or the task plug-ins."""
    check = """
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'tasks'))
assert not loaded, loaded
print('ok')
"""
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code + check],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
