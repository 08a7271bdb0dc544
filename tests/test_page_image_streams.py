"""A page's large non-JPEG images are re-stored as JPEG before the layout analysis, which extracts them five times.

A Flate image (how scans are usually stored) is handed over by every text extraction
with images kept as a PNG encoded anew; a JPEG stream is handed over as it is. The page
must look the same to the layout model (a 72 dpi rendering) and lose no other image.
"""

from __future__ import annotations

import cv2
import numpy as np
import pymupdf

from engines.page_image_streams import store_images_as_jpeg


def _scan_like_page() -> pymupdf.Document:
    """A one-page PDF holding a grey 150 dpi scan of a text page (PNG, so stored with Flate, as the corpus' scans),
    and a small logo."""
    source = pymupdf.open()
    text_page = source.new_page()  # A4
    for row in range(20):
        text_page.insert_text((72, 90 + 30 * row), f"Line {row} of a scanned page, read by the layout model.", fontsize=11)
    scan = text_page.get_pixmap(dpi=150, colorspace=pymupdf.csGRAY, alpha=False)
    doc = pymupdf.open()
    page = doc.new_page(width=text_page.rect.width, height=text_page.rect.height)
    page.insert_image(page.rect, stream=scan.tobytes("png"))
    logo = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    page.insert_image(pymupdf.Rect(10, 10, 30, 30), stream=cv2.imencode(".png", logo)[1].tobytes())
    return pymupdf.open(stream=doc.tobytes(deflate=True), filetype="pdf")  # as a file holds it


def _image_blocks(page) -> list[dict]:
    return [b for b in page.get_text("dict", flags=pymupdf.TEXT_PRESERVE_IMAGES)["blocks"] if b["type"] == 1]


def test_a_flate_scan_becomes_a_jpeg_stream_and_looks_the_same():
    doc = _scan_like_page()
    page = doc[0]
    before = np.frombuffer(page.get_pixmap().samples, np.uint8).astype(int)
    assert sorted(b["ext"] for b in _image_blocks(page)) == ["png", "png"]
    scan_pixels = max(b["width"] * b["height"] for b in _image_blocks(page))

    assert store_images_as_jpeg(page) == 1  # the scan; the 40 x 40 logo is left alone
    page = doc[0]
    blocks = _image_blocks(page)
    assert sorted(b["ext"] for b in blocks) == ["jpeg", "png"]
    assert max(b["width"] * b["height"] for b in blocks) == scan_pixels  # same image size, same place
    after = np.frombuffer(page.get_pixmap().samples, np.uint8).astype(int)
    assert before.shape == after.shape and np.abs(before - after).mean() < 1.0  # what the layout model looks at
    assert store_images_as_jpeg(page) == 0  # already JPEG: nothing to do again
