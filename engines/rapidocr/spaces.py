"""Word spaces put back into a recognized line from its pixels.

The PP-OCRv4 recognizer is trained mostly on Chinese, where words carry no spaces, and on
English text it drops many of them ("inspectionof thereservoirwall"). A blank column run
in the line crop wider than a fraction of the line height is a word gap (if the
recognizer's characters also sit far apart there, or the run is very wide), and the
recognizer's CTC column positions say between which two characters it falls. Numbers,
punctuation and apostrophes get stricter rules, so "97.5%" and "it's" stay whole. Known
misses: overhanging pairs with no blank column between the words ("fox jumps", "of AT&T").
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from engines.rapidocr.content_bands import blank_runs

#: Characters that never take a space before them (English typography).
_NO_SPACE_BEFORE = frozenset(".,;:!?%)]}")
#: Characters that never take a space after them.
_NO_SPACE_AFTER = frozenset("([{")
#: Characters that may sit tight against a digit inside one number ("97.5%", "1,200", "3/4").
_NUMERIC_JOINERS = frozenset(".,%/:-")
#: Apostrophes and single quotes: "it's" must not become "it ' s".
_APOSTROPHES = frozenset("'\u2018\u2019`")


def char_centers(word_info: Any, crop_width: int) -> list[float]:
    """x centre (crop pixels) of each recognized character, from the CTC decoding columns.

    ``word_info`` is RapidOCR's ``[col_num, words, word_cols, states, confs]``; its
    ``col_num`` is already scaled to the unpadded crop, so column c spans
    ``[c, c + 1] * crop_width / col_num``.
    """
    col_num, _, word_cols = word_info[0], word_info[1], word_info[2]
    step = crop_width / max(float(col_num), 1e-6)
    return [(col + 0.5) * step for cols in word_cols for col in cols]


def ink_mask(crop: np.ndarray) -> np.ndarray:
    """Boolean ink mask of a line crop: Otsu threshold, ink is the minority class.

    Returns an all-False mask for crops without contrast (blank paper, flat fills), where
    Otsu would otherwise split noise into "ink".
    """
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    if int(gray.max()) - int(gray.min()) < 40:
        return np.zeros(gray.shape, dtype=bool)
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    ink = binary.astype(bool)
    return ~ink if ink.mean() > 0.5 else ink  # light text on a dark ground


def needs_wider_gap(left: str, right: str) -> bool:
    """True inside numbers ("97.5%", "120"), where digits such as 1 leave wide side gaps."""
    return (left.isdigit() and (right.isdigit() or right in _NUMERIC_JOINERS)) or (
        right.isdigit() and left in _NUMERIC_JOINERS
    )


def space_allowed(left: str, right: str) -> bool:
    """Typography: no new space next to a space, before "." or ")", after "(", or at an apostrophe."""
    return not (
        left.isspace()
        or right.isspace()
        or right in _NO_SPACE_BEFORE
        or left in _NO_SPACE_AFTER
        or left in _APOSTROPHES
        or right in _APOSTROPHES
    )


def pitch_ratios(centers: Sequence[float] | np.ndarray) -> np.ndarray:
    """Distance from each character's centre to the previous one, over the line's median.

    Index i compares characters i-1 and i (index 0 is 1.0). When the recognizer swallows a
    space it still tends to leave its blank CTC column, so a dropped space shows as a
    ratio well above 1, while the wide side gaps of monospaced "i" or "l" do not.
    """
    xs = np.asarray(centers, dtype=float)
    if xs.size < 4:  # too few characters for a typical pitch: do not veto
        return np.full(xs.size, np.inf)
    steps = np.diff(xs)
    median = float(np.median(steps))
    return np.concatenate(([1.0], steps / median if median > 0 else np.full(steps.size, np.inf)))


def insert_spaces(
    text: str,
    centers: Sequence[float],
    gaps: Sequence[tuple[int, int]],
    min_gap: float,
    *,
    sure_factor: float = 1.5,
    number_factor: float = 1.6,
    min_pitch_ratio: float = 1.25,
) -> str:
    """Insert a space into ``text`` at each pixel gap that the recognizer left unspaced.

    ``centers[i]`` is the x of ``text[i]``; a gap [start, end) falls between the two
    characters whose centres straddle its middle. A gap counts as a word space when it is
    at least ``min_gap`` wide and the recognizer's characters also sit unusually far apart
    there (``min_pitch_ratio``), or when it is ``sure_factor`` times ``min_gap`` wide on its
    own. Inside numbers both widths grow by ``number_factor``; ``space_allowed`` vetoes
    the rest.
    """
    if len(centers) != len(text) or not text:
        return text
    xs = np.asarray(centers, dtype=float)
    ratios = pitch_ratios(xs)
    cuts: set[int] = set()
    for start, end in gaps:
        cut = int(np.searchsorted(xs, (start + end) / 2))  # the new space goes before text[cut]
        if cut <= 0 or cut >= len(text) or not space_allowed(text[cut - 1], text[cut]):
            continue
        needed = min_gap * (number_factor if needs_wider_gap(text[cut - 1], text[cut]) else 1.0)
        width = end - start
        if width >= sure_factor * needed or (width >= needed and ratios[cut] >= min_pitch_ratio):
            cuts.add(cut)
    for cut in sorted(cuts, reverse=True):
        text = text[:cut] + " " + text[cut:]
    return text


def restore_spaces(text: str, centers: Sequence[float], crop: np.ndarray, gap_ratio: float) -> str:
    """Put back the word spaces the recognizer dropped, from blank column runs in ``crop``."""
    ink = ink_mask(crop)
    gaps = blank_runs(np.asarray(ink.any(axis=0)))
    return insert_spaces(text, centers, gaps, min_gap=gap_ratio * crop.shape[0])
