"""Which page data travels past the layout stage: only what the crop stage cuts pictures from.

The stage functions and the layout actor are called directly on real rows from the
samples (no Ray): rows as the split stage makes them, batches as Ray Data hands them over.
"""

from __future__ import annotations

import pickle
from typing import Sequence

import numpy as np
import pytest

from actors.engine_actors import LayoutActor
from actors.rows import batch_to_rows
from actors.stages import crop_page, read_document, split_document
from engines.base import Element, PageImage, PageLayout
from engines.registry import layout_reads

LIMITS = {"dpi": 100, "max_pixels": 12_000_000, "max_image_pixels": 200_000_000, "pages": None, "max_pages": None}
CROP = {"padding_px": 8, "upscale": 2.0, "min_size_px": 32, "max_crop_pixels": 16_000_000}


class PictureOnPageTwo:
    """A layout engine that finds a picture (the middle of the page) on page 2 only, and notes whether it got pixels."""

    name = "picture-on-page-two"
    reads = "pdf"

    def __init__(self, options):
        self.options = options

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        results = []
        for page in pages:
            meta = page.meta
            elements = [Element([10, 10, 200, 40], "Title", "a title")]
            if meta.page_number == 2:
                elements.append(Element([meta.width * 0.25, meta.height * 0.4, meta.width * 0.75, meta.height * 0.6], "Picture"))
            results.append(PageLayout(elements=elements, info={"got_pixels": page.image is not None}))
        return results


class ReadsPixels(PictureOnPageTwo):
    reads = "pixels"


class BadReads(PictureOnPageTwo):
    reads = "png"


def _batch(samples_dir, pixels: bool) -> dict[str, np.ndarray]:
    path = samples_dir / "report_scanned.pdf"
    document = read_document({"doc_id": "d", "name": path.name, "source_path": str(path)}, max_file_bytes=10**9)
    rows = list(split_document(document, {**LIMITS, "pixels": pixels}))
    return {key: np.array([row[key] for row in rows], dtype=object) for key in rows[0]}


def _actor(crop_pictures: bool) -> LayoutActor:
    return LayoutActor(f"{__name__}:PictureOnPageTwo", {}, retries=0, crop_pictures=crop_pictures)


@pytest.mark.parametrize("pixels", [True, False], ids=["rasterized", "pdf-only"])
def test_only_a_page_with_pictures_carries_its_crop_source(samples_dir, pixels):
    rows = batch_to_rows(_actor(crop_pictures=True)(_batch(samples_dir, pixels)))
    plain, pictured = sorted(rows, key=lambda row: row["page_number"])
    assert plain["pixels"] == b"" and plain["pdf_bytes"] == b""  # nothing to crop: nothing travels on
    if pixels:
        assert len(pictured["pixels"]) == pictured["width"] * pictured["height"] * 3 and pictured["pdf_bytes"] == b""
    else:
        assert pictured["pixels"] == b"" and pictured["pdf_bytes"].startswith(b"%PDF")
    assert f'"got_pixels": {str(pixels).lower()}' in pictured["layout_info"]

    cropped = [crop_page(dict(row), CROP) for row in (plain, pictured)]
    assert cropped[0]["crops"] == b"" and not cropped[0]["error_json"]
    ((region_id, _, image),) = pickle.loads(cropped[1]["crops"])
    assert region_id == 1 and image.shape[0] > 100 and not cropped[1]["error_json"]
    assert all("pixels" not in row and "pdf_bytes" not in row for row in cropped)


def test_without_picture_ocr_the_page_columns_are_dropped(samples_dir):
    rows = batch_to_rows(_actor(crop_pictures=False)(_batch(samples_dir, pixels=True)))
    assert len(rows) == 2 and all("pixels" not in row and "pdf_bytes" not in row for row in rows)


def test_a_picture_with_nothing_to_crop_from_is_a_crop_error():
    row = {"layout_json": '[{"category": "Picture", "bbox": [0, 0, 50, 50], "text": ""}]', "pixels": b"", "pdf_bytes": b"",
           "width": 100, "height": 100, "scale": 1.0, "error_json": "", "timings_json": ""}
    out = crop_page(row, CROP)
    assert out["crops"] == b"" and "neither pixels nor a PDF" in out["error_json"]


def test_engines_say_what_they_read():
    assert layout_reads("pymupdf") == "pdf"
    assert layout_reads("dots") == "pixels"
    assert layout_reads(f"{__name__}:PictureOnPageTwo") == "pdf"
    assert layout_reads(f"{__name__}:ReadsPixels") == "pixels"
    assert layout_reads("tests.fault_engines:HangOnPage") == "pixels"  # no attribute: pixels, the safe default
    with pytest.raises(ValueError, match="reads='png'"):
        layout_reads(f"{__name__}:BadReads")
