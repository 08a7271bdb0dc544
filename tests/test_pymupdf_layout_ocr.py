"""The PyMuPDF layout engine's OCR pages: the engine writes RapidOCR's text layer itself, then
lays the page out, so what its ``ocr`` option decides is what happens."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from documents.pages import SplitLimits, split_pages
from engines.base import PageImage, PageMeta
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
from samples.generate import TITLE

STALE = "ZQXW stale words"


def _first_page(pdf: bytes, name: str) -> PageImage:
    _, _, rendered = split_pages(pdf, "pdf", SplitLimits())
    page = next(iter(rendered))
    meta = PageMeta(name, name, page.page_number, page.width, page.height, page.scale, page.pdf_bytes,
                    page.has_text_layer)
    return PageImage(page.image(), meta)


def _with_stale_ocr_layer(scanned: Path) -> bytes:
    """The scanned page with an earlier tool's invisible OCR text on it (render mode 3), all wrong."""
    doc = pymupdf.open(scanned)
    doc[0].insert_text((72, 72), STALE, fontsize=11, render_mode=3)
    return doc.tobytes()


def _text(layout) -> str:
    return " ".join(element.text for element in layout.elements)


@pytest.fixture(scope="module")
def engine() -> PyMuPDFLayoutEngine:
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(ocr="always", threads=1))


def test_an_image_only_page_is_read_through_ocr(engine: PyMuPDFLayoutEngine, samples_dir: Path) -> None:
    page = _first_page((samples_dir / "report_scanned.pdf").read_bytes(), "report_scanned.pdf")
    assert not page.meta.has_text_layer
    layout = engine.layout([page])[0]
    assert layout.info["ocr"] and TITLE in _text(layout)
    assert {"Section-header", "Table"} <= {element.category for element in layout.elements}


def test_ocr_always_replaces_an_earlier_ocr_layer(engine: PyMuPDFLayoutEngine, samples_dir: Path) -> None:
    page = _first_page(_with_stale_ocr_layer(samples_dir / "report_scanned.pdf"), "restamped.pdf")
    assert page.meta.has_text_layer  # the stale words count as a text layer
    text = _text(engine.layout([page])[0])
    assert TITLE in text and "ZQXW" not in text


def test_ocr_auto_keeps_a_page_s_own_text_layer(samples_dir: Path) -> None:
    auto = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(ocr="auto", threads=1))
    layout = auto.layout([_first_page(_with_stale_ocr_layer(samples_dir / "report_scanned.pdf"), "restamped.pdf")])[0]
    assert not layout.info["ocr"] and "ZQXW" in _text(layout)  # auto trusts an existing text layer
