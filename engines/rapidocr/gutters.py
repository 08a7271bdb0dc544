"""Split detected text lines where they run across a column gutter.

PP-OCR's text detector (DB) finds lines as connected regions of its probability map,
and on a two-column page at 150 dpi the 10 pt gutter of a LaTeX paper is about as wide as
a line is tall: the regions of a left-column line and the right-column line beside it
merge, and a third of the page's lines come out as one line across both columns
("...with the number of" + "with the number of open..."). Reading order is lost before
any layout analysis can see it.

A gutter differs from a wide word space in that the columns go on beside it, line after
line. A blank run inside a line box at least ``min_gap`` line heights wide is cut when,
from ``reach`` line heights above the line to as far below, the middle of the run stays
blank on rows that have ink on both sides of it (within two line heights) for at least
``min_rows`` line heights of rows in all: the line itself and about two more lines of both
columns. The middle, because neighbouring lines of justified text end a few pixels
apart. Where the two columns' lines are out of phase (one column's lines beside the
other's line gaps, so few rows have ink on both sides), each side's rows count on their
own, provided hardly any row with ink beside the run has ink in its middle. A wide word
space is blank on its own line, and perhaps on the next, but the columns do not go on
around it for three lines; the last line of a footnote above blank paper has no ink to
its right; the line under a short heading has no ink above it on the
right. Gutters, and the gaps between table columns, are cut. Cut pieces keep a margin of
a quarter line height (the detector's own box margin) and must hold ink.

Pure numpy and OpenCV: it knows nothing of the detector.
"""

from __future__ import annotations

import numpy as np

from engines.rapidocr.content_bands import background_color, blank_runs, content_strength

Quad = list[list[float]]


def ink_mask(image: np.ndarray, threshold: int = 32) -> np.ndarray:
    """Where ``image`` differs from its paper colour by more than ``threshold`` in any channel (after a 3x3 blur)."""
    strength = content_strength(image, background_color(image))
    if strength.ndim == 3:  # channel by channel: numpy's max over a last axis of 3 is 20x slower (57 ms a page)
        strength = np.maximum.reduce([strength[:, :, channel] for channel in range(strength.shape[2])])
    return strength > threshold


def _is_gutter(ink: np.ndarray, top: int, bottom: int, a: int, b: int, line: int, min_rows: float,
               crossing: float = 0.1) -> bool:
    """Whether the blank run [a, b) is a gutter: its middle blank on rows with ink beside it on both sides.

    Both sides on the same rows, or, for columns whose lines are out of phase (the left
    column's lines beside the right one's line gaps), each side on rows of its own while
    hardly any row with ink beside the run (at most ``crossing`` of them) has ink in its
    middle: text running through the run's middle is a word space's neighbourhood.
    """
    middle = (a + (b - a) * 3 // 10, b - (b - a) * 3 // 10)
    side = 2 * line
    band = ink[top:bottom]
    left = band[:, max(0, a - side): a].any(axis=1)
    right = band[:, b: b + side].any(axis=1)
    blank = ~band[:, middle[0]: max(middle[0] + 1, middle[1])].any(axis=1)
    needed = min_rows * line
    if int((left & right & blank).sum()) >= needed:
        return True
    beside = left | right
    return (int((left & blank).sum()) >= needed and int((right & blank).sum()) >= needed
            and int((beside & ~blank).sum()) <= crossing * int(beside.sum()))


def split_at_gutters(quads: list[Quad], ink: np.ndarray, min_gap: float = 0.3, min_rows: float = 1.5,
                     reach: float = 2.5) -> list[Quad]:
    """``quads`` with each near-horizontal line cut at the gutters it crosses (see the module docstring)."""
    height, width = ink.shape
    out: list[Quad] = []
    for quad in quads:
        points = np.asarray(quad, dtype=float)
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        line = y1 - y0
        tilt = abs((points[1, 1] - points[0, 1]) + (points[2, 1] - points[3, 1])) / 2
        if line < 4 or x1 - x0 < 4 * line or tilt > 0.25 * line:  # short or tilted: leave it
            out.append(quad)
            continue
        top, bottom = max(0, int(y0 - reach * line)), min(height, int(y1 + reach * line))
        cuts = [(a + x0, b + x0) for a, b in blank_runs(ink[y0:y1, x0:x1].any(axis=0))
                if b - a >= min_gap * line and _is_gutter(ink, top, bottom, a + x0, b + x0, line, min_rows)]
        if not cuts:
            out.append(quad)
            continue
        margin = max(1, int(round(0.25 * line)))
        edges = [x0] + [edge for cut in cuts for edge in cut] + [x1]
        for left, right in zip(edges[::2], edges[1::2]):
            if not ink[y0:y1, left:right].any():
                continue
            a = left if left == x0 else max(x0, left - margin)
            b = right if right == x1 else min(x1, right + margin)
            out.append([[float(a), float(y0)], [float(b), float(y0)], [float(b), float(y1)], [float(a), float(y1)]])
    return out


def trim_to_ink(quad: Quad, ink: np.ndarray) -> Quad:
    """A near-horizontal line's quad narrowed to the columns that hold ink (others unchanged).

    The detector's boxes reach a margin past the text on each side (DB's unclip); the
    OCR text layer written from them would put the first and last words into the gutter.
    A short box (a section number, a word on its own) counts as near-horizontal whatever
    its slant: the detector's rectangle around a character or two takes any angle (on a
    straightened scan a bold "4" came out 38 pixels wide and slanted, its ink 16).
    """
    points = np.asarray(quad, dtype=float)
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(ink.shape[1], x1), min(ink.shape[0], y1)
    tilt = abs((points[1, 1] - points[0, 1]) + (points[2, 1] - points[3, 1])) / 2
    if y1 - y0 < 4 or x1 <= x0 or (tilt > 0.25 * (y1 - y0) and x1 - x0 > 2 * (y1 - y0)):
        return quad
    inked = np.flatnonzero(ink[y0:y1, x0:x1].any(axis=0))
    if inked.size == 0:
        return quad
    a, b = float(x0 + inked[0]), float(x0 + inked[-1] + 1)
    return [[a, float(y0)], [b, float(y0)], [b, float(y1)], [a, float(y1)]]
