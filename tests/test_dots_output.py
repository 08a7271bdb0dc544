"""DOTS output parsing on realistic model outputs: complete, cut off, tables, formulas, off-page boxes."""

from __future__ import annotations

import json

import pytest

from engines.dots_output import model_input_size, parse_layout, parse_text
from engines.dots_prompts import PROMPTS, build_prompt, expects_json

PAGE = [
    {"bbox": [112, 84, 1568, 168], "category": "Title", "text": "# Quarterly Inspection Report"},
    {"bbox": [112, 210, 1568, 420], "category": "Text", "text": "The inspection of the reservoir wall found **no** cracks."},
    {"bbox": [112, 450, 1568, 900], "category": "Table",
     "text": "<table><thead><tr><th>Site</th><th>Output</th></tr></thead><tbody><tr><td>Harbor</td><td>97.5%</td></tr></tbody></table>"},
    {"bbox": [300, 930, 1380, 1010], "category": "Formula", "text": "$$\nE = \\sum_{i=1}^{n} p_i \\Delta t_i\n$$"},
    {"bbox": [112, 1040, 900, 1600], "category": "Picture"},
    {"bbox": [112, 1620, 900, 1660], "category": "Caption", "text": "Figure 1: Solar output by month."},
    {"bbox": [760, 2140, 920, 2180], "category": "Page-footer", "text": "3"},
]
MODEL = (1680, 2240)  # what DOTS saw
PAGE_SIZE = (1275, 1650)  # the page image (e.g. letter at 150 dpi)


def test_well_formed_page() -> None:
    parsed = parse_layout(json.dumps(PAGE, ensure_ascii=False), MODEL, PAGE_SIZE)
    assert parsed.complete and parsed.error is None and parsed.notes == []
    assert [e.category for e in parsed.elements] == [item["category"] for item in PAGE]
    table = parsed.elements[2]
    assert table.text.startswith("<table>") and "<td>Harbor</td>" in table.text
    assert parsed.elements[3].text == "E = \\sum_{i=1}^{n} p_i \\Delta t_i"  # LaTeX, display delimiters stripped
    assert parsed.elements[4].text == ""


def test_boxes_are_scaled_back_to_page_pixels() -> None:
    parsed = parse_layout(json.dumps(PAGE[:1]), MODEL, PAGE_SIZE)
    sx, sy = 1275 / 1680, 1650 / 2240
    assert parsed.elements[0].bbox == pytest.approx([112 * sx, 84 * sy, 1568 * sx, 168 * sy])


def test_cut_off_mid_element_keeps_the_complete_ones() -> None:
    raw = json.dumps(PAGE)
    cut = raw[: raw.index("Solar output") + 5]  # inside the caption's text
    parsed = parse_layout(cut, MODEL, PAGE_SIZE)
    assert not parsed.complete and "5 complete elements" in parsed.error
    assert [e.category for e in parsed.elements] == ["Title", "Text", "Table", "Formula", "Picture"]


def test_cut_off_inside_a_table_html() -> None:
    raw = json.dumps(PAGE)
    cut = raw[: raw.index("<td>Harbor") + 7]
    parsed = parse_layout(cut, MODEL, PAGE_SIZE)
    assert not parsed.complete and [e.category for e in parsed.elements] == ["Title", "Text"]
    assert parsed.raw == cut


def test_cut_off_between_elements_and_unclosed_list() -> None:
    raw = json.dumps(PAGE[:2])[:-1] + ", "
    parsed = parse_layout(raw, MODEL, PAGE_SIZE)
    assert not parsed.complete and len(parsed.elements) == 2 and "never closed" in parsed.error


def test_boxes_outside_the_page_are_clipped_or_dropped() -> None:
    items = [
        {"bbox": [-50, -20, 400, 300], "category": "Text", "text": "partly off"},
        {"bbox": [1700, 2300, 1900, 2400], "category": "Text", "text": "wholly off"},
        {"bbox": [10, 10, 20], "category": "Text", "text": "three numbers"},
        {"bbox": [100, 100, 100, 200], "category": "Text", "text": "zero width"},
    ]
    parsed = parse_layout(json.dumps(items), MODEL, PAGE_SIZE)
    assert parsed.complete and [e.text for e in parsed.elements] == ["partly off"]
    x0, y0, x1, y1 = parsed.elements[0].bbox
    assert (x0, y0) == (0, 0) and x1 == pytest.approx(400 * 1275 / 1680)
    assert len(parsed.notes) == 3 and any("outside the page" in note for note in parsed.notes)


def test_categories_are_normalised_and_unknown_ones_become_text() -> None:
    items = [
        {"bbox": [0, 0, 50, 50], "category": "section header", "text": "## Results"},
        {"bbox": [0, 60, 50, 90], "category": "list_item", "text": "- first"},
        {"bbox": [0, 100, 50, 150], "category": "Chart", "text": "x"},
        {"bbox": [0, 160, 50, 190], "category": "Picture", "text": "words the model should not have written"},
    ]
    parsed = parse_layout(json.dumps(items), MODEL, PAGE_SIZE)
    assert [e.category for e in parsed.elements] == ["Section-header", "List-item", "Text", "Picture"]
    assert parsed.elements[3].text == "" and any("'Chart'" in note for note in parsed.notes)


def test_layout_only_mode_has_no_text() -> None:
    items = [{"bbox": [0, 0, 50, 50], "category": "Title"}, {"bbox": [0, 60, 50, 90], "category": "Text"}]
    parsed = parse_layout(json.dumps(items), MODEL, PAGE_SIZE, mode="layout_only")
    assert parsed.complete and [e.text for e in parsed.elements] == ["", ""]


def test_code_fenced_output_and_garbage() -> None:
    fenced = "```json\n" + json.dumps(PAGE[:2]) + "\n```"
    assert parse_layout(fenced, MODEL, PAGE_SIZE).complete
    garbage = parse_layout("I cannot read this page.", MODEL, PAGE_SIZE)
    assert not garbage.complete and garbage.elements == [] and garbage.raw == "I cannot read this page."
    assert parse_text("```\nHello world\n```\n") == "Hello world"


def test_prompts_per_mode() -> None:
    assert build_prompt("layout_all").startswith("Please output the layout information from the PDF image")
    assert "Do not output the corresponding text" in build_prompt("layout_only")
    assert build_prompt("grounding_ocr", [10.4, 20, 300, 400.6]) == PROMPTS["grounding_ocr"] + "[10, 20, 300, 401]"
    with pytest.raises(ValueError, match="needs a bbox"):
        build_prompt("grounding_ocr")
    assert expects_json("layout_all") and expects_json("layout_only") and not expects_json("ocr")


@pytest.mark.parametrize("size", [(1275, 1650), (3000, 4000), (20, 30), (3000, 200)])
def test_model_input_size_is_multiples_of_28_within_budget(size: tuple[int, int]) -> None:
    width, height = model_input_size(*size, min_pixels=3136, max_pixels=1_000_000)
    assert width % 28 == 0 and height % 28 == 0
    assert 3136 <= width * height <= 1_000_000
    assert abs(width / height - size[0] / size[1]) / (size[0] / size[1]) < 0.35


def test_model_input_size_rejects_impossible_images() -> None:
    with pytest.raises(ValueError, match="10000x10 pixels"):
        model_input_size(10000, 10, 3136, 1_000_000)
    with pytest.raises(ValueError, match="no area"):
        model_input_size(0, 100, 3136, 1_000_000)
