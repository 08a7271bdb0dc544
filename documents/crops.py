"""Picture-region crops for picture OCR: padding, a minimum size and upscaling.

Small text inside figures is often below the recognizer's comfortable size; enlarging
the crop (``upscale``) is the cheapest way to read it. ``region_id`` is the index of the
Picture element in the page's element list, so results link back to their element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np


@dataclass
class PictureCrop:
    region_id: int
    bbox: list[float]  # the element's box in page pixels
    image: np.ndarray  # RGB crop, padded and upscaled


def crop_pictures(
    image: np.ndarray,
    elements: Sequence[dict],
    padding_px: int,
    upscale: float,
    min_size_px: int,
    max_crop_pixels: int,
) -> list[PictureCrop]:
    height, width = image.shape[:2]
    crops = []
    for index, element in enumerate(elements):
        if element.get("category") != "Picture":
            continue
        x0, y0, x1, y1 = element["bbox"]
        if x1 - x0 < min_size_px or y1 - y0 < min_size_px:
            continue
        left = max(0, int(math.floor(x0)) - padding_px)
        top = max(0, int(math.floor(y0)) - padding_px)
        right = min(width, int(math.ceil(x1)) + padding_px)
        bottom = min(height, int(math.ceil(y1)) + padding_px)
        if right - left < 1 or bottom - top < 1:
            continue
        crop = image[top:bottom, left:right]
        factor = min(upscale, math.sqrt(max_crop_pixels / (crop.shape[0] * crop.shape[1])))
        if factor > 1.0:
            crop = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        crops.append(PictureCrop(region_id=index, bbox=list(element["bbox"]), image=np.ascontiguousarray(crop)))
    return crops
