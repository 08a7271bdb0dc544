"""The int8 recognizer (``engines.rapidocr.quantization``): what is quantized, the cache, and the text it reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pymupdf
import pytest
from onnx import numpy_helper
from rapidfuzz.distance import Levenshtein

from engines.rapidocr import quantization
from engines.rapidocr.charsets import is_east_asian
from engines.rapidocr.engine import RapidOCREngine
from engines.rapidocr.options import RapidOCROptions
from engines.rapidocr.ppocr_models import model_set
from engines.rapidocr.quantization import calibration_batches, calibration_lines, int8_recognizer
from samples.generate import TITLE, generate


@pytest.fixture(scope="module")
def sample_page(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    pixmap = pymupdf.Pixmap(str(generate(tmp_path_factory.mktemp("int8_samples"))["png"]))
    return np.frombuffer(pixmap.samples, np.uint8).reshape(pixmap.height, pixmap.width, pixmap.n)[:, :, :3].copy()


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in model.graph.node for name in node.output}


@pytest.mark.parametrize("activations, activation_type", [("symmetric", np.int8), ("asymmetric", np.uint8)])
def test_every_convolution_and_matmul_reads_int8_weights_and_activations(
        activations: quantization.Activations, activation_type: type, tmp_path: Path) -> None:
    model = onnx.load_from_string(int8_recognizer(model_set("ppocr-v6-tiny").rec, activations, cache_dir=tmp_path))
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    producers = _producers(model)
    quantized = [node for node in model.graph.node if node.op_type in ("Conv", "MatMul")]
    assert len(quantized) > 30
    for node in quantized:
        data, weight = (producers.get(name) for name in node.input[:2])
        assert data is not None and data.op_type == "DequantizeLinear", node.name
        assert weight is not None and weight.op_type == "DequantizeLinear", node.name
        assert initializers[weight.input[0]].dtype == np.int8, node.name  # per-channel int8 weights
        assert not initializers[weight.input[2]].any(), node.name  # symmetric: zero points 0
        activation_zero = initializers[data.input[2]]
        assert activation_zero.dtype == activation_type, node.name
        if activations == "symmetric":
            assert not activation_zero.any(), node.name
    softmax = producers[model.graph.output[0].name]
    assert softmax.op_type == "Softmax"  # the output stays a float softmax: RapidOCR's decoder reads probabilities
    assert max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 13


def test_built_once_then_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = model_set("ppocr-v6-tiny").rec
    built = int8_recognizer(source, "symmetric", cache_dir=tmp_path)
    assert [path.suffix for path in tmp_path.iterdir()] == [".onnx"]  # no half-written part left behind

    def must_not_build(*args, **kwargs):
        raise AssertionError("built again although cached")

    monkeypatch.setattr(quantization, "_quantize", must_not_build)
    assert int8_recognizer(source, "symmetric", cache_dir=tmp_path) == built
    with pytest.raises(ValueError, match="built again"):  # another scheme is another model
        int8_recognizer(source, "asymmetric", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="built again"):  # so is another float model (a cut output layer, say)
        int8_recognizer(Path(source).read_bytes() + b" ", "symmetric", cache_dir=tmp_path)


def test_an_unwritable_cache_still_gives_the_model(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    model = onnx.load_from_string(int8_recognizer(model_set("ppocr-v6-tiny").rec, "symmetric", cache_dir=blocked))
    assert any(node.op_type == "DequantizeLinear" for node in model.graph.node)


def test_a_model_that_cannot_be_quantized_names_the_option(tmp_path: Path) -> None:
    broken = tmp_path / "rec.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(ValueError, match=r"rapidocr option rec_int8: cannot quantize .*rec\.onnx"):
        int8_recognizer(broken, "symmetric", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCVLM_CACHE", str(tmp_path))
    assert quantization.default_cache_dir() == tmp_path / "rapidocr"
    monkeypatch.delenv("DOCVLM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert quantization.default_cache_dir() == tmp_path / "xdg" / "docvlm" / "rapidocr"


def test_calibration_lines_look_like_detected_lines() -> None:
    lines = calibration_lines()
    assert len(lines) >= 30 and all(line.ndim == 3 and line.shape[2] == 3 and line.dtype == np.uint8 for line in lines)
    assert all(4 < line.shape[1] / line.shape[0] < 60 for line in lines)  # one line each, cut close
    assert all((line.min(axis=2) < 100).mean() > 0.02 for line in lines)  # ink on every one
    assert all(np.median(line) > 150 for line in lines)  # on paper
    assert np.array_equal(lines[0], calibration_lines()[0])  # the same lines on every machine
    batches = list(calibration_batches(lines))
    assert sum(len(batch) for batch in batches) == len(lines)
    assert all(batch.shape[1:3] == (3, 48) and batch.shape[0] <= 4 for batch in batches)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_the_int8_engine_reads_the_sample_page_as_the_float_one(
        runtime: str, sample_page: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCVLM_CACHE", str(tmp_path))
    float_lines = RapidOCREngine(RapidOCROptions(runtime=runtime)).read_lines(sample_page)
    int8 = RapidOCREngine(RapidOCROptions(runtime=runtime, rec_int8=True))
    assert len(list((tmp_path / "rapidocr").glob("rec-int8-*.onnx"))) == 1
    int8_lines = int8.read_lines(sample_page)
    texts = [line.text for line in int8_lines]
    assert TITLE in texts
    float_text, int8_text = "\n".join(line.text for line in float_lines), "\n".join(texts)
    assert Levenshtein.distance(float_text, int8_text) <= 0.02 * len(float_text)
    assert not any(is_east_asian(character) for character in int8_text)
