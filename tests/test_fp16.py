"""``export --fp16`` (vision_tasks.export.fp16): the network in fp16, the input side, scores,
NMS / top-K and outputs in fp32; the file runs on the CPU provider with the fp32 file's
detections within the fp16 tolerances; the CLI writes and checks it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from test_fast_path import TINY_DETECT, trained_file
from vision_tasks.export.fp16 import convert_file, network_nodes
from vision_tasks.export.parity import compare
from vision_tasks.export.runtime import Predictor

from vision_tasks.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY_SEGMENT = [*TINY_DETECT, "model.head.num_protos=8", "model.head.proto_channels=16",
                "model.head.coef_hidden=16"]


@pytest.fixture(scope="module")
def segment_files(tmp_path_factory) -> tuple[Path, Path]:
    """A trained segment file (fp32) and its fp16 conversion."""
    fp32 = trained_file("segment", tmp_path_factory.mktemp("fp16"), TINY_SEGMENT)
    return fp32, convert_file(fp32, fp32.with_suffix(".fp16.onnx"))


def _types(model: onnx.ModelProto) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    return {**types, **{t.name: t.data_type for t in g.initializer}}


def test_the_network_is_fp16_and_scores_nms_and_the_contract_stay_float32(segment_files):
    fp32, fp16 = segment_files
    model = onnx.load(str(fp16))
    types = _types(model)
    weights = {t.name: t.data_type for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(weights[n.input[1]] == TensorProto.FLOAT16 for n in convs)
    ranking = [n for n in model.graph.node if n.op_type in ("NonMaxSuppression", "TopK", "Sigmoid")
               and not n.name.startswith("fp16")]
    floats = {(n.op_type, types.get(x)) for n in ranking for x in n.input
              if types.get(x) in (TensorProto.FLOAT, TensorProto.FLOAT16)}
    assert ("NonMaxSuppression", TensorProto.FLOAT) in floats
    assert not any(t == TensorProto.FLOAT16 for op, t in floats if op != "Sigmoid")
    # the scores' sigmoid (the last one, after the head) reads float32
    last_sigmoid = [n for n in model.graph.node if n.op_type == "Sigmoid"][-1]
    assert types[last_sigmoid.input[0]] == TensorProto.FLOAT
    assert [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input] == [
        ("images", TensorProto.UINT8)]
    original = onnx.load(str(fp32))
    assert [(o.name, o.type.tensor_type.elem_type) for o in model.graph.output] == [
        (o.name, o.type.tensor_type.elem_type) for o in original.graph.output]
    assert network_nodes(original.graph)  # the pass found the weight layers
    assert fp16.stat().st_size < 0.7 * fp32.stat().st_size
    assert Predictor(fp16, device="cpu").metadata.extra["precision"] == "fp16"


def test_the_fp16_file_gives_the_fp32_files_detections_within_the_fp16_tolerances(segment_files):
    fp32, fp16 = segment_files
    images = np.stack([np.asarray(Predictor(fp32, device="cpu").prepare(p)[0]) for p in
                       sorted((fp32.parent / "data" / "val" / "images").glob("*"))[:4]])
    outputs = {}
    for path in (fp32, fp16):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs[path] = dict(zip(names, session.run(names, {"images": images}), strict=True))
    diffs = compare(outputs[fp32], outputs[fp16], "fp16", images.shape[1])
    assert all(d.ok for d in diffs), [d for d in diffs if not d.ok]
    assert {d.name for d in diffs} >= {"boxes", "scores", "masks", "unmatched"}


def test_export_fp16_writes_a_checked_file_and_int8_with_fp16_is_refused(tiny_classify_run,
                                                                         tmp_path, capsys):
    out = tmp_path / "m.fp16.onnx"
    assert main(["export", str(tiny_classify_run.best), "--fp16", "--check", "--opset", "17",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fp16" in printed and "check passed" in printed
    predictor = Predictor(out, device="cpu")
    assert predictor.metadata.extra["precision"] == "fp16"
    assert predictor.run(np.zeros((2, 32, 32, 3), np.uint8))["scores"].dtype == np.float32
    assert main(["export", str(tiny_classify_run.best), "--fp16", "--int8",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "excludes --fp16" in capsys.readouterr().err
