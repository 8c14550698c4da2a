"""The torch-free runtime: Predictor inputs, metadata checks, providers, per-task decoding
back to original-image coordinates, and no torch in sys.modules."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from testkit import assert_runs_without_torch
from vision_tasks.export.onnx_export import export_checkpoint
from vision_tasks.export.runtime import ModelFileError, ModelMetadata, Predictor
from vision_tasks.export.runtime.providers import cuda_device_count

from vision_tasks.errors import DeviceError


@pytest.fixture(scope="module")
def model_path(tiny_classify_run, tmp_path_factory) -> Path:
    return export_checkpoint(tiny_classify_run.best, tmp_path_factory.mktemp("rt") / "m.onnx").path


@pytest.fixture(scope="module")
def predictor(model_path) -> Predictor:
    return Predictor(model_path, device="cpu")


def constant_model(path: Path, task: str, outputs: dict[str, np.ndarray], size=(32, 32),
                   class_names=("a", "b", "c"), props: dict[str, str] | None = None) -> Path:
    """An ONNX file whose outputs repeat ``outputs`` (one image's values) for every image of
    the batch: a stand-in for a trained model of any task, built without torch."""
    nodes = [helper.make_node("Shape", ["images"], ["shape"], end=1)]
    graph_outputs, initializers = [], []
    for name, value in outputs.items():
        initializers += [numpy_helper.from_array(value[None], f"{name}_row"),
                         numpy_helper.from_array(np.array(value.shape, np.int64), f"{name}_dims")]
        nodes += [helper.make_node("Concat", ["shape", f"{name}_dims"], [f"{name}_shape"], axis=0),
                  helper.make_node("Expand", [f"{name}_row", f"{name}_shape"], [name])]
        elem = helper.np_dtype_to_tensor_dtype(value.dtype)
        graph_outputs.append(helper.make_tensor_value_info(name, elem, ["N", *value.shape]))
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info("images", TensorProto.UINT8,
                                                          ["N", *size, 3])],
        graph_outputs, initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    meta = ModelMetadata(task=task, class_names=tuple(class_names), input_size=size,
                         outputs=tuple(outputs), package_version="test", config={})
    helper.set_model_props(proto, props if props is not None else meta.to_props())
    onnx.save(proto, str(path))
    return path


def test_paths_bytes_pil_images_and_arrays_give_the_same_prediction(predictor, tiny_classify_data):
    path = sorted((tiny_classify_data / "val").rglob("*.png"))[0]
    data = path.read_bytes()
    array = np.asarray(Image.open(path).convert("RGB"))
    results = predictor.predict([path, str(path), data, Image.open(path), array])
    assert [r.source for r in results] == [str(path), str(path), "<bytes>", str(path), "<array>"]
    for r in results[1:]:
        np.testing.assert_array_equal(r.scores, results[0].scores)
    assert results[0].scores.shape == (5,) and abs(float(results[0].scores.sum()) - 1) < 1e-5
    assert results[0].detections is None and results[0].name in predictor.class_names


def test_gray_rgba_16bit_and_odd_sized_images_are_letterboxed_and_sized_as_original(predictor):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (20, 50), dtype=np.uint8)
    rgba = rng.integers(0, 256, (70, 30, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (40, 40), dtype=np.uint16)
    results = predictor.predict([gray, rgba, deep])
    assert [(r.width, r.height) for r in results] == [(50, 20), (30, 70), (40, 40)]
    assert results[0].letterbox.pad_y > 0 and results[1].letterbox.pad_x > 0


def test_exif_rotated_jpeg_reports_the_upright_size(predictor):
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (60, 20), (200, 10, 10)).save(buffer, "JPEG", exif=exif)
    result = predictor.predict_one(buffer.getvalue())
    assert (result.width, result.height) == (20, 60)


def test_batches_give_the_same_scores_as_single_images(model_path):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(7)]
    batched = Predictor(model_path, batch_size=7).predict(images)
    single = Predictor(model_path, batch_size=1).predict(images)
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_lanes_run_batches_at_once_with_the_outputs_of_one_call(model_path, tiny_classify_data):
    from concurrent.futures import ThreadPoolExecutor

    from vision_tasks.export.runtime.pipeline import predict_stream

    predictor = Predictor(model_path, device="cpu", threads=2, lanes=2, batch_size=3)
    assert predictor.lanes == 2 and "lanes=2" in repr(predictor)
    batches = [np.random.default_rng(i).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
               for i in range(4)]
    with ThreadPoolExecutor(2) as pool:
        concurrent = list(pool.map(predictor.run_lane, batches))
    for batch, outputs in zip(batches, concurrent, strict=True):
        np.testing.assert_allclose(outputs["scores"], predictor.run(batch)["scores"], atol=1e-6)
    files = [str(f) for f in sorted((tiny_classify_data / "val").rglob("*.png"))[:10]]
    files.insert(4, str(tiny_classify_data / "missing.png"))
    one_lane = Predictor(model_path, device="cpu", lanes=1, batch_size=3)
    streams = [list(predict_stream(p, files, workers=2)) for p in (predictor, one_lane)]
    assert [o.source for o in streams[0]] == [o.source for o in streams[1]]
    assert sorted(o.source for o in streams[0]) == sorted(files)  # each file once
    for a, b in zip(*streams, strict=True):
        assert (a.error is None) == (b.error is None) == (a.source != files[4])
        if a.prediction is not None:
            np.testing.assert_allclose(a.prediction.scores, b.prediction.scores, atol=1e-6)
    with pytest.raises(ValueError, match="lanes"):
        Predictor(model_path, lanes=0)
    with pytest.raises(ValueError, match="lanes=3 needs at least 3 CPU threads"):
        Predictor(model_path, device="cpu", threads=2, lanes=3)


def test_many_sources_go_through_the_pipeline_in_order_and_a_bad_one_raises(model_path,
                                                                           tiny_classify_data):
    from vision_tasks.imaging import ImageError

    paths = sorted((tiny_classify_data / "val").rglob("*.png"))[:5]
    sources = [paths[0], paths[1].read_bytes(), np.asarray(Image.open(paths[2])), str(paths[3]),
               Image.open(paths[4])] * 2
    predictor = Predictor(model_path, device="cpu", batch_size=3)  # 10 sources: 4 batches
    many = predictor.predict(sources)
    assert [p.source for p in many[:5]] == [str(paths[0]), "<bytes>", "<array>", str(paths[3]),
                                            str(paths[4])]
    for got, source in zip(many, sources, strict=True):
        np.testing.assert_allclose(got.scores, predictor.predict(source)[0].scores, atol=1e-6)
    with pytest.raises(ImageError, match="nope.png: file not found"):
        predictor.predict([*paths, paths[0].parent / "nope.png"])
    assert predictor.predict([]) == []


def test_ranking_is_by_score_with_ties_in_class_order():
    from vision_tasks.export.runtime import Prediction

    names = tuple("abcdefg")
    scores = np.array([0.1, 0.3, 0.05, 0.3, 0.2, 0.0, 0.05], np.float32)
    p = Prediction("x", "classify", 4, 4, names, scores=scores)
    assert [c.label for c in p.top(7)] == [1, 3, 4, 0, 2, 6, 5]
    line = p.to_dict(top_k=3)
    assert (line["label"], line["name"]) == (1, "b")
    assert [(t["label"], t["name"]) for t in line["top"]] == [(1, "b"), (3, "d"), (4, "e")]
    assert line["top"][0]["score"] == line["score"] == round(float(np.float32(0.3)), 6)
    many = Prediction("x", "classify", 4, 4, tuple(map(str, range(100))),
                      scores=np.linspace(0, 1, 100, dtype=np.float32)[::-1].copy())
    assert [c.label for c in many.top(3)] == [0, 1, 2]
    assert [t["label"] for t in many.to_dict(3)["top"]] == [0, 1, 2]
    assert "top" in p.to_dict(top_k=0) and p.to_dict(top_k=0)["top"] == []


def test_to_dict_is_json_with_the_top_classes(predictor):
    line = predictor.predict_one(np.zeros((32, 32, 3), np.uint8)).to_dict()
    assert json.loads(json.dumps(line)) == line
    assert {"source", "task", "width", "height", "label", "name", "score", "top"} <= set(line)
    assert len(line["top"]) == 5 and line["top"][0]["name"] == line["name"]


def test_without_a_gpu_auto_runs_on_the_cpu_and_cuda_is_a_clear_error(model_path):
    if cuda_device_count() > 0:
        pytest.skip("a GPU is visible: the fallback cannot be observed here")
    auto = Predictor(model_path, device="auto")
    assert auto.provider == "CPUExecutionProvider"
    assert auto.provider_note
    with pytest.raises(DeviceError, match="device 'cuda' asked for, but.*use --device cpu or auto"):
        Predictor(model_path, device="cuda")


def test_a_model_without_our_metadata_is_rejected_naming_the_file(tmp_path):
    path = constant_model(tmp_path / "plain.onnx", "classify", {"scores": np.ones(3, np.float32)},
                          props={})
    with pytest.raises(ModelFileError, match=r"plain\.onnx: not a vision-tasks model.*vision-tasks export"):
        Predictor(path)


def test_a_model_of_another_task_is_rejected_when_a_task_is_asked_for(model_path):
    with pytest.raises(ModelFileError, match=r"m\.onnx: a classify model, but a detect model is needed"):
        Predictor(model_path, task="detect")


def test_newer_contract_and_bad_json_are_rejected(tmp_path):
    meta = ModelMetadata(task="classify", class_names=("a",), input_size=(32, 32), outputs=("scores",))
    newer = {**meta.to_props(), "contract_version": "99"}
    path = constant_model(tmp_path / "new.onnx", "classify", {"scores": np.ones(1, np.float32)},
                          props=newer)
    with pytest.raises(ModelFileError, match="contract version 99 is newer"):
        Predictor(path)
    broken = {**meta.to_props(), "class_names": "[not json"}
    path = constant_model(tmp_path / "bad.onnx", "classify", {"scores": np.ones(1, np.float32)},
                          props=broken)
    with pytest.raises(ModelFileError, match="'class_names' is not valid JSON"):
        Predictor(path)


def test_missing_and_non_onnx_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="model file not found"):
        Predictor(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(ModelFileError, match=r"junk\.onnx: onnxruntime cannot load this model"):
        Predictor(junk)


def test_localize_box_is_mapped_back_to_the_original_image(tmp_path):
    scores = np.array([0.1, 0.7, 0.2], np.float32)
    boxes = np.array([8.0, 8.0, 24.0, 16.0], np.float32)  # input pixels of the 32x32 input
    path = constant_model(tmp_path / "loc.onnx", "localize", {"scores": scores, "boxes": boxes})
    result = Predictor(path, task="localize").predict_one(np.zeros((32, 64, 3), np.uint8))
    # 64x32 -> scale 0.5, content 32x16 centred with pad_y 8: input (8, 8, 24, 16) -> original
    (det,) = result.detections
    assert det.box == pytest.approx((16.0, 0.0, 48.0, 16.0))
    assert (det.label, det.name, det.score) == (1, "b", pytest.approx(0.7))
    assert result.name == "b" and result.to_dict()["detections"][0]["box"] == [16.0, 0.0, 48.0, 16.0]


def test_detect_and_segment_keep_num_detections_rows_with_masks_in_original_pixels(tmp_path):
    boxes = np.array([[0, 0, 16, 16], [16, 8, 32, 24], [0, 0, 0, 0]], np.float32)
    masks = np.zeros((3, 8, 8), np.float32)
    masks[0, :4, :4] = 1.0  # the top-left quarter of the input
    outputs = {"boxes": boxes, "scores": np.array([0.9, 0.6, 0.0], np.float32),
               "labels": np.array([2, 0, 0], np.int64), "num_detections": np.array(2, np.int64),
               "masks": masks}
    path = constant_model(tmp_path / "seg.onnx", "segment", outputs)
    result = Predictor(path).predict_one(np.zeros((64, 64, 3), np.uint8))  # scale 0.5, no pad
    assert [d.name for d in result.detections] == ["c", "a"]
    assert result.detections[1].box == pytest.approx((32.0, 16.0, 64.0, 48.0))
    mask = result.detections[0].mask
    assert mask.shape == (64, 64) and mask[:30, :30].all() and not mask[34:, :].any()
    assert result.to_dict()["detections"][0]["mask"]["size"] == [64, 64]


def test_runtime_import_and_prediction_leave_torch_out_of_sys_modules(model_path, tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 24), (10, 200, 30)).save(image)
    assert_runs_without_torch(f"""
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.batch import run_predict
from vision_tasks.export.runtime.sources import resolve_sources
predictor = Predictor({str(model_path)!r})
assert predictor.predict_one({str(image)!r}).name
run_predict(predictor, resolve_sources({str(tmp_path)!r}), {str(tmp_path / 'out')!r},
            save_images=True, progress=False)
""")
