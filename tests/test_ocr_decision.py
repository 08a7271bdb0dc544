"""Pages whose text layer is not their text are read through OCR (``engines/ocr_decision.py``, ``ocr: auto``).

Through the real engine: a scan with an archive's download footer stamped on it as text,
a text layer whose font lost its Unicode map (MuPDF reads its glyph numbers: "UIF" for "the"),
one where only some lines lost it; and the pages that must keep their text layer: a
born-digital page with a drawn figure, the sample report with its raster picture, and a
scan under an earlier tool's invisible OCR layer.
"""

from __future__ import annotations

import pymupdf
import pytest

from bench.scoring import elements_text, normalize, word_recall
from engines.ocr_decision import text_blocks, text_layer_falls_short
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
from tests.test_text_layer import _pages, _positions, _scanned, two_column_page_with_a_figure

FOOTER = "This content downloaded from 192.0.2.7 on Mon, 07 Dec 2026 10:15:02 UTC"
LINE = "Line {}: the gauging station measured river discharge every fifteen minutes."


@pytest.fixture(scope="module")
def engine() -> PyMuPDFLayoutEngine:
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))


def _stamped(pdf: bytes) -> bytes:
    """``pdf`` with ``FOOTER`` written as text at the foot of every page, as journal archives stamp their scans."""
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        for page in doc:
            page.insert_text((60, page.rect.height - 20), FOOTER, fontsize=7)
        return doc.tobytes()


def _lines_without_unicode_map(every: int) -> tuple[bytes, str]:
    """A page of ``LINE``s, every ``every``-th one in an embedded font whose ToUnicode map is removed (the others in
    Helvetica, which MuPDF maps by name); the PDF and its text as printed."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_font(fontname="embedded", fontbuffer=pymupdf.Font("cjk").buffer)
    lines = [LINE.format(number) for number in range(24)]
    for number, line in enumerate(lines):
        page.insert_text((60, 80 + 26 * number), line, fontsize=11, fontname="embedded" if number % every == 0 else "helv")
    for xref in range(1, doc.xref_length()):
        if doc.xref_get_key(xref, "ToUnicode")[0] == "xref":
            doc.xref_set_key(xref, "ToUnicode", "null")
    return doc.tobytes(), "\n".join(lines)


def test_a_scan_with_a_stamped_footer_is_read_as_a_scan(engine: PyMuPDFLayoutEngine) -> None:
    pdf = two_column_page_with_a_figure()
    page = _pages(_stamped(_scanned(pdf)))[0]
    assert page.meta.has_text_layer  # the footer's words
    layout = engine.layout([page])[0]
    assert layout.info["ocr"] and layout.info["ocr_reason"] == "scan"
    text = elements_text(layout.elements)
    with pymupdf.open(stream=pdf, filetype="pdf") as born:
        assert word_recall([text], [born[0].get_text()]) > 0.97  # the page's words, not only the footer's
    positions = _positions(text)
    assert -1 not in positions and positions[:5] == sorted(positions[:5])  # columns in order, the figure's caption in its place
    assert normalize(text).count("downloaded from") == 1  # the footer once: from the pixels, its text layer set aside
    assert layout.elements[-1].category == "Page-footer" and "downloaded" in layout.elements[-1].text


def test_a_text_layer_without_unicode_map_is_read_through_ocr(engine: PyMuPDFLayoutEngine) -> None:
    pdf, printed = _lines_without_unicode_map(every=1)
    page = _pages(pdf)[0]
    garbled = page_text(pdf)  # what the text layer says: glyph numbers as characters ("UIF" for "the")
    assert garbled.strip() and word_recall([garbled], [printed]) < 0.1
    layout = engine.layout([page])[0]
    assert layout.info["ocr_reason"] == "unreadable text"
    text = elements_text(layout.elements)
    assert word_recall([text], [printed]) > 0.97 and not any(ord(character) < 32 for character in text)


def test_legible_lines_are_kept_and_the_others_read(engine: PyMuPDFLayoutEngine) -> None:
    pdf, printed = _lines_without_unicode_map(every=2)
    layout = engine.layout(_pages(pdf))[0]
    assert layout.info["ocr_reason"] == "partly unreadable text"
    text = elements_text(layout.elements)
    assert word_recall([text], [printed]) > 0.97 and not any(ord(character) < 32 for character in text)  # glyph numbers gone


def page_text(pdf: bytes) -> str:
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        return doc[0].get_text()


def test_born_digital_pages_and_earlier_ocr_layers_keep_their_text(engine: PyMuPDFLayoutEngine, samples_dir) -> None:
    born_digital = two_column_page_with_a_figure()
    with pymupdf.open(stream=_scanned(born_digital), filetype="pdf") as doc, pymupdf.open(stream=born_digital) as born:
        for line in (line for block in born[0].get_text("dict")["blocks"] for line in block.get("lines", ())):
            for span in line["spans"]:  # the page's words where they are printed, invisible, as OCR tools write them
                doc[0].insert_text(span["origin"], span["text"], fontsize=span["size"], render_mode=3)
        doc[0].insert_text((60, 40), "ZQXW earlier OCR words", fontsize=11, render_mode=3)
        earlier_ocr = doc.tobytes()
    earlier_ocr_and_footer = _stamped(earlier_ocr)  # as archives serve scans: their OCR layer and a visible footer
    with pymupdf.open(stream=born_digital) as doc:  # a slide's text over a full-page background picture
        page = doc[0]
        background = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 400, 560), False)
        background.set_rect(background.irect, (235, 240, 250))
        background.set_rect(pymupdf.IRect(0, 0, 400, 60), (40, 60, 120))  # a title band
        page.insert_image(page.rect, pixmap=background, overlay=False)
        over_background = doc.tobytes()
    for pdf in (born_digital, (samples_dir / "report.pdf").read_bytes(), earlier_ocr, earlier_ocr_and_footer, over_background):
        with pymupdf.open(stream=pdf, filetype="pdf") as doc:
            assert text_layer_falls_short(doc[0], text_blocks(doc[0])) is None
    layouts = engine.layout(_pages((samples_dir / "report.pdf").read_bytes()))  # a raster picture on page 2
    assert not any(layout.info["ocr"] for layout in layouts)
    assert "Picture" in {element.category for element in layouts[1].elements}
    layout = engine.layout(_pages(earlier_ocr))[0]
    assert not layout.info["ocr"] and "ZQXW" in elements_text(layout.elements)
