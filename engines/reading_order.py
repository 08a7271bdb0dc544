"""Reading order of a page's elements from their boxes: columns first, floats kept in their column.

One general mechanism for born-digital and scanned pages alike (it sees only boxes), so a
page and its scanned twin come out in the same order. A recursive XY-cut:

* A region whose boxes leave a vertical gap from top to bottom is split there into
  columns, read left to right, each ordered recursively. A float inside a column (figure,
  table, caption) is just another box of that column, so it cannot split the column's text.
  Only a gap with boxes side by side across it parts columns: boxes that merely take turns
  down the page on either side of it (a letter's right-aligned date between its address
  and its salutation) are ordered by the stripes below.
* Otherwise the region is cut at its horizontal gaps into stripes. Its gutter is the gap
  between the columns of its multi-column stripes that hold column text (not authors'
  names side by side), the one most of their height agrees on. Stripes with a box across
  the gutter (a title, an abstract across both columns, a wide table or figure) are read
  where they stand; the runs of stripes between them are read column by column, each box
  in the column its centre is in. So a column goes on through the paragraph breaks of its
  neighbour, past a picture the scan has no element for, below the end of its neighbour,
  and through a line that pokes into the gutter (an overfull line). A short heading that
  ends a run just above full-width text belongs to that text, not to the left column.
  Where a run's one-sided stripes go left, right and left again with nothing on both
  sides between them (a letter: date on the right, subject and salutation on the left),
  the text takes turns rather than running in columns, and from there it is read stripe
  by stripe. Without a gutter the stripes are read top to bottom.
* Page headers come first and page footers last, each ordered the same way (a row left to right).

Gaps are measured on boxes narrowed by ``tolerance`` (a share of the page width) on
each side, because OCR line boxes are widened by the text detector and may reach into a
narrow gutter.
"""

from __future__ import annotations

from typing import Sequence

Box = Sequence[float]  # x0, y0, x1, y1

_FIRST, _LAST = "Page-header", "Page-footer"


def reading_order(boxes: Sequence[Box], categories: Sequence[str] | None = None, page_width: float | None = None,
                  tolerance: float = 0.006) -> list[int]:
    """Indices of ``boxes`` in reading order (page headers first, page footers last)."""
    categories = list(categories) if categories is not None else ["Text"] * len(boxes)
    if page_width is None:
        page_width = max((float(b[2]) for b in boxes), default=0.0)
    shrink = tolerance * page_width
    narrowed = [_narrow(box, shrink) for box in boxes]
    first = [i for i, c in enumerate(categories) if c == _FIRST]
    last = [i for i, c in enumerate(categories) if c == _LAST]
    body = [i for i, c in enumerate(categories) if c not in (_FIRST, _LAST)]
    return _order(first, narrowed) + _order(body, narrowed) + _order(last, narrowed)


def columns(boxes: Sequence[Box], page_width: float, tolerance: float = 0.006) -> list[list[int]]:
    """Indices of ``boxes`` grouped into the columns that vertical gaps running through all of them separate, left to right."""
    narrowed = [_narrow(box, tolerance * page_width) for box in boxes]
    return _columns(list(range(len(boxes))), narrowed)


def _narrow(box: Box, shrink: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    cut = min(shrink, max(0.0, (x1 - x0) / 2 - 0.5))
    return x0 + cut, y0, x1 - cut, y1


def _groups(indices: list[int], boxes, axis: int) -> list[list[int]]:
    """``indices`` split where their boxes' projections on ``axis`` (0: x, 1: y) leave a gap, in order."""
    ordered = sorted(indices, key=lambda i: (boxes[i][axis], boxes[i][axis + 2]))
    groups: list[list[int]] = []
    end = float("-inf")
    for index in ordered:
        start, stop = boxes[index][axis], boxes[index][axis + 2]
        if groups and start < end:
            groups[-1].append(index)
            end = max(end, stop)
        else:
            groups.append([index])
            end = stop
    return groups


def _columns(indices: list[int], boxes) -> list[list[int]]:
    return _groups(indices, boxes, 0) if len(indices) > 1 else [indices]


def _order(indices: list[int], boxes) -> list[int]:
    if len(indices) <= 1:
        return list(indices)
    columns = _side_by_side(_columns(indices, boxes), boxes)
    if len(columns) > 1:
        return [i for column in columns for i in _order(column, boxes)]
    stripes = _groups(indices, boxes, 1)
    if len(stripes) == 1:  # boxes overlap both ways: top to bottom, then left to right
        return sorted(indices, key=lambda i: (boxes[i][1], boxes[i][0]))
    gutter = _gutter(stripes, boxes)
    if gutter is None:  # one column: its stripes top to bottom
        return [i for stripe in stripes for i in _order(stripe, boxes)]
    middle = (gutter[0] + gutter[1]) / 2
    out: list[int] = []
    for block, beside in _blocks(stripes, boxes, gutter):
        left = [i for i in block if (boxes[i][0] + boxes[i][2]) / 2 < middle]
        right = [i for i in block if (boxes[i][0] + boxes[i][2]) / 2 >= middle]
        if beside and left and right:
            out += _order(left, boxes) + _order(right, boxes)
        elif len(block) < len(indices):
            out += _order(block, boxes)
        else:  # all on one side of the gutter, which their stripes' gaps gave: read as they stand
            out += sorted(block, key=lambda i: (boxes[i][1], boxes[i][0]))
    return out


def _heights(indices: list[int], boxes) -> list[tuple[float, float]]:
    """The heights the boxes cover, as sorted disjoint intervals."""
    spans: list[tuple[float, float]] = []
    for y0, y1 in sorted((boxes[i][1], boxes[i][3]) for i in indices):
        if spans and y0 < spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], y1))
        else:
            spans.append((y0, y1))
    return spans


def _beside(a: list[int], b: list[int], boxes) -> bool:
    """Whether a box of ``a`` and a box of ``b`` share some height (sit beside each other)."""
    first, second = _heights(a, boxes), _heights(b, boxes)
    i = j = 0
    while i < len(first) and j < len(second):
        if min(first[i][1], second[j][1]) > max(first[i][0], second[j][0]):
            return True
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return False


def _side_by_side(columns: list[list[int]], boxes) -> list[list[int]]:
    """``columns`` joined across each gap that no box beside the other side's boxes spans: boxes that only take
    turns down the page on either side of a gap (a letter's right-aligned date between its address and its
    salutation) are not columns, and their stripes order them."""
    joined = [list(columns[0])]
    for k in range(1, len(columns)):
        if _beside([i for column in columns[:k] for i in column], [i for column in columns[k:] for i in column], boxes):
            joined.append(list(columns[k]))
        else:
            joined[-1].extend(columns[k])
    return joined


def _turn_taking(run: list[list[int]], boxes, middle: float) -> int | None:
    """Where the run's text starts taking turns from side to side, or None: the first stripe of the middle one
    of three one-sided stretches in a row (left, right, left again, no stripe with both sides among them).

    One-sided stripes in columns are a column that starts lower or ends sooner than its
    neighbour, or goes on beside a picture the scan has no element for, and text on both
    sides comes between such stretches. A letter's blocks take turns: its address beside
    the reference field, then the date alone on the right, the subject and salutation
    alone on the left.
    """
    stretches: list[tuple[bool, int]] = []  # side (left?), first stripe
    both: list[int] = []  # stripes with text on both sides
    for position, stripe in enumerate(run):
        sides = {(boxes[i][0] + boxes[i][2]) / 2 < middle for i in stripe}
        if len(sides) == 2:
            both.append(position)
            continue
        side = sides.pop()  # a new stretch on a change of side, or after text on both sides
        if not stretches or stretches[-1][0] != side or (both and both[-1] > stretches[-1][1]):
            stretches.append((side, position))
    for before, middle_stretch, after in zip(stretches, stretches[1:], stretches[2:]):
        if before[0] != middle_stretch[0] != after[0] and not any(before[1] < b < after[1] for b in both):
            return middle_stretch[1]
    return None


def _extent(indices: list[int], boxes) -> tuple[float, float]:
    return min(boxes[i][0] for i in indices), max(boxes[i][2] for i in indices)


def _gutter(stripes: list[list[int]], boxes, wide: float = 0.25) -> tuple[float, float] | None:
    """The x interval of the region's column gutter, or None: of the gaps between the columns of its
    multi-column stripes that hold column text (a box ``wide`` of the region's width or wider; not
    authors' names side by side), the one most of their height agrees on."""
    x0, x1 = _extent([i for stripe in stripes for i in stripe], boxes)
    candidates: list[tuple[float, float, float]] = []  # gap x0, gap x1, height of the stripe
    for stripe in stripes:
        columns = _columns(stripe, boxes)
        if len(columns) < 2 or max(boxes[i][2] - boxes[i][0] for i in stripe) < wide * (x1 - x0):
            continue
        height = max(boxes[i][3] for i in stripe) - min(boxes[i][1] for i in stripe)
        for before, after in zip(columns, columns[1:]):
            candidates.append((_extent(before, boxes)[1], _extent(after, boxes)[0], height))
    best, support = None, 0.0
    for a0, a1, _ in candidates:
        agree = [(b0, b1, h) for b0, b1, h in candidates if b0 < a1 and b1 > a0]
        weight = sum(h for _, _, h in agree)
        if weight > support:
            best, support = (a0, a1), weight
    return best


def _blocks(stripes: list[list[int]], boxes, gutter: tuple[float, float],
            reach: float = 0.05, narrow: float = 0.6) -> list[tuple[list[int], bool]]:
    """Stripes, top to bottom, as blocks: runs of stripes beside the gutter (True: read column by column) and
    stripes across it (False: read as they stand).

    A stripe is across the gutter when one of its boxes reaches ``reach`` of the region's
    width past it on both sides, or half the width of a narrower side (a title, a wide
    table, a full-width paragraph; a column's overfull line that pokes into the gutter is
    not), or when it has only narrow boxes on both sides (authors' names side by side). A
    run's stripes need not have text on both sides: a column that starts below a picture
    the scan has no element for, or goes on below the end of its neighbour, is still that
    column. Narrow stripes (less than ``narrow`` of their column's width) that end a run
    just above a stripe across the gutter (a short heading over full-width text) lead into
    that stripe.
    """
    x0, x1 = _extent([i for stripe in stripes for i in stripe], boxes)
    left_reach = min(reach * (x1 - x0), 0.5 * (gutter[0] - x0))  # a column of an equation number is narrow
    right_reach = min(reach * (x1 - x0), 0.5 * (x1 - gutter[1]))

    def is_narrow(stripe: list[int]) -> bool:
        s0, s1 = _extent(stripe, boxes)
        column = gutter[0] - x0 if (s0 + s1) / 2 < gutter[0] else x1 - gutter[1]
        return s1 - s0 < narrow * column

    def across(stripe: list[int]) -> bool:
        if any(boxes[i][0] < gutter[0] - left_reach and boxes[i][2] > gutter[1] + right_reach for i in stripe):
            return True
        sides = {(boxes[i][0] + boxes[i][2]) / 2 < gutter[0] for i in stripe}
        return len(sides) == 2 and all(is_narrow([i]) for i in stripe)  # names side by side, read across

    def column_run(run: list[list[int]]) -> list[tuple[list[int], bool]]:
        if not run:
            return []
        turns = _turn_taking(run, boxes, (gutter[0] + gutter[1]) / 2)
        if turns is None:
            return [([i for s in run for i in s], True)]
        # the columns above, then stripe by stripe
        return ([([i for s in run[:turns] for i in s], True)] if turns else []) + [(stripe, False) for stripe in run[turns:]]

    blocks: list[tuple[list[int], bool]] = []
    run: list[list[int]] = []
    for stripe in stripes:
        if not across(stripe):
            run.append(stripe)
            continue
        keep = len(run)
        while keep and is_narrow(run[keep - 1]):
            keep -= 1
        blocks += column_run(run[:keep])
        blocks.append(([i for s in run[keep:] for i in s] + stripe, False))
        run = []
    return blocks + column_run(run)
