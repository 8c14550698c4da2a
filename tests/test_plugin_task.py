"""A fifth task from outside this repository: declared in its own distribution (a package and
its entry-point metadata, written to a temporary folder on ``sys.path``), it is validated,
trained, exported and decoded by the runtime with no file of this repository edited.

The toy task is "count the objects": a scalar regression head on the shared backbone,
trained on the synthetic detect set's object counts.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from testkit import coco_split

from vision_tasks.config import load_config
from vision_tasks.errors import ConfigError
from vision_tasks.task_spec import get_spec, task_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC_MODULE = '''
"""Task ``count``: how many objects are in the image? (torch-free declaration)"""
from dataclasses import dataclass

from vision_tasks.results import Prediction
from vision_tasks.task_spec import Output, TaskSpec


@dataclass
class CountHeadConfig:
    hidden: int = 16


def decode_count(outputs, i, lb, meta, min_score=0.0):
    return Prediction(source="", task=meta.task, width=lb.width, height=lb.height,
                      class_names=meta.class_names, letterbox=lb,
                      values={"count": round(float(outputs["count"][i]), 3)})


SPEC = TaskSpec(name="count", outputs=(Output("count", "float32", ("N",)),),
                decoder=decode_count, training="count_task.training:TASK",
                head_config=CountHeadConfig,
                metadata=lambda cfg: {"unit": "objects"})
'''

TRAINING_MODULE = '''
"""Task ``count``: the training side."""
import torch
from torch import nn
from torch.utils.data import Dataset

from vision_tasks.data.coco_detection import build_detection
from vision_tasks.data.synth import write_coco
from vision_tasks.task_api import Evaluator, Task, TaskHead, coco_demo_overrides

from . import SPEC


class Counts(Dataset):
    """The detect set's items with the number of objects as the target."""

    def __init__(self, inner):
        self.inner = inner
        self.class_names = inner.class_names
        self.category_ids = inner.category_ids

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, key):
        image, target = self.inner[key]
        return image, float(len(target["labels"]))


class CountHead(TaskHead):
    def __init__(self, channels, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features):
        return self.net(features[-1]).squeeze(1)

    def postprocess(self, raw):
        return {"count": raw.clamp(min=0)}


class L1(nn.Module):
    def forward(self, raw, targets):
        loss = (raw - targets.float()).abs().mean()
        return loss, {}


class CountEvaluator(Evaluator):
    def __init__(self):
        self.errors = []

    def update(self, predictions, targets):
        self.errors += (predictions["count"] - torch.as_tensor(targets)).abs().tolist()

    def compute(self):
        n = max(len(self.errors), 1)
        return {"exact": sum(e < 0.5 for e in self.errors) / n, "mae": sum(self.errors) / n,
                "images": len(self.errors)}


class CountTask(Task):
    spec = SPEC
    primary_metric = "exact"
    synth_size = 64

    def build_dataset(self, cfg, split, train, class_names=None):
        return Counts(build_detection(cfg, split, train, class_names, masks=False))

    def build_head(self, cfg, features, num_classes, feature_shapes):
        return CountHead(features[-1].channels, cfg.model.head.hidden)

    def build_loss(self, cfg, num_classes):
        return L1()

    def make_evaluator(self, class_names, category_ids):
        return CountEvaluator()

    def synthesize(self, out, n_train, n_val, size, seed):
        return write_coco(out, n_train, n_val, size, seed, 1, 4, overwrite=True)

    def demo_overrides(self, data_dir):
        return coco_demo_overrides(data_dir)


TASK = CountTask()
'''


@pytest.fixture
def count_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ``count_task`` distribution, installed the way pip leaves one: a package and a
    ``.dist-info`` folder with its entry points, on ``sys.path``."""
    site = tmp_path / "site"
    package = site / "count_task"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(SPEC_MODULE))
    (package / "training.py").write_text(textwrap.dedent(TRAINING_MODULE))
    info = site / "count_task-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: count-task\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vision_tasks.tasks]\ncount = count_task:SPEC\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    import sys

    for name in [m for m in sys.modules if m == "count_task" or m.startswith("count_task.")]:
        del sys.modules[name]


def test_a_task_from_another_distribution_is_found_by_its_entry_point(count_distribution):
    assert "count" in task_names() and {"classify", "detect"} <= set(task_names())
    spec = get_spec("count")
    assert spec.output_names == ("count",) and not spec.coco_results


def test_its_config_sections_are_validated_by_its_own_dataclasses(count_distribution):
    cfg = load_config(None, ["model.head.hidden=8"], base={"task": "count"})
    assert cfg.model.head.hidden == 8
    with pytest.raises(ConfigError, match=r"model\.head\.hiden: unknown key \(did you mean 'hidden'\?\)"):
        load_config(None, ["model.head.hiden=8"], base={"task": "count"})


def test_it_trains_exports_and_is_decoded_by_the_runtime(count_distribution, tmp_path: Path):
    from vision_tasks.export.onnx_export import export_checkpoint
    from vision_tasks.export.runtime import Predictor

    from vision_tasks.cli import main
    from vision_tasks.engine.trainer import Trainer
    from vision_tasks.task_api import get_task

    data = tmp_path / "data"
    get_task("count").synthesize(data, 16, 6, 64, seed=0)
    cfg = load_config(None, [f"data.train={coco_split(data, 'train')}",
                             f"data.val={coco_split(data, 'val')}", "data.image_size=64",
                             "data.workers=0", "model.backbone.width=4",
                             "model.backbone.depths=[1, 1, 1]", "train.epochs=1",
                             "train.batch_size=8"], base={"task": "count"})
    result = Trainer(cfg, tmp_path / "run", progress=False, log=lambda _: None).fit()
    assert result.primary_metric == "exact" and {"exact", "mae"} <= set(result.metrics)
    assert np.isfinite(result.metrics["mae"])

    exported = export_checkpoint(result.best, tmp_path / "count.onnx", check=True)
    assert exported.metadata.task == "count" and exported.metadata.outputs == ("count",)
    assert exported.metadata.extra["unit"] == "objects"

    images = sorted((data / "val" / "images").iterdir())
    predictions = Predictor(exported.path).predict(images)
    assert [p.task for p in predictions] == ["count"] * 6
    assert all(p.values["count"] >= 0 for p in predictions)

    out = tmp_path / "pred"
    assert main(["predict", str(exported.path), str(data / "val" / "images"), "--out", str(out),
                 "--quiet"]) == 0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    by_source = {line["source"]: line["count"] for line in lines}
    assert by_source == {str(p.source): p.values["count"] for p in predictions}
    assert not (out / "coco_results.json").exists()
