"""The layout engine's text is the page's text layer, in reading order, on born-digital pages and their scans.

Real pages through the real engine (``PyMuPDFLayoutEngine``): a page whose words are placed
by position without space characters (as pdfTeX writes them), a two-column page with a
figure in its left column (born-digital and its image-only twin, read through OCR), and,
where pdfTeX is installed, a two-column LaTeX paper of the corpus (ligatures, hyphenation,
floats, footnotes, running headers) against its own text layer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pymupdf
import pytest

from bench.scoring import cer, elements_text, normalize, word_recall
from documents.pages import SplitLimits, split_pages
from engines.base import PageImage, PageMeta
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
from engines.text_layer import Word, column_text, join_lines, segments, split_columns

LEFT_TOP = "Discharge was measured every fifteen minutes at the gauging station below the confluence. " * 3
LEFT_BOTTOM = "Groundwater levels in the observation wells responded within two days to heavy rainfall. " * 4
RIGHT_TOP = "Evaporation from the open water surface was estimated with the Penman equation. " * 4
RIGHT_BOTTOM = "Several tributaries dry out completely in late summer, leaving isolated pools behind. " * 4
CAPTION = "Figure 1: Sediment cores taken from the reservoir floor."


def _pages(pdf: bytes, name: str = "page.pdf") -> list[PageImage]:
    _, _, rendered = split_pages(pdf, "pdf", SplitLimits(dpi=150))
    return [PageImage(page.image(), PageMeta(name, name, page.page_number, page.width, page.height, page.scale,
                                             page.pdf_bytes, page.has_text_layer)) for page in rendered]


def _scanned(pdf: bytes, dpi: int = 150) -> bytes:
    """The pages of ``pdf`` as an image-only PDF (a scan without a text layer)."""
    with pymupdf.open(stream=pdf, filetype="pdf") as source, pymupdf.open() as out:
        for page in source:
            pixmap = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
            out.new_page(width=page.rect.width, height=page.rect.height).insert_image(page.rect, stream=pixmap.tobytes("png"))
        return out.tobytes()


@pytest.fixture(scope="module")
def engine() -> PyMuPDFLayoutEngine:
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))


def positional_words_pdf() -> bytes:
    """Three lines of words each placed at its own position, no space characters (pdfTeX's way)."""
    doc = pymupdf.open()
    page = doc.new_page()
    font = pymupdf.Font("tiro")
    lines = ["This manual is for GNU Libtasn1 (version 4.19.0, 18 August 2022), which is a library for",
             "Abstract Syntax Notation One (ASN.1) and Distinguished Encoding Rules (DER) manipulation.",
             "Every word here is drawn on its own, as TeX places words on a line."]
    for row, line in enumerate(lines):
        x = 72.0
        for word in line.split(" "):
            page.insert_text((x, 100 + 16 * row), word, fontname="tiro", fontsize=11)
            x += font.text_length(word, 11) + 3.2  # a word space's advance, but no space glyph
    return doc.tobytes()


def test_words_placed_by_position_keep_their_spaces(engine: PyMuPDFLayoutEngine) -> None:
    pdf = positional_words_pdf()
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        raw = doc[0].get_text(flags=pymupdf.TEXT_INHIBIT_SPACES)
        reference = doc[0].get_text()
    assert " " not in raw.strip()  # the PDF itself has no space characters
    text = elements_text(engine.layout(_pages(pdf))[0].elements)
    assert "This manual is for GNU Libtasn1 (version 4.19.0, 18 August 2022), which is a library for" in text
    assert normalize(text) == normalize(reference)


def two_column_page_with_a_figure() -> bytes:
    """A two-column page: a figure (drawn, with a caption) between two paragraphs of the left column."""
    doc = pymupdf.open()
    page = doc.new_page()  # 595 x 842
    left, right = (57, 292), (303, 538)
    page.insert_textbox(pymupdf.Rect(left[0], 60, left[1], 250), LEFT_TOP, fontname="tiro", fontsize=10, align=3)
    page.draw_rect(pymupdf.Rect(90, 262, 260, 372), color=(0, 0, 0), fill=(0.6, 0.6, 0.6))
    page.draw_rect(pymupdf.Rect(110, 300, 150, 372), color=(0, 0, 0), fill=(0.2, 0.2, 0.2))
    page.insert_textbox(pymupdf.Rect(left[0], 380, left[1], 410), CAPTION, fontname="tiro", fontsize=9, align=1)
    page.insert_textbox(pymupdf.Rect(left[0], 420, left[1], 700), LEFT_BOTTOM, fontname="tiro", fontsize=10, align=3)
    page.insert_textbox(pymupdf.Rect(right[0], 60, right[1], 350), RIGHT_TOP, fontname="tiro", fontsize=10, align=3)
    page.insert_textbox(pymupdf.Rect(right[0], 360, right[1], 700), RIGHT_BOTTOM, fontname="tiro", fontsize=10, align=3)
    return doc.tobytes()


def _positions(text: str) -> list[int]:
    flat = normalize(text)
    marks = [LEFT_TOP, CAPTION, LEFT_BOTTOM, RIGHT_TOP, RIGHT_BOTTOM]
    return [flat.find(normalize(mark)[:40]) for mark in marks] + [flat.rfind(normalize(mark)[-40:]) for mark in marks]


@pytest.mark.parametrize("scanned", [False, True], ids=["born-digital", "scanned"])
def test_a_figure_does_not_split_its_column(engine: PyMuPDFLayoutEngine, scanned: bool) -> None:
    pdf = two_column_page_with_a_figure()
    pages = _pages(_scanned(pdf) if scanned else pdf)
    layout = engine.layout(pages)[0]
    assert layout.info["ocr"] == scanned
    text = elements_text(layout.elements)
    starts, ends = _positions(text)[:5], _positions(text)[5:]
    assert min(starts) >= 0 and min(ends) >= 0, text  # every part read
    # left column above the figure, caption, left column below, right column top, right column bottom
    assert starts == sorted(starts) and ends == sorted(ends), text
    assert all(end < start for end, start in zip(ends, starts[1:])), text  # no part interleaved with the next


def test_segments_cut_a_line_at_a_gutter_but_not_at_a_wide_word_space() -> None:
    """A MuPDF line joining both columns (an OCR layer's) is cut where the lines around leave the gap blank."""
    def word(x0: float, x1: float, row: int, text: str, block: int = 0) -> Word:
        return Word(x0, 100 + 12 * row, x1, 110 + 12 * row, text, block, row, 0)

    words = [word(57, 150, 0, "left"), word(158, 292, 0, "text"), word(302, 420, 0, "right"), word(424, 538, 0, "side")]
    words += [word(57, 292, r, "column") for r in (1, 2)] + [word(302, 538, r, "column") for r in (1, 2)]
    assert [[words[i].text for i in run] for run in segments(words)][0] == ["left", "text"]  # 10 pt gutter: cut
    # a wide word space (8 pt) of a justified line: the next lines run through it, not cut
    words[2] = word(300, 420, 0, "right")
    words[4:] = [word(57, 538, r, "full width") for r in (1, 2)]
    assert [[w.text for w in (words[i] for i in run)] for run in segments(words)][0] == ["left", "text", "right", "side"]


def test_line_end_hyphens_are_undone_before_lower_case_only() -> None:
    assert join_lines(["the ex-", "periment ran", "well-", "Known names", "from 1990-", "present"]) == \
        "the experiment ran well- Known names from 1990- present"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (texlive-latex-*)")
def test_a_latex_two_column_paper_is_its_text_layer(engine: PyMuPDFLayoutEngine, tmp_path: Path) -> None:
    """pdfTeX's output (positional spaces, ligatures, hyphenation, floats in both columns, a footnote, running
    headers): born-digital text within 1 % CER of MuPDF's own; its scan read in the same order (OCR errors only)."""
    from samples.corpus.build import SMALL, SPECS, build_pdf

    pdf = build_pdf(next(spec for spec in SPECS if spec.name == SMALL), tmp_path).read_bytes()
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        references = [page.get_text() for page in doc]
    born = [elements_text(layout.elements) for layout in engine.layout(_pages(pdf))]
    assert cer(born, references)[0] < 0.01 and word_recall(born, references) >= 0.99
    assert not any(ligature in text for text in born for ligature in "\ufb00\ufb01\ufb02\ufb03\ufb04")
    scanned = [elements_text(layout.elements) for layout in engine.layout(_pages(_scanned(pdf))[:1])]
    assert cer(scanned, references[:1])[0] < 0.03  # one column read after the other: a wrong order costs 20 %+


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None,
                    reason="pdflatex is not installed (texlive-latex-*)")
@pytest.mark.parametrize("scanned", [False, True], ids=["born-digital", "scanned"])
def test_a_letter_reads_address_reference_date_subject_salutation(engine: PyMuPDFLayoutEngine, tmp_path: Path,
                                                                  scanned: bool) -> None:
    """A KOMA-Script letter (scrlttr2, the corpus's letter-transport): its blocks take turns from left to right
    down the page, and come out in that order on the page and on its scan, not as two columns."""
    import subprocess

    from samples.corpus.build import SPECS, build_pdf

    if not subprocess.run(["kpsewhich", "scrlttr2.cls"], capture_output=True, text=True).stdout.strip():
        pytest.skip("KOMA-Script is not installed (texlive-latex-recommended)")
    pdf = build_pdf(next(spec for spec in SPECS if spec.name == "letter-transport"), tmp_path).read_bytes()
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        references = [page.get_text() for page in doc]
    text = normalize(elements_text(engine.layout(_pages(_scanned(pdf) if scanned else pdf))[0].elements))
    marks = ["Westmere Tramway Society", "Member no. 4711", "12 October 2022", "Subject: The general meeting",
             "Dear Madam Chair", "Yours sincerely"]
    positions = [text.find(mark) for mark in marks]
    assert min(positions) >= 0 and positions == sorted(positions), text
    if not scanned:
        assert cer([text], references)[0] < 0.01


def test_one_row_across_the_gutter_splits_where_the_columns_go_on_below() -> None:
    """A caption's line beside the next column's heading on one baseline is two elements' text, not one;
    a list's numbers beside its items (a narrow column of their own) stay with them."""
    def word(x0: float, x1: float, y: float, text: str, line: int) -> Word:
        return Word(x0, y, x1, y + 10, text, 0, line, 0)

    caption = [word(57, 120, 350, "Figure", 0), word(124, 292, 350, "1: the catchment drains", 0)]
    heading = [word(303, 312, 348, "2", 1), word(316, 482, 348, "Discharge and storage", 1)]
    below = [word(57, 254, 366, "square kilometres, mostly forested.", 2), word(302, 538, 369, "A rating curve relates", 3),
             word(57, 292, 380, "the next paragraph of the left column", 4), word(303, 539, 381, "the discharge", 5)]
    page = caption + heading + below
    parts = split_columns(caption + heading, page, 612)
    assert [[w.text for w in part] for part in parts] == [[w.text for w in caption], [w.text for w in heading]]

    number, item = [word(57, 66, 350, "2.", 0)], [word(72, 292, 350, "Temporary files are written", 0)]
    items_below = [word(57, 66, 364, "3.", 1), word(72, 290, 364, "Nothing is left behind", 1)]
    assert len(split_columns(number + item, number + item + items_below, 612)) == 1


def test_an_element_across_the_gutter_splits_where_its_right_line_is_indented() -> None:
    """The layout model drew one box over six left-column lines and, beside the last, an indented line of the right
    column (twocol-hydrology's first page, scanned): the right column's own lines start in the gap between the two
    (at its margin, left of the indented line), which is no line running through the gutter."""
    def word(x0: float, x1: float, y: float, text: str, line: int) -> Word:
        return Word(x0, y, x1, y + 10, text, 0, line, 0)

    left = [word(57, 292, 416 + 12 * row, f"left column line {row}", row) for row in range(6)] + [word(57, 80, 488, "plots.", 6)]
    right = [word(317, 538, 486, "Sediment cores taken from the reservoir floor", 7)]
    beside = [word(302, 538, 416 + 12 * row, f"right column line {row}", 10 + row) for row in range(6)]
    parts = split_columns(left + right, left + right + beside, 595)
    assert [[w.text for w in part] for part in parts] == [[w.text for w in left], [w.text for w in right]]


def test_a_table_box_over_the_next_columns_lines_gives_them_back_as_text() -> None:
    """On a worn, tilted scan the layout model drew the left column's table box across the gutter, over the
    right column's first lines; those lines are the column's running text. A table across both columns
    (``table*``: narrow cell columns on both sides of the gutter) keeps all its words."""
    def word(x0: float, x1: float, y: float, text: str, line: int, block: int = 0) -> Word:
        return Word(x0, y, x1, y + 9, text, block, line, 0)

    cells = [word(x, x + w, 70 + 11 * row, "2.9", row) for row in range(7) for x, w in ((60, 30), (120, 25), (180, 35), (240, 30))]
    running = [word(302, 538, 60 + 12 * row, f"right column line {row}", row, block=1) for row in range(8)]
    below = [word(302, 538, 160 + 12 * row, f"right column goes on {row}", row, block=2) for row in range(3)]
    below += [word(57, 292, 170 + 12 * row, f"left column goes on {row}", row, block=3) for row in range(3)]
    page = cells + running + below
    parts = column_text(cells + running, page, 595)
    assert [[w.text for w in part] for part in parts] == [[w.text for w in running]]

    wide_table = [word(x, x + 35, 230 + 11 * row, "4.1", row, block=4) for row in range(7) for x in (200, 250, 300, 350)]
    assert column_text(wide_table, page + wide_table, 595) == []
