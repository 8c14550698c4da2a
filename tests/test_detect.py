"""Task ``detect``: assignment, loss, fixed-K post-processing with NMS, ONNX, COCO data."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit import coco_config, first_item_losses, overfit
from vision_tasks.tasks.detect.assigner import task_aligned_assign
from vision_tasks.tasks.detect.head import make_anchor_points
from vision_tasks.tasks.detect.postprocess import (
    ONNX_TRANSLATIONS,
    PostprocessSettings,
    detections_fixed_k,
)

from vision_tasks.config import load_config
from vision_tasks.data.coco_detection import DetectionDataset, build_detection, decode_segmentation
from vision_tasks.engine.trainer import Trainer
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

COCO128 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "coco128"
TINY_DETECT = [
    "model.backbone.name=simple_cnn", "model.backbone.width=8", "model.backbone.depths=[1, 1, 1, 1, 1]",
    "model.head.channels=16", "model.head.hidden=16", "model.head.depth=1",
    "data.image_size=64", "data.workers=0", "train.epochs=1", "train.batch_size=8",
    "train.warmup_epochs=0",
]
SETTINGS = PostprocessSettings(score_threshold=0.3, iou_threshold=0.5, pre_nms_topk=50,
                               max_detections=5)
BOUNDS = torch.tensor([64.0, 64.0, 64.0, 64.0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_detect_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes-detect")
    get_task("detect").synthesize(out, 16, 8, 64, seed=0)
    return out


def tiny_detect_config(data: Path, *extra: str):
    return coco_config("detect", data, *TINY_DETECT, *extra)


def test_assigner_gives_each_object_points_inside_it_and_iou_aware_targets() -> None:
    points, strides = make_anchor_points([(8, 8)], [8])
    gt_boxes = torch.tensor([[[4.0, 4.0, 36.0, 36.0], [40.0, 40.0, 43.0, 43.0], [0, 0, 0, 0]]])
    gt_labels = torch.tensor([[1, 2, -1]])
    pred = gt_boxes[0, 0].expand(1, 64, 4).clone()  # every point predicts the first box
    scores = torch.full((1, 64, 3), 0.5)
    a = task_aligned_assign(scores, pred, points, strides, gt_labels, gt_boxes, topk=4)
    first = a.foreground[0] & (a.object_index[0] == 0)
    assert int(first.sum()) == 4
    inside = (points[:, 0] > 4) & (points[:, 0] < 36) & (points[:, 1] > 4) & (points[:, 1] < 36)
    assert bool(inside[first].all())
    # The 3-pixel object holds no point centre: it still gets the point nearest its centre.
    assert int((a.foreground[0] & (a.object_index[0] == 1)).sum()) >= 1
    assert torch.allclose(a.scores[0, first, 1], torch.ones(4))  # IoU 1 -> target 1
    assert float(a.scores[0, ~a.foreground[0]].abs().sum()) == 0.0


def test_loss_falls_when_overfitting_one_batch(tiny_detect_data: Path) -> None:
    cfg = tiny_detect_config(tiny_detect_data, "train.lr=0.005")
    losses, parts, _ = overfit(cfg, get_task("detect"), 8, 30)
    assert set(parts) == {"cls", "box", "dfl"}
    assert losses[-1] < 0.6 * losses[0]


def test_points_inside_crowd_regions_are_left_out_of_the_class_loss(tiny_detect_data: Path) -> None:
    cfg = tiny_detect_config(tiny_detect_data)
    whole_image = torch.tensor([[[0.0, 0.0, 64.0, 64.0]]])
    plain, crowded = first_item_losses(cfg, get_task("detect"),
                                       lambda targets: {**targets, "crowd": whole_image})
    assert float(crowded["cls"]) < float(plain["cls"])
    assert float(crowded["box"]) == pytest.approx(float(plain["box"]))


def test_synthetic_rle_masks_decode_to_their_area(tiny_detect_data: Path) -> None:
    ann = json.loads((tiny_detect_data / "val" / "annotations.json").read_text())
    for a in ann["annotations"][:10]:
        mask = decode_segmentation(a["segmentation"], 64, 64)
        assert int(mask.sum()) == a["area"]
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)


def dense(boxes: list[list[float]], scores: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([boxes]), torch.tensor([scores])


def test_postprocess_gives_fixed_k_zero_padded_and_applies_the_score_threshold() -> None:
    boxes, scores = dense([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]],
                          [[0.9, 0.0], [0.0, 0.2], [0.0, 0.6]])
    out = detections_fixed_k(boxes.expand(3, -1, -1), scores.expand(3, -1, -1), BOUNDS, SETTINGS)
    assert out["boxes"].shape == (3, 5, 4) and out["scores"].shape == (3, 5)
    assert out["labels"].dtype == torch.int64 and out["num_detections"].tolist() == [2, 2, 2]
    assert out["scores"][0, :2].tolist() == pytest.approx([0.9, 0.6])
    assert out["labels"][0, :2].tolist() == [0, 1]
    assert out["boxes"][0, 1].tolist() == [40, 40, 50, 50]
    assert float(out["boxes"][:, 2:].abs().sum() + out["scores"][:, 2:].sum()) == 0.0


def test_nms_removes_duplicates_of_one_object_but_keeps_two_classes_overlapping() -> None:
    boxes, scores = dense([[10, 10, 30, 30], [11, 10, 31, 30], [10, 11, 30, 31], [50, 50, 60, 60]],
                          [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.5, 0.0]])
    out = detections_fixed_k(boxes, scores, BOUNDS, SETTINGS)
    assert out["num_detections"].tolist() == [3]
    assert out["scores"][0, :3].tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert out["labels"][0, :3].tolist() == [0, 1, 0]


def test_postprocess_keeps_at_most_k_per_image_and_images_apart() -> None:
    grid = [[x, y, x + 6, y + 6] for x in range(0, 60, 8) for y in range(0, 60, 8)]  # no overlap
    boxes = torch.tensor(grid, dtype=torch.float32)[None].expand(2, -1, -1)
    scores = torch.linspace(0.4, 0.99, len(grid))[None, :, None].expand(2, -1, 1).clone()
    scores[1] = 0.1  # nothing above the threshold in the second image
    out = detections_fixed_k(boxes, scores, BOUNDS, SETTINGS)
    assert out["num_detections"].tolist() == [5, 0]
    assert out["scores"][0].tolist() == pytest.approx(scores[0, -5:, 0].flip(0).tolist())
    assert float(out["boxes"][1].abs().sum()) == 0.0


class _Exportable(torch.nn.Module):
    """uint8 [N, H, W, 3] -> model -> the task's post-processing (as an exporter wraps it)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.postprocess(self.model(images.permute(0, 3, 1, 2).float()))
        return out["boxes"], out["scores"], out["labels"], out["num_detections"]


class _PostprocessOnly(torch.nn.Module):
    """(boxes [N, A, 4], scores [N, A, C]) -> the fixed-K outputs, with :data:`SETTINGS`."""

    def forward(self, boxes: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = detections_fixed_k(boxes, scores, BOUNDS, SETTINGS)
        return out["boxes"], out["scores"], out["labels"], out["num_detections"]


def export_onnx(module: torch.nn.Module, sample: tuple[torch.Tensor, ...], path: Path,
                dynamo: bool) -> object:
    """Export with a dynamic batch axis; an onnxruntime CPU session of the file."""
    import contextlib
    import io

    import onnxruntime as ort

    module = module.eval()  # eval: the exporter restores the wrapper's mode afterwards
    inputs = [f"input{i}" for i in range(len(sample))]
    names = ["boxes", "scores", "labels", "num_detections"]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(module, sample, dynamo=True, optimize=False, opset_version=18,
                              input_names=inputs, output_names=names,
                              dynamic_shapes=[{0: batch}] * len(sample),
                              custom_translation_table=ONNX_TRANSLATIONS).save(str(path))
        else:
            torch.onnx.export(module, sample, str(path), dynamo=False, opset_version=17,
                              input_names=inputs, output_names=names,
                              dynamic_axes={n: {0: "batch"} for n in [*inputs, *names]})
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


EXPORTERS = pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])


@EXPORTERS
def test_onnx_export_matches_pytorch_for_batch_1_and_7(tiny_detect_data: Path, tmp_path: Path,
                                                       dynamo: bool) -> None:
    cfg = tiny_detect_config(tiny_detect_data, "model.head.score_threshold=0.3",
                             "model.head.max_detections=10")
    torch.manual_seed(0)
    model = build_model(cfg, get_task("detect"), 5).eval()
    with torch.no_grad():
        for branch in model.head.head.cls_branches:  # spread the untrained scores over (0, 1)
            branch[-1].weight.mul_(30.0)
            branch[-1].bias.zero_()
    sample = (torch.zeros(2, 64, 64, 3, dtype=torch.uint8),)
    session = export_onnx(_Exportable(model), sample, tmp_path / "detect.onnx", dynamo)
    images = np.random.default_rng(0).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    batch = session.run(None, {"input0": images})
    with torch.no_grad():
        reference = [t.numpy() for t in _Exportable(model)(torch.from_numpy(images))]
    assert batch[3].dtype == np.int64 and batch[2].dtype == np.int64
    assert batch[0].shape == (7, 10, 4) and batch[3].max() > 0
    for i in range(7):
        single = session.run(None, {"input0": images[i: i + 1]})
        n = int(batch[3][i])
        assert int(single[3][0]) == n == int(reference[3][i])
        for j in range(3):
            np.testing.assert_allclose(single[j][0], batch[j][i], atol=1e-4)
            np.testing.assert_allclose(batch[j][i][:n], reference[j][i][:n], atol=1e-3)
            assert not batch[j][i][n:].any()


@EXPORTERS
def test_onnx_postprocess_gives_zero_detections_for_an_image_where_nothing_scores(
        tmp_path: Path, dynamo: bool) -> None:
    boxes = torch.tensor([[10.0, 10, 30, 30], [12, 10, 32, 30], [40, 40, 60, 60]])[None].repeat(3, 1, 1)
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.1, 0.6]])[None].repeat(3, 1, 1)
    scores[1] = 0.05  # nothing above the threshold in the second image
    session = export_onnx(_PostprocessOnly(), (boxes[:2], scores[:2]), tmp_path / "post.onnx", dynamo)
    out = session.run(None, {"input0": boxes.numpy(), "input1": scores.numpy()})
    assert out[3].tolist() == [2, 0, 2]
    assert not out[0][1].any() and not out[1][1].any() and not out[2][1].any()
    empty = session.run(None, {"input0": boxes[1:2].numpy(), "input1": scores[1:2].numpy()})
    assert empty[3].tolist() == [0] and not empty[0].any()


def test_category_ids_map_to_contiguous_classes_and_back(tmp_path: Path) -> None:
    from vision_tasks.metrics.coco_eval import CocoEvaluator

    (tmp_path / "images").mkdir()
    import cv2

    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((40, 80, 3), 90, np.uint8))
    ann = {"images": [{"id": 7, "file_name": "a.png", "width": 80, "height": 40}],
           "categories": [{"id": 90, "name": "zebra"}, {"id": 3, "name": "car"},
                          {"id": 17, "name": "cat"}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 17, "bbox": [10, 5, 20, 10],
                            "area": 200, "iscrowd": 0},
                           {"id": 2, "image_id": 7, "category_id": 90, "bbox": [40, 10, 30, 20],
                            "area": 600, "iscrowd": 0}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    data = DetectionDataset(tmp_path / "ann.json", tmp_path / "images", "data.val", 64)
    assert data.class_names == ["car", "cat", "zebra"] and data.category_ids == [3, 17, 90]
    _, target = data[0]
    assert target["labels"].tolist() == [1, 2]
    np.testing.assert_allclose(target["boxes"][0], [8, 20, 24, 28])  # scale 0.8, pad_y 16
    # A model trained with another class order maps onto its own indices.
    other = DetectionDataset(tmp_path / "ann.json", tmp_path / "images", "data.val", 64,
                             class_names=["zebra", "cat", "car", "dog"])
    assert other[0][1]["labels"].tolist() == [1, 0] and other.category_ids == [90, 17, 3, None]
    # Perfect predictions in input pixels come back as the file's ids and pixels: AP 1.
    images, targets = get_task("detect").collate([data[0]])
    boxes = torch.zeros(1, 4, 4)
    boxes[0, :2] = torch.as_tensor(targets["boxes"][0])
    preds = {"boxes": boxes, "scores": torch.tensor([[0.9, 0.8, 0, 0]]),
             "labels": torch.tensor([[1, 2, 0, 0]]), "num_detections": torch.tensor([2])}
    evaluator = CocoEvaluator(data.class_names, data.category_ids)
    evaluator.update(preds, targets)
    assert {r["category_id"] for r in evaluator.results} == {17, 90}
    np.testing.assert_allclose(evaluator.results[0]["bbox"], [10, 5, 20, 10], atol=1e-4)
    metrics = evaluator.compute()
    assert metrics["box_map"] == pytest.approx(1.0)
    assert metrics["per_class_ap"] == {"car": None, "cat": pytest.approx(1.0),
                                       "zebra": pytest.approx(1.0)}


needs_coco128 = pytest.mark.skipif(not (COCO128 / "annotations.json").is_file(),
                                   reason=f"{COCO128} is absent (the shared coco128 photographs)")


def coco128_config(*extra: str):
    split = json.dumps({"images": str(COCO128 / "images"),
                        "annotations": str(COCO128 / "annotations.json")})
    return load_config(None, [f"data.train={split}", f"data.val={split}", *TINY_DETECT, *extra],
                       base={"task": "detect"})


@needs_coco128
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco128_loads_with_crowd_grayscale_polygons_and_rle() -> None:
    data = build_detection(coco128_config(), "train", train=True, log=lambda _: None)
    assert len(data.class_names) == 80 and data.crowd == 10
    present = {a["category_id"] for i in range(len(data)) for a in data[(1, i)][1]["coco"]["annotations"]}
    assert len(present) == 71 and present <= set(data.category_ids)
    from PIL import Image

    gray = [i for i, im in enumerate(data.images) if Image.open(im.path).mode == "L"]
    assert gray, "coco128 should hold a grayscale photograph"
    image, target = data[gray[0]]
    assert image.shape == (3, 64, 64) and len(target["labels"]) > 0
    kinds = set()
    for image in data.images:
        for ann in image.annotations:
            mask = decode_segmentation(ann.segmentation, image.height, image.width)
            assert mask.shape == (image.height, image.width) and mask.any()
            kinds.add(type(ann.segmentation).__name__)
    assert kinds == {"list", "dict"}  # polygons and (crowd) RLE


@needs_coco128
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco128_trains_briefly_and_its_predictions_go_through_cocoeval(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from vision_tasks.engine.checkpoint import model_from_checkpoint
    from vision_tasks.engine.evaluate import evaluate, make_loader

    # The first 32 photographs (COCO ids and all 80 categories kept), to stay quick.
    full = json.loads((COCO128 / "annotations.json").read_text())
    keep = {im["id"] for im in full["images"][:32]}
    subset = {**full, "images": full["images"][:32],
              "annotations": [a for a in full["annotations"] if a["image_id"] in keep]}
    annotations = tmp_path / "coco32.json"
    annotations.write_text(json.dumps(subset))
    split = json.dumps({"images": str(COCO128 / "images"), "annotations": str(annotations)})
    # Score threshold 0: every kept box is a detection, so "found something" holds for any
    # working pipeline, however little one epoch taught the model on this CPU.
    cfg = load_config(None, [f"data.train={split}", f"data.val={split}", *TINY_DETECT,
                             "model.head.max_detections=20", "model.head.score_threshold=0",
                             "train.batch_size=16"],
                      base={"task": "detect"})
    result = Trainer(cfg, tmp_path / "run", progress=False, log=lambda _: None).fit()
    model, cfg, task, names = model_from_checkpoint(result.best)
    loader = make_loader(task, build_detection(cfg, "val", False, names, log=lambda _: None), 16, 0)
    metrics, evaluator = evaluate(model, task, loader, names, torch.device("cpu"), progress=False)
    assert evaluator.results, "the briefly trained model found nothing at all"
    assert {r["category_id"] for r in evaluator.results} <= {c["id"] for c in full["categories"]}
    (tmp_path / "coco_results.json").write_text(json.dumps(evaluator.results))
    gt = COCO(str(annotations))
    coco_eval = COCOeval(gt, gt.loadRes(str(tmp_path / "coco_results.json")), "bbox")
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    assert max(coco_eval.stats[0], 0.0) == pytest.approx(metrics["box_map"], abs=1e-6)
    assert metrics["box_map"] == pytest.approx(result.metrics["box_map"], abs=1e-6)
