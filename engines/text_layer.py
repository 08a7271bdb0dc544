"""Element text from the page's own text layer: MuPDF's words, each given to exactly one element.

Why words and not the layout library's text lines: pdfTeX and LuaTeX place words by
position and write no space characters. MuPDF puts the spaces back from the glyph
positions (as ``page.get_text()`` shows them), as separate space spans; pymupdf4llm's
``parse_document`` drops blank spans from its lines, so joining its spans ran the words
together ("ThismanualisforGNULibtasn1"). MuPDF's words keep its spaces, expand
ligatures ("ﬁ" becomes "fi": the flags leave ``TEXT_PRESERVE_LIGATURES`` out) and carry
their boxes, so each word can go to exactly one element, and words no element covers
(a running header the layout model missed) become elements of their own: nothing is
dropped or read twice.

Within an element, words keep MuPDF's order and lines (the text layer's own order: the
order in which a TeX or office document, or the OCR layer, wrote them, which inside one
paragraph, caption or figure is its reading order; the order between elements is
``engines.reading_order``'s), and a hyphen that ends a line before a lower-case letter is
undone ("ex-" + "periment" is "experiment").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

Rect = tuple[float, float, float, float]


@dataclass(frozen=True)
class Word:
    """One word of the text layer: box in PDF points, text, and MuPDF's block, line and word numbers."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    block: int
    line: int
    number: int
    order: int = 0  # its place in the page's words: MuPDF's (the text layer's) order


def page_words(page) -> list[Word]:
    """The page's words as MuPDF extracts them: its word spaces, ligatures expanded, invisible (OCR) text included."""
    import pymupdf

    flags = (pymupdf.TEXT_MEDIABOX_CLIP | pymupdf.TEXT_ACCURATE_BBOXES  # the layout model's boxes use accurate bboxes too
             | pymupdf.TEXT_CID_FOR_UNKNOWN_UNICODE)  # as get_text() does for glyphs without Unicode
    return [Word(*word, order=index) for index, word in enumerate(page.get_text("words", flags=flags))]


def segments(words: Sequence[Word], gap: float = 1.0, narrow: float = 0.4, reach: float = 2.0) -> list[list[int]]:
    """Indices of ``words`` in runs along one MuPDF line, cut at a column gutter: where the space between two
    words is wider than ``gap`` times the line's median word height, or wider than ``narrow`` times it and no
    word of the page crosses its middle from ``reach`` line heights above to as far below.

    MuPDF joins text on one baseline into one line even across a gutter (the OCR layer's
    lines of both columns, a caption beside a table); a run is what one element reads. A
    LaTeX gutter (10 pt) is narrower than a line is tall; what tells it from a wide word
    space of justified text is that the lines around it leave it blank too.
    """
    runs: list[list[int]] = []
    key: tuple[int, int] | None = None
    for index, word in enumerate(words):
        if (word.block, word.line) != key:
            runs.append([index])
            key = (word.block, word.line)
        else:
            runs[-1].append(index)
    boxes = np.asarray([(w.x0, w.y0, w.x1, w.y1) for w in words], dtype=float).reshape(-1, 4)

    def blank_around(x0: float, x1: float, y0: float, y1: float, height: float) -> bool:
        middle0, middle1 = x0 + 0.3 * (x1 - x0), x1 - 0.3 * (x1 - x0)
        near = (boxes[:, 3] > y0 - reach * height) & (boxes[:, 1] < y1 + reach * height)
        return not (near & (boxes[:, 0] < middle1) & (boxes[:, 2] > middle0)).any()

    out: list[list[int]] = []
    for run in runs:
        height = float(np.median([words[i].y1 - words[i].y0 for i in run]))
        out.append([run[0]])
        for previous, index in zip(run, run[1:]):
            left, right = words[previous], words[index]
            space = right.x0 - left.x1
            if space > gap * height or (space > narrow * height and blank_around(
                    left.x1, right.x0, min(left.y0, right.y0), max(left.y1, right.y1), height)):
                out.append([index])
            else:
                out[-1].append(index)
    return out


def assign_words(words: Sequence[Word], rects: Sequence[Rect]) -> tuple[list[list[Word]], list[Word]]:
    """Each run of words (``segments``) to one rect: the smallest holding its centre, else the one it overlaps
    most; runs no rect touches are left over.

    Runs, not single words, because the layout model's boxes overlap (more so on OCR'd
    pages): word by word, the left half of a line could go to one box and its right half
    to another. Returns the words of each rect (in ``words``' order) and the words left over.
    """
    owned: list[list[Word]] = [[] for _ in rects]
    if not words:
        return owned, []
    if not rects:
        return owned, list(words)
    runs = segments(words)
    boxes = np.asarray(rects, dtype=float).reshape(-1, 4)
    spans = np.asarray([bounds([words[i] for i in run]) for run in runs], dtype=float)
    cx, cy = (spans[:, 0] + spans[:, 2]) / 2, (spans[:, 1] + spans[:, 3]) / 2
    inside = ((boxes[None, :, 0] <= cx[:, None]) & (cx[:, None] <= boxes[None, :, 2])
              & (boxes[None, :, 1] <= cy[:, None]) & (cy[:, None] <= boxes[None, :, 3]))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    overlap = (np.clip(np.minimum(spans[:, None, 2], boxes[None, :, 2]) - np.maximum(spans[:, None, 0], boxes[None, :, 0]), 0, None)
               * np.clip(np.minimum(spans[:, None, 3], boxes[None, :, 3]) - np.maximum(spans[:, None, 1], boxes[None, :, 1]), 0, None))
    owner = np.full(len(words), -1)
    for index, run in enumerate(runs):
        holders = np.flatnonzero(inside[index])
        if holders.size:
            owner[run] = int(holders[np.argmin(areas[holders])])
        elif overlap[index].max() > 0:
            owner[run] = int(overlap[index].argmax())
    left: list[Word] = []
    for word, rect in zip(words, owner):
        (owned[rect] if rect >= 0 else left).append(word)
    return owned, left


def lines(words: Sequence[Word]) -> list[str]:
    """The text of ``words`` line by line: runs of words on one MuPDF line, in the order given, one space apart."""
    out: list[str] = []
    current: tuple[int, int] | None = None
    for word in words:
        key = (word.block, word.line)
        if key == current:
            out[-1] += " " + word.text
        else:
            out.append(word.text)
            current = key
    return out


def join_lines(lines_text: Sequence[str]) -> str:
    """Lines as running text, end-of-line hyphenation undone."""
    text = ""
    for row in lines_text:
        row = row.strip()
        if not row:
            continue
        if len(text) > 1 and text.endswith("-") and text[-2].isalpha() and row[:1].islower():
            text = text[:-1] + row
        else:
            text = f"{text} {row}" if text else row
    return text


def words_text(words: Sequence[Word]) -> str:
    """Running text of ``words`` (an element's)."""
    return join_lines(lines(words))


def split_columns(words: Sequence[Word], page: Sequence[Word], page_width: float, widen: float = 0.004,
                  reach: float = 2.0, wide: float = 0.5, column: float = 0.2) -> list[list[Word]]:
    """``words`` (an element's) split at the page's column gutters they straddle; one group when none.

    On a scanned two-column page the layout model can take lines of both columns for one
    paragraph, or a few words of the neighbouring column into a box (MuPDF even joins an
    OCR line with its neighbour across the gutter into one line); splitting the element
    there lets reading order put each part in its column. A gap between the element's
    words (widened by ``widen`` page widths on each side, so word spaces close) splits it
    only where it is a gutter of the page: no word of ``page`` crosses it beside the
    element, and either the element has two rows or more with words on both sides of it
    (lines of two columns side by side), or no word of ``page`` crosses it from ``reach``
    word heights above the element to as far below and one side holds two lines or more,
    or the gap is at least ``wide`` word heights wide and the rows just above or below
    the element have lines on both sides of it, each side at least ``column`` page widths
    across (a caption's line beside the next column's heading, on one baseline: the
    columns go on around them; a list's numbers beside its items do not). So a section
    number and its title, or an equation and its number, stay one element (one row; the
    text above and below runs through their gaps), and a line on its own (a title
    between blank space) does not split at its word spaces; a column's overfull line just
    below the element does not keep two columns' lines together. Words keep their order
    within each group.
    """
    from engines.reading_order import columns

    if len(words) < 2:
        return [list(words)]
    groups = columns([(w.x0, w.y0, w.x1, w.y1) for w in words], page_width, tolerance=-widen)
    if len(groups) < 2:
        return [list(words)]
    boxes = np.asarray([(w.x0, w.y0, w.x1, w.y1) for w in page], dtype=float).reshape(-1, 4)
    height = float(np.median([w.y1 - w.y0 for w in words]))
    margin = reach * height
    y0, y1 = min(w.y0 for w in words), max(w.y1 for w in words)
    beside = boxes[(boxes[:, 3] > y0) & (boxes[:, 1] < y1)]
    near = boxes[(boxes[:, 3] > y0 - margin) & (boxes[:, 1] < y1 + margin)]

    def crossed(found: np.ndarray, gap0: float, gap1: float) -> bool:
        return bool(((found[:, 0] < gap1) & (found[:, 2] > gap0)).any())

    def lines(indices: Sequence[int]) -> int:
        return len({(words[i].block, words[i].line) for i in indices})

    outside = near[(near[:, 3] <= y0) | (near[:, 1] >= y1)]  # the rows just above and below the element

    def gutter_goes_on(gap0: float, gap1: float) -> bool:
        """Lines of text on both sides of the gap above or below the element (each side at least ``column``
        page widths across, not a list's bullets or numbers): the page's columns go on there."""
        left, right = outside[outside[:, 2] <= gap0], outside[outside[:, 0] >= gap1]
        return all(len(side) and side[:, 2].max() - side[:, 0].min() >= column * page_width for side in (left, right))

    merged = [list(groups[0])]
    for group in groups[1:]:
        left_edge, right_edge = _gutter_core(near, max(words[i].x1 for i in merged[-1]), min(words[i].x0 for i in group))
        gap0 = left_edge + widen * page_width  # the gap's core: neighbouring lines
        gap1 = right_edge - widen * page_width  # of justified text end a little apart
        split = gap1 > gap0 and not crossed(beside, gap0, gap1) and (
            _two_sided_rows(words, merged[-1], group) >= 2
            or (not crossed(near, gap0, gap1) and (
                max(lines(merged[-1]), lines(group)) >= 2
                or (right_edge - left_edge >= wide * height and gutter_goes_on(gap0, gap1)))))
        if split:
            merged.append(list(group))
        else:
            merged[-1].extend(group)
    if len(merged) < 2:
        return [list(words)]
    return [[words[i] for i in sorted(group)] for group in merged]


def column_text(words: Sequence[Word], page: Sequence[Word], page_width: float, wide: float = 0.3, full: float = 0.9,
                rows: int = 3) -> list[list[Word]]:
    """The parts of ``words`` (a table's) that are a column's running text: where the layout model's table box
    reaches across the page's gutter over the next column's lines (seen on a worn, tilted scan).

    The words are split at the page's gutters as a text element's are (``split_columns``);
    a part is running text when it is at least ``wide`` page widths across and ``rows`` or
    more of its lines, and nearly all of them, run ``full`` of its width. A real table's
    parts are its cell columns: narrow, or lines of every length. Nothing when the box
    does not reach across a gutter.
    """
    parts = split_columns(words, page, page_width)
    if len(parts) < 2:
        return []
    running = []
    for part in parts:
        x0, x1 = min(w.x0 for w in part), max(w.x1 for w in part)
        spans = _line_spans(part, horizontal=True)
        long = sum(b - a >= full * (x1 - x0) for a, b in spans)
        if x1 - x0 >= wide * page_width and long >= rows and long >= 0.8 * len(spans):
            running.append(part)
    return running if len(running) < len(parts) else []  # all of it running text: columns of a table, kept


def _gutter_core(near: np.ndarray, left_edge: float, right_edge: float) -> tuple[float, float]:
    """The gap between an element's groups narrowed to what the page's words around leave blank: a word that
    starts inside the gap and runs on to the right (the next column's margin, where the element's own line
    is indented) moves its right edge in, one that ends inside it coming from the left its left edge; words
    inside it or across it stay, to tell that it is no gutter."""
    starts = near[(near[:, 0] > left_edge) & (near[:, 0] < right_edge) & (near[:, 2] >= right_edge)]
    ends = near[(near[:, 2] > left_edge) & (near[:, 2] < right_edge) & (near[:, 0] <= left_edge)]
    return (max(left_edge, float(ends[:, 2].max())) if len(ends) else left_edge,
            min(right_edge, float(starts[:, 0].min())) if len(starts) else right_edge)


def _line_spans(words: Iterable[Word], horizontal: bool) -> list[tuple[float, float]]:
    """Each MuPDF line's extent across (``horizontal``) or down the page, over ``words``."""
    spans: dict[tuple[int, int], tuple[float, float]] = {}
    for w in words:
        low, high = (w.x0, w.x1) if horizontal else (w.y0, w.y1)
        a, b = spans.get((w.block, w.line), (low, high))
        spans[(w.block, w.line)] = (min(a, low), max(b, high))
    return list(spans.values())


def _two_sided_rows(words: Sequence[Word], left: Sequence[int], right: Sequence[int]) -> int:
    """How many lines of ``left``'s words have a line of ``right``'s beside them (sharing half a line's height)."""
    others = _line_spans((words[i] for i in right), horizontal=False)
    return sum(any(min(b, d) - max(a, c) > 0.5 * min(b - a, d - c) for c, d in others)
               for a, b in _line_spans((words[i] for i in left), horizontal=False))


def merge_overlapping(parts: list[tuple[str, list[Word]]], mergeable: frozenset[str]) -> list[tuple[str, list[Word]]]:
    """Parts (category, words) of a ``mergeable`` category whose words' bounds overlap, merged, in place of the first.

    On OCR'd pages the layout model's boxes overlap inside a column (a paragraph box and,
    inside it, a box around one of its lines); each line went to one box, so the two
    parts' lines interleave and no order of the two parts reads them right. Merged, their
    words are in the text layer's order again. Two parts overlap when their bounds share
    more than half a line in height and half the narrower one's width. The merged part
    takes the category of the part with the most words.
    """
    rects = [bounds(words) if words and category in mergeable else None for category, words in parts]
    parent = list(range(len(parts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(rects):
        if a is None:
            continue
        line_i = float(np.median([w.y1 - w.y0 for w in parts[i][1]]))
        for j in range(i + 1, len(parts)):
            b = rects[j]
            if b is None:
                continue
            tall = min(a[3], b[3]) - max(a[1], b[1])
            wide = min(a[2], b[2]) - max(a[0], b[0])
            if tall > 0.5 * line_i and wide > 0.5 * min(a[2] - a[0], b[2] - b[0]):
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(parts)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(parts[members[0]])
            continue
        category = max((parts[i] for i in members), key=lambda part: len(part[1]))[0]
        out.append((category, sorted((w for i in members for w in parts[i][1]), key=lambda w: w.order)))
    return out


def word_groups(words: Sequence[Word]) -> list[list[Word]]:
    """Left-over words grouped by MuPDF's blocks, each group one element to be."""
    blocks: dict[int, list[Word]] = {}
    for word in words:
        blocks.setdefault(word.block, []).append(word)
    return list(blocks.values())


def bounds(words: Sequence[Word]) -> Rect:
    return (min(w.x0 for w in words), min(w.y0 for w in words), max(w.x1 for w in words), max(w.y1 for w in words))
