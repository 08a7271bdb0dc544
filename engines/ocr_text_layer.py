"""An image-only page's OCR lines written into it as a text layer, the way pymupdf4llm writes its own.

The layout analysis (``pymupdf4llm.parse_document``) reads a page's text layer, so a
scanned page gets its OCR text written into it first. pymupdf4llm's writer
(``exec_ocr_full``) renders the page again, counts its colours to tell a blank page,
extracts its text to find earlier OCR text, and then adds every line with its own
``page.insert_text``, each of which rewrites the page's content stream and re-counts its
graphics state: about half a second on a dense page. On a page that is only an image
none of that is needed: the page image is already rendered, there is no text to keep
or remove, and all lines go into one ``Shape``, committed once (the same operators).

The layer is the one pymupdf4llm writes, so the layout model sees what it sees there:
each line in pymupdf4llm's OCR font (Droid Sans Fallback, which covers CJK), its font
size the line box's height, its baseline a fifth of that above the box's bottom, and
stretched horizontally to the box's width. Pages that have text (``ocr: always`` on a
born-digital page) still go through ``exec_ocr_full``, which OCRs only what is not text.
"""

from __future__ import annotations

from functools import cache
from typing import Sequence

import numpy as np

from engines.rapidocr.engine import TextLine

#: The font's resource name on the page (pymupdf4llm's, so either writer's layer reads the same).
FONT_NAME = "myfont"


@cache
def _font():
    """pymupdf4llm's OCR font: MuPDF's built-in Droid Sans Fallback (Latin and CJK)."""
    import pymupdf

    return pymupdf.Font("cjk")


class _Advances(dict):
    """Advance width of each character at font size 1, measured once per character."""

    def __missing__(self, character: str) -> float:
        self[character] = width = _font().text_length(character, fontsize=1)
        return width


_ADVANCES = _Advances()


def text_width(text: str, fontsize: float) -> float:
    """``Font.text_length`` of ``text`` in the OCR font: the sum of its characters' advances."""
    return fontsize * sum(_ADVANCES[character] for character in text)


def page_dpi(scale: float) -> int:
    """The whole dpi a page of ``scale`` pixels per point was rendered at (the job's split renders at its ``dpi``;
    ``scale``, the rendered width over the page's, is that rounded)."""
    return max(36, round(72 * scale))


def render_page(page, scale: float) -> np.ndarray:
    """The page as RGB pixels at ``page_dpi(scale)``, as the job's split renders it."""
    import pymupdf

    pix = page.get_pixmap(dpi=page_dpi(scale), colorspace=pymupdf.csRGB, alpha=False)
    return np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, 3)


def write_lines(page, lines: Sequence[TextLine], image_size: tuple[int, int]) -> int:
    """Write ``lines`` (quads in the pixels of an ``image_size`` = (width, height) rendering of ``page``)
    into ``page``'s text layer; how many were written (blank lines are not)."""
    import pymupdf

    lines = [line for line in lines if line.text.strip()]
    if not lines:
        return 0
    to_page = pymupdf.Rect(0, 0, *image_size).torect(page.rect)
    page.insert_font(fontname=FONT_NAME, fontbuffer=_font().buffer)
    shape = page.new_shape()
    for line in lines:
        xs, ys = [x for x, _ in line.quad], [y for _, y in line.quad]
        rect = pymupdf.Rect(min(xs), min(ys), max(xs), max(ys)) * to_page
        fontsize = rect.height
        width = text_width(line.text, fontsize)
        stretch = pymupdf.Matrix(rect.width / width, 1) if width > 0 else pymupdf.Identity
        shape.insert_text(rect.bl + (0, -0.2 * fontsize), line.text, fontsize=fontsize, fontname=FONT_NAME,
                          morph=(rect.bl, stretch))
    shape.commit()
    return len(lines)
