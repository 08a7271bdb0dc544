"""PyMuPDF imported without building its layout model, for processes that only open and render PDFs.

When the ``pymupdf-layout`` package is installed, ``import pymupdf`` imports
``pymupdf.layout``, which builds the layout model's ONNX sessions on the spot (the CPU time
and memory it costs are in docs/ocr-pipeline.md). Every process that imports PyMuPDF pays that: the driver, each
split and crop task worker and each picture-OCR actor, and again in every worker Ray
starts later. Only the PyMuPDF layout engine runs the model.

pymupdf also imports pymupdf4llm, which, finding no layout module, switches its layout
mode off; the layout engine switches it on with pymupdf4llm's own ``use_layout(True)``,
which imports ``pymupdf.layout`` and builds the model then, with the engine's threads.
"""

from __future__ import annotations

import sys
from types import ModuleType


def import_pymupdf() -> ModuleType:
    """``pymupdf``; if this is its first import, without building the layout model's sessions.

    pymupdf imports ``pymupdf.layout`` in a ``try``/``except ImportError``. A ``None`` in
    ``sys.modules`` makes that import raise ImportError; the entry is removed right after, so
    a later ``import pymupdf.layout`` imports and activates the model as usual.
    """
    if "pymupdf" not in sys.modules and "pymupdf.layout" not in sys.modules:
        sys.modules["pymupdf.layout"] = None  # type: ignore[assignment]
        try:
            import pymupdf
        finally:
            del sys.modules["pymupdf.layout"]
    import pymupdf

    return pymupdf
