"""Turn DOTS's text output into report elements, keeping whatever parsed completely.

DOTS answers a layout prompt with a JSON list ``[{"bbox": [x1, y1, x2, y2],
"category": ..., "text": ...}, ...]`` whose boxes are in the pixels of the *resized*
image it saw (``model_input_size``). Real outputs go wrong in ways this module absorbs
instead of raising, because one bad page must not cost the elements already read:

* **cut off** at the token budget, often inside a long table's HTML: the list is read
  element by element with ``json.JSONDecoder.raw_decode`` and every element that
  decoded completely is kept; the page is marked incomplete (``complete=False``) so the
  engine can retry it with a larger budget;
* **wrapped** in code fences or prose, or with a missing comma between elements: the
  list is found and read anyway (noted in ``notes``, still complete);
* **off-page or malformed boxes, unknown categories**: boxes are scaled back to page
  pixels and clipped; degenerate or malformed boxes are dropped; an unknown category
  becomes ``Text``. Each is noted in ``notes``; none makes the page incomplete.

Text conventions of the report: tables stay HTML; formulas are LaTeX *without* display
delimiters (one enclosing ``$$ ... $$``, ``\\[ ... \\]``, ``\\( ... \\)`` or ``$ ... $``
is removed so every consumer adds its own; text mixing several math pieces with prose is
kept as written); pictures carry no text (picture OCR reads them); other elements keep
the Markdown DOTS writes, stripped of surrounding whitespace.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from engines.base import CATEGORIES, Element, clip_bbox

LayoutMode = Literal["layout_all", "layout_only"]

#: Category spellings reduced to lowercase letters: "section header", "Section_Header" -> "Section-header".
_CATEGORY_BY_KEY: dict[str, str] = {re.sub(r"[^a-z]", "", c.lower()): c for c in CATEGORIES}
#: Where the elements start: a list that opens with an object (or is empty), or a bare object.
_ELEMENTS_START = re.compile(r'\[\s*(?:[{\]]|$)|\{\s*"')
#: A whole output wrapped in one code fence: ```lang\n ... ```.
_WRAPPING_FENCE = re.compile(r"^```[\w-]*[ \t]*\n(.*?)\n?[ \t]*```$", re.DOTALL)
#: Math delimiters stripped from formula text, longest first so "$$" wins over "$".
_MATH_DELIMITERS: tuple[tuple[str, str], ...] = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


@dataclass
class ParsedPage:
    """A layout output read as far as it goes."""

    elements: list[Element]  # page pixels, reading order
    complete: bool  # the whole list parsed; False: cut off, invalid or absent, elements are what survived
    error: str | None  # why it is incomplete, for people; None when complete
    raw: str  # the model's output, untouched, for the report and for debugging
    notes: list[str] = field(default_factory=list)  # repairs and dropped elements that did not make it incomplete


def model_input_size(width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """(width, height) of the image DOTS sees for a ``width`` x ``height`` page.

    The sides become multiples of ``factor`` (the vision tower's 14-pixel patches merged
    2x2) with the area within [min_pixels, max_pixels], via transformers' own Qwen2-VL
    ``smart_resize`` so the boxes we map back agree with what the processor does. Pages
    that cannot be resized sensibly raise ValueError naming their size.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    size = f"{width}x{height}"
    if not 0 < min_pixels <= max_pixels or max_pixels < factor * factor:
        raise ValueError(f"pixel budget min_pixels={min_pixels}, max_pixels={max_pixels} is empty for factor {factor}")
    if width < factor or height < factor:
        raise ValueError(f"image of {size} pixels is smaller than DOTS's {factor}-pixel grid on at least one side")
    try:
        resized_h, resized_w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError as exc:  # aspect ratio over 200
        raise ValueError(f"image of {size} pixels cannot be resized for DOTS: {exc}") from exc
    resized_w, resized_h = int(resized_w), int(resized_h)
    if resized_w * resized_h > max_pixels:  # a side pinned at `factor` keeps a very thin page over budget
        raise ValueError(
            f"image of {size} pixels does not fit max_pixels={max_pixels} with {factor}-pixel sides (would be {resized_w}x{resized_h})"
        )
    return resized_w, resized_h


def parse_text(raw: str) -> str:
    """Plain-text modes (ocr, grounding_ocr): the text without a code fence wrapping all of it, stripped."""
    text = raw.strip()
    wrapped = _WRAPPING_FENCE.match(text)
    return (wrapped.group(1) if wrapped else text).strip()


def parse_layout(raw: str, model_size: tuple[int, int], page_size: tuple[int, int], mode: LayoutMode = "layout_all") -> ParsedPage:
    """Elements in page pixels from a layout-mode output; never raises on bad output.

    ``model_size`` is the (width, height) the model saw, ``page_size`` the page image's.
    """
    if mode not in ("layout_all", "layout_only"):
        raise ValueError(f"parse_layout reads the layout modes, not {mode!r}; use parse_text")
    if min(*model_size, *page_size) <= 0:
        raise ValueError(f"model size {model_size} and page size {page_size} must be positive")
    items, complete, error, notes = _decode_items(raw)
    elements = []
    for index, item in enumerate(items):
        element = _element(item, index, model_size, page_size, with_text=mode == "layout_all", notes=notes)
        if element is not None:
            elements.append(element)
    return ParsedPage(elements=elements, complete=complete, error=error, raw=raw, notes=notes)


def _decode_items(raw: str) -> tuple[list[Any], bool, str | None, list[str]]:
    """The elements that decoded completely, whether the whole list did, what failed, and repairs made."""
    text = raw.strip()
    start = _ELEMENTS_START.search(text)
    if start is None:
        return [], False, "output holds no JSON list of elements", []
    bracketed = text[start.start()] == "["
    position = start.start() + 1 if bracketed else start.start()
    decoder = json.JSONDecoder(strict=False)  # tolerate raw newlines/tabs inside strings
    items: list[Any] = []
    notes: list[str] = []
    position = _skip_space(text, position)
    while not (bracketed and text.startswith("]", position)):
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(text)
            what = "truncated" if cut else "invalid"
            return items, False, f"output {what} after {len(items)} complete elements ({exc.msg} in element {len(items) + 1})", notes
        items.append(item)
        position = _skip_space(text, position)
        if position >= len(text):
            if not bracketed:  # bare objects, one after another: the end of the text ends them
                return items, True, None, notes
            return items, False, f"output truncated after {len(items)} complete elements (the list was never closed)", notes
        if text[position] == ",":
            position = _skip_space(text, position + 1)
            if position >= len(text):
                return items, False, f"output truncated after {len(items)} complete elements (ends after a comma)", notes
        elif text[position] == "{":
            notes.append(f"missing comma before element {len(items) + 1}, read anyway")
        elif not bracketed:  # text after bare objects ends them
            break
        elif text[position] != "]":
            return items, False, f"output invalid after {len(items)} complete elements (unexpected {text[position]!r})", notes
    rest = text[position + 1 if bracketed else position :].strip()
    if rest and rest != "```":
        notes.append(f"ignored {len(rest)} characters after the list")
    return items, True, None, notes


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _element(
    item: Any, index: int, model_size: tuple[int, int], page_size: tuple[int, int], with_text: bool, notes: list[str]
) -> Element | None:
    """One element in page pixels, or None (noted) when its box cannot place it on the page."""
    number = index + 1
    if not isinstance(item, dict):
        notes.append(f"element {number}: not an object ({type(item).__name__}), dropped")
        return None
    bbox = item.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        notes.append(f"element {number}: malformed bbox {bbox!r}, dropped")
        return None
    (model_w, model_h), (page_w, page_h) = model_size, page_size
    sx, sy = page_w / model_w, page_h / model_h
    box = clip_bbox([bbox[0] * sx, bbox[1] * sy, bbox[2] * sx, bbox[3] * sy], page_w, page_h)
    if box[2] <= box[0] or box[3] <= box[1]:
        notes.append(f"element {number}: bbox {bbox} has no area on the page, dropped")
        return None
    raw_category = item.get("category")
    category = _CATEGORY_BY_KEY.get(re.sub(r"[^a-z]", "", raw_category.lower())) if isinstance(raw_category, str) else None
    if category is None:
        notes.append(f"element {number}: unknown category {raw_category!r}, kept as Text")
        category = "Text"
    text = _text(item.get("text")) if with_text and category != "Picture" else ""
    if category == "Formula":
        text = _formula_body(text)
    return Element(bbox=box, category=category, text=text.strip())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    """The element's text as a string: absent/null is empty, a bare number (a page number) its digits."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _formula_body(text: str) -> str:
    """LaTeX without one pair of math delimiters enclosing all of it; anything else unchanged."""
    text = text.strip()
    for opening, closing in _MATH_DELIMITERS:
        if len(text) >= len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing):
            body = text[len(opening) : len(text) - len(closing)]
            if closing not in body:  # "$a$ and $b$" is prose with math in it, not one formula
                return body.strip()
            return text
    return text
