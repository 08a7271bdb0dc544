"""An ONNX model on OpenVINO's CPU plugin, behind the part of onnxruntime's session API RapidOCR calls.

Why OpenVINO: on CPUs with native bf16 instructions (AVX512_BF16 or AMX) its CPU plugin
runs convolutions in bf16 by default, and onnxruntime has no bf16 path on x86: more
pages/s with the same text (``python -m bench.ocr_quality``; figures in docs/ocr-pipeline.md).
In f32 it is no faster than onnxruntime with the rewritten graphs, so the engine's
``runtime: auto`` takes OpenVINO only where it computes in bf16.

RapidOCR keeps its stages' pre- and post-processing and calls ``session.run(names, feed)``
through its own wrappers; ``RapidOCREngine`` swaps this class in as their ``session``.

A model output that is a sigmoid (the DB detector's probability map) is computed here in
numpy from the logits: with dynamic shapes OpenVINO runs that last sigmoid unfused on its
16-channel blocked layout, a sizeable share of the detector's time; without it the detector
is faster with the same values (within 1e-9; docs/ocr-pipeline.md).
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
    where onnxruntime with the rewritten graphs is as fast or faster (OpenVINO 0.89-0.99x measured).
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

    def __init__(self, model: str | Path | bytes, *, threads: int = 0, precision: Precision = "auto",
                 sigmoid_on_host: bool = True, copy_outputs: bool = True):
        core = openvino_core()
        config: dict[str, Any] = {"NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = precision
        model = core.read_model(model if isinstance(model, bytes) else str(model))  # a file or a serialized ONNX graph
        names = [port.get_any_name() for port in model.outputs]  # what callers ask for, cut or not
        model, cut = without_output_sigmoids(model) if sigmoid_on_host else (model, [False] * len(names))
        self._model = core.compile_model(model, "CPU", config)
        self._request = self._model.create_infer_request()
        self._inputs = {port.get_any_name(): port for port in self._model.inputs}
        self._outputs = dict(zip(names, self._model.outputs))
        #: Outputs whose sigmoid ``run`` applies in numpy.
        self.host_sigmoids = frozenset(name for name, was_cut in zip(names, cut) if was_cut)
        self.copy_outputs = copy_outputs

    @property
    def precision(self) -> str:
        """The precision OpenVINO runs at: "bf16" or "f32" (``auto`` resolved)."""
        return self._model.get_property("INFERENCE_PRECISION_HINT").to_string()

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """onnxruntime's ``run``: the named outputs (all when None), in that order.

        They are arrays of their own, as onnxruntime's are, unless ``copy_outputs`` is off:
        then they are views of the request's buffers, valid until the next ``run``. Callers
        that decode each output before the next call (RapidOCR's stages) save a copy: 2 MB
        per recognized line (6906 characters x 80 columns), 3% of a page's time.
        """
        results = self._request.infer({self._inputs[name]: value for name, value in feed.items()},
                                      share_inputs=True, share_outputs=True)
        outputs = []
        for name in output_names or list(self._outputs):
            value = results[self._outputs[name]]
            if name in self.host_sigmoids:
                value = sigmoid(value)  # a new array either way
            elif self.copy_outputs:
                value = value.copy()
            outputs.append(value)
        return outputs

    def get_inputs(self) -> list[Port]:
        return [Port(name) for name in self._inputs]

    def get_outputs(self) -> list[Port]:
        return [Port(name) for name in self._outputs]


def without_output_sigmoids(model: Any) -> tuple[Any, list[bool]]:
    """The OpenVINO model with each output that a ``Sigmoid`` makes replaced by its input; which were."""
    import openvino

    sources = [result.input_value(0) for result in model.get_results()]
    cut = [source.get_node().get_type_name() == "Sigmoid" for source in sources]
    if not any(cut):
        return model, cut
    outputs = [source.get_node().input_value(0) if was_cut else source for source, was_cut in zip(sources, cut)]
    return openvino.Model(outputs, model.get_parameters(), model.get_friendly_name()), cut


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """float32 logistic function in a new array; logits clipped to +-80, where float32's exp still fits."""
    out = np.clip(logits, -80.0, 80.0)
    np.negative(out, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)
