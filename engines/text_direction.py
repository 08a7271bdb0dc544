"""Born-digital pages whose text runs up or down the page: read turned so that it runs across.

LaTeX's ``sidewaystable`` and ``sidewaysfigure`` (the ``rotating`` package) set a wide
table or figure on a portrait page turned a quarter, with no ``/Rotate``; a page turned in
a viewer and saved, or a landscape page stored in portrait, shows its text sideways too.
The layout model reads pages upright: on such a page it took the table and its caption
for one picture. MuPDF gives each text line's writing direction, so the page's own text
says how it lies (scans have no text layer and go through ``engines.orientation``
instead). The engine turns its throwaway copy of the page so that most of the text runs
left to right, lays that out, and maps the boxes back onto the page as it is shown.
Lines in vertical writing mode (CJK set top to bottom) run down the page by design and
do not vote.
"""

from __future__ import annotations

import numpy as np

from engines.deskew import Matrix

#: Share of the page's characters that must run one way for the page to be read turned that way.
MIN_SHARE = 0.6
#: Fewer characters than this (a page number, a rotated axis label) never turn a page.
MIN_CHARACTERS = 40


def content_turn(blocks: list[dict]) -> int:
    """The clockwise turn (0, 90, 180 or 270 degrees) of a page's text as shown, from its ``get_text("dict")``
    ``blocks`` (of the page without ``/Rotate``): 90 where most of it runs down the page, 270 up (``sidewaystable``),
    180 upside down, 0 across or when no direction has ``MIN_SHARE``."""
    counts = dict.fromkeys((0, 90, 180, 270), 0)
    for block in blocks:
        for line in block.get("lines", ()):
            if line.get("wmode"):
                continue
            dx, dy = line["dir"]
            turn = (0 if dx > 0 else 180) if abs(dx) >= abs(dy) else (90 if dy > 0 else 270)
            counts[turn] += sum(len(span["text"].strip()) for span in line["spans"])
    total = sum(counts.values())
    turn = max(counts, key=counts.__getitem__)
    return turn if total >= MIN_CHARACTERS and counts[turn] >= MIN_SHARE * total else 0


def read_turned(page, turn: int, scale: float) -> Matrix:
    """Turn ``page`` (without a ``/Rotate`` of its own) back by the text's clockwise ``turn``, its content included
    (``remove_rotation``); the matrix that takes a point of the turned page, in pixels at ``scale``, back onto
    the page as shown, in pixels."""
    page.set_rotation((360 - turn) % 360)
    forward = page.rotation_matrix  # unturned page -> turned page, in points
    page.remove_rotation()
    back = ~forward
    return np.array([[back.a, back.c, back.e * scale], [back.b, back.d, back.f * scale]])
