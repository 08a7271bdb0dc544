"""DOTS prompts and output parsing, on outputs written the way dots.ocr writes them.

The outputs below are hand-written in the model's style (one JSON list on one line, boxes
in the pixels of the resized image, Markdown text, HTML tables, LaTeX formulas, pictures
without text); the expected numbers are worked out by hand.
"""

from __future__ import annotations

import json
import math

import pytest

from engines.base import CATEGORIES
from engines.generative.dots_output import ParsedPage, model_input_size, parse_layout, parse_text
from engines.generative.dots_prompts import PROMPTS, build_prompt, expects_json

# A US-letter page at 150 dpi; with dots.ocr's default budget the model sees 1288x1652
# (1275/28 = 45.5 -> 46*28, 1650/28 = 58.9 -> 59*28).
PAGE_SIZE = (1275, 1650)
MODEL_SIZE = (1288, 1652)

RAW_PAGE = r"""[{"bbox": [102, 58, 530, 84], "category": "Page-header", "text": "Annual Maintenance Report 2023"}, {"bbox": [214, 148, 1074, 212], "category": "Title", "text": "# Reservoir Wall Inspection"}, {"bbox": [102, 262, 1186, 398], "category": "Text", "text": "The inspection of the north wall found **no** structural cracks. Seepage at gauge G-4 stayed below 0.3 l/s (May: 0.28 l/s).\nThe spillway gates were tested on 12 June."}, {"bbox": [102, 430, 640, 466], "category": "Section-header", "text": "## 2. Measurements"}, {"bbox": [102, 488, 1186, 760], "category": "Table", "text": "<table><thead><tr><td>Gauge</td><td>Seepage (l/s)</td><td>Change</td></tr></thead><tbody><tr><td>G-3</td><td>0.12</td><td>−4%</td></tr><tr><td>G-4</td><td>0.28</td><td>+2%</td></tr></tbody></table>"}, {"bbox": [430, 792, 858, 850], "category": "Formula", "text": "$$\nQ = k \\cdot A \\cdot \\frac{\\Delta h}{L}\n$$"}, {"bbox": [102, 880, 1186, 1390], "category": "Picture"}, {"bbox": [102, 1402, 900, 1436], "category": "Caption", "text": "Figure 3: Seepage at G-4, 2019–2023."}, {"bbox": [102, 1460, 1186, 1492], "category": "List-item", "text": "- Re-seal joint J-12 before winter."}, {"bbox": [102, 1498, 1186, 1530], "category": "List-item", "text": "- Recalibrate gauge G-4."}, {"bbox": [102, 1560, 700, 1590], "category": "Footnote", "text": "¹ Measured at reservoir level 412.5 m a.s.l."}, {"bbox": [630, 1606, 658, 1628], "category": "Page-footer", "text": "7"}]"""

PAGE_CATEGORIES = [
    "Page-header", "Title", "Text", "Section-header", "Table", "Formula",
    "Picture", "Caption", "List-item", "List-item", "Footnote", "Page-footer",
]


def _parse(raw: str, model_size: tuple[int, int] = MODEL_SIZE, page_size: tuple[int, int] = PAGE_SIZE, **kw: str) -> ParsedPage:
    return parse_layout(raw, model_size, page_size, **kw)


def _one(bbox: list[object], category: object = "Text", text: object = "x") -> dict[str, object]:
    return {"bbox": bbox, "category": category, "text": text}


# --- well-formed output -------------------------------------------------------------


def test_well_formed_page_keeps_every_element_in_reading_order() -> None:
    parsed = _parse(RAW_PAGE)
    assert parsed.complete and parsed.error is None and parsed.notes == []
    assert parsed.raw == RAW_PAGE
    assert [e.category for e in parsed.elements] == PAGE_CATEGORIES
    by_category = {e.category: e for e in parsed.elements}
    assert by_category["Title"].text == "# Reservoir Wall Inspection"  # Markdown as DOTS writes it
    assert by_category["Text"].text.endswith("cracks. Seepage at gauge G-4 stayed below 0.3 l/s (May: 0.28 l/s).\nThe spillway gates were tested on 12 June.")
    assert by_category["Table"].text == (
        "<table><thead><tr><td>Gauge</td><td>Seepage (l/s)</td><td>Change</td></tr></thead>"
        "<tbody><tr><td>G-3</td><td>0.12</td><td>−4%</td></tr><tr><td>G-4</td><td>0.28</td><td>+2%</td></tr></tbody></table>"
    )
    assert by_category["Formula"].text == "Q = k \\cdot A \\cdot \\frac{\\Delta h}{L}"
    assert by_category["Picture"].text == ""
    assert by_category["Footnote"].text == "¹ Measured at reservoir level 412.5 m a.s.l."
    assert by_category["Page-footer"].text == "7"
    for element in parsed.elements:
        x0, y0, x1, y1 = element.bbox
        assert 0 <= x0 < x1 <= PAGE_SIZE[0] and 0 <= y0 < y1 <= PAGE_SIZE[1]


def test_empty_list_is_a_complete_blank_page() -> None:
    parsed = _parse("[]")
    assert parsed.complete and parsed.elements == [] and parsed.error is None


# --- box scaling and clipping --------------------------------------------------------


def test_boxes_scale_x_and_y_separately_back_to_page_pixels() -> None:
    # The model saw the page stretched to twice its width: x halves, y stays.
    parsed = _parse(json.dumps([_one([100, 100, 400, 300])]), model_size=(2000, 1000), page_size=(1000, 1000))
    assert parsed.elements[0].bbox == pytest.approx([50, 100, 200, 300])
    # 1400x1820 seen for a 1000x1300 page: both scale by 1/1.4.
    parsed = _parse(json.dumps([_one([140, 182, 700, 910])]), model_size=(1400, 1820), page_size=(1000, 1300))
    assert parsed.elements[0].bbox == pytest.approx([100, 130, 500, 650])


def test_box_over_the_whole_model_image_is_the_whole_page() -> None:
    assert model_input_size(*PAGE_SIZE, min_pixels=3136, max_pixels=11_289_600) == MODEL_SIZE
    parsed = _parse(json.dumps([_one([0, 0, 1288, 1652], "Picture")]))
    assert parsed.elements[0].bbox == pytest.approx([0, 0, 1275, 1650])
    footer = _parse(RAW_PAGE).elements[-1]  # [630, 1606, 658, 1628] in the model's pixels
    assert footer.bbox == pytest.approx([630 * 1275 / 1288, 1606 * 1650 / 1652, 658 * 1275 / 1288, 1628 * 1650 / 1652])


def test_boxes_outside_the_page_are_clipped_or_dropped() -> None:
    items = [
        _one([-50, -20, 400, 300], text="partly off, top left"),
        _one([600, 700, 1400, 1800], text="partly off, bottom right"),
        _one([1300, 1700, 1500, 1900], text="wholly off"),
        _one([10, 10, 20], text="three numbers"),
        _one(["10", "10", "20", "20"], text="strings"),
        _one([100, 100, 100, 200], text="zero width"),
        {"category": "Text", "text": "no bbox"},
    ]
    parsed = _parse(json.dumps(items), model_size=(1000, 1000), page_size=(1000, 1000))
    assert parsed.complete and parsed.error is None  # dropping boxes does not make the page fail
    assert [e.text for e in parsed.elements] == ["partly off, top left", "partly off, bottom right"]
    assert parsed.elements[0].bbox == [0, 0, 400, 300]
    assert parsed.elements[1].bbox == [600, 700, 1000, 1000]
    assert len(parsed.notes) == 5
    assert [note.split(":")[0] for note in parsed.notes] == [f"element {n}" for n in (3, 4, 5, 6, 7)]


def test_nan_and_boolean_coordinates_are_malformed() -> None:
    raw = '[{"bbox": [NaN, 1, 5, 5], "category": "Text", "text": "a"}, {"bbox": [true, 1, 5, 5], "category": "Text", "text": "b"}]'
    parsed = _parse(raw, model_size=(10, 10), page_size=(10, 10))
    assert parsed.elements == [] and len(parsed.notes) == 2 and all("malformed bbox" in n for n in parsed.notes)


# --- cut-off and invalid output ------------------------------------------------------


def test_cut_off_mid_element_keeps_the_complete_ones() -> None:
    cut = RAW_PAGE[: RAW_PAGE.index("Seepage at G-4, 2019")]  # inside the caption's text
    parsed = _parse(cut)
    assert not parsed.complete and parsed.raw == cut
    assert [e.category for e in parsed.elements] == PAGE_CATEGORIES[:7]
    assert "truncated after 7 complete elements" in parsed.error


def test_cut_off_mid_string_inside_a_table_html() -> None:
    cut = RAW_PAGE[: RAW_PAGE.index("<td>G-4</td>") + len("<td>G-")]
    parsed = _parse(cut)
    assert not parsed.complete
    assert [e.category for e in parsed.elements] == ["Page-header", "Title", "Text", "Section-header"]
    assert "truncated after 4 complete elements" in parsed.error and "Unterminated string" in parsed.error


@pytest.mark.parametrize(
    ("marker", "extra", "kept"),
    [
        ('{"bbox": [430, 79', 17, 5),  # inside a number of the formula's box
        ('"category": "Formula", "text": ', 31, 5),  # right after a key
        ('}, {"bbox": [102, 880', 1, 6),  # just after the formula closed, before the comma
        ('}, {"bbox": [102, 880', 2, 6),  # right after the comma
        ('"text": "7"}]', 12, 12),  # every element complete, the list never closed
    ],
)
def test_cut_off_anywhere_keeps_exactly_the_elements_before_the_cut(marker: str, extra: int, kept: int) -> None:
    cut = RAW_PAGE[: RAW_PAGE.index(marker) + extra]
    parsed = _parse(cut)
    assert not parsed.complete and len(parsed.elements) == kept
    assert f"truncated after {kept} complete elements" in parsed.error


def test_invalid_element_midway_is_reported_as_invalid_not_truncated() -> None:
    assert RAW_PAGE.count('"category": "Section-header", "text"') == 1
    broken = RAW_PAGE.replace('"category": "Section-header", "text"', '"category": "Section-header" "text"')
    parsed = _parse(broken)
    assert not parsed.complete and len(parsed.elements) == 3
    assert "invalid after 3 complete elements" in parsed.error and "element 4" in parsed.error


def test_missing_comma_between_elements_is_read_and_noted() -> None:
    raw = json.dumps([_one([0, 0, 5, 5], text="a")])[:-1] + " " + json.dumps(_one([0, 5, 5, 9], text="b")) + "]"
    parsed = _parse(raw, model_size=(10, 10), page_size=(10, 10))
    assert parsed.complete and [e.text for e in parsed.elements] == ["a", "b"]
    assert parsed.notes == ["missing comma before element 2, read anyway"]


@pytest.mark.parametrize("garbage", ["I cannot read this page.", "", "The bbox format is [x1, y1, x2, y2]."])
def test_garbage_output_has_no_elements_and_keeps_raw(garbage: str) -> None:
    parsed = _parse(garbage)
    assert not parsed.complete and parsed.elements == [] and parsed.raw == garbage and parsed.error


# --- wrapping ------------------------------------------------------------------------


def test_code_fenced_output_is_complete() -> None:
    fenced = "```json\n" + RAW_PAGE + "\n```"
    parsed = _parse(fenced)
    assert parsed.complete and parsed.notes == [] and [e.category for e in parsed.elements] == PAGE_CATEGORIES
    assert parsed.raw == fenced


def test_leading_prose_and_trailing_text_are_skipped() -> None:
    raw = "Here is the layout of the page:\n```json\n" + RAW_PAGE + "\n```\nLet me know if you need more."
    parsed = _parse(raw)
    assert parsed.complete and len(parsed.elements) == len(PAGE_CATEGORIES)
    assert len(parsed.notes) == 1 and parsed.notes[0].startswith("ignored")


def test_a_bare_object_is_one_element() -> None:
    # The prompt asks for "a single JSON object"; an output of one element without the list is read.
    element = '{"bbox": [102, 58, 530, 84], "category": "Page-header", "text": "Annual Maintenance Report 2023"}'
    for raw in (element, "```json\n" + element + "\n```"):
        parsed = _parse(raw)
        assert parsed.complete and parsed.notes == [] and [e.text for e in parsed.elements] == ["Annual Maintenance Report 2023"]


# --- categories and text -------------------------------------------------------------


def test_category_variants_are_normalised_and_unknown_ones_become_text() -> None:
    items = [
        _one([0, 0, 50, 50], "section header", "## Results"),
        _one([0, 60, 50, 90], "list_item", "- first"),
        _one([0, 100, 50, 150], "PAGE-FOOTER", "3"),
        _one([0, 160, 50, 190], "Chart", "Revenue by quarter"),
        {"bbox": [0, 200, 50, 230], "text": "no category"},
    ]
    parsed = _parse(json.dumps(items), model_size=(100, 300), page_size=(100, 300))
    assert [e.category for e in parsed.elements] == ["Section-header", "List-item", "Page-footer", "Text", "Text"]
    assert parsed.elements[3].text == "Revenue by quarter"  # the words are kept under Text
    assert parsed.complete and len(parsed.notes) == 2
    assert "'Chart'" in parsed.notes[0] and "element 4" in parsed.notes[0] and "element 5" in parsed.notes[1]


def test_picture_text_is_dropped() -> None:
    raw = '[{"bbox": [102, 880, 1186, 1390], "category": "Picture", "text": "SOLAR OUTPUT NORTH ARRAY"}]'
    parsed = _parse(raw)
    assert [(e.category, e.text) for e in parsed.elements] == [("Picture", "")]


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("$$\nE = mc^2\n$$", "E = mc^2"),
        ("$$E = mc^2$$", "E = mc^2"),
        ("\\[ \\int_0^1 f(x)\\,dx \\]", "\\int_0^1 f(x)\\,dx"),
        ("$x_1$", "x_1"),
        ("  \\sum_{i=1}^{n} x_i  ", "\\sum_{i=1}^{n} x_i"),  # bare LaTeX: only whitespace stripped
        ("$a$ and $b$", "$a$ and $b$"),  # prose with inline math: left as written
        ("$$a$$ $$b$$", "$$a$$ $$b$$"),  # two display blocks: left as written
    ],
)
def test_formula_text_is_latex_without_one_enclosing_delimiter(written: str, kept: str) -> None:
    parsed = _parse(json.dumps([_one([0, 0, 10, 10], "Formula", written)]), model_size=(10, 10), page_size=(10, 10))
    assert parsed.elements[0].text == kept


def test_table_html_is_kept_and_other_text_stripped() -> None:
    html = "<table><tr><td rowspan=\"2\">A &amp; B</td><td>1</td></tr><tr><td>2</td></tr></table>"
    items = [_one([0, 0, 10, 5], "Table", "\n  " + html + "\n"), _one([0, 5, 10, 10], "Text", "  **Note:** values in %.\n")]
    parsed = _parse(json.dumps(items), model_size=(10, 10), page_size=(10, 10))
    assert [e.text for e in parsed.elements] == [html, "**Note:** values in %."]


def test_null_and_numeric_text() -> None:
    items = [_one([0, 0, 10, 5], "Page-footer", 12), _one([0, 5, 10, 10], "Text", None)]
    parsed = _parse(json.dumps(items), model_size=(10, 10), page_size=(10, 10))
    assert [e.text for e in parsed.elements] == ["12", ""]


def test_layout_only_mode_has_no_text() -> None:
    raw = '[{"bbox": [214, 148, 1074, 212], "category": "Title"}, {"bbox": [102, 262, 1186, 398], "category": "Text", "text": "model wrote it anyway"}]'
    parsed = _parse(raw, mode="layout_only")
    assert parsed.complete and [(e.category, e.text) for e in parsed.elements] == [("Title", ""), ("Text", "")]


def test_plain_text_modes() -> None:
    assert parse_text("```\nAnnual Maintenance Report 2023\n```\n") == "Annual Maintenance Report 2023"
    assert parse_text("```markdown\n# Title\n\nBody\n```") == "# Title\n\nBody"
    assert parse_text("  Seepage stayed low.\nSee ```code``` below. \n") == "Seepage stayed low.\nSee ```code``` below."
    with pytest.raises(ValueError, match="parse_text"):
        _parse("Extracted text", mode="ocr")


# --- prompts -------------------------------------------------------------------------


def test_layout_prompts_list_exactly_the_report_categories() -> None:
    for mode in ("layout_all", "layout_only"):
        prompt = build_prompt(mode)
        listed = prompt[prompt.index("['") : prompt.index("']") + 2]
        assert listed == str(list(CATEGORIES))


def test_prompt_per_mode() -> None:
    layout_all = build_prompt("layout_all")
    assert layout_all.startswith("Please output the layout information from the PDF image, including each layout element's bbox")
    assert "- Table: Format its text as HTML." in layout_all and layout_all.endswith("must be a single JSON object.\n")
    assert build_prompt("layout_only").endswith("Do not output the corresponding text. The layout result should be in JSON format.")
    assert build_prompt("ocr") == "Extract the text content from this image."
    assert build_prompt("layout_all", bbox=[1, 2, 3, 4]) == layout_all  # a box means nothing outside grounding
    assert expects_json("layout_all") and expects_json("layout_only")
    assert not expects_json("ocr") and not expects_json("grounding_ocr")


def test_grounding_prompt_appends_the_box_as_dots_does() -> None:
    prompt = build_prompt("grounding_ocr", [10.4, 20, 300, 400.6])
    assert prompt == "Extract text from the given bounding box on the image (format: [x1, y1, x2, y2]).\nBounding Box:\n[10, 20, 300, 401]"
    assert prompt == PROMPTS["grounding_ocr"] + str([10, 20, 300, 401])


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        (None, "needs a bbox"),
        ([10, 20, 300], "4 finite numbers"),
        ([10, 20, math.nan, 400], "4 finite numbers"),
        ([300, 20, 10, 400], "x1 < x2"),
        ([10, 20, 300, 20.2], "y1 < y2"),
    ],
)
def test_grounding_prompt_rejects_a_missing_or_unusable_box(bbox: list[float] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_prompt("grounding_ocr", bbox)


def test_unknown_prompt_mode() -> None:
    with pytest.raises(ValueError, match="layout_all"):
        build_prompt("web_parsing")  # type: ignore[arg-type]


# --- model input size ----------------------------------------------------------------


@pytest.mark.parametrize("size", [(1275, 1650), (2550, 3300), (4000, 3000), (100, 60), (5600, 300), (28, 28)])
@pytest.mark.parametrize(("min_pixels", "max_pixels"), [(3136, 11_289_600), (200_704, 1_003_520)])
def test_model_input_size_is_multiples_of_28_within_the_budget(size: tuple[int, int], min_pixels: int, max_pixels: int) -> None:
    width, height = model_input_size(*size, min_pixels=min_pixels, max_pixels=max_pixels)
    assert width % 28 == 0 and height % 28 == 0 and width >= 28 and height >= 28
    assert min_pixels <= width * height <= max_pixels
    # The aspect ratio survives up to the rounding of each side to 28 pixels.
    assert abs(math.log((width / height) / (size[0] / size[1]))) < math.log(1 + 28 / min(width, height)) + 0.01


def test_model_input_size_scales_a_large_page_down_and_a_small_one_up() -> None:
    assert model_input_size(2550, 3300, 3136, 11_289_600) == (2548, 3304)  # 91*28, 118*28: already within budget
    width, height = model_input_size(5100, 6600, 3136, 11_289_600)  # 600 dpi letter: 33.7 Mpx
    assert width * height <= 11_289_600 and width < 5100 and height < 6600
    width, height = model_input_size(100, 60, 200_704, 1_003_520)
    assert width * height >= 200_704 and width > 100 and height > 60


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((20, 30), "20x30"),  # smaller than the 28-pixel grid
        ((1000, 27), "1000x27"),
        ((10000, 40), "10000x40.*aspect ratio"),  # 250:1
    ],
)
def test_model_input_size_rejects_impossible_images(size: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_input_size(*size, min_pixels=3136, max_pixels=11_289_600)


def test_model_input_size_rejects_a_thin_page_that_cannot_fit_the_budget() -> None:
    # 6000x30 keeps a 28-pixel side; the long side alone then needs more than 100k pixels.
    with pytest.raises(ValueError, match="6000x30.*max_pixels=100000"):
        model_input_size(6000, 30, 3136, 100_000)
