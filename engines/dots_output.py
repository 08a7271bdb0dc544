"""Turn DOTS's text output into report elements, keeping whatever parsed completely.

DOTS answers a layout prompt with a JSON list ``[{"bbox": [x1, y1, x2, y2],
"category": ..., "text": ...}, ...]`` whose boxes are in the pixels of the *resized*
image it saw. Real outputs go wrong in two ways this module absorbs:

* **cut off** at the token budget, often inside a long table's HTML: the list is read
  element by element with ``json.JSONDecoder.raw_decode`` and every element that
  decoded completely is kept; the page is marked incomplete so the engine can retry it
  with a larger budget;
* **off-page or malformed boxes, unknown categories**: boxes are scaled back to page
  pixels and clipped; degenerate or malformed boxes are dropped; an unknown category
  becomes ``Text``. Each is noted in ``notes``, never raised.

Text conventions of the report: tables stay HTML, formulas are LaTeX *without* display
delimiters (``$$ ... $$`` and ``\\[ ... \\]`` are stripped, so consumers add their own),
pictures carry no text (picture OCR reads them), other elements are Markdown as DOTS
writes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engines.base import CATEGORIES, Element, clip_bbox

_CATEGORY_BY_KEY = {re.sub(r"[^a-z]", "", c.lower()): c for c in CATEGORIES}
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```\s*$")
_FORMULA_DELIMITERS = re.compile(r"^\s*(\$\$|\\\[|\$)(.*?)(\$\$|\\\]|\$)\s*$", re.DOTALL)


@dataclass
class ParsedPage:
    elements: list[Element]
    complete: bool  # the whole output parsed; False: cut off or invalid, elements are what survived
    error: str | None  # why it is incomplete, for people
    raw: str
    notes: list[str] = field(default_factory=list)  # dropped boxes, unknown categories


def model_input_size(width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """(width, height) DOTS sees for a page: sides multiples of ``factor``, area within the budget (transformers' smart_resize)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    if width < 1 or height < 1:
        raise ValueError(f"image of {width}x{height} pixels has no area")
    try:
        resized_h, resized_w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as exc:
        raise ValueError(f"image of {width}x{height} pixels cannot be resized for DOTS: {exc}") from exc
    return int(resized_w), int(resized_h)


def parse_text(raw: str) -> str:
    """Plain-text modes (ocr, grounding_ocr): the text, without code fences or surrounding space."""
    return _FENCE.sub("", raw.strip()).strip()


def parse_layout(raw: str, model_size: tuple[int, int], page_size: tuple[int, int], mode: str = "layout_all") -> ParsedPage:
    """Elements in page pixels from a layout-mode output; never raises on bad output."""
    items, complete, error = _decode_items(raw)
    notes: list[str] = []
    elements = []
    for index, item in enumerate(items):
        element = _element(item, model_size, page_size, with_text=mode != "layout_only", notes=notes, index=index)
        if element is not None:
            elements.append(element)
    return ParsedPage(elements=elements, complete=complete, error=error, raw=raw, notes=notes)


def _decode_items(raw: str) -> tuple[list[Any], bool, str | None]:
    """The list's items that decoded completely, whether the whole output did, and what failed."""
    text = _FENCE.sub("", raw.strip()).strip()
    start = text.find("[")
    if start < 0:
        if text.startswith("{"):  # a single element without the list
            text, start = "[" + text + "]", 0
        else:
            return [], False, "output holds no JSON list"
    try:
        value = json.loads(text[start:])
        if isinstance(value, list):
            return value, True, None
        return [], False, f"output is JSON but not a list ({type(value).__name__})"
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    items: list[Any] = []
    position = start + 1
    while True:
        position = _skip(text, position, " \t\r\n,")
        if position >= len(text) or text[position] == "]":
            # Every element decoded, but something around them did not (e.g. trailing text).
            reason = "output ends after the list" if position < len(text) else "list never closed"
            return items, False, f"{reason}; {len(items)} complete elements"
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            return items, False, f"output cut off or invalid after {len(items)} complete elements ({exc.msg} at char {exc.pos})"
        items.append(item)


def _skip(text: str, position: int, characters: str) -> int:
    while position < len(text) and text[position] in characters:
        position += 1
    return position


def _element(item: Any, model_size: tuple[int, int], page_size: tuple[int, int], with_text: bool, notes: list[str], index: int) -> Element | None:
    if not isinstance(item, dict):
        notes.append(f"element {index}: not an object, dropped")
        return None
    bbox = item.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        notes.append(f"element {index}: malformed bbox {bbox!r}, dropped")
        return None
    (model_w, model_h), (page_w, page_h) = model_size, page_size
    sx, sy = page_w / model_w, page_h / model_h
    x0, y0, x1, y1 = clip_bbox([bbox[0] * sx, bbox[1] * sy, bbox[2] * sx, bbox[3] * sy], page_w, page_h)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        notes.append(f"element {index}: bbox {bbox} lies outside the page, dropped")
        return None
    raw_category = str(item.get("category", ""))
    category = _CATEGORY_BY_KEY.get(re.sub(r"[^a-z]", "", raw_category.lower()))
    if category is None:
        notes.append(f"element {index}: unknown category {raw_category!r}, kept as Text")
        category = "Text"
    text = item.get("text", "") if with_text else ""
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    if category == "Picture":
        text = ""
    elif category == "Formula":
        text = _strip_formula_delimiters(text)
    return Element(bbox=[x0, y0, x1, y1], category=category, text=text.strip())


def _strip_formula_delimiters(text: str) -> str:
    match = _FORMULA_DELIMITERS.match(text)
    return match.group(2).strip() if match else text.strip()
