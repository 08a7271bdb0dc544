"""Detected lines as images: colour order, upright crops of their quads, and their reading order."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

#: A quadrilateral as four [x, y] points (top-left, top-right, bottom-right, bottom-left).
Quad = list[list[float]]


def to_bgr(image: np.ndarray) -> np.ndarray:
    """RGB (or gray, or RGBA) uint8 to the BGR that RapidOCR and OpenCV expect."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def crop_quad(image: np.ndarray, quad: Quad) -> np.ndarray:
    """Cut a quad out upright (perspective warp); tall crops turn 90 degrees, as RapidOCR does."""
    points = np.asarray(quad, dtype=np.float32)
    width = max(1, int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3]))))
    height = max(1, int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2]))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if height / width >= 1.5:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def reading_order(quads: Sequence[Quad]) -> list[int]:
    """Indices of ``quads`` top to bottom, then left to right within a row.

    A line joins the current row when its vertical centre lies within half a line height
    of the row's first line, so table cells and side-by-side labels read across.
    """
    boxes = np.array([[min(p[0] for p in q), min(p[1] for p in q), max(p[0] for p in q), max(p[1] for p in q)] for q in quads])
    centers = (boxes[:, 1] + boxes[:, 3]) / 2
    heights = boxes[:, 3] - boxes[:, 1]
    rows: list[list[int]] = []
    for index in np.argsort(centers, kind="stable"):
        if rows:
            first = rows[-1][0]
            if abs(centers[index] - centers[first]) <= 0.5 * min(heights[index], heights[first]):
                rows[-1].append(int(index))
                continue
        rows.append([int(index)])
    return [index for row in rows for index in sorted(row, key=lambda i: boxes[i, 0])]


# -- space restoration --------------------------------------------------------------------
