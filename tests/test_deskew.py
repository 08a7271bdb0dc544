"""Tilted scans (``engines/deskew.py``): the tilt read from the detector's lines, the page turned level, boxes mapped back.

Through the real engine, a two-column page with a figure, scanned and tilted as a sheet
feeder tilts it (PIL's own rotation, not the engine's), reads in the same order as its
level scan, and its elements' boxes land where the elements are on the tilted page.
"""

from __future__ import annotations

import io

import numpy as np
import pymupdf
import pytest
from PIL import Image

from bench.scoring import elements_text, normalize
from engines.deskew import MIN_LINES, box_back, needs_straightening, skew_degrees, straighten
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
from tests.test_text_layer import CAPTION, _pages, _positions, two_column_page_with_a_figure


def _line(x: float, y: float, length: float, height: float, degrees: float) -> list[list[float]]:
    """A detector quad (top-left, top-right, bottom-right, bottom-left) of a line falling ``degrees`` to the right."""
    a = np.radians(degrees)
    along, down = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    corner = np.array([x, y])
    return [list(corner), list(corner + length * along), list(corner + length * along + height * down), list(corner + height * down)]


def test_the_tilt_is_the_long_lines_median() -> None:
    lines = [_line(100, 100 + 30 * k, 800, 20, 0.7) for k in range(8)]
    lines += [_line(100, 600, 60, 20, -8.0), _line(300, 700, 500, 20, 25.0)]  # a short word, a slanted label
    assert skew_degrees(lines) == pytest.approx(0.7, abs=0.01)
    assert skew_degrees(lines[: MIN_LINES - 1]) == 0.0  # too few lines to tell
    assert not needs_straightening(0.05) and needs_straightening(-0.4) and not needs_straightening(30.0)


def test_a_box_on_the_straightened_page_maps_back_onto_the_tilted_one() -> None:
    pixels = np.full((400, 600, 3), 255, dtype=np.uint8)
    straight, back = straighten(pixels, 2.0)
    assert straight.shape == pixels.shape and straight[0, 0].tolist() == [255, 255, 255]
    x0, y0, x1, y1 = box_back([290, 190, 310, 210], back)  # around the centre: barely moves
    assert (x0, y0, x1, y1) == pytest.approx((290, 190, 310, 210), abs=1.0)
    x0, y0, x1, y1 = box_back([500, 100, 560, 120], back)  # away from the centre: moves, and grows by the tilt
    assert abs(y0 - 100) > 5 and (x1 - x0) > 60 and (y1 - y0) > 20


def _tilted_scan(pdf: bytes, degrees: float, dpi: int = 150) -> bytes:
    """``pdf``'s pages as an image-only PDF, each turned ``degrees`` counter-clockwise (PIL), white corners."""
    with pymupdf.open(stream=pdf, filetype="pdf") as source, pymupdf.open() as out:
        for page in source:
            png = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).tobytes("png")
            turned = io.BytesIO()
            Image.open(io.BytesIO(png)).rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=255).save(turned, "PNG")
            out.new_page(width=page.rect.width, height=page.rect.height).insert_image(page.rect, stream=turned.getvalue())
        return out.tobytes()


@pytest.fixture(scope="module")
def engine() -> PyMuPDFLayoutEngine:
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))


@pytest.mark.parametrize("degrees", [1.0, -2.0])
def test_a_tilted_two_column_scan_reads_in_its_columns_order(engine: PyMuPDFLayoutEngine, degrees: float) -> None:
    pdf = two_column_page_with_a_figure()
    page = _pages(_tilted_scan(pdf, degrees))[0]
    layout = engine.layout([page])[0]
    assert layout.info["deskew_degrees"] == pytest.approx(-degrees, abs=0.15)  # counter-clockwise: lines rise to the right
    starts, ends = _positions(elements_text(layout.elements))[:5], _positions(elements_text(layout.elements))[5:]
    assert min(starts) >= 0 and starts == sorted(starts) and ends == sorted(ends)
    assert all(end < start for end, start in zip(ends, starts[1:]))

    # the caption's box is where the caption is on the tilted page: its level box turned by the tilt
    level = engine.layout(_pages(_tilted_scan(pdf, 0.0)))[0]
    assert "deskew_degrees" not in level.info
    caption = next(e.bbox for e in level.elements if normalize(CAPTION)[:30] in normalize(e.text))
    tilted = next(e.bbox for e in layout.elements if normalize(CAPTION)[:30] in normalize(e.text))
    centre, a = np.array([page.meta.width / 2, page.meta.height / 2]), np.radians(degrees)
    turn = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # PIL's counter-clockwise turn, y down
    corners = np.array([[caption[0], caption[1]], [caption[2], caption[1]], [caption[2], caption[3]], [caption[0], caption[3]]])
    moved = (corners - centre) @ turn.T + centre
    expected = [moved[:, 0].min(), moved[:, 1].min(), moved[:, 0].max(), moved[:, 1].max()]
    assert tilted == pytest.approx(expected, abs=8.0)


def test_deskew_off_reads_the_page_as_it_is() -> None:
    engine = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1, deskew=False))
    layout = engine.layout(_pages(_tilted_scan(two_column_page_with_a_figure(), 1.0)))[0]
    assert "deskew_degrees" not in layout.info
