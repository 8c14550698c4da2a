"""ONNX export: the contract (input, dynamic batch, metadata), parity with PyTorch, fp16,
the legacy-opset path, `val model.onnx` and `benchmark`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from vision_tasks.export.onnx_export import ExportWrapper, export_checkpoint, output_names
from vision_tasks.export.parity import ExportCheckError, check_images, check_parity

from vision_tasks.cli import main
from vision_tasks.contract import METADATA_KEYS, SINGLE_TASK_VERSION
from vision_tasks.engine.checkpoint import model_from_checkpoint


@pytest.fixture(scope="module")
def exported(tiny_classify_run, tmp_path_factory) -> Path:
    """The tiny classify model exported through the CLI with --check."""
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    assert main(["export", str(tiny_classify_run.best), "--out", str(out), "--check"]) == 0
    return out


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_graph_input_is_uint8_nhwc_images_with_a_dynamic_batch(exported):
    graph = onnx.load(str(exported)).graph
    (images,) = graph.input
    tensor = images.type.tensor_type
    assert images.name == "images"
    assert tensor.elem_type == onnx.TensorProto.UINT8
    dims = tensor.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [32, 32, 3]
    (scores,) = graph.output
    assert scores.name == "scores" and scores.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_every_metadata_value_parses_as_json_and_describes_the_model(exported, tiny_classify_run):
    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert set(METADATA_KEYS) <= set(props)
    values = {key: json.loads(text) for key, text in props.items()}
    _, cfg, _, names = model_from_checkpoint(tiny_classify_run.best)
    assert values["task"] == "classify"
    assert values["class_names"] == names
    assert values["input_size"] == [32, 32]
    assert (values["layout"], values["color"], values["dtype"]) == ("NHWC", "RGB", "uint8")
    assert values["letterbox"] == {"pad_value": 114, "align": "center"}
    assert values["outputs"] == ["scores"]
    assert values["thresholds"] == {} and values["max_detections"] is None
    assert values["contract_version"] == SINGLE_TASK_VERSION  # a single-task file needs v1 readers only
    assert values["config"] == json.loads(json.dumps(cfg.to_dict()))


def test_batch_of_seven_gives_the_same_per_image_scores_as_batches_of_one(exported):
    session = _session(exported)
    images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    (batched,) = session.run(None, {"images": images})
    single = np.concatenate([session.run(None, {"images": images[i:i + 1]})[0] for i in range(7)])
    assert batched.shape == (7, 5) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, atol=1e-6)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-5)  # probabilities


def test_onnxruntime_matches_pytorch_on_val_images_within_fp32_tolerance(exported, tiny_classify_run):
    model, cfg, task, names = model_from_checkpoint(tiny_classify_run.best)
    images, source = check_images(cfg, task, names)
    assert "data.val" in source and images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
    wrapper = ExportWrapper(model, ("scores",)).eval()
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(images))[0].numpy()
    (actual,) = _session(exported).run(None, {"images": images})
    assert np.abs(actual - expected).max() <= 1e-4


def test_check_falls_back_to_synthetic_letterboxed_images_without_data(tiny_classify_run, tmp_path):
    _, cfg, task, names = model_from_checkpoint(tiny_classify_run.best)
    cfg.data.val = str(tmp_path / "not-here")
    images, source = check_images(cfg, task, names, n=6)
    assert "synthetic" in source and images.shape == (6, 32, 32, 3)
    assert (images == 114).all(axis=-1).any()  # letterbox borders are exercised too


def test_check_fails_naming_the_max_difference_when_the_graph_is_off(exported, tiny_classify_run):
    model, cfg, task, names = model_from_checkpoint(tiny_classify_run.best)
    tampered = copy.deepcopy(model)
    with torch.no_grad():
        tampered.head.classifier[-1].bias += torch.arange(5.0)  # a different model
    images, source = check_images(cfg, task, names, n=4)
    reference = ExportWrapper(tampered, ("scores",)).eval()
    with pytest.raises(ExportCheckError, match=r"'scores' differs by up to \d\.\d+e[-+]\d+ "
                                               r"\(tolerance 1e-04\).*not written"):
        check_parity(exported.read_bytes(), reference, images, source, "fp32")


def test_fp16_keeps_the_uint8_input_and_float32_outputs_within_the_loose_tolerance(
        tiny_classify_run, tmp_path):
    result = export_checkpoint(tiny_classify_run.best, tmp_path / "m.onnx", fp16=True, check=True)
    assert result.precision == "fp16" and result.parity.ok
    assert result.parity.diffs[0].tolerance == 1e-2
    session = _session(result.path)
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert session.get_outputs()[0].type == "tensor(float)"
    weights = onnx.load(str(result.path)).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)


def test_opset_below_18_goes_through_the_legacy_exporter_with_the_same_contract(
        tiny_classify_run, tmp_path):
    result = export_checkpoint(tiny_classify_run.best, tmp_path / "m17.onnx", opset=17, check=True)
    proto = onnx.load(str(result.path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    session = _session(result.path)
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    assert session.run(None, {"images": images})[0].shape == (3, 5)


def test_export_is_deterministic_and_free_of_local_stack_traces(exported, tiny_classify_run, tmp_path):
    again = tmp_path / "again.onnx"
    export_checkpoint(tiny_classify_run.best, again)
    assert again.read_bytes() == exported.read_bytes()
    assert all(not node.metadata_props for node in onnx.load(str(again)).graph.node)


def test_val_on_the_onnx_file_matches_the_checkpoint_top1(exported, tiny_classify_run, tmp_path):
    assert main(["val", str(tiny_classify_run.best), "--out", str(tmp_path / "pt"), "--quiet"]) == 0
    assert main(["val", str(exported), "--out", str(tmp_path / "onnx"), "--quiet"]) == 0
    pt = json.loads((tmp_path / "pt" / "metrics.json").read_text())
    onnx_metrics = json.loads((tmp_path / "onnx" / "metrics.json").read_text())
    assert onnx_metrics["images"] == pt["images"] == 20
    assert abs(onnx_metrics["top1"] - pt["top1"]) <= 0.005
    assert onnx_metrics["confusion_matrix"] == pt["confusion_matrix"]


def test_output_names_follow_the_contract(tiny_classify_run):
    model, _, task, _ = model_from_checkpoint(tiny_classify_run.best)
    assert output_names(model, 32) == ("scores",)


def test_export_of_a_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope.pt" in err and "\n" not in err


def test_benchmark_prints_measurements_and_ratios_not_goals(exported, tiny_classify_run, capsys):
    argv = ["benchmark", str(exported), "--checkpoint", str(tiny_classify_run.best), "--json",
            "--batch-size", "4", "--repeats", "1", "--seconds", "0", "--pipeline-images", "8",
            "--threads", "2"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    measurements = report["measurements"]
    assert set(measurements) == {"onnxruntime", "onnxruntime_lanes", "pytorch", "pipeline"}
    assert all(m["images_per_s"] > 0 and len(m["repeats"]) == 1 for m in measurements.values())
    assert set(report["ratios"]) == {"onnxruntime_over_pytorch", "pipeline_over_model_only",
                                     "pipeline_over_one_call"}
    assert all(r > 0 for r in report["ratios"].values())
    # the pipeline is held to the faster model-only way, never to a slower one
    assert report["model_only"] in ("onnxruntime", "onnxruntime_lanes")
    assert report["ratios"]["pipeline_over_model_only"] <= report["ratios"]["pipeline_over_one_call"]
    assert report["pipeline_images"].endswith(", 8 per pass)")
    assert "goals" not in report
    assert report["threads"] >= 1 and report["provider"] == "CPUExecutionProvider"
    assert report["lanes"] == 2
    assert main([a for a in argv if a != "--json"] + ["--lanes", "1"]) == 0
    table = capsys.readouterr().out
    assert "onnxruntime / pytorch" in table and "pipeline / best model only" in table
    assert "goal" not in table
    assert "1 lane," in table and "lanes (model only)" not in table
