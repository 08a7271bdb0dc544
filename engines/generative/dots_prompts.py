"""dots.ocr's prompt modes, in the model's own words.

The texts are copied verbatim from ``dots_ocr/utils/prompts.py`` (``dict_promptmode_to_prompt``)
in github.com/rednote-hilab/dots.ocr: ``prompt_layout_all_en``, ``prompt_layout_only_en``,
``prompt_ocr`` and ``prompt_grounding_ocr``. They are data, not code: the model was
trained on exactly these strings, so they must not be reworded, re-wrapped or stripped
(``prompt_layout_all_en`` ends with a newline, ``prompt_grounding_ocr`` with
``"Bounding Box:\\n"``).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence, get_args

PromptMode = Literal["layout_all", "layout_only", "ocr", "grounding_ocr"]

PROMPTS: dict[str, str] = {
    # prompt_layout_all_en: boxes, categories and text of every element, as JSON.
    "layout_all": """Please output the layout information from the PDF image, including each layout element's bbox, its category, and the corresponding text content within the bbox.

1. Bbox format: [x1, y1, x2, y2]

2. Layout Categories: The possible categories are ['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title'].

3. Text Extraction & Formatting Rules:
    - Picture: For the 'Picture' category, the text field should be omitted.
    - Formula: Format its text as LaTeX.
    - Table: Format its text as HTML.
    - All Others (Text, Title, etc.): Format their text as Markdown.

4. Constraints:
    - The output text must be the original text from the image, with no translation.
    - All layout elements must be sorted according to human reading order.

5. Final Output: The entire output must be a single JSON object.
""",
    # prompt_layout_only_en: boxes and categories only, as JSON.
    "layout_only": """Please output the layout information from this PDF image, including each layout's bbox and its category. The bbox should be in the format [x1, y1, x2, y2]. The layout categories for the PDF document include ['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title']. Do not output the corresponding text. The layout result should be in JSON format.""",
    # prompt_ocr: plain text of the page (dots.ocr: page headers and footers left out).
    "ocr": """Extract the text content from this image.""",
    # prompt_grounding_ocr: plain text inside one box; the box is appended (build_prompt).
    "grounding_ocr": """Extract text from the given bounding box on the image (format: [x1, y1, x2, y2]).\nBounding Box:\n""",
}

_MODES: tuple[str, ...] = get_args(PromptMode)


def build_prompt(mode: PromptMode, bbox: Sequence[float] | None = None) -> str:
    """The prompt text for ``mode``.

    For ``grounding_ocr`` the box, in pixels of the *resized* image the model sees, is
    appended right after ``"Bounding Box:\\n"`` as dots.ocr's parser does
    (``prompt + str(bbox)`` on a list of ints), i.e. ``[x1, y1, x2, y2]`` with ``", "``
    between whole numbers; coordinates are rounded to the nearest pixel. Other modes
    take no box and ignore one if given (the engine's config may carry one).
    """
    if mode not in _MODES:
        raise ValueError(f"unknown DOTS prompt mode {mode!r}; choose one of {list(_MODES)}")
    if mode != "grounding_ocr":
        return PROMPTS[mode]
    return PROMPTS[mode] + str(_grounding_box(bbox))


def expects_json(mode: PromptMode) -> bool:
    """Whether ``mode`` answers with a JSON list of elements (layout modes) rather than plain text (OCR modes)."""
    if mode not in _MODES:
        raise ValueError(f"unknown DOTS prompt mode {mode!r}; choose one of {list(_MODES)}")
    return mode in ("layout_all", "layout_only")


def _grounding_box(bbox: Sequence[float] | None) -> list[int]:
    """The box as whole pixels, refusing anything the model could not read a region from."""
    if bbox is None:
        raise ValueError("prompt mode grounding_ocr needs a bbox [x1, y1, x2, y2] in model-input pixels, got none")
    values = list(bbox)
    if len(values) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"grounding_ocr bbox must be 4 finite numbers [x1, y1, x2, y2], got {bbox!r}")
    x1, y1, x2, y2 = (int(round(v)) for v in values)
    if min(x1, y1) < 0 or x2 <= x1 or y2 <= y1:
        raise ValueError(f"grounding_ocr bbox {[x1, y1, x2, y2]} (rounded) must have 0 <= x1 < x2 and 0 <= y1 < y2")
    return [x1, y1, x2, y2]
