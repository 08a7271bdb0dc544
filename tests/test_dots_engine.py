"""DOTS layout engine: prompt per page, one generate per batch, boxes back in page pixels, retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from engines.base import PageImage, PageMeta
from engines.generative.dots import DotsLayoutEngine, DotsOptions
from engines.generative.dots_output import model_input_size
from engines.generative.dots_prompts import build_prompt
from engines.generative.generation import Generated, Request
from engines.registry import build_engine


def _page(width: int, height: int, number: int = 1) -> PageImage:
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    return PageImage(image=image, meta=PageMeta(doc_id="d", source="d.pdf", page_number=number, width=width, height=height))


class ScriptedGenerator:
    """Answers like the model would, from the request's image size; cuts off pages listed in ``cut``."""

    def __init__(self, cut_until_budget: dict[int, int]):
        self.cut_until_budget = cut_until_budget  # image width -> smallest budget that lets it finish
        self.calls: list[tuple[list[tuple[int, int]], int]] = []

    def generate(self, requests: Sequence[Request], max_new_tokens: int) -> list[Generated]:
        self.calls.append(([r.image.size for r in requests], max_new_tokens))
        results = []
        for request in requests:
            w, h = request.image.size
            elements = [
                {"bbox": [0, 0, w // 2, h // 4], "category": "Title", "text": "Annual report"},
                {"bbox": [0, h // 2, w, h], "category": "Picture", "text": "should be dropped"},
            ]
            text = json.dumps(elements)
            if max_new_tokens < self.cut_until_budget.get(w, 0):
                results.append(Generated(text=text[: len(text) // 2 + 20], truncated=True, new_tokens=max_new_tokens))
            else:
                results.append(Generated(text=text, truncated=False, new_tokens=40))
        return results

    def close(self) -> None:
        pass


def test_boxes_are_mapped_back_to_page_pixels_and_only_cut_pages_are_retried() -> None:
    pages = [_page(1000, 1400), _page(800, 600, number=2)]
    model_sizes = [model_input_size(p.meta.width, p.meta.height, 3136, 1_000_000) for p in pages]
    generator = ScriptedGenerator(cut_until_budget={model_sizes[1][0]: 150})
    engine = DotsLayoutEngine(DotsOptions(model="unused", max_pixels=1_000_000, max_new_tokens=100, extra_max_new_tokens=100), generator)
    first, second = engine.layout(pages)

    assert [sizes for sizes, _ in generator.calls] == [model_sizes, [model_sizes[1]]]  # one call per batch; retry only page 2
    assert [budget for _, budget in generator.calls] == [100, 200]
    assert first.error is None and first.info["retries"] == 0
    assert second.error is None and second.info["retries"] == 1
    title, picture = first.elements
    mw, mh = model_sizes[0]
    assert title.category == "Title" and title.text == "Annual report"
    assert title.bbox == pytest.approx([0, 0, (mw // 2) * 1000 / mw, (mh // 4) * 1400 / mh], abs=0.01)
    assert picture.category == "Picture" and picture.text == ""
    assert picture.bbox[3] == pytest.approx(1400)


def test_page_still_cut_after_retry_keeps_complete_elements_and_raw_output() -> None:
    page = _page(900, 900)
    width = model_input_size(900, 900, 3136, 1_000_000)[0]
    generator = ScriptedGenerator(cut_until_budget={width: 10_000})
    engine = DotsLayoutEngine(DotsOptions(model="unused", max_pixels=1_000_000, max_new_tokens=100, extra_max_new_tokens=100), generator)
    (layout,) = engine.layout([page])
    assert layout.error is not None and layout.error.kind == "truncated_output"
    assert [e.category for e in layout.elements] == ["Title"]  # the complete element survives
    assert layout.info["raw_output"].startswith('[{"bbox"') and layout.info["retries"] == 1


def test_no_retry_when_extra_budget_is_zero() -> None:
    width = model_input_size(900, 900, 3136, 1_000_000)[0]
    generator = ScriptedGenerator(cut_until_budget={width: 10_000})
    engine = DotsLayoutEngine(DotsOptions(model="unused", max_pixels=1_000_000, max_new_tokens=100, extra_max_new_tokens=0), generator)
    (layout,) = engine.layout([_page(900, 900)])
    assert len(generator.calls) == 1 and layout.error is not None and layout.info["retries"] == 0


def test_grounding_mode_sends_the_box_in_model_pixels() -> None:
    generator = ScriptedGenerator({})
    options = DotsOptions(model="unused", prompt_mode="grounding_ocr", grounding_bbox=[100, 100, 500, 300], max_pixels=1_000_000)
    engine = DotsLayoutEngine(options, generator)
    page = _page(1000, 1000)
    request, (mw, mh) = engine._request(page)
    expected_box = [round(100 * mw / 1000), round(100 * mh / 1000), round(500 * mw / 1000), round(300 * mh / 1000)]
    assert request.prompt == build_prompt("grounding_ocr", expected_box)
    with pytest.raises(ValueError, match="grounding_bbox"):
        DotsOptions(model="unused", prompt_mode="grounding_ocr")


def test_tiny_checkpoint_with_a_tiny_budget_fails_pages_cleanly(tiny_qwen_dir: Path) -> None:
    """Real model, real generate: random weights never finish in 3 tokens, so every page is retried once and kept as an error."""
    engine = build_engine(
        "dots", "layout", {"model": str(tiny_qwen_dir), "max_new_tokens": 3, "extra_max_new_tokens": 2, "max_pixels": 224 * 224, "batch_size": 4}
    )
    layouts = engine.layout([_page(300, 400, n) for n in (1, 2, 3)])
    assert len(layouts) == 3
    for layout in layouts:
        assert layout.error is not None and layout.error.kind == "truncated_output"
        assert layout.info["retries"] == 1 and layout.info["new_tokens"] == 5
        assert "raw_output" in layout.info
    engine.close()
