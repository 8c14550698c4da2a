"""Task ``segment``: instance masks from data to metrics, assembled inside the ONNX graph."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from testkit import coco_config, coco_split, first_item_losses, overfit
from vision_tasks.tasks.detect.postprocess import PostprocessSettings
from vision_tasks.tasks.segment.postprocess import assemble_masks, box_crop

from vision_tasks.config import load_config
from vision_tasks.data.coco_detection import DetectionDataset
from vision_tasks.metrics.coco_eval import CocoEvaluator
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

COCO128 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "coco128"
TINY_SEGMENT = [
    "model.backbone.name=simple_cnn", "model.backbone.width=8", "model.backbone.depths=[1, 1, 1, 1, 1]",
    "model.head.channels=16", "model.head.hidden=16", "model.head.depth=1",
    "model.head.num_protos=8", "model.head.proto_channels=16", "model.head.coef_hidden=16",
    "data.image_size=64", "data.workers=0", "train.epochs=1", "train.batch_size=8",
    "train.warmup_epochs=0",
]
TASK = get_task("segment")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_segment_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes-segment")
    TASK.synthesize(out, 16, 8, 64, seed=0)
    return out


def tiny_segment_config(data: Path, *extra: str):
    return coco_config("segment", data, *TINY_SEGMENT, *extra)


def box_overlap(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def test_an_occluded_objects_mask_is_its_visible_part_only(tiny_segment_data: Path) -> None:
    data = TASK.build_dataset(tiny_segment_config(tiny_segment_data), "train", train=False)
    occluded_pairs = 0
    for i in range(len(data)):
        _, target = data.load(i)
        masks = target["masks"] > 127  # [M, 64, 64], input frame = original (64 px)
        assert target["mask_valid"].all()
        # Visible parts never share a pixel, even where the boxes overlap (the occluder's
        # pixels are cut out of the object behind it).
        assert int(masks.sum(axis=0).max(initial=0)) <= 1
        for a in range(len(masks)):
            for b in range(a + 1, len(masks)):
                if box_overlap(target["boxes"][a], target["boxes"][b]) >= 20:
                    occluded_pairs += 1
    assert occluded_pairs >= 3, "the synthetic set should hold overlapping objects"


def test_masks_move_with_boxes_through_augmentation(tiny_segment_data: Path) -> None:
    cfg = tiny_segment_config(tiny_segment_data, "data.augment.hflip=1.0",
                              "data.augment.scale=[0.7, 0.9]", "data.augment.translate=0.1")
    data = TASK.build_dataset(cfg, "train", train=True)
    checked = 0
    for i in range(len(data)):
        _, target = data[(3, i)]
        assert target["masks"].shape == (len(target["labels"]), 16, 16)  # stride 4
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            ys, xs = np.nonzero(mask > 0)
            if not len(xs):
                continue
            extent = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) * 4
            np.testing.assert_allclose(extent, box, atol=4.0)
            checked += 1
    assert checked >= 10


def test_polygons_rle_and_missing_segmentations_become_letterboxed_masks(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "wide.png"), np.full((50, 100, 3), 80, np.uint8))
    full = np.zeros((50, 100), np.uint8)
    full[10:30, 60:90] = 1
    rle = mask_utils.encode(np.asfortranarray(full))
    rle["counts"] = rle["counts"].decode("ascii")
    ann = {"images": [{"id": 1, "file_name": "wide.png", "width": 100, "height": 50}],
           "categories": [{"id": 1, "name": "thing"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                "iscrowd": 0, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]},
               {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 10, 30, 20], "area": 600,
                "iscrowd": 0, "segmentation": rle},
               {"id": 3, "image_id": 1, "category_id": 1, "bbox": [40, 35, 10, 10], "area": 100,
                "iscrowd": 0}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    data = DetectionDataset(tmp_path / "ann.json", tmp_path / "images", "data.val", 64, masks=True)
    _, target = data.load(0)  # scale 0.64, pad_y 16: letterboxed, full resolution
    masks = target["masks"] > 127
    assert target["mask_valid"].tolist() == [True, True, False]
    ys, xs = np.nonzero(masks[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((6, 19, 22, 35), abs=1)
    ys, xs = np.nonzero(masks[1])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((38, 57, 22, 35), abs=1)
    assert not masks[2].any()  # no segmentation: no mask target (and no mask loss)
    # The evaluator's ground truth keeps the file's segmentations (the box for the third).
    gt = target["coco"]["annotations"]
    assert gt[0]["segmentation"] == ann["annotations"][0]["segmentation"]
    assert gt[2]["segmentation"] == [[40.0, 35.0, 50.0, 35.0, 50.0, 45.0, 40.0, 45.0]]
    _, item = data[0]
    assert item["masks"].shape == (3, 16, 16) and item["masks"].dtype == np.uint8


def test_masks_are_assembled_for_kept_detections_cropped_to_their_boxes() -> None:
    torch.manual_seed(0)
    coef = torch.randn(2, 6, 3)
    protos = torch.randn(2, 3, 8, 8)
    index = torch.tensor([[4, 1, 0], [2, 0, 0]])
    boxes = torch.tensor([[[0.0, 0.0, 32.0, 32.0], [8.0, 4.0, 20.0, 30.0], [0, 0, 0, 0]],
                          [[2.0, 2.0, 14.0, 14.0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    masks = assemble_masks(coef, protos, index, boxes, 4.0)
    assert masks.shape == (2, 3, 8, 8)
    full = torch.sigmoid(torch.einsum("p,phw->hw", coef[0, 4], protos[0]))
    torch.testing.assert_close(masks[0, 0], full)  # the whole input: nothing cropped
    crop = box_crop(boxes[0, 1], 8, 8, 4.0)
    # Cell centres 2, 6, 10, ...: x in [8, 20) -> columns 2..4, y in [4, 30) -> rows 1..6.
    assert crop.nonzero()[:, 1].unique().tolist() == [2, 3, 4]
    assert crop.nonzero()[:, 0].unique().tolist() == [1, 2, 3, 4, 5, 6]
    torch.testing.assert_close(masks[0, 1], torch.sigmoid(
        torch.einsum("p,phw->hw", coef[0, 1], protos[0])) * crop)
    assert not masks[0, 2].any() and not masks[1, 1:].any()  # empty rows are zero


def test_mask_loss_falls_when_overfitting_one_batch(tiny_segment_data: Path) -> None:
    cfg = tiny_segment_config(tiny_segment_data, "train.lr=0.005")
    masks, parts, targets = overfit(cfg, TASK, 8, 40, lambda loss, parts: float(parts["mask"]))
    assert targets["masks"].shape[:2] == targets["labels"].shape
    assert set(parts) == {"cls", "box", "dfl", "mask"}
    assert masks[-1] < 0.6 * masks[0]


def test_objects_without_masks_take_no_mask_loss(tiny_segment_data: Path) -> None:
    cfg = tiny_segment_config(tiny_segment_data)
    with_masks, without = first_item_losses(
        cfg, TASK, lambda t: {**t, "mask_valid": torch.zeros_like(t["mask_valid"])})
    assert float(with_masks["mask"]) > 0 and float(without["mask"]) == 0.0
    assert float(without["box"]) == pytest.approx(float(with_masks["box"]))


def square_rle(image: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> dict:
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[y1:y2, x1:x2] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def test_mask_metrics_reward_the_visible_part_not_the_whole_shape(tmp_path: Path) -> None:
    """Object A (x 8..40) is partly hidden by B (x 28..56): its mask is x 8..28 only. A
    prediction of A's visible part scores mask AP 1; one that claims the hidden part too
    (the whole square) scores less, while the boxes of both predictions are the same."""
    (tmp_path / "images").mkdir()
    image = np.full((64, 64, 3), 50, np.uint8)
    cv2.imwrite(str(tmp_path / "images" / "000001.png"), image)
    visible_a = np.zeros((64, 64), np.uint8)
    visible_a[8:40, 8:28] = 1
    rle_a = mask_utils.encode(np.asfortranarray(visible_a))
    rle_a["counts"] = rle_a["counts"].decode("ascii")
    ann = {"images": [{"id": 1, "file_name": "000001.png", "width": 64, "height": 64}],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 20, 32], "area": 640,
                "iscrowd": 0, "segmentation": rle_a},
               {"id": 2, "image_id": 1, "category_id": 2, "bbox": [28, 16, 28, 28], "area": 784,
                "iscrowd": 0, "segmentation": square_rle(image, 28, 16, 56, 44)}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    data = DetectionDataset(tmp_path / "ann.json", tmp_path / "images", "data.val", 64, masks=True)
    images, targets = TASK.collate([data[0]])

    def score(mask_a: np.ndarray) -> dict:
        masks = torch.zeros(1, 2, 16, 16)
        masks[0, 0] = torch.from_numpy(cv2.resize(mask_a.astype(np.float32), (16, 16),
                                                  interpolation=cv2.INTER_AREA))
        masks[0, 1, 4:11, 7:14] = 1.0
        preds = {"boxes": torch.tensor([[[8.0, 8, 28, 40], [28, 16, 56, 44]]]),
                 "scores": torch.tensor([[0.9, 0.8]]), "labels": torch.tensor([[0, 1]]),
                 "num_detections": torch.tensor([2]), "masks": masks}
        evaluator = CocoEvaluator(data.class_names, data.category_ids, masks=True)
        evaluator.update(preds, targets)
        return evaluator.compute()

    exact = score(visible_a)
    whole = np.zeros((64, 64), np.uint8)
    whole[8:40, 8:40] = 1  # A's whole square, the hidden part included
    greedy = score(whole)
    assert exact["mask_map"] == pytest.approx(1.0) and exact["box_map"] == pytest.approx(1.0)
    assert greedy["box_map"] == pytest.approx(1.0)
    assert greedy["mask_map"] < 0.8 and greedy["per_class_ap"]["a"] < exact["per_class_ap"]["a"]


def test_onnx_masks_match_pytorch_for_batch_1_and_7(tiny_segment_data: Path) -> None:
    import onnxruntime as ort
    from vision_tasks.export.onnx_export import ExportWrapper, export_model

    from vision_tasks.engine.checkpoint import HeadInfo

    cfg = tiny_segment_config(tiny_segment_data, "model.head.score_threshold=0.3",
                              "model.head.max_detections=10")
    torch.manual_seed(0)
    model = build_model(cfg, TASK, 5).eval()
    with torch.no_grad():
        for branch in model.head.head.cls_branches:  # spread the untrained scores over (0, 1)
            branch[-1].weight.mul_(30.0)
            branch[-1].bias.zero_()
    proto = export_model(model, cfg, {"segment": HeadInfo(TASK, [f"c{i}" for i in range(5)], None)})
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["boxes", "scores", "labels", "num_detections", "masks"]
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["task"] == "segment" and meta["thresholds"]["mask"] == 0.5
    images = np.random.default_rng(0).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    batch = dict(zip(names, session.run(None, {"images": images}), strict=True))
    assert batch["masks"].shape == (7, 10, 16, 16) and batch["masks"].dtype == np.float32
    with torch.no_grad():
        wrapper = ExportWrapper(model, tuple(names))
        reference = dict(zip(names, (t.numpy() for t in wrapper(torch.from_numpy(images))), strict=True))
    assert batch["num_detections"].max() > 0
    for i in range(7):
        single = dict(zip(names, session.run(None, {"images": images[i:i + 1]}), strict=True))
        n = int(batch["num_detections"][i])
        assert int(single["num_detections"][0]) == n == int(reference["num_detections"][i])
        np.testing.assert_allclose(single["masks"][0], batch["masks"][i], atol=1e-5)
        np.testing.assert_allclose(batch["masks"][i, :n], reference["masks"][i, :n], atol=1e-4)
        assert not batch["masks"][i, n:].any()
        # Zero outside each box (cell centres in input pixels).
        for k in range(n):
            x1, y1, x2, y2 = batch["boxes"][i, k]
            centres = (np.arange(16) + 0.5) * 4
            outside = ~(((centres >= y1) & (centres < y2))[:, None]
                        & ((centres >= x1) & (centres < x2))[None, :])
            assert not batch["masks"][i, k][outside].any()


def test_segment_settings_are_checked(tiny_segment_data: Path) -> None:
    from vision_tasks.errors import ConfigError

    with pytest.raises(ConfigError, match="model.head.num_protos"):
        build_model(tiny_segment_config(tiny_segment_data, "model.head.num_protos=0"), TASK, 5)
    with pytest.raises(ConfigError, match="model.head.nums_protos.*num_protos"):
        tiny_segment_config(tiny_segment_data, "model.head.nums_protos=8")
    _ = PostprocessSettings  # the detect settings are shared (tested in test_detect)


needs_coco128 = pytest.mark.skipif(not (COCO128 / "annotations.json").is_file(),
                                   reason=f"{COCO128} is absent (the shared coco128 photographs)")


@needs_coco128
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco128_polygons_become_masks_inside_their_boxes() -> None:
    split = json.dumps({"images": str(COCO128 / "images"),
                        "annotations": str(COCO128 / "annotations.json")})
    cfg = load_config(None, [f"data.train={split}", f"data.val={split}", *TINY_SEGMENT],
                      base={"task": "segment"})
    data = TASK.build_dataset(cfg, "train", train=True)
    for i in range(0, len(data), 16):
        _, target = data[(0, i)]
        assert target["mask_valid"].all()
        masks = target["masks"]
        assert masks.shape == (len(target["labels"]), 16, 16)
        for box, mask in zip(target["boxes"], masks, strict=True):
            ys, xs = np.nonzero(mask > 0)
            if len(xs):  # a tiny object may average away at 16 x 16
                assert xs.min() * 4 >= box[0] - 4 and (xs.max() + 1) * 4 <= box[2] + 4
                assert ys.min() * 4 >= box[1] - 4 and (ys.max() + 1) * 4 <= box[3] + 4


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_export_val_and_predict_a_segment_model_end_to_end(tiny_segment_data: Path,
                                                                tmp_path: Path) -> None:
    """The CLI path a user takes: train -> export --check -> val the .onnx (the same mask
    mAP as the checkpoint) -> predict --save-images (RLE masks, coco_results.json that
    COCOeval 'segm' accepts and scores as val did)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from vision_tasks.cli import main

    overrides = [f"data.train={coco_split(tiny_segment_data, 'train')}",
                 f"data.val={coco_split(tiny_segment_data, 'val')}", *TINY_SEGMENT,
                 "train.epochs=6", "train.lr=0.01", "model.head.max_detections=20"]
    sets = [arg for o in overrides for arg in ("--set", o)]
    run = tmp_path / "run"
    assert main(["train", "configs/segment.yaml", "--out", str(run), "--quiet", *sets]) == 0
    onnx_path = tmp_path / "seg.onnx"
    assert main(["export", str(run / "weights" / "best.pt"), "--out", str(onnx_path), "--check"]) == 0
    assert main(["val", str(run / "weights" / "best.pt"), "--quiet"]) == 0
    torch_metrics = json.loads((run / "val" / "metrics.json").read_text())
    assert main(["val", str(onnx_path), "--quiet"]) == 0
    onnx_metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    # No floor on the metric itself: six epochs of a tiny model find some shapes on one CPU
    # and none on another; what a working pipeline always gives is the same number twice.
    for key in ("mask_map", "mask_map50", "box_map"):
        assert onnx_metrics[key] == pytest.approx(torch_metrics[key], abs=0.005)

    out = tmp_path / "pred"
    images = tiny_segment_data / "val" / "images"
    assert main(["predict", str(onnx_path), str(images), "--out", str(out), "--quiet",
                 "--save-images", "--score-threshold", "0"]) == 0
    lines = [json.loads(t) for t in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and any(line["detections"] for line in lines)
    det = next(d for line in lines for d in line["detections"])
    assert set(det["mask"]) == {"size", "counts"} and isinstance(det["mask"]["counts"], str)
    assert len(list(out.rglob("*.png"))) == 8
    results = json.loads((out / "coco_results.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tiny_segment_data / "val" / "annotations.json"))
        coco_eval = COCOeval(gt, gt.loadRes(results), "segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    # --score-threshold 0: all the graph returns, as val scores, so the same detections.
    assert max(coco_eval.stats[1], 0.0) == pytest.approx(onnx_metrics["mask_map50"], abs=0.01)


def test_export_check_matches_detections_as_sets_and_ignores_crop_edges() -> None:
    from vision_tasks.export.parity import compare_detections

    rng = np.random.default_rng(0)
    boxes = np.array([[[9.999, 8, 40, 40], [30, 30, 60, 50], [0, 0, 0, 0]]], np.float32)
    masks = (rng.random((1, 3, 16, 16)) * box_crop(torch.from_numpy(boxes), 16, 16, 4.0).numpy())
    ref = {"boxes": boxes, "scores": np.array([[0.5, 0.5, 0.0]], np.float32),
           "labels": np.array([[1, 2, 0]]), "num_detections": np.array([2]),
           "masks": masks.astype(np.float32)}
    # The same two detections in the other order (an exact score tie broken differently).
    swapped = {k: v.copy() for k, v in ref.items()}
    for key in ("boxes", "scores", "labels", "masks"):
        swapped[key][0, :2] = ref[key][0, [1, 0]]
    diffs = {d.name: d for d in compare_detections(ref, swapped, "fp32", 64)}
    assert all(d.ok for d in diffs.values()) and diffs["unmatched"].max_abs_diff == 0.0
    # A box edge moved by less than the tolerance across a cell centre (x = 10): that column
    # leaves the crop; only cells away from the box edges are compared.
    assert ref["masks"][0, 0, 5, 2] > 0
    edge = {k: v.copy() for k, v in ref.items()}
    edge["boxes"][0, 0, 0] = 10.001
    edge["masks"][0, 0, :, 2] = 0.0
    assert all(d.ok for d in compare_detections(ref, edge, "fp32", 64))
    # A mask that differs inside its box fails; a detection that is not there at all fails.
    wrong = {k: v.copy() for k, v in ref.items()}
    wrong["masks"][0, 0, 5, 5] += 0.3
    assert not {d.name: d for d in compare_detections(ref, wrong, "fp32", 64)}["masks"].ok
    moved = {k: v.copy() for k, v in ref.items()}
    moved["boxes"][0, 1] += 5.0
    assert not {d.name: d for d in compare_detections(ref, moved, "fp32", 64)}["unmatched"].ok
