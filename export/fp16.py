"""``vision-tasks export --fp16``: an exported fp32 graph -> an fp16 network with fp32 ends
(:func:`convert_to_fp16`, which the exporter applies to its fp32 graph; ``export --fp16
--check`` then compares the fp16 file with the fp32 PyTorch model within the fp16
tolerances of :mod:`vision_tasks.export.parity`).

The pass converts the *network* part of the graph only: the nodes that lie between its
weight layers (each node downstream of some Conv / ConvTranspose / Gemm / MatMul with a
stored weight and upstream of another, those layers included), and of those only the ops
of :data:`FP16_OPS`, whose float inputs and outputs all share one type. Everything else
stays float32, notably:

- the input side: uint8 -> float, the normalisation (``x * scale + shift``), so the first
  layer reads exact values cast once to fp16;
- the output side: what follows the last weight layers: sigmoid / softmax scores, the DFL
  expectation, box decoding, NMS or top-K, mask assembly. Scores are compared, thresholded
  and ranked in fp32, so near-ties and thresholds behave as in the fp32 file.

Casts are inserted where a float tensor crosses the boundary (fp32 -> fp16 into the
network, fp16 -> fp32 out of it; one cast per tensor); weights used only inside the network
are stored in fp16 (half the file size). Resize's ``roi`` and ``scales`` stay float32 (the
operator wants them so). The I/O contract is unchanged (uint8 in, float32 / int64 out), and
the metadata records ``precision: fp16``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vision_tasks.contract import ModelMetadata
from vision_tasks.fileio import atomic_path

WEIGHT_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
FP16_OPS = frozenset({
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Conv",
    "ConvTranspose", "Div", "Elu", "Expand", "Flatten", "Gather", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity",
    "LeakyRelu", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pad", "PRelu",
    "ReduceMax", "ReduceMean", "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "Split",
    "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze",
})
"""Ops converted inside the network part; any other op there stays float32 (cast around)."""
FLOAT32_INPUTS = {"Resize": (1, 2)}
"""Float inputs that stay float32 even on a converted node (by op: input positions)."""
SUFFIX = "__fp16"


def network_nodes(graph: onnx.GraphProto) -> set[int]:
    """Indices (in ``graph.node``, topologically ordered) of the nodes between weight
    layers: downstream of one and upstream of one, the weight layers included."""
    weights = {init.name for init in graph.initializer}
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    layers = {i for i, n in enumerate(graph.node)
              if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in weights}
    down = set(layers)
    for i, node in enumerate(graph.node):
        if any(producer.get(x) in down for x in node.input):
            down.add(i)
    up = set(layers)
    for i in reversed(range(len(graph.node))):
        if i in up:
            up.update(producer[x] for x in graph.node[i].input if x in producer)
    return down & up


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the float32 tensors of ``model`` (by ONNX shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    infos: Iterable[onnx.ValueInfoProto] = [*g.input, *g.value_info, *g.output]
    names = {v.name for v in infos if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    return names | {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT}


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the fp32 ``model`` with its network part in fp16 (see the module docstring);
    the metadata's ``precision`` set to ``fp16``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    floats = _float_tensors(model)
    inside = {i for i in network_nodes(graph) if graph.node[i].op_type in FP16_OPS}
    nodes = list(graph.node)
    made = {out for i in inside for out in nodes[i].output if out in floats}  # now fp16
    initializers = {t.name: t for t in graph.initializer}
    users: dict[str, set[int]] = {}
    for i, node in enumerate(nodes):
        for x in node.input:
            users.setdefault(x, set()).add(i)
    casts_in: dict[str, str] = {}  # fp32 tensor -> its fp16 copy
    halved: set[str] = set()  # weights now stored in fp16
    new_nodes: list[onnx.NodeProto] = []
    for i, node in enumerate(nodes):
        if i in inside:
            keep = FLOAT32_INPUTS.get(node.op_type, ())
            for k, x in enumerate(node.input):
                if not x or x not in floats or k in keep:
                    continue
                if x in made:
                    node.input[k] = x + SUFFIX
                elif x in initializers and users[x] <= inside:
                    _to_fp16_initializer(initializers[x])
                    halved.add(x)
                else:
                    if x not in casts_in:
                        casts_in[x] = x + SUFFIX + "_in"
                        new_nodes.append(helper.make_node("Cast", [x], [casts_in[x]],
                                                          to=TensorProto.FLOAT16,
                                                          name=f"fp16_in/{x}"))
                    node.input[k] = casts_in[x]
            if node.op_type == "Cast" and node.output[0] in made:
                for attr in node.attribute:
                    if attr.name == "to":
                        attr.i = TensorProto.FLOAT16
            for k, out in enumerate(node.output):
                if out in made:
                    node.output[k] = out + SUFFIX
            new_nodes.append(node)
            for out in node.output:  # back to fp32 under the old name, for whoever reads it
                name = out.removesuffix(SUFFIX)
                if name in made and (users.get(name, set()) - inside
                                     or name in {o.name for o in graph.output}):
                    new_nodes.append(helper.make_node("Cast", [out], [name], to=TensorProto.FLOAT,
                                                      name=f"fp16_out/{name}"))
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    for info in graph.value_info:
        if info.name in made or info.name in halved:
            info.name += SUFFIX if info.name in made else ""
            info.type.tensor_type.elem_type = TensorProto.FLOAT16
    _set_precision(model, "fp16")
    onnx.checker.check_model(model, full_check=True)
    return model


def _to_fp16_initializer(tensor: onnx.TensorProto) -> None:
    values = numpy_helper.to_array(tensor).astype(np.float16)
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def _set_precision(model: onnx.ModelProto, precision: str) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    meta = ModelMetadata.from_props(props, "<converted model>")
    meta = replace(meta, extra={**meta.extra, "precision": precision})
    del model.metadata_props[:]
    helper.set_model_props(model, meta.to_props())


def convert_file(source: str | Path, out: str | Path) -> Path:
    """Read the fp32 file ``source``, write its fp16 conversion to ``out`` (atomically)."""
    model = convert_to_fp16(onnx.load(str(source)))
    out = Path(out)
    with atomic_path(out, durable=True) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return out
