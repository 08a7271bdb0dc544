"""Page selection such as ``1-3,7`` or ``5-`` (1-based, inclusive)."""

from __future__ import annotations

import re

_PART = re.compile(r"^\s*(\d*)\s*(-)?\s*(\d*)\s*$")


def parse_page_ranges(spec: str) -> list[tuple[int, int | None]]:
    """Parse ``"1-3,7,10-"`` into ``[(1, 3), (7, 7), (10, None)]``; raises ValueError naming the bad part."""
    ranges: list[tuple[int, int | None]] = []
    for part in spec.split(","):
        match = _PART.match(part)
        if not part.strip() or not match or not (match.group(1) or match.group(3)):
            raise ValueError(f"page selection {spec!r}: bad part {part!r} (use forms like 1-3,7,10-)")
        first, dash, last = match.groups()
        start = int(first) if first else 1
        end: int | None = int(last) if last else (None if dash else start)
        if start < 1 or (end is not None and end < start):
            raise ValueError(f"page selection {spec!r}: bad range {part.strip()!r} (pages count from 1, start <= end)")
        ranges.append((start, end))
    return ranges


def select_pages(page_count: int, spec: str | None = None, max_pages: int | None = None) -> list[int]:
    """The 1-based page numbers of a document to process, in order, without duplicates."""
    if spec:
        chosen: set[int] = set()
        for start, end in parse_page_ranges(spec):
            chosen.update(range(start, min(end if end is not None else page_count, page_count) + 1))
        pages = sorted(chosen)
    else:
        pages = list(range(1, page_count + 1))
    return pages[:max_pages] if max_pages else pages
