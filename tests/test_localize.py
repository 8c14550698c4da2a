"""Task ``localize``: head, loss, post-processing, training, ``val`` and transfer learning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vision_tasks.tasks.localize.training import TASK, LocalizeEvaluator

from vision_tasks.cli import main
from vision_tasks.config import load_config
from vision_tasks.engine.checkpoint import load_checkpoint
from vision_tasks.engine.trainer import Trainer, TrainResult
from vision_tasks.engine.validate import validate_model
from vision_tasks.errors import CheckpointError
from vision_tasks.models.model import build_model

TINY = ["model.backbone.name=simple_cnn", "model.backbone.width=4", "model.backbone.depths=[1, 1, 1]",
        "model.head.channels=8", "model.head.hidden=32", "data.image_size=32", "data.workers=0",
        "train.epochs=2", "train.batch_size=8", "train.lr=0.01", "train.warmup_epochs=0"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic single-object COCO set written by the CLI: 32 train / 16 val, 32 px."""
    out = tmp_path_factory.mktemp("shapes-localize")
    assert main(["data", "synth", "localize", str(out), "--train", "32", "--val", "16",
                 "--size", "32"]) == 0
    return out


def tiny_config(data: Path, *extra: str):
    return load_config(None, [*TASK.demo_overrides(data), *TINY, *extra], base={"task": "localize"})


@pytest.fixture(scope="module")
def run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("run-localize")
    return Trainer(tiny_config(shapes), out, progress=False, log=lambda _: None).fit()


def test_head_outputs_one_box_in_input_pixels_and_postprocess_clips_it(shapes: Path) -> None:
    cfg = tiny_config(shapes)
    model = build_model(cfg, TASK, num_classes=5).eval()
    with torch.no_grad():
        outputs = model(torch.rand(3, 3, 32, 32) * 255)["localize"]
        torch.nn.init.constant_(model.head.box.bias, 3.0)  # centre and size near 1: box past the edge
        wide = model.postprocess(model(torch.rand(2, 3, 32, 32) * 255))
    assert outputs["logits"].shape == (3, 5) and outputs["boxes"].shape == (3, 4)
    # zero-initialised box layer: a centred box of half the input
    torch.testing.assert_close(outputs["boxes"], torch.tensor([[8.0, 8.0, 24.0, 24.0]] * 3))
    assert wide["scores"].shape == (2, 5) and torch.allclose(wide["scores"].sum(1), torch.ones(2))
    assert wide["boxes"].min() >= 0 and wide["boxes"].max() <= 32


def test_postprocess_exports_with_a_dynamic_batch_and_no_data_dependent_branches(shapes: Path) -> None:
    model = build_model(tiny_config(shapes), TASK, num_classes=5).eval()

    class Contract(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.model.postprocess(self.model(images))
            return out["scores"], out["boxes"]

    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(Contract(), (torch.rand(2, 3, 32, 32) * 255,),
                                   dynamic_shapes=({0: batch},))
    images = torch.rand(5, 3, 32, 32) * 255  # another batch size than the one exported
    for got, want in zip(exported.module()(images), Contract()(images), strict=True):
        torch.testing.assert_close(got, want)


def test_loss_has_class_l1_and_giou_parts_and_is_zero_for_a_perfect_box(shapes: Path) -> None:
    cfg = tiny_config(shapes, "loss.cls=0")
    loss = TASK.build_loss(cfg, build_model(cfg, TASK, 5).head)
    boxes = torch.tensor([[2.0, 3.0, 20.0, 30.0]])
    outputs = {"logits": torch.zeros(1, 5), "boxes": boxes}
    total, parts = loss(outputs, {"labels": torch.tensor([1]), "boxes": boxes.clone()})
    assert set(parts) == {"cls", "l1", "giou"} and float(total) == pytest.approx(0.0, abs=1e-6)


def test_evaluator_corloc_needs_right_class_and_iou_of_at_least_half() -> None:
    evaluator = LocalizeEvaluator(["a", "b"])
    truth = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    predicted = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.0]])
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.9, 0.1]])
    evaluator.update({"scores": scores, "boxes": predicted},
                     {"labels": torch.tensor([0, 0, 0]), "boxes": truth})
    metrics = evaluator.compute()
    assert metrics["top1"] == pytest.approx(2 / 3)
    assert metrics["corloc"] == pytest.approx(1 / 3)  # 2nd: wrong class; 3rd: IoU 0.4
    assert metrics["mean_iou"] == pytest.approx((1 + 1 + 0.4) / 3)


def test_training_end_to_end_then_val_reports_top1_mean_iou_and_corloc(run: TrainResult,
                                                                        tmp_path: Path) -> None:
    history = load_checkpoint(run.best)["history"]
    assert len(history) == 2 and {"train_giou", "train_l1", "val_corloc"} <= set(history[0])
    metrics, out = validate_model(run.best, [], out_dir=tmp_path, progress=False)
    written = json.loads((out / "metrics.json").read_text())
    for key in ("top1", "mean_iou", "corloc"):
        assert 0.0 <= metrics[key] <= 1.0 and written[key] == metrics[key]
    assert written["images"] == 16 and (out / "iou_histogram.png").stat().st_size > 0


def test_classify_backbone_frozen_all_stays_unchanged_while_the_head_trains(
        shapes: Path, tiny_classify_run: TrainResult, tmp_path: Path) -> None:
    source = load_checkpoint(tiny_classify_run.best)
    before = {k[len("backbone."):]: v for k, v in (source["ema"] or source["model"]).items()
              if k.startswith("backbone.")}
    cfg = tiny_config(shapes, "train.epochs=1", f"model.backbone.pretrained={tiny_classify_run.best}",
                      "model.backbone.freeze=all")
    result = Trainer(cfg, tmp_path, progress=False, log=lambda _: None).fit()
    ckpt = load_checkpoint(result.last)
    for weights in (ckpt["model"], ckpt["ema"]):
        after = {k[len("backbone."):]: v for k, v in weights.items() if k.startswith("backbone.")}
        assert after.keys() == before.keys()
        for key, value in before.items():  # weights and BatchNorm statistics alike
            torch.testing.assert_close(after[key], value, msg=key)
    torch.manual_seed(cfg.train.seed)  # as the trainer does: the same starting head
    start = build_model(cfg, TASK, 5).state_dict()
    assert any(not torch.equal(ckpt["model"][k], start[k]) for k in ckpt["model"] if k.startswith("head."))


def test_source_backbone_with_other_settings_is_a_one_line_error(
        shapes: Path, tiny_classify_run: TrainResult) -> None:
    cfg = tiny_config(shapes, f"model.backbone.pretrained={tiny_classify_run.best}",
                      "model.backbone.freeze=all", "model.backbone.width=8")
    with pytest.raises(CheckpointError) as err:
        build_model(cfg, TASK, 5)
    assert str(tiny_classify_run.best) in str(err.value) and "has shape" in str(err.value)
    assert "\n" not in str(err.value)
