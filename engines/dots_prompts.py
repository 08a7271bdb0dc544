"""dots.ocr's prompt modes, in the model's own words.

The texts are those of ``dots_ocr/utils/prompts.py`` in github.com/rednote-hilab/dots.ocr
(``prompt_layout_all_en``, ``prompt_layout_only_en``, ``prompt_ocr``,
``prompt_grounding_ocr``). They are data, not code: the model was trained on exactly
these strings, and a paraphrase measurably changes what it returns.
"""

from __future__ import annotations

from typing import Literal, Sequence

PromptMode = Literal["layout_all", "layout_only", "ocr", "grounding_ocr"]

_CATEGORY_LIST = "['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title']"

PROMPTS: dict[str, str] = {
    "layout_all": f"""Please output the layout information from the PDF image, including each layout element's bbox, its category, and the corresponding text content within the bbox.

1. Bbox format: [x1, y1, x2, y2]

2. Layout Categories: The possible categories are {_CATEGORY_LIST}.

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
    "layout_only": f"""Please output the layout information from this PDF image, including each layout's bbox and its category. The bbox should be in the format [x1, y1, x2, y2]. The layout categories for the PDF document include {_CATEGORY_LIST}. Do not output the corresponding text. The layout result should be in JSON format.""",
    "ocr": """Extract the text content from this image.""",
    "grounding_ocr": """Extract text from the given bounding box on the image (format: [x1, y1, x2, y2]).\nBounding Box:\n""",
}


def build_prompt(mode: PromptMode, bbox: Sequence[float] | None = None) -> str:
    """The prompt for ``mode``; grounding OCR appends the box (model-input pixels) as dots.ocr does: ``[x1, y1, x2, y2]``."""
    if mode not in PROMPTS:
        raise ValueError(f"unknown DOTS prompt mode {mode!r}; choose one of {sorted(PROMPTS)}")
    if mode == "grounding_ocr":
        if bbox is None or len(bbox) != 4:
            raise ValueError("prompt mode grounding_ocr needs a bbox [x1, y1, x2, y2] in model-input pixels")
        return PROMPTS[mode] + str([int(round(v)) for v in bbox])
    return PROMPTS[mode]


def expects_json(mode: PromptMode) -> bool:
    """Layout modes answer with a JSON list of elements; OCR modes with plain text."""
    return mode in ("layout_all", "layout_only")
