"""Picture crops cut from page pixels and rendered from the one-page PDF give the same regions."""

from __future__ import annotations

import numpy as np
import pymupdf
import pytest

from documents.crops import crop_box, crop_pictures, render_picture_crops
from documents.pages import SplitLimits, split_pages
from engines.rapidocr.engine import RapidOCREngine

CROP = {"padding_px": 8, "upscale": 1.0, "min_size_px": 32, "max_crop_pixels": 16_000_000}
RED_SQUARE_PT = (220, 300, 300, 380)  # in the unrotated page


def _pdf_with_a_picture(rotation: int, cropbox: tuple[float, float, float, float] | None) -> bytes:
    """A page with a red square (the 'picture') away from the centre, so a wrong rotation or offset misses it."""
    doc = pymupdf.open()
    page = doc.new_page(width=500, height=700)
    page.draw_rect(pymupdf.Rect(*RED_SQUARE_PT), color=(1, 0, 0), fill=(1, 0, 0))
    page.insert_text((40, 60), "Heading", fontsize=20)
    if cropbox:
        page.set_cropbox(pymupdf.Rect(*cropbox))
    page.set_rotation(rotation)
    return doc.tobytes()


def _red_box(image: np.ndarray) -> list[float]:
    """Where the red square is in a page image, in its pixels."""
    ys, xs = np.nonzero((image[:, :, 0] > 200) & (image[:, :, 1] < 60))
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _red_share(image: np.ndarray) -> float:
    return float(((image[:, :, 0] > 200) & (image[:, :, 1] < 60)).mean())


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("cropbox", [None, (30, 40, 480, 650)], ids=["mediabox", "cropbox"])
def test_rendered_crop_is_the_cut_crop(rotation, cropbox):
    data = _pdf_with_a_picture(rotation, cropbox)
    (page,) = split_pages(data, "pdf", SplitLimits(dpi=100))[2]
    elements = [{"category": "Text", "bbox": [0, 0, 50, 20]}, {"category": "Picture", "bbox": _red_box(page.image())}]

    (cut,) = crop_pictures(page.image(), elements, **CROP)
    (rendered,) = render_picture_crops(page.pdf_bytes, page.scale, page.width, page.height, elements, **CROP)

    assert rendered.region_id == cut.region_id == 1 and rendered.bbox == cut.bbox
    assert rendered.image.shape == cut.image.shape
    # The same pixels up to anti-aliasing at the square's edges.
    assert np.abs(rendered.image.astype(int) - cut.image).mean() < 3
    assert _red_share(rendered.image) > 0.5


def test_upscaled_render_has_the_enlarged_size_and_respects_the_pixel_cap():
    data = _pdf_with_a_picture(0, None)
    (page,) = split_pages(data, "pdf", SplitLimits(dpi=100))[2]
    elements = [{"category": "Picture", "bbox": _red_box(page.image())}]
    left, top, right, bottom = crop_box(elements[0]["bbox"], 8, page.width, page.height)

    for upscale, cap in ((2.0, 16_000_000), (3.0, 4 * (right - left) * (bottom - top))):
        options = {**CROP, "upscale": upscale, "max_crop_pixels": cap}
        (cut,) = crop_pictures(page.image(), elements, **options)
        (rendered,) = render_picture_crops(page.pdf_bytes, page.scale, page.width, page.height, elements, **options)
        expected = min(upscale, 2.0)  # the cap allows 4x the pixels: twice the side
        assert abs(rendered.image.shape[1] - (right - left) * expected) <= 1
        assert abs(rendered.image.shape[0] - cut.image.shape[0]) <= 1 and abs(rendered.image.shape[1] - cut.image.shape[1]) <= 1


def test_small_and_non_picture_regions_are_not_rendered():
    data = _pdf_with_a_picture(0, None)
    (page,) = split_pages(data, "pdf", SplitLimits(dpi=100, pixels=False))[2]
    elements = [{"category": "Picture", "bbox": [10, 10, 30, 200]}, {"category": "Table", "bbox": [0, 0, 300, 300]}]
    assert render_picture_crops(page.pdf_bytes, page.scale, page.width, page.height, elements, **CROP) == []


def test_words_in_the_sample_picture_are_read_from_the_rendered_crop(samples_dir):
    """The born-digital sample's chart: its words exist only as pixels of an embedded image."""
    data = (samples_dir / "report.pdf").read_bytes()
    page = next(p for p in split_pages(data, "pdf", SplitLimits(pixels=False))[2] if p.page_number == 2)
    with pymupdf.open(stream=page.pdf_bytes, filetype="pdf") as document:
        (info,) = document[0].get_image_info()
    bbox = [v * page.scale for v in info["bbox"]]
    (crop,) = render_picture_crops(page.pdf_bytes, page.scale, page.width, page.height,
                                   [{"category": "Picture", "bbox": bbox}], **{**CROP, "upscale": 2.0})
    (text,) = RapidOCREngine().recognize([crop.image])
    assert "SOLAR OUTPUT" in text and "NORTH ARRAY" in text
