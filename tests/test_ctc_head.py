"""Recognizer output cut to a character set: which classes stay (``engines.rapidocr.charsets``) and the
cut graph's output (``engines.rapidocr.ctc_head``) against the full one, on a small built graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.rapidocr.charsets import in_charset, is_east_asian, kept_classes
from engines.rapidocr.ctc_head import restrict_classes

FEATURES, CLASSES = 6, 9


def _recognizer_head(output_op: str = "Softmax") -> onnx.ModelProto:
    """x (batch, columns, 6) -> Softmax(MatMul(x, W) + b) over 9 classes, an Identity between, as Paddle exports it."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(FEATURES, CLASSES)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.normal(size=CLASSES).astype(np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
        helper.make_node("Identity", ["logits"], ["logits_out"]),
        helper.make_node(output_op, ["logits_out"], ["probs"]),
    ]
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "columns", FEATURES])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", "columns", CLASSES])],
        initializer=[weight, bias],
        value_info=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "columns", CLASSES])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_latin_keeps_latin_greek_and_symbols_and_drops_east_asian_scripts() -> None:
    kept = "aZéßŒ0.,;!?%€£°±×—–“”•µαΩ∑≤→²½™©"
    dropped = "中報かカ한ㄅ，、。「」Ａ１﹏"
    assert all(in_charset(character, "latin") for character in kept)
    assert not any(in_charset(character, "latin") for character in dropped)
    assert all(in_charset(character, "all") for character in dropped)
    assert is_east_asian("A中") and not is_east_asian("AB")  # multi-code-point entries: any point counts
    with pytest.raises(ValueError, match="unknown charset 'klingon'"):
        in_charset("a", "klingon")  # type: ignore[arg-type]


def test_kept_classes_always_keep_the_ctc_blank() -> None:
    decoder_list = ["blank", "中", "a", "Ａ", "1", "文", " "]
    assert kept_classes(decoder_list, "latin") == [0, 2, 4, 6]
    assert kept_classes(decoder_list, "all") == list(range(len(decoder_list)))
    assert kept_classes(["中", "a"], "latin") == [0, 1]  # index 0 is the blank whatever it is named


def test_cut_head_gives_the_kept_classes_logits_renormalised() -> None:
    model = _recognizer_head()
    x = np.random.default_rng(1).normal(size=(2, 5, FEATURES)).astype(np.float32)
    full = _run(model, x)
    keep = [0, 2, 3, 7]
    assert restrict_classes(model, keep) == CLASSES - len(keep)
    onnx.checker.check_model(model, full_check=True)
    cut = _run(model, x)
    assert cut.shape == (2, 5, len(keep))
    expected = full[..., keep] / full[..., keep].sum(axis=-1, keepdims=True)  # softmax over the kept logits
    np.testing.assert_allclose(cut, expected, rtol=1e-5, atol=1e-7)
    assert model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value == len(keep)
    assert "logits" not in {info.name for info in model.graph.value_info}  # its old width would contradict the graph


def test_a_model_without_a_softmax_output_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="made by Sigmoid, not Softmax"):
        restrict_classes(_recognizer_head("Sigmoid"), [0, 1])
    model = _recognizer_head()
    model.graph.node[1].op_type = "Sub"
    with pytest.raises(ValueError, match="no output layer to cut"):
        restrict_classes(model, [0, 1])


@pytest.mark.parametrize("classes", [[], [0, 9], [1, 1], [-1, 2]])
def test_class_indices_must_be_distinct_and_in_range(classes: list[int]) -> None:
    model = _recognizer_head()
    before = model.SerializeToString()
    with pytest.raises(ValueError, match="distinct indices below the output's 9"):
        restrict_classes(model, classes)
    assert model.SerializeToString() == before  # refused before anything changed
