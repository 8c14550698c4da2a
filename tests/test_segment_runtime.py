"""Segment on the runtime side: a stand-in segment ONNX graph (built with onnx.helper, no
torch) through ``Predictor`` and ``vision-tasks predict``: masks in original pixels, RLE in
predictions.jsonl, coco_results.json that COCOeval scores, drawings, resume, batching."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from testkit import assert_runs_without_torch
from vision_tasks.export.runtime import ModelMetadata, Predictor
from vision_tasks.export.runtime.draw import MASK_OPACITY, class_colour

from vision_tasks.cli import main
from vision_tasks.imaging import Letterbox, letterbox
from vision_tasks.masks import decode_rle
from vision_tasks.task_spec import get_spec

# pycocotools' decode and COCOeval warn about numpy 2's copy keyword; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STRIDE = 4  # input pixels per mask pixel (the contract's Hm = H / 4)


def _letterbox(width: int, height: int, size: tuple[int, int]) -> Letterbox:
    return letterbox(np.zeros((height, width, 3), np.uint8), size)[1]


def _uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (list counts) of a bool mask, as older runtimes wrote it."""
    flat = mask.T.ravel()
    starts = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate(([0], starts, [flat.size]))).tolist()
    return {"size": list(mask.shape), "counts": [0, *counts] if flat[0] else counts}


INPUT = (192, 256)  # model input (H, W)
IMAGE = (300, 240)  # scene images (W, H): scale 0.8, 8 pixels of padding left and right
CLASSES = ("square", "disc", "triangle")
CATEGORY_IDS = (3, 7, 11)
SCORES = (0.9, 0.8, 0.7)


def _scene_polygons() -> list[list[float]]:
    """One polygon per class, original pixels of an ``IMAGE`` scene."""
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    disc = np.stack([205 + 55 * np.cos(angles), 140 + 55 * np.sin(angles)], 1)
    return [[30, 40, 130, 40, 130, 125, 30, 125], disc.ravel().round(2).tolist(),
            [40, 150, 140, 228, 25, 220]]


def _scene() -> tuple[np.ndarray, list[np.ndarray]]:
    """The scene image (object k drawn in colour channel k, as COCO rasterises its polygon)
    and the ground-truth masks."""
    from pycocotools import mask as mask_api

    width, height = IMAGE
    truth = [decode_rle(mask_api.frPyObjects([p], height, width)[0]) for p in _scene_polygons()]
    image = np.zeros((height, width, 3), np.uint8)
    for k, mask in enumerate(truth):
        image[..., k][mask] = 255
    return image, truth


def segment_model(path: Path, boxes: np.ndarray, thresholds: dict | None = None) -> Path:
    """A stand-in segment model: fixed ``boxes`` (``[K, 4]`` input pixels; rows that are all
    zero are past ``num_detections``), labels, scores, and masks computed from the image:
    mask k is colour channel ``k % 3`` averaged over 4x4 pixels, zero at mask pixels whose
    centre lies outside box k. Built with onnx.helper, no torch."""
    k_max = len(boxes)
    n = int((boxes[:, 2] > boxes[:, 0]).sum())
    hm, wm = INPUT[0] // STRIDE, INPUT[1] // STRIDE
    cx, cy = (np.arange(wm) + 0.5) * STRIDE, (np.arange(hm) + 0.5) * STRIDE
    crop = np.stack([((cy >= y1) & (cy < y2))[:, None] & ((cx >= x1) & (cx < x2))[None, :]
                     for x1, y1, x2, y2 in boxes]).astype(np.float32)[None]
    fixed = {"boxes": boxes.astype(np.float32),
             "scores": np.array([SCORES[k % 3] if k < n else 0 for k in range(k_max)], np.float32),
             "labels": np.array([k % 3 if k < n else 0 for k in range(k_max)], np.int64),
             "num_detections": np.array(n, np.int64)}
    nodes = [helper.make_node("Shape", ["images"], ["batch"], end=1),
             helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["pixels", "full_scale"], ["unit"]),
             helper.make_node("Transpose", ["unit"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[STRIDE, STRIDE],
                              strides=[STRIDE, STRIDE]),
             helper.make_node("Gather", ["pooled", "channel_of_row"], ["per_row"], axis=1),
             helper.make_node("Mul", ["per_row", "crop"], ["masks"])]
    initializers = [numpy_helper.from_array(np.array(255, np.float32), "full_scale"),
                    numpy_helper.from_array(np.arange(k_max, dtype=np.int64) % 3, "channel_of_row"),
                    numpy_helper.from_array(crop, "crop")]
    outputs = [helper.make_tensor_value_info("masks", TensorProto.FLOAT, ["N", k_max, hm, wm])]
    for name, value in fixed.items():
        initializers += [numpy_helper.from_array(value[None], f"{name}_row"),
                         numpy_helper.from_array(np.array(value.shape, np.int64), f"{name}_dims")]
        nodes += [helper.make_node("Concat", ["batch", f"{name}_dims"], [f"{name}_shape"], axis=0),
                  helper.make_node("Expand", [f"{name}_row", f"{name}_shape"], [name])]
        outputs.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(value.dtype), ["N", *value.shape]))
    graph = helper.make_graph(nodes, "segment_stand_in", [helper.make_tensor_value_info(
        "images", TensorProto.UINT8, ["N", *INPUT, 3])], outputs, initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    meta = ModelMetadata(task="segment", class_names=CLASSES, input_size=INPUT,
                         outputs=get_spec("segment").output_names, max_detections=k_max,
                         thresholds=thresholds or {"score": 0.25, "iou": 0.5, "mask": 0.5},
                         category_ids=CATEGORY_IDS, package_version="test", config={})
    helper.set_model_props(proto, meta.to_props())
    onnx.save(proto, str(path))
    return path


def _truth_boxes(truth: list[np.ndarray]) -> np.ndarray:
    """Tight ``[K, 4]`` boxes of the masks, original pixels."""
    boxes = []
    for mask in truth:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    return np.array(boxes, np.float64)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, list[np.ndarray]]:
    return _scene()


@pytest.fixture(scope="module")
def scene_model(scene, tmp_path_factory) -> Path:
    """The stand-in fitted to the scene: its three objects and one empty row (K = 4)."""
    lb = _letterbox(*IMAGE, INPUT)
    boxes = np.zeros((4, 4), np.float32)
    boxes[:3] = lb.boxes_to_input(_truth_boxes(scene[1]))
    return segment_model(tmp_path_factory.mktemp("seg") / "segment.onnx", boxes)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_predictor_returns_original_image_masks_of_the_scene(scene_model, scene):
    image, truth = scene
    result = Predictor(scene_model, task="segment").predict_one(image)
    assert (result.width, result.height) == IMAGE
    assert [d.name for d in result.detections] == list(CLASSES)
    for det, mask, box in zip(result.detections, truth, _truth_boxes(truth), strict=True):
        assert det.mask.shape == (IMAGE[1], IMAGE[0]) and det.mask.dtype == bool
        assert _iou(det.mask, mask) > 0.97
        assert det.box == pytest.approx(tuple(box), abs=1e-3)
        rle = det.rle()
        assert isinstance(rle["counts"], str)
        np.testing.assert_array_equal(decode_rle(rle), det.mask)
        assert det.to_dict()["mask"] == rle


def _coco_ground_truth(ids: list[int]) -> dict:
    width, height = IMAGE
    polygons, (_, truth) = _scene_polygons(), _scene()
    annotations = []
    for image_id in ids:
        for k, (polygon, mask, (x1, y1, x2, y2)) in enumerate(
                zip(polygons, truth, _truth_boxes(truth), strict=True)):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": CATEGORY_IDS[k], "segmentation": [polygon],
                                "area": float(mask.sum()), "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "iscrowd": 0})
    return {"images": [{"id": i, "width": width, "height": height} for i in ids],
            "annotations": annotations,
            "categories": [{"id": c, "name": n} for c, n in zip(CATEGORY_IDS, CLASSES, strict=True)]}


def _segm_ap(ground_truth: dict, results_path: Path) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(str(results_path)), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _predict(model: Path, source: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(model), str(source), "--out", str(out), "--quiet", *extra])


def test_predict_writes_rle_masks_coco_results_with_ap_1_and_drawings(scene_model, scene,
                                                                     tmp_path):
    image, truth = scene
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("1.png", "2.png"):
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert _predict(scene_model, folder, out, "--batch-size", "2", "--save-images") == 0

    lines = _lines(out / "predictions.jsonl")
    assert len(lines) == 2 and len((out / "predictions.jsonl").read_text()) < 4000
    for line in lines:
        for det, mask in zip(line["detections"], truth, strict=True):
            assert det["mask"]["size"] == [IMAGE[1], IMAGE[0]]
            assert isinstance(det["mask"]["counts"], str)
            assert _iou(decode_rle(det["mask"]), mask) > 0.97
    entries = json.loads((out / "coco_results.json").read_text())
    assert sorted({e["image_id"] for e in entries}) == [1, 2]
    assert {e["category_id"] for e in entries} == set(CATEGORY_IDS)
    assert _segm_ap(_coco_ground_truth([1, 2]), out / "coco_results.json") == 1.0

    drawn = cv2.cvtColor(cv2.imread(str(out / "images" / "1.png")), cv2.COLOR_BGR2RGB)
    zoom = drawn.shape[0] // IMAGE[1]
    assert drawn.shape == (IMAGE[1] * zoom, IMAGE[0] * zoom, 3)
    mask = lines[0]["detections"][1]["mask"]  # the disc, green in the image
    inside = cv2.erode(decode_rle(mask).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    tint = np.rint(np.array([0, 255, 0]) * (1 - MASK_OPACITY)
                   + np.array(class_colour(1)) * MASK_OPACITY)
    inside[:int(lines[0]["detections"][1]["box"][1]) + 20] = False  # below the label
    assert (drawn[::zoom, ::zoom][inside] == tint).all()  # translucent class colour
    ring = decode_rle(mask) & ~cv2.erode(decode_rle(mask).astype(np.uint8),
                                         np.ones((3, 3), np.uint8)).astype(bool)
    outline = drawn[::zoom, ::zoom][ring]
    assert (np.abs(outline.astype(int) - class_colour(1)).sum(1) < 60).mean() > 0.5
    assert (drawn[::zoom, ::zoom][:, :5] == 0).all()  # untouched away from the objects


def test_resume_keeps_masks_and_reads_lines_of_older_runs(scene_model, scene, tmp_path):
    image, truth = scene
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert _predict(scene_model, folder, out) == 0
    (first,) = _lines(out / "predictions.jsonl")
    # A line as an older runtime wrote it (uncompressed RLE), for an image not predicted now.
    older = {**first, "source": str(folder / "3.png"), "detections": [
        {**d, "mask": _uncompressed(decode_rle(d["mask"]))} for d in first["detections"]]}
    with open(out / "predictions.jsonl", "a") as f:
        f.write(json.dumps(older) + "\n")
    for name in ("2.png", "3.png"):
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert _predict(scene_model, folder, out, "--resume") == 0

    lines = {Path(line["source"]).name: line for line in _lines(out / "predictions.jsonl")}
    assert sorted(lines) == ["1.png", "2.png", "3.png"]
    assert lines["2.png"]["detections"] == lines["1.png"]["detections"]
    for a, b in zip(lines["3.png"]["detections"], lines["1.png"]["detections"], strict=True):
        np.testing.assert_array_equal(decode_rle(a["mask"]), decode_rle(b["mask"]))
    assert _segm_ap(_coco_ground_truth([1, 2, 3]), out / "coco_results.json") == 1.0


def test_masks_of_batch_1_and_batch_7_agree(tmp_path):
    boxes = np.array([[0, 0, 256, 192], [40, 30, 200, 150], [100, 0, 256, 60],
                      [10, 100, 90, 190], [0, 0, 0, 0]], np.float32)
    model = segment_model(tmp_path / "m.onnx", boxes)
    rng = np.random.default_rng(5)
    images = []
    for width, height in [(300, 240), (120, 410), (640, 200), (33, 47), (256, 192), (500, 499),
                          (90, 700)]:
        image = np.zeros((height, width, 3), np.uint8)
        for _ in range(4):  # random filled circles in random colours
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.circle(image, centre, int(rng.integers(5, max(width, height) // 2)),
                       rng.integers(0, 256, 3).tolist(), -1)
        images.append(image)
    one = Predictor(model, batch_size=1).predict(images)
    seven = Predictor(model, batch_size=7).predict(images)
    for a, b, image in zip(one, seven, images, strict=True):
        assert len(a.detections) == 4 and a.detections[0].mask.shape == image.shape[:2]
        for da, db in zip(a.detections, b.detections, strict=True):
            assert da.box == db.box
            np.testing.assert_array_equal(da.mask, db.mask)
    assert any(a.detections[0].mask.any() for a in one)


def test_the_mask_threshold_comes_from_the_metadata(scene, tmp_path):
    image, truth = scene
    lb = _letterbox(*IMAGE, INPUT)
    boxes = np.zeros((3, 4), np.float32)
    boxes[:] = lb.boxes_to_input(_truth_boxes(truth))
    areas = []
    for threshold in (0.2, 0.8):
        model = segment_model(tmp_path / f"t{threshold}.onnx", boxes,
                              {"score": 0.25, "iou": 0.5, "mask": threshold})
        areas.append(Predictor(model).predict_one(image).detections[1].mask.sum())
    assert areas[0] > areas[1] > 0


def test_segment_prediction_leaves_torch_out_of_sys_modules(scene_model, scene, tmp_path):
    cv2.imwrite(str(tmp_path / "1.png"), cv2.cvtColor(scene[0], cv2.COLOR_RGB2BGR))
    assert_runs_without_torch(f"""
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.batch import run_predict
predictor = Predictor({str(scene_model)!r})
run_predict(predictor, [{str(tmp_path / '1.png')!r}], {str(tmp_path / 'out')!r},
            save_images=True, progress=False)
""")


def test_detections_below_the_score_threshold_are_left_out(scene_model, scene, tmp_path):
    image, _ = scene
    assert len(Predictor(scene_model, score_threshold=0.0).predict_one(image).detections) == 3
    kept = Predictor(scene_model, score_threshold=0.75).predict_one(image).detections
    assert [d.score for d in kept] == pytest.approx([0.9, 0.8])
    with pytest.raises(ValueError, match="score_threshold"):
        Predictor(scene_model, score_threshold=1.5)
    cv2.imwrite(str(tmp_path / "1.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert _predict(scene_model, tmp_path / "1.png", tmp_path / "out", "--score-threshold", "0.85") == 0
    (line,) = _lines(tmp_path / "out" / "predictions.jsonl")
    assert [d["score"] for d in line["detections"]] == pytest.approx([0.9])
    assert len(json.loads((tmp_path / "out" / "coco_results.json").read_text())) == 1
