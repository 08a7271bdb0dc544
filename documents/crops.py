"""Picture-region crops for picture OCR: padding, a minimum size and upscaling.

Small text inside figures is often below the recognizer's comfortable size; enlarging
the crop (``upscale``) is the cheapest way to read it. ``region_id`` is the index of the
Picture element in the page's element list, so results link back to their element.

A crop is cut from the page's pixels when the pipeline has them, or rendered from the
page's one-page PDF (``render_picture_crops``) when the layout engine read the PDF and no
stage needed the whole page rasterized. Both give the same padded box of page pixels;
rendering draws it at the upscaled resolution instead of interpolating a page-resolution
crop, so upscaled text stays sharp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

from documents.pymupdf_import import import_pymupdf

pymupdf = import_pymupdf()


@dataclass
class PictureCrop:
    region_id: int
    bbox: list[float]  # the element's box in page pixels
    image: np.ndarray  # RGB crop, padded and upscaled
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # the padded box cut, page pixels, clipped to the page
    upscale: float = 1.0  # the enlargement applied (``upscale``, less where max_crop_pixels capped it)


def crop_box(bbox: Sequence[float], padding_px: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The padded box in whole pixels, clipped to the page; None if nothing is left."""
    x0, y0, x1, y1 = bbox
    if not all(math.isfinite(v) for v in bbox):
        return None
    left = max(0, math.floor(x0) - padding_px)
    top = max(0, math.floor(y0) - padding_px)
    right = min(width, math.ceil(x1) + padding_px)
    bottom = min(height, math.ceil(y1) + padding_px)
    if right - left < 1 or bottom - top < 1:
        return None
    return left, top, right, bottom


def _picture_boxes(
    elements: Sequence[dict], width: int, height: int, padding_px: int, upscale: float, min_size_px: int, max_crop_pixels: int
) -> Iterator[tuple[int, list[float], tuple[int, int, int, int], float]]:
    """(region_id, element bbox, padded box, enlargement) of every Picture element big enough to read.

    The enlargement is ``upscale``, less where the crop would pass ``max_crop_pixels``,
    and never below 1 (a crop is not shrunk).
    """
    for index, element in enumerate(elements):
        if element.get("category") != "Picture":
            continue
        x0, y0, x1, y1 = element["bbox"]
        if x1 - x0 < min_size_px or y1 - y0 < min_size_px:
            continue
        box = crop_box(element["bbox"], padding_px, width, height)
        if box is None:
            continue
        left, top, right, bottom = box
        factor = max(1.0, min(upscale, math.sqrt(max_crop_pixels / ((right - left) * (bottom - top)))))
        yield index, list(element["bbox"]), box, factor


def crop_pictures(
    image: np.ndarray,
    elements: Sequence[dict],
    padding_px: int,
    upscale: float,
    min_size_px: int,
    max_crop_pixels: int,
) -> list[PictureCrop]:
    """Crops cut from the page's pixels (RGB, H x W x 3), enlarged by interpolation."""
    height, width = image.shape[:2]
    crops = []
    for index, bbox, (left, top, right, bottom), factor in _picture_boxes(
        elements, width, height, padding_px, upscale, min_size_px, max_crop_pixels
    ):
        crop = image[top:bottom, left:right]
        if factor > 1.0:
            crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        crops.append(PictureCrop(
            region_id=index, bbox=bbox, image=np.ascontiguousarray(crop), box=(left, top, right, bottom), upscale=factor
        ))
    return crops


def render_picture_crops(
    pdf_bytes: bytes,
    scale: float,
    width: int,
    height: int,
    elements: Sequence[dict],
    padding_px: int,
    upscale: float,
    min_size_px: int,
    max_crop_pixels: int,
) -> list[PictureCrop]:
    """Crops rendered from a one-page PDF whose page image is ``width`` x ``height`` at ``scale`` pixels per point.

    Only the picture regions are rasterized, each at its enlarged resolution. Boxes are
    in the page's rotated view, as ``get_pixmap``'s ``clip`` expects.
    """
    boxes = list(_picture_boxes(elements, width, height, padding_px, upscale, min_size_px, max_crop_pixels))
    if not boxes:
        return []
    crops = []
    with pymupdf.open(stream=pdf_bytes, filetype="pdf") as document:
        page = document[0]
        for index, bbox, (left, top, right, bottom), factor in boxes:
            zoom = scale * factor
            clip = pymupdf.Rect(left / scale, top / scale, right / scale, bottom / scale)
            pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), clip=clip, colorspace=pymupdf.csRGB, alpha=False)
            image = np.frombuffer(pix.samples_mv, dtype=np.uint8).reshape(pix.height, pix.width, 3).copy()  # one copy
            crops.append(PictureCrop(region_id=index, bbox=bbox, image=image, box=(left, top, right, bottom), upscale=factor))
    return crops
