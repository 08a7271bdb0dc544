"""The PyMuPDF layout engine's ONNX sessions are pinned to its threads, however pymupdf was imported.

A plain ``import pymupdf`` builds the layout model's sessions with onnxruntime's default
threads; the engine must then rebuild them pinned, or two one-thread actors each spin
threads on every core. The project's own modules import pymupdf without them
(``documents.pymupdf_import``): they are then built once, by the engine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import onnxruntime
import pymupdf  # noqa: F401 - a plain import first, on purpose: the sessions are built unpinned
import pytest

from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions


@pytest.fixture
def built(monkeypatch) -> list[int]:
    """The intra-op threads of every onnxruntime session built while the test runs (0: runtime default)."""
    threads: list[int] = []
    original = onnxruntime.InferenceSession.__init__

    def recording_init(session, path_or_bytes, sess_options=None, *args, **kwargs):
        threads.append(sess_options.intra_op_num_threads if sess_options is not None else 0)
        original(session, path_or_bytes, sess_options, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", recording_init)
    return threads


def test_layout_sessions_are_rebuilt_with_the_configured_threads(built):
    PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))
    assert built, "the layout model's sessions were not rebuilt"
    assert set(built) == {1}, f"sessions built with intra-op threads {built}"


_RENDER_THEN_LAYOUT = """
import json, sys
import onnxruntime

built = []
original = onnxruntime.InferenceSession.__init__
def recording_init(session, path_or_bytes, sess_options=None, *args, **kwargs):
    built.append(sess_options.intra_op_num_threads if sess_options is not None else 0)
    original(session, path_or_bytes, sess_options, *args, **kwargs)
onnxruntime.InferenceSession.__init__ = recording_init

from documents.pages import SplitLimits, split_pages  # as a split worker or an actor does first
import pymupdf
after_render_import = {"sessions": len(built), "activated": callable(pymupdf._get_layout),
                       "layout_module": "pymupdf.layout" in sys.modules}

from engines.base import PageImage, PageMeta
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
engine = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))
path = sys.argv[1]
_, _, pages = split_pages(open(path, "rb").read(), "pdf", SplitLimits())
page = next(pages)
meta = PageMeta(path, path, page.page_number, page.width, page.height, page.scale, page.pdf_bytes, page.has_text_layer)
(layout,) = engine.layout([PageImage(page.image(), meta)])
print(json.dumps({**after_render_import, "threads": built,
                  "categories": sorted({e.category for e in layout.elements})}))
"""


def test_rendering_modules_leave_the_layout_model_to_the_engine(samples_dir):
    """Importing the split stage's modules builds no layout sessions; the engine then builds them once, pinned, and they classify."""
    output = subprocess.run([sys.executable, "-c", _RENDER_THEN_LAYOUT, str(samples_dir / "report.pdf")],
                            check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    assert result["sessions"] == 0 and not result["activated"] and not result["layout_module"], result
    assert result["threads"] and set(result["threads"]) == {1}, f"layout sessions built with threads {result['threads']}"
    # Classes only the layout model gives (without it pymupdf4llm has no Table or Section-header).
    assert {"Section-header", "Table"} <= set(result["categories"]), result["categories"]


def test_default_threads_follow_the_cpus_ray_reserved(monkeypatch, built):
    """``threads: 0`` means the actor's reservation: Ray exports it as OMP_NUM_THREADS (0.75 CPU -> 1), and both the
    layout model's sessions and RapidOCR's get that many threads instead of one per core of the node."""
    from engines.rapidocr.engine import RapidOCREngine
    from engines.threads import inference_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert inference_threads(0) == 0 and inference_threads(3) == 3  # outside Ray: the runtime's default; set: as set
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert inference_threads(0) == 1 and inference_threads(2) == 2

    PyMuPDFLayoutEngine(PyMuPDFLayoutOptions())
    assert built and set(built) == {1}, f"layout sessions built with intra-op threads {built}"
    assert RapidOCREngine().threads == 1
