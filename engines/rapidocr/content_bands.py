"""Where a page has content, so text detection can skip blank paper.

A text page is mostly blank: on the scanned sample three quarters of the pixel rows hold
no ink, and a detector run over the whole page spends most of its time on paper. This
module finds horizontal bands of content (rows that differ from the page's background,
widened by a margin and trimmed to their own columns), stacks them into one smaller
canvas for a single detector call, and maps the detector's boxes back to the page.

Choices, and why:

* **Background** is the page's median colour, not white, so grey paper, dark pages and
  coloured scans work; a pixel is content when any channel differs from it by more than
  ``threshold`` after a 3x3 box blur. The blur keeps scanner noise under the threshold
  (noise of sigma 8 peaks near 11 after it) while a one-pixel dark stroke stays above it.
* **Alignment.** Band edges and their places on the canvas fall on multiples of
  ``align`` (32, the detector's stride), so every pixel keeps its position modulo the
  stride and the network sees the same pixel grid as on the whole page.
* **Margins** grow with the content's own height (at least ``min_margin``), so a large
  heading keeps room around it for the detector's box expansion (DB's unclip).
* The canvas is filled with the background colour, with ``separator`` rows between
  bands, so no band's text touches another's.

Pure numpy and OpenCV: it knows nothing of the detector or of Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Band:
    """Rows ``top:bottom`` and columns ``left:right`` of an image (ends exclusive)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)


@dataclass(frozen=True)
class Placement:
    """A band and the canvas row where its first row was put (its columns start at 0)."""

    band: Band
    row: int


def background_color(image: np.ndarray) -> np.ndarray:
    """The page's paper colour: the per-channel median of every 4th pixel (uint8, one per channel)."""
    sample = image[::4, ::4].reshape(-1, image.shape[2] if image.ndim == 3 else 1)
    return np.median(sample, axis=0).astype(np.uint8)


def content_strength(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Each pixel's absolute difference to ``background`` per channel, blurred 3x3 (same shape, uint8)."""
    scalar = tuple(float(value) for value in np.ravel(background))
    return cv2.blur(cv2.absdiff(image, scalar + (0.0,) * (4 - len(scalar))), (3, 3))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Start and end (exclusive) of every run of True in a 1-D array."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _align_down(value: int, align: int) -> int:
    return value // align * align


def _align_up(value: int, align: int, limit: int | None = None) -> int:
    aligned = -(-value // align) * align
    return aligned if limit is None else min(limit, aligned)


def content_bands(
    image: np.ndarray,
    threshold: int = 32,
    min_margin: int = 32,
    separator: int = 32,
    align: int = 32,
    background: np.ndarray | None = None,
) -> list[Band]:
    """Bands of ``image`` that hold content, top to bottom; [] for a blank image.

    Runs of content rows are widened by a margin (their own height, within 1-4x
    ``min_margin``) and aligned; runs closer than ``separator`` rows merge, since a
    separator on the canvas would cost as much as the gap. Each band is then trimmed to
    its content's columns, widened and aligned the same way.
    """
    height, width = image.shape[:2]
    background = background_color(image) if background is None else background
    strength = content_strength(image, background).reshape(height, width, -1)
    rows = strength.reshape(height, -1).max(axis=1) > threshold  # numpy: 100x faster than cv2.reduce on rows
    spans: list[list[int]] = []  # top, bottom, tallest run inside
    for start, end in _runs(rows):
        margin = _margin(end - start, min_margin)
        top, bottom = _align_down(max(0, start - margin), align), _align_up(end + margin, align, height)
        if spans and top <= spans[-1][1] + separator:
            spans[-1][1] = max(spans[-1][1], bottom)
            spans[-1][2] = max(spans[-1][2], end - start)
        else:
            spans.append([top, bottom, end - start])
    bands = []
    for top, bottom, tallest in spans:
        columns = np.flatnonzero(strength[top:bottom].reshape(bottom - top, -1).max(axis=0).reshape(width, -1).max(axis=1) > threshold)
        margin = _margin(tallest, min_margin)
        left = _align_down(max(0, int(columns[0]) - margin), align)
        right = _align_up(int(columns[-1]) + 1 + margin, align, width)
        bands.append(Band(top, bottom, left, right))
    return bands


def _margin(content_height: int, min_margin: int) -> int:
    """Room kept around content: its own height (DB widens a box by about 0.7 of it), within 1-4x ``min_margin``."""
    return int(np.clip(content_height, min_margin, 4 * min_margin))


def stack_bands(
    image: np.ndarray, bands: list[Band], background: np.ndarray, separator: int = 32, align: int = 32
) -> tuple[np.ndarray, list[Placement]]:
    """One canvas holding ``bands`` of ``image`` top to bottom, ``separator`` rows apart.

    Its sides are multiples of ``align``; what no band covers is ``background``.
    """
    placements, row = [], 0
    for band in bands:
        placements.append(Placement(band, row))
        row = _align_up(row + band.bottom - band.top + separator, align)
    height = _align_up(max(1, row - separator), align)
    width = _align_up(max(band.right - band.left for band in bands), align)
    canvas = np.empty((height, width, *image.shape[2:]), dtype=image.dtype)
    canvas.reshape(height, -1)[:] = np.tile(background, width)  # row by row: 40x faster than canvas[:] = background
    for placement in placements:
        band = placement.band
        canvas[placement.row : placement.row + band.bottom - band.top, : band.right - band.left] = image[
            band.top : band.bottom, band.left : band.right
        ]
    return canvas, placements


def boxes_to_image(boxes: np.ndarray, placements: list[Placement]) -> np.ndarray:
    """Boxes (n, points, 2) in canvas pixels back to the image's: each follows the band nearest its centre row."""
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.size == 0:  # RapidOCR's detector gives an empty 1-D array when it finds nothing
        return np.zeros((0, 4, 2), dtype=np.float32)
    boxes = boxes.reshape(len(boxes), -1, 2)
    centres = boxes[:, :, 1].mean(axis=1)[:, None]
    tops = np.array([p.row for p in placements], dtype=np.float32)[None, :]
    bottoms = tops + np.array([p.band.bottom - p.band.top for p in placements], dtype=np.float32)[None, :]
    owners = np.maximum(np.maximum(tops - centres, centres - bottoms), 0).argmin(axis=1)
    mapped = boxes.copy()
    for index, owner in enumerate(owners):
        placement = placements[owner]
        mapped[index, :, 0] += placement.band.left
        mapped[index, :, 1] += placement.band.top - placement.row
    return mapped


def blank_runs(ink_columns: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of ink-free columns that have ink on both sides."""
    columns = np.asarray(ink_columns, dtype=bool)
    inked = np.flatnonzero(columns)
    if inked.size < 2:
        return []
    inner = ~columns[inked[0] : inked[-1] + 1]
    edges = np.diff(np.concatenate(([0], inner.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s + inked[0]), int(e + inked[0])) for s, e in zip(starts, ends)]
