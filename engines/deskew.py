"""Straighten a tilted scan before its OCR text layer is written, and map boxes back onto the page as it came.

Scanners and phone captures tilt pages by a fraction of a degree to a few degrees. The
recognizer does not mind (it cuts each detected line out along its own slant), but the
layout analysis and the reading order look for vertical gaps that run down the page, and
a tilt moves a column gutter sideways by its sine times the page height: 0.4 degrees
shift LaTeX's 10 pt gutter by half its width over an A4 page at 150 dpi, enough to join
the columns (docs/benchmarks.md: corpus scans tilted by 0.4 and 1 degree). Tesseract
deskews for the same reason.

The tilt is read from the text detector's lines (rotated rectangles): the median slope
of the long ones, so one skewed caption or a rotated table header does not decide it.
A page tilted by at least ``MIN_DEGREES`` is turned back around its centre, keeping its
size (a white border where the corners come in), and read from there; the boxes the
engine finds on the straightened page are mapped back through the inverse turn (their
bounds), so reports and picture crops refer to the page as it was scanned.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

#: Tilts below this are left alone: a 1000-pixel line rises under 2 pixels.
MIN_DEGREES = 0.1
#: Tilts above this are not a scanner's: a page set at an angle on purpose, or too few lines to tell.
MAX_DEGREES = 10.0
#: A line counts towards the tilt when it is this many times longer than high, and there must be this many.
LONG_LINE, MIN_LINES = 4.0, 5

Matrix = np.ndarray  # 2 x 3 affine


def skew_degrees(quads: Sequence[Sequence[Sequence[float]]]) -> float:
    """The page's tilt in degrees (positive: lines fall to the right, in image coordinates), from the detector's
    quads (top-left, top-right, bottom-right, bottom-left); 0.0 when fewer than ``MIN_LINES`` long lines say."""
    angles = []
    for quad in quads:
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = (tuple(map(float, point)) for point in quad)
        width, height = np.hypot(x1 - x0, y1 - y0), np.hypot(x3 - x0, y3 - y0)
        if width < LONG_LINE * max(height, 1.0):
            continue
        top, bottom = np.arctan2(y1 - y0, x1 - x0), np.arctan2(y2 - y3, x2 - x3)
        angles.append(np.degrees((top + bottom) / 2))
    return float(np.median(angles)) if len(angles) >= MIN_LINES else 0.0


def needs_straightening(degrees: float) -> bool:
    return MIN_DEGREES <= abs(degrees) <= MAX_DEGREES


def straighten(pixels: np.ndarray, degrees: float) -> tuple[np.ndarray, Matrix]:
    """``pixels`` turned by ``degrees`` around their centre so that lines tilted by that much come out level, the
    same size, white where the corners came in; and the matrix that takes the straightened page's points back."""
    height, width = pixels.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    border = (255,) * (pixels.shape[2] if pixels.ndim == 3 else 1)
    straight = cv2.warpAffine(pixels, turn, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=border)
    return straight, cv2.invertAffineTransform(turn)


def box_back(bbox: Sequence[float], back: Matrix) -> list[float]:
    """The bounds, on the page as scanned, of a box (x0, y0, x1, y1) found on the straightened page."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    corners = np.array([[x0, y0, 1.0], [x1, y0, 1.0], [x1, y1, 1.0], [x0, y1, 1.0]])
    points = corners @ np.asarray(back, dtype=np.float64).T
    return [float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max())]
