"""The engine interface: model back-ends that turn page images into layout elements or text.

Engines know nothing of Ray. The Ray actors in ``actors/`` construct one engine per
actor (so models load once) and call it on batches. An engine is chosen by name in
``ray_config.yaml`` (see ``engines.registry``); CPU engines ship inside pip packages
and GPU engines (DOTS, Gemma) plug into the same two protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

#: The DOTS layout classes; every element's category is one of these.
CATEGORIES: tuple[str, ...] = (
    "Caption",
    "Footnote",
    "Formula",
    "List-item",
    "Page-footer",
    "Page-header",
    "Picture",
    "Section-header",
    "Table",
    "Text",
    "Title",
)


@dataclass(frozen=True)
class PageMeta:
    """What an engine may know about a page besides its pixels.

    ``scale`` maps PDF points to page pixels (pixels = points * scale), so engines that
    read the PDF itself can return boxes in page pixels. ``pdf_bytes`` is a one-page
    PDF holding just this page (image inputs are converted to one), or None.
    """

    doc_id: str
    source: str
    page_number: int  # 1-based, as in the input document
    width: int  # page image size in pixels
    height: int
    scale: float = 1.0
    pdf_bytes: bytes | None = None
    has_text_layer: bool = False


@dataclass
class PageImage:
    """A rasterized page (RGB, uint8, H x W x 3) with its metadata.

    ``image`` is None for an engine registered as reading the PDF (``reads="pdf"`` in
    ``engines.registry``): the pipeline does not rasterize pages for it.
    """

    image: np.ndarray | None
    meta: PageMeta


@dataclass
class Element:
    """One layout element: bbox in page pixels [x0, y0, x1, y1], a DOTS category and its text.

    Tables carry HTML and formulas LaTeX in ``text`` where the engine gives them;
    Picture elements carry no text (their words come from picture OCR).
    """

    bbox: list[float]
    category: str
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"bbox": [round(float(v), 2) for v in self.bbox], "category": self.category, "text": self.text}


@dataclass(frozen=True)
class PageError:
    """A page the engine answered but could not fully read (e.g. model output that stays invalid).

    Unlike an exception, it travels with the elements that *were* read, so nothing
    already recovered is thrown away; the page is still counted as failed.
    """

    kind: str
    message: str


@dataclass
class PageLayout:
    """An engine's result for one page: elements in reading order plus engine notes."""

    elements: list[Element] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. {"ocr": True}, {"retries": 1, "raw_output": ...}
    error: PageError | None = None


@runtime_checkable
class LayoutEngine(Protocol):
    """Finds elements (boxes, categories, text) on whole pages."""

    name: str

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        """Return one PageLayout per input page, in input order. May raise; callers retry."""
        ...


@runtime_checkable
class PictureOCREngine(Protocol):
    """Reads the text in picture-region crops."""

    name: str

    def recognize(self, crops: Sequence[np.ndarray]) -> list[str]:
        """Return the text of each RGB crop, in input order (empty string for no text)."""
        ...


def clip_bbox(bbox: Sequence[float], width: float, height: float) -> list[float]:
    """Clip a box to the page, keeping x0 <= x1 and y0 <= y1."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    x0, x1 = sorted((min(max(x0, 0.0), width), min(max(x1, 0.0), width)))
    y0, y1 = sorted((min(max(y0, 0.0), height), min(max(y1, 0.0), height)))
    return [x0, y0, x1, y1]
