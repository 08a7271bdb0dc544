"""Cut a CTC recognizer's output layer down to a subset of its classes (plain ``onnx``).

A PP-OCR recognizer ends in ``Softmax(MatMul(features, W) + b)`` over every class it
knows. Keeping only some classes means keeping those columns of ``W`` and entries of ``b``:
the logits of the kept classes are unchanged, the softmax renormalises over them, so a
column's best kept class is the one the full model ranks highest among them. Cheaper:
PP-OCRv6 tiny's 80 x 6906 output layer is a sizeable share of a line's recognition time,
and ``engines.rapidocr.charsets``' ``latin`` keeps 618 classes (measured in docs/benchmarks.md).

Not an identity, unlike ``engines.rapidocr.onnx_rewrites``: a column the full model gave to a
dropped class now goes to a kept one, and scores rise where dropped classes held
probability mass. That is the point for documents without those characters.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

#: Nodes allowed between the bias ``Add`` and the final ``Softmax`` (the Paddle export puts an Identity there).
_PASS_THROUGH = frozenset({"Identity"})


def restrict_classes(model: onnx.ModelProto, classes: Sequence[int]) -> int:
    """Keep only ``classes`` (indices into the last axis) of the model's single output, in place; how many were dropped.

    Raises ValueError, naming what was found, when the output is not
    ``Softmax(MatMul(x, constant W) + constant b)`` (possibly through Identity nodes).
    """
    graph = model.graph
    if len(graph.output) != 1:
        raise ValueError(f"a CTC recognizer has one output; this model has {len(graph.output)}")
    producer = {name: node for node in graph.node for name in node.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    softmax = producer.get(graph.output[0].name)
    if softmax is None or softmax.op_type != "Softmax":
        raise ValueError(f"the recognizer's output is made by {softmax.op_type if softmax else 'no node'}, not Softmax")
    walked = [softmax.input[0]]  # tensors from the logits back to the bias Add's output
    node = producer.get(walked[-1])
    while node is not None and node.op_type in _PASS_THROUGH:
        walked.append(node.input[0])
        node = producer.get(walked[-1])
    add = node
    matmul = producer.get(add.input[0]) if add is not None and add.op_type == "Add" else None
    if matmul is None or matmul.op_type != "MatMul" or add.input[1] not in initializers \
            or matmul.input[1] not in initializers:
        raise ValueError("the recognizer's softmax does not read MatMul(x, constant) + constant: no output layer to cut")
    weight, bias = initializers[matmul.input[1]], initializers[add.input[1]]
    size = numpy_helper.to_array(bias).shape[-1]
    keep = np.asarray(classes, dtype=np.int64)
    if keep.size == 0 or keep.min() < 0 or keep.max() >= size or np.unique(keep).size != keep.size:
        raise ValueError(f"classes must be distinct indices below the output's {size}")
    for tensor in (weight, bias):  # classes are the last axis of both
        kept = np.ascontiguousarray(np.take(numpy_helper.to_array(tensor), keep, axis=-1))
        tensor.CopyFrom(numpy_helper.from_array(kept, tensor.name))
    resized = {*walked, matmul.output[0]}
    shaped = [info for info in graph.value_info if info.name not in resized]  # annotations with the old width go
    del graph.value_info[:]
    graph.value_info.extend(shaped)
    last = graph.output[0].type.tensor_type.shape.dim[-1]
    last.Clear()
    last.dim_value = keep.size
    return size - keep.size
