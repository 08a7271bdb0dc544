"""CPU layout engine: PyMuPDF 2's layout analysis (pymupdf4llm + pymupdf-layout).

For pages with a text layer, the layout model classifies text-layer blocks into the
DOTS classes and the text comes straight from the PDF (exact, no OCR). For image-only
pages (scans, photos), RapidOCR first writes an invisible text layer into the one-page
PDF, with pymupdf4llm's own writer (``exec_ocr_full``), and the same layout analysis runs on it.

OCR is decided by us, not by pymupdf4llm's heuristic: its default also OCRs born-digital
pages that contain pictures with words, which turns the picture into text boxes. Here a
picture stays a Picture element and its words come from the picture-OCR stage. The engine
writes the OCR text layer itself before the layout call (pymupdf4llm's OCR hook would
first analyse the page for its own decision, and with ``force_ocr`` it kept an earlier OCR
layer instead of reading the page again).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from engines.base import CATEGORIES, Element, PageImage, PageLayout, clip_bbox
from engines.rapidocr_engine import RapidOCREngine, RapidOCROptions

_SILENT = logging.getLogger("pymupdf.messages")
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())
_CLASS_TO_CATEGORY = {c.lower(): c for c in CATEGORIES}
_BULLET = re.compile(r"^\s*[•·▪◦‣○●■□\-–—*]\s+")  # symbols only: list numbers are content


class PyMuPDFLayoutOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: OCR pages that have no text layer; always: also pages with text (an earlier OCR text"
        " layer is replaced); never: no OCR",
    )
    threads: int = Field(
        0, ge=0, description="ONNX intra-op threads of the layout models (0 = onnxruntime's default: all cores)"
    )
    html_tables: bool = Field(True, description="tables as HTML (else Markdown)")
    strip_list_bullets: bool = Field(True, description="drop the bullet symbol (not a number) that starts a list item")
    rapidocr: RapidOCROptions = Field(default_factory=RapidOCROptions, description="OCR settings for image-only pages")


class PyMuPDFLayoutEngine:
    name = "pymupdf"

    def __init__(self, options: PyMuPDFLayoutOptions | None = None):
        self.options = options or PyMuPDFLayoutOptions()
        # A plain ``import pymupdf`` builds the layout model's ONNX sessions, with onnxruntime's
        # default threads; the project's own modules import it without them
        # (``documents.pymupdf_import``), which also leaves pymupdf4llm's layout mode off.
        built_before = callable(getattr(sys.modules.get("pymupdf"), "_get_layout", None))
        with _onnx_threads(self.options.threads):
            import pymupdf
            import pymupdf4llm  # a first import of either builds the sessions here, pinned

            if not callable(pymupdf._get_layout):
                pymupdf4llm.use_layout(True)  # pymupdf4llm's own switch: builds them, pinned
            elif self.options.threads and built_before:
                # Built unpinned: rebuild them pinned (0.3 s); unpinned, they cost 12 %
                # more CPU per page on 2 cores.
                pymupdf4llm.use_layout(False)
                pymupdf4llm.use_layout(True)
        from pymupdf4llm.helpers import document_layout

        self._parse = document_layout.parse_document
        self._ocr: RapidOCREngine | None = None

    @property
    def ocr(self) -> RapidOCREngine:
        if self._ocr is None:  # built on first use: born-digital runs never load the OCR models
            self._ocr = RapidOCREngine(self.options.rapidocr)
        return self._ocr

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        return [self._layout_page(page) for page in pages]

    def _layout_page(self, page: PageImage) -> PageLayout:
        import pymupdf

        meta = page.meta
        if not meta.pdf_bytes:
            raise ValueError("the pymupdf layout engine needs the page's PDF bytes")
        needs_ocr = self.options.ocr == "always" or (self.options.ocr == "auto" and not meta.has_text_layer)
        doc = pymupdf.open(stream=meta.pdf_bytes, filetype="pdf")
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_pymupdf():  # pymupdf4llm prints progress notes
                if needs_ocr:
                    self._write_ocr_text_layer(doc[0], dpi=max(36, round(72 * meta.scale)))
                parsed = self._parse(doc, use_ocr=False, force_text=True, render_html_tables=self.options.html_tables)
        finally:
            doc.close()
        elements = [self._element(box, meta.scale, meta.width, meta.height) for box in parsed.pages[0].boxes]
        return PageLayout(elements=elements, info={"ocr": needs_ocr, "text_layer": meta.has_text_layer})

    def _write_ocr_text_layer(self, page, dpi: int) -> None:
        """Give ``page`` RapidOCR's text as an invisible text layer, replacing any earlier OCR text.

        Done here rather than through ``parse_document``'s OCR hook: with the hook,
        pymupdf4llm first analyses the whole page to decide on OCR (40 ms of a scanned
        page's 480), a decision this engine has already made. The layout that follows is
        the same: the hook would write the same layer with the same call.
        """
        from pymupdf4llm.ocr.exec_ocr_interface import exec_ocr_full

        exec_ocr_full(page, self.ocr.full_ocr, dpi=dpi, keep_ocr_text=False)

    def _element(self, box, scale: float, width: int, height: int) -> Element:
        category = _CLASS_TO_CATEGORY.get(box.boxclass, "Text")
        bbox = clip_bbox([box.x0 * scale, box.y0 * scale, box.x1 * scale, box.y1 * scale], width, height)
        if category == "Picture":
            text = ""
        elif category == "Table":
            table = box.table or {}
            text = (table.get("html") if self.options.html_tables else None) or table.get("markdown") or ""
        else:
            text = _lines_text(box.textlines or [])
            if category == "List-item" and self.options.strip_list_bullets:
                text = _BULLET.sub("", text, count=1)
        return Element(bbox=bbox, category=category, text=text.strip())


@contextlib.contextmanager
def _onnx_threads(threads: int):
    """Pin the ONNX sessions built in this block to ``threads`` threads, without spinning.

    pymupdf-layout builds its sessions when it is imported and offers no thread setting;
    left at onnxruntime's defaults, every actor's sessions use (and spin on) all cores,
    and actors pinned to one core each slow each other down. Sessions built before this
    block keep their threads; the engine rebuilds the layout model's inside it.
    """
    if not threads:
        yield
        return
    import onnxruntime

    original = onnxruntime.InferenceSession.__init__

    def init(session, path_or_bytes, sess_options=None, *args, **kwargs):
        sess_options = sess_options or onnxruntime.SessionOptions()
        sess_options.intra_op_num_threads = threads
        sess_options.inter_op_num_threads = 1
        sess_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        original(session, path_or_bytes, sess_options, *args, **kwargs)

    onnxruntime.InferenceSession.__init__ = init
    try:
        yield
    finally:
        onnxruntime.InferenceSession.__init__ = original


@contextlib.contextmanager
def _quiet_pymupdf():
    """pymupdf4llm reports "OCR on page ..." through pymupdf.message; keep job logs clean."""
    import pymupdf

    pymupdf.set_messages(text=None, fd=None, path=None, pylogging=True, pylogging_logger=_SILENT)
    try:
        yield
    finally:
        pymupdf.set_messages(fd=2)


def _lines_text(lines: list[dict]) -> str:
    """Join a box's lines into running text, undoing end-of-line hyphenation."""
    text = ""
    for line in lines:
        line_text = re.sub(r"\s+", " ", "".join(span["text"] for span in line["spans"])).strip()
        if not line_text:
            continue
        if text.endswith("-") and line_text[:1].islower():
            text = text[:-1] + line_text
        else:
            text = f"{text} {line_text}" if text else line_text
    return text
