"""Multi-head models: one backbone, several task heads, one pass, one ONNX file.

Composed from single-task checkpoints that share a frozen backbone, or trained jointly; each
head's results are the same as its single-task model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit import coco_split
from vision_tasks.export.onnx_export import export_checkpoint
from vision_tasks.export.runtime import Predictor

from vision_tasks.cli import main
from vision_tasks.config import load_config
from vision_tasks.engine.checkpoint import load_checkpoint
from vision_tasks.engine.compose import compose_checkpoints
from vision_tasks.engine.trainer import Trainer
from vision_tasks.engine.validate import validate_model
from vision_tasks.errors import CheckpointError, ConfigError
from vision_tasks.task_api import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["model.backbone.width=4", "model.backbone.depths=[1, 1, 1]", "data.image_size=32",
        "data.workers=0", "train.epochs=1", "train.batch_size=8"]


def quiet(_: str) -> None:
    pass


def train(cfg, out: Path):
    return Trainer(cfg, out, progress=False, log=quiet).fit()


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multi-data")
    get_task("classify").synthesize(root / "classify", 40, 12, 32, seed=0)
    get_task("localize").synthesize(root / "localize", 40, 12, 32, seed=1)
    get_task("detect").synthesize(root / "detect", 16, 6, 64, seed=2)
    return {name: root / name for name in ("classify", "localize", "detect")}


def classify_data(sets) -> list[str]:
    return [f"data.train={sets['classify'] / 'train'}", f"data.val={sets['classify'] / 'val'}"]


def localize_data(sets) -> list[str]:
    return [f"data.train={coco_split(sets['localize'], 'train')}",
            f"data.val={coco_split(sets['localize'], 'val')}"]


@pytest.fixture(scope="module")
def heads_on_one_backbone(sets, tmp_path_factory):
    """A classify run, and a localize head trained on its frozen backbone."""
    root = tmp_path_factory.mktemp("multi-runs")
    source = train(load_config(None, [*classify_data(sets), *TINY], base={"task": "classify"}),
                   root / "classify")
    frozen = [f"model.backbone.pretrained={source.best}", "model.backbone.freeze=all"]
    head = train(load_config(None, [*localize_data(sets), *TINY, *frozen, "train.epochs=2"],
                             base={"task": "localize"}), root / "localize")
    return source, head, root


def test_composed_heads_give_their_source_checkpoints_metrics_exactly_and_in_onnx(
        heads_on_one_backbone, tmp_path: Path) -> None:
    source, head, _ = heads_on_one_backbone
    composed = compose_checkpoints([source.best, head.best], tmp_path / "multi.pt")
    assert composed.heads == {"classify": "classify", "localize": "localize"}
    metrics, _ = validate_model(composed.path, [], out_dir=tmp_path / "val", progress=False)
    for name, run in (("classify", source), ("localize", head)):
        single, _ = validate_model(run.best, [], out_dir=tmp_path / f"val-{name}", progress=False)
        for key, value in single.items():
            if isinstance(value, float):
                assert metrics[f"{name}.{key}"] == value, f"{name}.{key}"
    primaries = [metrics["classify.top1"], metrics["localize.corloc"]]
    assert metrics["score"] == pytest.approx(sum(primaries) / 2)

    onnx_path = export_checkpoint(composed.path, tmp_path / "multi.onnx", check=True).path
    from_onnx, _ = validate_model(onnx_path, [], out_dir=tmp_path / "val-onnx", progress=False,
                                  evaluators=_evaluators())
    for key in ("classify.top1", "localize.corloc", "localize.mean_iou"):
        assert from_onnx[key] == pytest.approx(metrics[key], abs=0.005), key


def _evaluators():
    from vision_tasks.cli import _evaluators

    return _evaluators()


def test_compose_refuses_backbones_that_differ_and_names_the_first_tensor(
        heads_on_one_backbone, sets, tmp_path: Path) -> None:
    source, head, root = heads_on_one_backbone
    tuned = train(load_config(None, [*classify_data(sets), *TINY,
                                     f"model.backbone.pretrained={source.best}"],
                              base={"task": "classify"}), tmp_path / "tuned")  # not frozen
    with pytest.raises(CheckpointError, match=r"backbone tensor 'backbone\.stages\.0\.0\.0\.weight' "
                                              r"differs"):
        compose_checkpoints([head.best, tuned.best], tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="head names repeat"):
        compose_checkpoints([source.best, source.best], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_one_file_gives_each_head_what_its_single_task_file_gives_at_batch_1_and_7(
        heads_on_one_backbone, sets, tmp_path: Path) -> None:
    source, head, _ = heads_on_one_backbone
    composed = compose_checkpoints([source.best, head.best], tmp_path / "multi.pt").path
    multi = Predictor(export_checkpoint(composed, tmp_path / "multi.onnx").path, device="cpu")
    singles = {"classify": Predictor(export_checkpoint(source.best, tmp_path / "c.onnx").path),
               "localize": Predictor(export_checkpoint(head.best, tmp_path / "l.onnx").path)}
    images = sorted((sets["localize"] / "val" / "images").iterdir())[:7]
    batch = multi.predict(images)
    for i, image in enumerate(images):
        one = multi.predict(image)[0]
        for name, predictor in singles.items():
            want = predictor.predict(image)[0].to_dict()
            for got in (batch[i].heads[name].to_dict(), one.heads[name].to_dict()):
                assert got["label"] == want["label"]
                assert got["score"] == pytest.approx(want["score"], abs=1e-5)
                for a, b in zip(got.get("detections", []), want.get("detections", []), strict=True):
                    np.testing.assert_allclose(a["box"], b["box"], atol=0.02)


def test_a_multi_head_file_of_one_head_decodes_like_the_single_task_file(
        heads_on_one_backbone, sets, tmp_path: Path) -> None:
    _, head, _ = heads_on_one_backbone
    one = compose_checkpoints([head.best], tmp_path / "one.pt", names=["box"]).path
    multi = Predictor(export_checkpoint(one, tmp_path / "one.onnx").path)
    single = Predictor(export_checkpoint(head.best, tmp_path / "single.onnx").path)
    assert multi.metadata.contract_version == 2 and single.metadata.contract_version == 1
    assert list(multi.metadata.heads) == ["box"] and multi.metadata.outputs == ("box.scores", "box.boxes")
    images = sorted((sets["localize"] / "val" / "images").iterdir())[:4]
    for got, want in zip(multi.predict(images), single.predict(images), strict=True):
        assert got.heads["box"].to_dict() == want.to_dict()
        line = got.to_dict()  # the file's line: the head's fields under its name
        assert line["box"] == {k: v for k, v in want.to_dict().items()
                               if k not in ("source", "width", "height")}


def test_a_joint_run_of_four_heads_trains_resumes_exactly_exports_validates_and_predicts(
        sets, tmp_path: Path) -> None:
    cfg = load_config(None, [
        "model.backbone.width=4", "model.backbone.depths=[1, 1, 1, 1, 1]", "data.image_size=64",
        "data.workers=0", "train.epochs=2", "train.batch_size=8", "train.warmup_epochs=0",
        "heads.shape.task=classify", f"heads.shape.data.train={sets['classify'] / 'train'}",
        f"heads.shape.data.val={sets['classify'] / 'val'}", "heads.shape.weight=0.5",
        "heads.objects.task=detect", f"heads.objects.data.train={coco_split(sets['detect'], 'train')}",
        f"heads.objects.data.val={coco_split(sets['detect'], 'val')}",
        "heads.objects.head.max_detections=20",
        "heads.main.task=localize", f"heads.main.data.train={coco_split(sets['localize'], 'train')}",
        f"heads.main.data.val={coco_split(sets['localize'], 'val')}",
        "heads.masks.task=segment", f"heads.masks.data.train={coco_split(sets['detect'], 'train')}",
        f"heads.masks.data.val={coco_split(sets['detect'], 'val')}",
        "heads.masks.head.max_detections=20"])
    straight = train(cfg, tmp_path / "straight")
    assert straight.primary_metric == "score"
    assert {"shape.top1", "objects.box_map", "main.corloc", "masks.mask_map"} <= set(straight.metrics)

    class StopAfterFirst:
        def __call__(self, trainer, epoch, row):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "resumed", progress=False, log=quiet, callbacks=[StopAfterFirst()]).fit()
    Trainer(None, tmp_path / "resumed", resume=True, progress=False, log=quiet).fit()
    a = load_checkpoint(tmp_path / "straight" / "weights" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "weights" / "last.pt")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
    row = a["history"][-1]
    assert {"train_shape_loss", "train_objects_loss", "train_objects_box", "val_score"} <= set(row)

    onnx_path = tmp_path / "joint.onnx"
    assert main(["export", str(straight.best), "--out", str(onnx_path), "--check"]) == 0
    assert main(["val", str(onnx_path), "--quiet"]) == 0
    out = tmp_path / "pred"
    assert main(["predict", str(onnx_path), str(sets["detect"] / "val" / "images"), "--out", str(out),
                 "--quiet", "--score-threshold", "0", "--save-images"]) == 0
    lines = [json.loads(t) for t in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(set(line) >= {"shape", "objects", "main", "masks"} for line in lines)
    assert lines[0]["shape"]["task"] == "classify" and "detections" in lines[0]["objects"]
    results = json.loads((out / "coco_results.objects.json").read_text())
    assert len(results) == sum(len(line["objects"]["detections"]) for line in lines)
    assert (out / "coco_results.masks.json").is_file() and not (out / "coco_results.json").exists()
    assert len(list((out / "images").iterdir())) == 6


def test_multi_head_configs_are_checked_head_by_head() -> None:
    with pytest.raises(ConfigError, match=r"heads\.objects\.head\.max_detection: unknown key"):
        load_config(None, ["heads.objects.task=detect", "heads.objects.head.max_detection=5"])
    with pytest.raises(ConfigError, match=r"heads\.x\.task: unknown task 'detekt'"):
        load_config(None, ["heads.x.task=detekt"])
    with pytest.raises(ConfigError, match=r"model\.head: a multi-head config sets this per head"):
        load_config(None, ["heads.x.task=classify", "model.head.pool=max"])


def test_proportional_sampling_takes_one_heads_batch_per_step_every_batch_once(sets) -> None:
    from vision_tasks.engine.plan import training_plan

    cfg = load_config(None, [*TINY, "train.head_sampling=proportional", "train.batch_size=8",
                             "heads.a.task=classify", f"heads.a.data.train={sets['classify'] / 'train'}",
                             f"heads.a.data.val={sets['classify'] / 'val'}",
                             "heads.b.task=localize",
                             f"heads.b.data.train={coco_split(sets['localize'], 'train')}",
                             f"heads.b.data.val={coco_split(sets['localize'], 'val')}"])
    plan = training_plan(cfg, load_pretrained=False)
    plan.set_epoch(1)
    steps = [list(images) for images, _ in plan.loader]
    assert len(steps) == len(plan.loader) == 5 + 5  # 40 images / 8 per batch, each head
    assert all(len(s) == 1 for s in steps) and sum(s == ["a"] for s in steps) == 5
    plan.set_epoch(1)
    assert [list(images) for images, _ in plan.loader] == steps  # (seed, epoch) only
    plan.set_epoch(2)
    assert [list(images) for images, _ in plan.loader] != steps
