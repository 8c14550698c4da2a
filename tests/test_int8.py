"""INT8 export (`export --int8`: what is quantized, the metric check, the metadata, the
torch-free runtime) and bf16 training on the CPU (`train.amp`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
import torch
from testkit import assert_runs_without_torch, coco_config
from vision_tasks.export.onnx_export import ExportWrapper, _to_onnx, export_checkpoint, output_names
from vision_tasks.export.parity import (
    INT8_METRIC_TOL,
    ExportCheckError,
    MetricReport,
    check_int8_metrics,
)
from vision_tasks.export.quant_graph import network_nodes, weight_layers

from vision_tasks.cli import main
from vision_tasks.config import load_config
from vision_tasks.contract import ModelMetadata
from vision_tasks.engine import precision
from vision_tasks.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from vision_tasks.engine.precision import amp_dtype, amp_note, cpu_bf16_units
from vision_tasks.engine.trainer import StepSettings, Trainer, TrainState, train_step
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CALIBRATION = 24


@pytest.fixture(scope="module")
def confident_run(tiny_classify_run, tiny_classify_data: Path, tmp_path_factory) -> SimpleNamespace:
    """The tiny classify model trained on until it is sure of its 40 training images, and
    validated on them: a checkpoint like a run's best.pt, whose top-1 only a real
    quantization error (a flipped image: 2.5 points) can lower."""
    model, _, task, names = model_from_checkpoint(tiny_classify_run.best)
    images, targets = task.collate([task.build_dataset(load_config(None, [
        f"data.train={tiny_classify_data / 'train'}", "data.image_size=32"],
        base={"task": "classify"}), "train", train=False, class_names=names)[i] for i in range(40)])
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(images.float())["classify"], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert (model(images.float())["classify"].argmax(1) == targets).all()
    state = load_checkpoint(tiny_classify_run.best)
    state["model"], state["ema"] = model.state_dict(), None
    state["config"]["data"]["val"] = str(tiny_classify_data / "train")
    best = tmp_path_factory.mktemp("run-confident") / "best.pt"
    save_checkpoint(best, state)
    return SimpleNamespace(best=best)


@pytest.fixture(scope="module")
def int8_export(confident_run, tmp_path_factory):
    """``export --int8 --check`` of that model (calibrated on 24 training images)."""
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    return export_checkpoint(confident_run.best, out, int8=True, calibration_count=CALIBRATION,
                             check=True)


@pytest.fixture(scope="module")
def fp32_export(confident_run, tmp_path_factory):
    return export_checkpoint(confident_run.best, tmp_path_factory.mktemp("fp32") / "model.onnx")


def test_int8_export_of_a_tiny_model_passes_its_metric_check(int8_export):
    report = int8_export.parity
    assert isinstance(report, MetricReport) and report.ok
    (top1,) = [d for d in report.diffs if d.name == "top1"]
    assert top1.fp32 == 1.0  # the model is sure of every image...
    assert top1.fp32 - top1.int8 <= INT8_METRIC_TOL  # ...and the INT8 file keeps them
    assert int8_export.path.is_file() and int8_export.precision == "int8"


def test_int8_file_metadata_records_the_precision_and_the_calibration(int8_export, tiny_classify_data):
    meta = ModelMetadata.from_props({p.key: p.value for p in onnx.load(int8_export.path).metadata_props},
                                    "int8")
    assert meta.extra["precision"] == "int8"
    assert meta.extra["calibration"] == {"data": f"data.train ({tiny_classify_data / 'train'})",
                                         "count": CALIBRATION, "method": "minmax"}
    assert meta.task == "classify" and meta.input_size == (32, 32)  # the contract is unchanged


def test_int8_graph_quantizes_the_layers_between_first_and_last_and_nothing_else(int8_export):
    graph = onnx.load(int8_export.path).graph
    produced_by = {out: n for n in graph.node for out in n.output}
    convs = [n for n in graph.node if n.op_type in ("Conv", "Gemm")]
    quantized = [n for n in convs if produced_by.get(n.input[1]) is not None
                 and produced_by[n.input[1]].op_type == "DequantizeLinear"]
    assert len(quantized) == len(convs) - 1  # all but the first convolution
    first = convs[0]
    assert first.input[1] in {i.name for i in graph.initializer}  # float weights
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    assert produced_by[softmax.input[0]].op_type == "DequantizeLinear"  # scores in float
    normalise = [n for n in graph.node if n.op_type in ("Mul", "Add")]
    assert normalise and all(produced_by.get(n.input[0]) is None
                             or produced_by[n.input[0]].op_type != "DequantizeLinear"
                             for n in normalise)


def test_fp32_export_records_its_precision_and_int8_excludes_fp16(fp32_export, confident_run,
                                                                 tmp_path, capsys):
    assert fp32_export.metadata.extra["precision"] == "fp32"
    assert "calibration" not in fp32_export.metadata.extra
    assert main(["export", str(confident_run.best), "--out", str(tmp_path / "x.onnx"), "--int8",
                 "--fp16", "--calibration", "val", "--calibration-images", "8"]) != 0
    assert "--int8 needs the default exporter (opset >= 18) and excludes --fp16" in capsys.readouterr().err


def test_int8_check_fails_naming_the_metric_when_the_int8_file_is_worse(
        fp32_export, tiny_classify_run, tiny_classify_data, tmp_path):
    # An unconfident model's file (one epoch), scored on the same images, stands for a
    # broken INT8 file.
    weak = onnx.load(export_checkpoint(tiny_classify_run.best, tmp_path / "weak.onnx").path)
    props = {p.key: p.value for p in weak.metadata_props}
    config = json.loads(props["config"])
    config["data"]["val"] = str(tiny_classify_data / "train")
    onnx.helper.set_model_props(weak, {**props, "config": json.dumps(config)})
    with pytest.raises(ExportCheckError, match="top1 is .* below the fp32 file's"):
        check_int8_metrics(fp32_export.path.read_bytes(), weak.SerializeToString(), "top1",
                           "the training images")


def test_runtime_runs_the_int8_file_without_torch(int8_export, fp32_export, tiny_classify_data):
    fp32 = fp32_export.path
    images = sorted(str(p) for p in (tiny_classify_data / "train").rglob("*.png"))[:8]
    assert_runs_without_torch(f"""
import numpy as np
from vision_tasks.export.runtime import Predictor
int8 = Predictor({str(int8_export.path)!r}, device="cpu")
fp32 = Predictor({str(fp32)!r}, device="cpu")
assert int8.metadata.extra["precision"] == "int8"
a, b = (np.stack([r.scores for r in p.predict({images!r})]) for p in (int8, fp32))
assert (a.argmax(1) == b.argmax(1)).all() and np.abs(a - b).max() < 0.1, np.abs(a - b).max()
""")


def test_weight_layers_skip_box_decoding_and_mask_assembly(tmp_path):
    task = get_task("segment")
    task.synthesize(tmp_path, 2, 2, 32, seed=0)
    cfg = coco_config("segment", tmp_path, "model.backbone.width=8",
                      "model.backbone.depths=[1, 1, 1, 1, 1]", "model.head.channels=16",
                      "model.head.hidden=16", "model.head.depth=1", "model.head.num_protos=8",
                      "model.head.proto_channels=16", "model.head.coef_hidden=16",
                      "data.image_size=32")
    model = build_model(cfg, task, 5).eval()
    names = output_names(model, 32)
    proto = _to_onnx(ExportWrapper(model, names).eval(), torch.zeros(2, 32, 32, 3, dtype=torch.uint8),
                     18, task.onnx_translations)
    layers = set(weight_layers(proto))
    matmuls = [n.name for n in proto.graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 1 and not layers & set(matmuls)  # mask assembly (DFL: Mul + ReduceSum)
    convs = {n.name for n in proto.graph.node if n.op_type == "Conv"}
    assert layers == convs  # every convolution of backbone, neck, head and prototypes
    region = set(network_nodes(proto, sorted(layers)))
    by_name = {n.name: n for n in proto.graph.node}
    assert {by_name[n].op_type for n in region} <= {"Conv", "Relu", "MaxPool", "Sigmoid", "Mul",
                                                     "Add", "Concat", "Resize"}
    first = next(n.name for n in proto.graph.node if n.op_type == "Conv")
    assert layers - region == {first}  # the first convolution stays float
    post = [n.name for n in proto.graph.node if n.op_type in ("Softmax", "TopK", "NonMaxSuppression")]
    assert len(post) >= 3 and not _downstream(proto, post) & region


def _downstream(proto: onnx.ModelProto, names: list[str]) -> set[str]:
    """Every node fed, directly or not, by the nodes ``names``."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    by_name = {n.name: n for n in proto.graph.node}
    seen, todo = set(names), list(names)
    while todo:
        for nxt in (c for out in by_name[todo.pop()].output for c in consumers.get(out, [])):
            if nxt.name not in seen:
                seen.add(nxt.name)
                todo.append(nxt.name)
    return seen


# --- bf16 training on the CPU -----------------------------------------------------------------


def test_cpu_bf16_units_are_read_from_cpuinfo_flags(tmp_path):
    with_units = tmp_path / "with"
    with_units.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    without = tmp_path / "without"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_bf16_units(with_units) == ("amx_bf16", "avx512_bf16")
    assert cpu_bf16_units(without) == ()
    assert cpu_bf16_units(tmp_path / "missing") == ()


def test_amp_auto_on_the_cpu_follows_its_bf16_units(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: ("amx_bf16",))
    assert amp_dtype("auto", cpu) == torch.bfloat16 and amp_dtype("off", cpu) is None
    assert amp_note("auto", cpu) == "bf16 autocast (CPU with amx_bf16)"
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: ())
    assert amp_dtype("auto", cpu) is None and amp_dtype("bf16", cpu) == torch.bfloat16
    assert amp_note("auto", cpu) == "fp32 (train.amp=auto; bf16 units: none)"
    assert amp_note("bf16", cpu) == "bf16 autocast (no bf16 units: emulated, slow)"


def test_the_runs_first_line_says_the_precision(tiny_classify_data, tiny_config, tmp_path):
    lines: list[str] = []
    cfg = tiny_config(tiny_classify_data, "train.amp=off")
    Trainer(cfg, tmp_path / "run", progress=False, log=lines.append).fit()
    assert lines[0].endswith("device cpu, fp32 (train.amp=off)")


@pytest.mark.skipif(not cpu_bf16_units(), reason="this CPU has no bf16 units (avx512_bf16 / "
                                                  "amx_bf16 in /proc/cpuinfo): bf16 is not used")
def test_bf16_training_of_a_tiny_model_moves_the_loss(tiny_classify_data, tiny_config):
    cfg = tiny_config(tiny_classify_data, "train.amp=bf16", "train.warmup_epochs=0")
    task = get_task("classify")
    dataset = task.build_dataset(cfg, "train", train=False)
    images, targets = task.collate([dataset[i] for i in range(16)])
    torch.manual_seed(0)
    model = build_model(cfg, task, 5).train()
    seen = []
    model.backbone.register_forward_hook(lambda _m, _i, out: seen.append(out[-1].dtype))
    cpu = torch.device("cpu")
    state = TrainState.start(model, cfg.train, 40, torch.bfloat16, cpu)
    settings = StepSettings(cpu, torch.bfloat16, cfg.train.grad_clip)
    loss = task.build_loss(cfg, model.head)

    def criterion(outputs, targets):
        return loss(outputs["classify"], targets)

    losses = [train_step(state, images.float(), targets, criterion, settings)[0] for _ in range(30)]
    assert seen[0] == torch.bfloat16  # the forward pass ran in bf16...
    assert all(loss.dtype == torch.float32 for loss in losses)  # ...the loss in fp32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert float(losses[-1].detach()) < 0.5 * float(losses[0].detach())
