"""An ONNX model on OpenVINO's CPU plugin, behind the part of onnxruntime's session API RapidOCR calls.

Why OpenVINO: on CPUs with native bf16 instructions (AVX512_BF16 or AMX) its CPU plugin
runs convolutions in bf16 by default, and onnxruntime has no bf16 path on x86. For
PP-OCRv6 tiny that is 1.3x (scanned sample) to 1.5x (font sheet) the pages/s of
onnxruntime on one thread with the same text (``python -m bench.ocr_quality``); line boxes
move by 0.02 to 0.2 px on average. In f32 it is slower than onnxruntime with the rewritten
graphs (its dynamic-shape detector runs unfused), so the engine's ``runtime: auto`` takes
OpenVINO only where it computes in bf16.

RapidOCR keeps its stages' pre- and post-processing and calls ``session.run(names, feed)``
through its own wrappers; ``RapidOCREngine`` swaps this class in as their ``session``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

#: ``auto``: OpenVINO's own choice for the CPU (bf16 where native, else f32).
Precision = Literal["auto", "f32", "bf16"]


@dataclass(frozen=True)
class Port:
    """A model input or output, named as onnxruntime's ``NodeArg`` is (RapidOCR reads ``.name``)."""

    name: str


@cache
def openvino_core() -> Any:
    """One OpenVINO ``Core`` per process (it holds the plugins; building one per model is waste)."""
    try:
        import openvino
    except ImportError as error:
        raise ImportError(
            "rapidocr option runtime: openvino needs the openvino package (pip install openvino);"
            " or set runtime: onnxruntime"
        ) from error
    return openvino.Core()


def cpu_default_precision() -> str | None:
    """The precision OpenVINO computes in on this CPU by default ("bf16" or "f32"); None without openvino.

    OpenVINO picks bf16 only where the CPU has native bf16 instructions; elsewhere f32,
    where onnxruntime with the rewritten graphs is faster (0.89-0.95x the pages/s measured).
    """
    try:
        core = openvino_core()
    except ImportError:
        return None
    return core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()


class OpenVINOSession:
    """One compiled ONNX model and its infer request, synchronous, on the CPU.

    ``threads`` 0 leaves OpenVINO's default (all cores). Thread pinning is off: several
    OCR actors share a node, and each process pinning its threads would put them on the
    same cores.
    """

    def __init__(self, model_path: str | Path, *, threads: int = 0, precision: Precision = "auto"):
        core = openvino_core()
        config: dict[str, Any] = {"NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        self._model = core.compile_model(core.read_model(str(model_path)), "CPU", config)
        self._request = self._model.create_infer_request()
        self._inputs = {port.get_any_name(): port for port in self._model.inputs}
        self._outputs = {port.get_any_name(): port for port in self._model.outputs}

    @property
    def precision(self) -> str:
        """The precision OpenVINO runs at: "bf16" or "f32" (``auto`` resolved)."""
        return self._model.get_property("INFERENCE_PRECISION_HINT").to_string()

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """onnxruntime's ``run``: the named outputs (all when None), in that order, as arrays of their own."""
        results = self._request.infer({self._inputs[name]: value for name, value in feed.items()}, share_inputs=True)
        return [results[self._outputs[name]] for name in (output_names or list(self._outputs))]

    def get_inputs(self) -> list[Port]:
        return [Port(name) for name in self._inputs]

    def get_outputs(self) -> list[Port]:
        return [Port(name) for name in self._outputs]
