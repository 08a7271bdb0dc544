"""Detected lines cut at column gutters (``engines.rapidocr.gutters``), on ink masks drawn to measure.

Two columns of 18-pixel lines 28 pixels apart, 20 pixels of gutter between them; the
detector's box of a left line joined with the right line beside it is what gets cut.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.rapidocr.gutters import split_at_gutters, trim_to_ink


def _quad(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _lines(ink: np.ndarray, tops: list[int], x0: int, x1: int) -> None:
    for top in tops:
        ink[top:top + 18, x0:x1] = True


@pytest.mark.parametrize("offset", [0, 6, 10, 14], ids=lambda o: f"right column {o} px lower")
def test_a_line_joined_across_the_gutter_is_cut_in_phase_or_not(offset: int) -> None:
    """Out of phase, the right column's lines sit beside the left one's line gaps: few rows have ink on both
    sides of the gutter, but each side has its own rows and nothing runs through it."""
    ink = np.zeros((420, 600), dtype=bool)
    left, right = [20 + 28 * k for k in range(14)], [20 + offset + 28 * k for k in range(10)]
    _lines(ink, left, 10, 290)
    _lines(ink, right, 310, 590)
    pieces = split_at_gutters([_quad(8, left[9] - 2, 592, right[9] + 20)], ink)  # the right column's last line
    assert len(pieces) == 2, pieces
    (a0, a1), (b0, b1) = ((piece[0][0], piece[1][0]) for piece in pieces)
    assert a0 == 8 and b1 == 592 and 290 <= a1 < b0 <= 310  # cut in the gutter, a margin kept on each side


def test_a_wide_word_space_is_not_cut() -> None:
    """The lines around run through it; nor is one with a short line above and an indented line below."""
    ink = np.zeros((420, 600), dtype=bool)
    _lines(ink, [20 + 28 * k for k in range(12)], 10, 590)
    top = 20 + 28 * 6
    ink[top:top + 18, 290:310] = False
    line = _quad(8, top - 2, 592, top + 20)
    assert split_at_gutters([line], ink) == [line]
    ink[top - 28:top - 10, 250:590] = False  # the paragraph above ends short
    ink[top + 28:top + 46, 10:330] = False  # the next one starts indented
    assert split_at_gutters([line], ink) == [line]


def test_a_short_words_slanted_box_is_trimmed_to_its_ink() -> None:
    """A section number's detector rectangle on a straightened scan: slanted and twice its ink's width, reaching
    into the gutter; trimmed to the ink. A long slanted line keeps its quad (its slant is the text's)."""
    ink = np.zeros((60, 200), dtype=bool)
    ink[20:45, 100:116] = True  # a bold "4", 16 pixels wide
    slanted = [[88.0, 21.0], [126.0, 8.0], [130.0, 44.0], [92.0, 57.0]]  # 40 wide, 36 high, slanted by 13 pixels
    trimmed = np.asarray(trim_to_ink(slanted, ink))
    assert (trimmed[:, 0].min(), trimmed[:, 0].max()) == (100.0, 116.0)
    assert trimmed[:, 1].min() <= 20 and trimmed[:, 1].max() >= 45
    line = [[10.0, 25.0], [190.0, 10.0], [190.0, 40.0], [10.0, 55.0]]  # long, slanted by 15 pixels
    assert trim_to_ink(line, np.ones((60, 200), dtype=bool)) == line
