"""engines.rapidocr.onnx_rewrites: each rewrite fires where it is exact, leaves the graph alone where
it is not, and keeps the outputs (small built graphs and the PP-OCR models in the wheel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.rapidocr.onnx_rewrites import fold_scalar_affine, fuse_erf_gelu, fuse_hard_swish, optimize_model
from engines.rapidocr.ppocr_models import model_set

RNG = np.random.default_rng(0)


def _scalar(name: str, value: float) -> onnx.NodeProto:
    """A Constant node, as Paddle's exporter writes every weight."""
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array([value], np.float32), name))


def _conv(name: str, x: str, out: str, channels: int, kernel: int, pad: int) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    weight = RNG.normal(size=(channels, channels, kernel, kernel)).astype(np.float32)
    bias = RNG.normal(size=channels).astype(np.float32)
    inits = [numpy_helper.from_array(weight, f"{name}_w"), numpy_helper.from_array(bias, f"{name}_b")]
    node = helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [out], kernel_shape=[kernel, kernel], pads=[pad] * 4)
    return node, inits


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], outputs: tuple[str, ...] = ("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node if node.op_type != "Constant"]


def _hard_swish_nodes(x: str, out: str, three: float = 3.0) -> list[onnx.NodeProto]:
    return [
        _scalar("three", three), _scalar("zero", 0.0), _scalar("six", 6.0),
        helper.make_node("Add", [x, "three"], ["shifted"]),
        helper.make_node("Clip", ["shifted", "zero", "six"], ["gate"]),
        helper.make_node("Mul", [x, "gate"], ["product"]),
        helper.make_node("Div", ["product", "six"], [out]),
    ]


def test_hard_swish_becomes_hard_sigmoid_times_x() -> None:
    model = _model(_hard_swish_nodes("x", "y"), [])
    x = RNG.normal(scale=4.0, size=(1, 4, 6, 6)).astype(np.float32)  # both clip bounds are hit
    expected = _run(model, x)[0]
    assert fuse_hard_swish(model.graph) == 1
    assert _ops(model) == ["HardSigmoid", "Mul"]
    np.testing.assert_allclose(_run(model, x)[0], expected, rtol=1e-6, atol=1e-6)


def test_hard_swish_lookalikes_stay() -> None:
    """A different shift, or a gate another node also reads, is not hard-swish."""
    shifted = _model(_hard_swish_nodes("x", "y", three=2.0), [])
    assert fuse_hard_swish(shifted.graph) == 0 and "Clip" in _ops(shifted)
    shared = _model(_hard_swish_nodes("x", "y"), [], outputs=("y", "gate"))
    assert fuse_hard_swish(shared.graph) == 0 and "Clip" in _ops(shared)


def _gelu_nodes(x: str, out: str, divisor: float = float(np.sqrt(2.0))) -> list[onnx.NodeProto]:
    """GELU as Paddle exports it: ``x * (erf(x / sqrt 2) + 1) * 0.5``."""
    return [
        _scalar("root2", divisor), _scalar("one", 1.0), _scalar("half", 0.5),
        helper.make_node("Div", [x, "root2"], ["scaled"]),
        helper.make_node("Erf", ["scaled"], ["erf"]),
        helper.make_node("Add", ["erf", "one"], ["gate"]),
        helper.make_node("Mul", [x, "gate"], ["product"]),
        helper.make_node("Mul", ["product", "half"], [out]),
    ]


def test_erf_gelu_becomes_one_gelu_node() -> None:
    model = _model(_gelu_nodes("x", "y"), [])
    x = RNG.normal(scale=3.0, size=(1, 4, 6, 6)).astype(np.float32)
    expected = _run(model, x)[0]
    assert fuse_erf_gelu(model) == 1
    assert _ops(model) == ["Gelu"]
    assert ("com.microsoft", 1) in [(opset.domain, opset.version) for opset in model.opset_import]
    np.testing.assert_allclose(_run(model, x)[0], expected, rtol=1e-5, atol=1e-6)


def test_erf_gelu_lookalikes_stay() -> None:
    """Another divisor, or an inner product another node also reads, is not GELU."""
    halved = _model(_gelu_nodes("x", "y", divisor=2.0), [])
    assert fuse_erf_gelu(halved) == 0 and "Erf" in _ops(halved)
    assert all(opset.domain != "com.microsoft" for opset in halved.opset_import)
    shared = _model(_gelu_nodes("x", "y"), [], outputs=("y", "product"))
    assert fuse_erf_gelu(shared) == 0 and "Erf" in _ops(shared)


def test_gelu_is_fused_before_its_half_folds_into_a_conv(tmp_path: Path) -> None:
    """GELU's ``* 0.5`` before a 1x1 conv is also a foldable scalar; ``optimize_model`` keeps the GELU whole."""
    conv, inits = _conv("a", "g", "y", 4, 1, 0)
    model = _model([*_gelu_nodes("x", "g"), conv], inits)
    x = RNG.normal(size=(1, 4, 6, 6)).astype(np.float32)
    expected = _run(model, x)[0]
    onnx.save(model, str(tmp_path / "model.onnx"))
    serialized, counts = optimize_model(tmp_path / "model.onnx")
    rewritten = onnx.load_from_string(serialized)
    assert (counts.gelu, counts.affine_folded) == (1, 0)
    assert _ops(rewritten) == ["Gelu", "Conv"]
    np.testing.assert_allclose(_run(rewritten, x)[0], expected, rtol=1e-4, atol=1e-4)


def _affine(x: str, out: str, prefix: str) -> list[onnx.NodeProto]:
    return [
        _scalar(f"{prefix}_s", 1.7), _scalar(f"{prefix}_t", -0.4),
        helper.make_node("Mul", [f"{prefix}_s", x], [f"{prefix}_m"]),  # scale first, as PPLCNetV3 exports it
        helper.make_node("Add", [f"{prefix}_m", f"{prefix}_t"], [out]),
    ]


@pytest.mark.parametrize(("kernel", "pad", "folds_before"), [(1, 0, True), (3, 1, False)])
def test_affine_folds_into_convs_only_where_exact(kernel: int, pad: int, folds_before: bool) -> None:
    """Affine after a conv always folds; before one only for 1x1 unpadded kernels."""
    first, first_inits = _conv("a", "x", "a_out", 4, 3, 1)
    second, second_inits = _conv("b", "mid", "y", 4, kernel, pad)
    nodes = [first, *_affine("a_out", "h", "after"), helper.make_node("Relu", ["h"], ["r"]), *_affine("r", "mid", "before"), second]
    model = _model(nodes, first_inits + second_inits)
    x = RNG.normal(size=(1, 4, 6, 6)).astype(np.float32)
    expected = _run(model, x)[0]
    folded = fold_scalar_affine(model.graph)
    assert folded == (4 if folds_before else 2)
    assert _ops(model) == (["Conv", "Relu", "Conv"] if folds_before else ["Conv", "Relu", "Mul", "Add", "Conv"])
    read = {name for node in model.graph.node for name in node.input}
    assert all(tensor.name in read for tensor in model.graph.initializer), "the old weights were left behind"
    np.testing.assert_allclose(_run(model, x)[0], expected, rtol=1e-4, atol=1e-4)


def test_affine_stops_at_a_tensor_read_elsewhere() -> None:
    """The scale folds (the conv then writes its output), but the shift stays: its input is also a graph output."""
    conv, inits = _conv("a", "x", "a_out", 4, 1, 0)
    model = _model([conv, *_affine("a_out", "y", "after")], inits, outputs=("y", "after_m"))
    x = RNG.normal(size=(1, 4, 6, 6)).astype(np.float32)
    expected = _run(model, x)
    assert fold_scalar_affine(model.graph) == 1
    assert _ops(model) == ["Conv", "Add"]
    for got, want in zip(_run(model, x), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("models", ["ppocr-v4", "ppocr-v6-tiny"])
@pytest.mark.parametrize("stage", ["det", "rec"])
def test_ppocr_models_keep_their_outputs(models: str, stage: str) -> None:
    """The shipped models: their patterns found, fewer nodes, same outputs on a real-sized input."""
    path = getattr(model_set(models), stage)
    rewritten, counts = optimize_model(path)
    if models == "ppocr-v4":  # PPLCNetV3 backbones: hard-swish and learnable affine blocks
        assert counts.hard_swish > 10 and counts.affine_folded > 10
    else:  # PP-OCRv6 tiny: GELU activations
        assert counts.gelu >= 10
    original = onnx.load(str(path))
    assert len(onnx.load_from_string(rewritten).graph.node) < len(original.graph.node) * (0.7 if models == "ppocr-v4" else 0.9)
    shape = (1, 3, 96, 160) if stage == "det" else (1, 3, 48, 320)
    x = RNG.uniform(-1.0, 1.0, size=shape).astype(np.float32)
    sessions = [onnxruntime.InferenceSession(m, providers=["CPUExecutionProvider"]) for m in (original.SerializeToString(), rewritten)]
    name = sessions[0].get_inputs()[0].name
    before, after = (s.run(None, {name: x})[0] for s in sessions)
    np.testing.assert_allclose(after, before, atol=1e-4)
