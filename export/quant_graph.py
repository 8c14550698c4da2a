"""Which nodes of an exported graph ``--int8`` quantizes, and one fix-up after quantization.

The network part is found from the graph itself, so no task has to name its nodes:

1. **Weight layers** (:func:`weight_layers`): the ``Conv`` / ``Gemm`` / ``MatMul`` nodes the
   exporter made from an ``nn.Conv*`` or ``nn.Linear`` module (a batch norm folded into its
   conv included). The dynamo exporter records each node's module path
   (``pkg.torch.onnx.class_hierarchy``), read before the exporter's records are stripped.
   Not layers: the DFL ``MatMul`` of box decoding (a head's own arithmetic with its bin
   values) and the ``MatMul`` of mask assembly (coefficients x prototypes).
2. **The region between them** (:func:`network_nodes`): every node on a path from one layer
   to another (activations, pooling, additions, concatenations, resizing), so that the
   tensors between two integer convolutions stay uint8. Left float: what comes before the
   first layers (the normalisation), after the last ones (all of the post-processing:
   sigmoid / softmax, box decoding, top-k, NMS, mask assembly), the first layers
   themselves (3 input channels: onnxruntime's integer convolution of depth 27 ran 2-4x
   slower than its float one here), and a stem's max-pooling with what leads to it (next
   point).
3. **Float stem pooling** (:func:`pin_float_pools`): onnxruntime moves a ``QuantizeLinear``
   that follows a ``MaxPool`` up above it (``QDQPropagationTransformer``) and then runs that
   pooling on uint8 in NCHW layout, a generic kernel: 10-16 ms of a 23 ms classify batch
   (64 px, batch 32), 5x its float cost. Propagation only moves a quantization with one
   scale for the whole tensor, so a per-channel ``QuantizeLinear`` / ``DequantizeLinear``
   pair with the same scale and zero point in every channel is put between the pooling and
   the quantization: the values are the same, the pooling stays float.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

WEIGHT_LAYER_OPS = ("Conv", "Gemm", "MatMul")
LAYER_MODULES = ("torch.nn.modules.conv.", "torch.nn.modules.linear.",
                 "torch.nn.modules.batchnorm.")
"""A weight-layer node comes from one of these modules (batch norm: folded into its conv)."""
HIERARCHY_KEY = "pkg.torch.onnx.class_hierarchy"
REGION_OPS = ("Conv", "Gemm", "MatMul", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Mul", "Add",
              "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Resize")
"""Operators quantized inside the region (onnxruntime has integer kernels for each); any
other operator there runs float between a dequantization and a quantization."""
POOLS = ("MaxPool",)


def weight_layers(proto: onnx.ModelProto) -> list[str]:
    """Names of the weight-layer nodes (see the module docstring), in graph order."""
    names = []
    for node in proto.graph.node:
        if node.op_type not in WEIGHT_LAYER_OPS:
            continue
        props = {p.key: p.value for p in node.metadata_props}
        try:
            hierarchy = ast.literal_eval(props.get(HIERARCHY_KEY, "[]"))
        except (ValueError, SyntaxError):
            continue
        if isinstance(hierarchy, list) and any(str(c).startswith(LAYER_MODULES) for c in hierarchy):
            names.append(node.name)
    return names


class _Graph:
    """Producer / consumer lookups of one graph, by node name."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.nodes = {n.name: n for n in proto.graph.node}
        self.producer = {out: n.name for n in proto.graph.node for out in n.output}
        self.consumers: dict[str, list[str]] = {}
        for n in proto.graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n.name)

    def downstream(self, name: str) -> list[str]:
        return [c for out in self.nodes[name].output for c in self.consumers.get(out, [])]

    def upstream(self, name: str) -> list[str]:
        return [self.producer[i] for i in self.nodes[name].input if i in self.producer]

    @staticmethod
    def reach(start: Iterable[str], step: Callable[[str], list[str]],
              stop: Callable[[str], bool] = lambda _: False) -> set[str]:
        """``start`` and every node reached from it by ``step``; a node for which ``stop``
        is true is reached but not walked past."""
        seen = set(start)
        todo = list(seen)
        while todo:
            for nxt in step(todo.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    if not stop(nxt):
                        todo.append(nxt)
        return seen


def network_nodes(proto: onnx.ModelProto, layers: list[str]) -> list[str]:
    """The nodes to quantize: ``layers`` and the region between them, less the first layers
    and their stem pooling (see the module docstring), in graph order."""
    g = _Graph(proto)
    layer_set = set(layers)
    after = g.reach([d for name in layers for d in g.downstream(name)], g.downstream)
    before = g.reach(layers, g.upstream)
    first = layer_set - after
    region = (after | layer_set) & before
    # A first layer's stem: the nodes from it to the next layers; a max-pooling there stays
    # float, with everything between the first layer and it.
    stem = g.reach(first, g.downstream, stop=lambda n: n in layer_set) - first - layer_set
    pools = {n for n in stem if g.nodes[n].op_type in POOLS}
    float_stem = {n for n in stem if g.reach([n], g.downstream) & pools}
    keep = region - first - float_stem
    return [n.name for n in proto.graph.node
            if n.name in keep and n.op_type in REGION_OPS]


def pin_float_pools(proto: onnx.ModelProto) -> int:
    """Put a per-channel ``QuantizeLinear`` / ``DequantizeLinear`` pair between every float
    pooling and the per-tensor ``QuantizeLinear`` that follows it (see the module
    docstring), in place; returns how many. The channel count comes from the quantization's
    consumers (the weight of the convolution it feeds) or from shape inference."""
    graph = proto.graph
    g = _Graph(proto)
    initializers = {i.name: i for i in graph.initializer}
    shapes = _channel_counts(proto)
    pinned = 0
    for q in list(graph.node):
        pool = g.nodes.get(g.producer.get(q.input[0], ""))
        if q.op_type != "QuantizeLinear" or pool is None or pool.op_type not in POOLS:
            continue
        source = g.nodes.get(g.producer.get(pool.input[0], ""))
        channels = shapes.get(pool.output[0])
        if (source is not None and source.op_type == "DequantizeLinear") or not channels:
            continue  # an integer pooling already, or its channel count is unknown
        scale = numpy_helper.to_array(initializers[q.input[1]])
        zero = numpy_helper.to_array(initializers[q.input[2]])
        if scale.size != 1:
            continue
        base = f"{pool.name}_float_pin"
        graph.initializer.extend([
            numpy_helper.from_array(np.full(channels, scale.item(), scale.dtype), f"{base}_scale"),
            numpy_helper.from_array(np.full(channels, zero.item(), zero.dtype), f"{base}_zero")])
        pair = [onnx.helper.make_node(op, [x, f"{base}_scale", f"{base}_zero"], [y], name=y, axis=1)
                for op, x, y in (("QuantizeLinear", pool.output[0], f"{base}_q"),
                                 ("DequantizeLinear", f"{base}_q", f"{base}_dq"))]
        q.input[0] = f"{base}_dq"
        at = list(graph.node).index(q)
        for node in reversed(pair):
            graph.node.insert(at, node)
        pinned += 1
    return pinned


def _channel_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> its dimension 1 (channels), where shape inference knows it."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    counts = {}
    for info in (*inferred.graph.value_info, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) >= 2 and dims[1].HasField("dim_value"):
            counts[info.name] = int(dims[1].dim_value)
    return counts
