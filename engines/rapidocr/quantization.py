"""The recognizer in int8: its convolutions and matrix products quantized after training, built once per machine.

Why: recognition is the largest share of a scanned page's time (0.6 of 1.3 s on a dense
page, one thread), and 58-65 % of the recognizer's time is its 1x1 convolutions. On
CPUs with VNNI (AVX512_VNNI, AVX_VNNI, AMX) int8 products are twice as dense as bf16's;
the recognizer reads the corpus' lines about 1.6x faster on OpenVINO (and 1.35x on
onnxruntime) with the same CER (figures in docs/benchmarks.md).

How, with the ecosystem's own pieces (``onnxruntime.quantization``, plain ``onnx``):

* **Static post-training quantization, QDQ format**, of ``Conv``, ``MatMul`` and ``Gemm``
  only: weights per output channel, symmetric int8; the elementwise ops, the softmax and
  the normalisations stay in float. Quantizing every op put requantize and convert
  nodes between them (OpenVINO ran those in reference kernels: slower than bf16).
* **Activations as each runtime wants them**: OpenVINO's CPU plugin fuses symmetric int8
  activations into its int8 kernels (with asymmetric uint8 it inserted subtractions
  and ran 0.87x of bf16); onnxruntime's int8 kernels are uint8 x int8, so asymmetric uint8.
* **Calibration on lines rendered here**, never on the user's pages: sentences in the
  base-14 fonts (regular, bold, italic), digits and punctuation, and CJK lines in the
  CJK font built into PyMuPDF, at 150 to 300 dpi with a scan's blur and noise, cut as
  the detector cuts lines and scaled as ``engines.rapidocr.recognition`` feeds them. The
  ranges are their minimum and maximum.
* **Opset 13** first: per-channel ``QuantizeLinear`` needs it, and PP-OCR exports are 11.
* **Built once per machine, cached** (``cache_dir``, by default ``~/.cache/docvlm/rapidocr``),
  named by a hash of the float model, the scheme and ``CALIBRATION_VERSION``: the
  calibration takes a few seconds, which every actor would otherwise pay at start. The
  file is written under a temporary name and renamed, so actors of one node that build
  it at once never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import onnx

from engines.rapidocr.recognition import line_tensor, padded_width

#: Raise when the calibration lines or the scheme change: cached models are then built anew.
CALIBRATION_VERSION = 1
Activations = Literal["symmetric", "asymmetric"]

_SENTENCES = (
    "The quick brown fox jumps over the lazy dog, then rests.",
    "Results in Table 3 (p < 0.05) hold for 1,024 samples; see Section 4.2.",
    "Invoice No. 2024-117: total $3,456.78 due on 12/31/2025 [net 30].",
    "Élan, naïve façade, Größe, señor, déjà vu: accents & ligatures 'quoted'.",
    "http://example.org/path?id=42 #tag @user {x: y} 50% off = 3 * 7 - 1",
    "CHAPTER ONE - AN INTRODUCTION TO THE HYDROLOGY OF RIVER BASINS",
)
_CJK_SENTENCES = ("文档识别的结果与原文一致，共计二十页。", "表格中的数字为2024年的测量值（单位：毫米）。")
_FONTS = ("helv", "hebo", "tiro", "tibo", "tiit", "cour")
_DPIS = (150, 200, 300)


def calibration_lines(seed: int = 0) -> list[np.ndarray]:
    """Text-line crops (BGR uint8) as a scanned page's detector would cut them, rendered with PyMuPDF."""
    import cv2
    import pymupdf

    rng = np.random.default_rng(seed)
    lines = []
    texts = [(font, text) for font in _FONTS for text in _SENTENCES] + [("china-s", text) for text in _CJK_SENTENCES]
    for number, (font, text) in enumerate(texts):
        dpi = _DPIS[number % len(_DPIS)]
        document = pymupdf.open()
        page = document.new_page(width=620, height=40)
        page.insert_text((8, 26), text, fontname=font, fontsize=10 + number % 3)
        pixels = page.get_pixmap(dpi=dpi)
        document.close()
        image = np.frombuffer(pixels.samples, dtype=np.uint8).reshape(pixels.height, pixels.width, pixels.n)[:, :, :3]
        ink_rows, ink_columns = np.nonzero(image.min(axis=2) < 160)
        margin = max(2, int(0.25 * (ink_rows.max() - ink_rows.min())))  # DB's unclip leaves about this much
        top, bottom = max(0, ink_rows.min() - margin), ink_rows.max() + margin + 1
        left, right = max(0, ink_columns.min() - margin), ink_columns.max() + margin + 1
        crop = cv2.GaussianBlur(image[top:bottom, left:right].astype(np.float32), (3, 3), 0.6)
        crop += rng.normal(0.0, 6.0, crop.shape) - rng.uniform(0.0, 24.0)  # scanner noise, greyer paper
        lines.append(np.clip(crop, 0, 255).astype(np.uint8)[:, :, ::-1].copy())
    return lines


def calibration_batches(lines: Sequence[np.ndarray], model_height: int = 48, min_width: int = 160,
                        width_buckets: int = 8, batch: int = 4) -> Iterator[np.ndarray]:
    """The lines as the engine feeds them to the recognizer: rounded widths, up to ``batch`` lines of one width."""
    widths = [padded_width(line.shape[0], line.shape[1], model_height, min_width, width_buckets) for line in lines]
    by_width: dict[int, list[np.ndarray]] = {}
    for line, width in zip(lines, widths):
        by_width.setdefault(width, []).append(line_tensor(line, model_height, min_width, width))
    for tensors in by_width.values():
        for start in range(0, len(tensors), batch):
            yield np.stack(tensors[start : start + batch])


def default_cache_dir() -> Path:
    """``$DOCVLM_CACHE/rapidocr``, else ``$XDG_CACHE_HOME/docvlm/rapidocr``, else ``~/.cache/docvlm/rapidocr``."""
    root = os.environ.get("DOCVLM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "docvlm"
    return Path(root) / "rapidocr"


def int8_recognizer(model: str | Path | bytes, activations: Activations, *, model_height: int = 48,
                    min_width: int = 160, cache_dir: Path | None = None) -> bytes:
    """The recognizer ``model`` (a file or a serialized graph) quantized to int8, serialized; built or read from the cache."""
    source = model if isinstance(model, bytes) else Path(model).read_bytes()
    key = hashlib.sha256(source + f"|{activations}|{model_height}|{min_width}|{CALIBRATION_VERSION}".encode()).hexdigest()
    folder = cache_dir or default_cache_dir()
    cached = folder / f"rec-int8-{key[:24]}.onnx"
    if cached.is_file():
        return cached.read_bytes()
    try:
        quantized = _quantize(source, activations, model_height, min_width)
    except Exception as error:  # onnx and onnxruntime raise their own types; name the option and the model
        where = "the recognizer graph" if isinstance(model, bytes) else str(model)
        raise ValueError(f"rapidocr option rec_int8: cannot quantize {where}: {error}") from error
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
            part.write(quantized)
        os.replace(part.name, cached)
    except OSError:  # a read-only home: the model is still used, built again next time
        pass
    return quantized


def _quantize(source: bytes, activations: Activations, model_height: int, min_width: int) -> bytes:
    """``source`` at opset 13 or later, statically quantized (QDQ) on ``calibration_lines``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load_from_string(source)
    if _default_opset(model) < 13:
        model = onnx.version_converter.convert_version(model, 13)
    input_name = model.graph.input[0].name
    batches = list(calibration_batches(calibration_lines(), model_height, min_width))

    class Lines(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    symmetric = activations == "symmetric"
    with tempfile.TemporaryDirectory() as scratch:
        prepared, target = Path(scratch) / "rec-prepared.onnx", Path(scratch) / "rec-int8.onnx"
        quant_pre_process(model, prepared, skip_symbolic_shape=True)  # batch norms folded into their convolutions
        quantize_static(
            prepared, target, Lines(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        )
        return target.read_bytes()


def _default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)
