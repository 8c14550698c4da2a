"""One kind of model: a backbone and named heads. A single-task config is the one-head case;
its files keep the single-task layout; a loss is built with its head; alike necks are shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from testkit import coco_split

from vision_tasks.config import load_config
from vision_tasks.engine.plan import training_plan
from vision_tasks.errors import ConfigError
from vision_tasks.models.model import VisionModel, build_model, build_vision_model
from vision_tasks.models.necks import PyramidNeck
from vision_tasks.task_api import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ["model.backbone.width=4", "model.backbone.depths=[1, 1, 1, 1, 1]", "data.image_size=64",
         "data.workers=0", "train.batch_size=4"]


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("one-model")
    get_task("segment").synthesize(root, 8, 4, 64, seed=3)
    return root


def box_heads(boxes: Path, *extra: str) -> list[str]:
    """A detect head ``det`` and a segment head ``seg`` on one synthetic set."""
    data = [f"heads.{name}.data.{split}={coco_split(boxes, split)}"
            for name in ("det", "seg") for split in ("train", "val")]
    return [*SMALL, *data, "heads.det.task=detect", "heads.seg.task=segment", *extra]


def test_a_single_task_config_builds_the_one_head_model_with_the_single_task_layout(boxes: Path) -> None:
    cfg = load_config(None, [*SMALL, f"data.train={coco_split(boxes, 'train')}",
                             f"data.val={coco_split(boxes, 'val')}"], base={"task": "detect"})
    model = build_model(cfg, get_task("detect"), 5)
    assert isinstance(model, VisionModel) and list(model.heads) == ["detect"]
    assert model.tasks == {"detect": "detect"} and model.head is model.heads["detect"]
    keys = list(model.state_dict())
    assert any(k.startswith("head.") for k in keys) and not any(k.startswith("heads.") for k in keys)
    inner = {k.replace("head.", "heads.detect.", 1): v for k, v in model.state_dict().items()}
    build_model(cfg, get_task("detect"), 5).load_state_dict(inner)  # either layout loads
    with torch.no_grad():
        raw = model(torch.zeros(2, 3, 64, 64))
        names = set(model.postprocess(raw))
    assert set(raw) == {"detect"} and names == {"boxes", "scores", "labels", "num_detections"}


def test_nothing_but_predictions_rides_in_the_raw_outputs_the_loss_knows_its_head(boxes: Path) -> None:
    cfg = load_config(None, box_heads(boxes))
    plan = training_plan(cfg, load_pretrained=False)
    images, targets = next(iter(plan.loader))
    raw = plan.model({k: v.float() for k, v in images.items()})
    assert set(raw["det"]) == {"cls", "dist", "boxes"}
    assert set(raw["seg"]) == {"cls", "dist", "boxes", "coef", "protos"}
    assert raw["seg"]["protos"].shape[-1] == 64 // 4  # the contract's mask stride
    loss, parts = plan.criterion(raw, targets)
    assert torch.isfinite(loss) and {"det_loss", "seg_mask"} <= set(parts)


def test_alike_necks_of_a_detect_and_a_segment_head_are_one_neck_run_once(boxes: Path) -> None:
    apart = build_vision_model(load_config(None, box_heads(boxes)), {"det": 5, "seg": 5}, False)
    shared = build_vision_model(load_config(None, box_heads(boxes, "model.share_neck=true")),
                                {"det": 5, "seg": 5}, False)
    assert shared.heads["det"].neck is shared.heads["seg"].neck
    neck_params = sum(p.numel() for p in apart.heads["det"].neck.parameters())
    total = [sum(p.numel() for p in m.parameters()) for m in (apart, shared)]
    assert total[0] - total[1] == neck_params
    calls = []
    shared.heads["det"].neck.lateral[0].register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        shared.eval()(torch.zeros(2, 3, 64, 64))
        shared(torch.zeros(2, 3, 64, 64))
    assert len(calls) == 2  # once per forward pass, not once per head
    with torch.no_grad():  # each head on its own batch: the neck runs on each
        shared({"det": torch.zeros(1, 3, 64, 64), "seg": torch.ones(1, 3, 64, 64)})
    assert len(calls) == 4
    assert json.dumps(load_config(None, box_heads(boxes, "model.share_neck=true")).to_dict())


def test_share_neck_without_alike_necks_and_a_mask_stride_the_backbone_lacks_are_config_errors(
        boxes: Path) -> None:
    cfg = load_config(None, box_heads(boxes, "model.share_neck=true", "heads.seg.head.channels=16"))
    with pytest.raises(ConfigError, match=r"model\.share_neck: no two heads have alike necks"):
        build_vision_model(cfg, {"det": 5, "seg": 5}, False)
    shallow = load_config(None, [*SMALL, "model.backbone.depths=[1, 1, 1]",
                                 f"data.train={coco_split(boxes, 'train')}"], base={"task": "segment"})
    with pytest.raises(ConfigError, match=r"model\.backbone: the finest map segment uses has stride 2"):
        build_model(shallow, get_task("segment"), 5)
    assert not isinstance(build_model(load_config(None, SMALL, base={"task": "classify"}),
                                      get_task("classify"), 3).backbone, PyramidNeck)
