"""Born-digital pages whose text runs up or down the page are laid out turned (``engines/text_direction.py``).

Through the real engine: a page shown sideways (``/Rotate`` over upright content, as a
viewer's "rotate page" saves it) reads as its upright twin, with every box on the page
as shown; a table set sideways on a portrait page (as LaTeX's ``sidewaystable`` does:
the text itself turned, no ``/Rotate``) comes out as a caption and a table; a landscape
page shown upright (``pdflscape``: turned content under ``/Rotate``) and a page with
one turned axis label are left as they are.
"""

from __future__ import annotations

import pymupdf
import pytest

from bench.scoring import elements_text
from engines.ocr_decision import text_blocks
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
from engines.text_direction import content_turn
from tests.test_text_layer import _pages, _positions, two_column_page_with_a_figure

ROWS = [("Station", "Jan", "Feb", "Mar", "Apr", "May", "Jun"), ("Harbor", "12.1", "13.4", "15.0", "17.2", "19.9", "22.3"),
        ("Ridge", "10.5", "11.2", "13.9", "16.0", "18.4", "20.1"), ("Valley", "8.2", "9.0", "10.7", "12.9", "15.1", "16.8")]
TABLE_CAPTION = "Table 2: Monthly mean discharge at the three stations, in cubic metres per second."


@pytest.fixture(scope="module")
def engine() -> PyMuPDFLayoutEngine:
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))


def _shown_turned(pdf: bytes, rotate: int) -> bytes:
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        doc[0].set_rotation(rotate)
        return doc.tobytes()


def _sideways_table() -> bytes:
    """A portrait page holding a caption and a ruled table turned a quarter counter-clockwise (text running up)."""
    doc = pymupdf.open()
    page = doc.new_page()  # 595 x 842
    page.insert_text((120, 700), TABLE_CAPTION, fontsize=10, rotate=90)
    for row, cells in enumerate(ROWS):
        x = 160 + 26 * row
        for column, cell in enumerate(cells):
            page.insert_text((x, 720 - 80 * column), cell, fontsize=10, rotate=90)
    for row in range(len(ROWS) + 1):
        page.draw_line((143 + 26 * row, 170), (143 + 26 * row, 730))
    return doc.tobytes()


def _centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_a_page_shown_sideways_reads_as_its_upright_twin(engine: PyMuPDFLayoutEngine) -> None:
    pdf = two_column_page_with_a_figure()
    upright = engine.layout(_pages(pdf))[0]
    for rotate in (90, 270):
        page = _pages(_shown_turned(pdf, rotate))[0]
        assert page.meta.width > page.meta.height  # rendered as shown: landscape
        layout = engine.layout([page])[0]
        assert layout.info["rotation_degrees"] == rotate  # the text runs down (90) or up (270) the page as shown
        assert [e.text for e in layout.elements] == [e.text for e in upright.elements]
        positions = _positions(elements_text(layout.elements))
        assert -1 not in positions and positions[:5] == sorted(positions[:5])
        # each box where its element is on the page as shown: the upright box turned as the page is
        with pymupdf.open(stream=pdf, filetype="pdf") as doc:
            doc[0].set_rotation(rotate)
            shown = doc[0].rotation_matrix
        for turned, straight in zip(layout.elements, upright.elements):
            x, y = _centre(straight.bbox)
            expected = pymupdf.Point(x / page.meta.scale, y / page.meta.scale) * shown * page.meta.scale
            assert abs(_centre(turned.bbox)[0] - expected.x) < 3 and abs(_centre(turned.bbox)[1] - expected.y) < 3


def test_a_sideways_table_comes_out_as_a_caption_and_a_table(engine: PyMuPDFLayoutEngine) -> None:
    pdf = _sideways_table()
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        assert content_turn(text_blocks(doc[0])) == 270
    layout = engine.layout(_pages(pdf))[0]
    assert layout.info["rotation_degrees"] == 270
    categories = [element.category for element in layout.elements]
    assert "Table" in categories and "Picture" not in categories
    table = layout.elements[categories.index("Table")]
    assert table.bbox[3] - table.bbox[1] > 2 * (table.bbox[2] - table.bbox[0])  # tall and narrow, as it stands on the page
    text = elements_text(layout.elements)
    assert text.index("Table 2:") < text.index("Station") < text.index("Harbor") < text.index("Valley")


def test_upright_text_is_left_as_it_is(engine: PyMuPDFLayoutEngine) -> None:
    landscape = _shown_turned(_sideways_table(), 90)  # pdflscape: turned content, shown upright by /Rotate
    layout = engine.layout(_pages(landscape))[0]
    assert "rotation_degrees" not in layout.info and "Table" in [element.category for element in layout.elements]
    with pymupdf.open(stream=two_column_page_with_a_figure(), filetype="pdf") as doc:
        doc[0].insert_text((40, 330), "discharge (m3/s)", fontsize=8, rotate=90)  # a turned axis label
        labelled = doc.tobytes()
        assert content_turn(text_blocks(doc[0])) == 0
    assert "rotation_degrees" not in engine.layout(_pages(labelled))[0].info
