"""DOTS (``rednote-hilab/dots.ocr``) layout engine: boxes, categories and text per page from one VLM.

Per batch of pages:

1. each page is resized the way the model expects (sides multiples of 28, area within
   min/max pixels) and paired with the prompt of the configured mode, in the model's
   own words (``engines.generative.dots_prompts``);
2. one generator call answers all pages: on CUDA static-cache decoding with slot refill
   (``engines.decoding.static_decoding``), else batched ``generate``, or vLLM;
3. the output is parsed (``engines.generative.dots_output``): boxes go back to page pixels, tables
   stay HTML, formulas LaTeX, pictures lose their text (picture OCR reads them);
4. pages whose output was cut off or invalid are generated again, alone in a smaller
   batch, with ``max_new_tokens + extra_max_new_tokens``; a page that still fails keeps
   every element that parsed completely and gets a page error with the raw output in
   ``info.raw_output``. ``info.retries`` feeds the run summary.

The engine drives the layout families of ``vlm.families``: the published dots.ocr
checkpoint, which ships its own modelling code (``trust_remote_code: true``, adapted to
current transformers by ``vlm.dots_ocr``), and Qwen2-VL / Qwen2.5-VL checkpoints (DOTS's
processor family) through transformers' own classes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from engines.base import Element, PageError, PageImage, PageLayout, PageMeta
from engines.generative.dots_output import model_input_size, parse_layout, parse_text
from engines.generative.dots_prompts import PromptMode, build_prompt, expects_json
from engines.generative.generation import Generated, Request
from engines.generative.options import GenerativeEngineOptions


class DotsOptions(GenerativeEngineOptions):
    model: str = Field("rednote-hilab/dots.ocr", description="local checkpoint folder or hub id")
    prompt_mode: PromptMode = Field(
        "layout_all", description="layout_all: boxes+categories+text; layout_only: boxes; ocr: text only; grounding_ocr: text in grounding_bbox"
    )
    grounding_bbox: list[float] | None = Field(
        None, min_length=4, max_length=4, description="grounding_ocr mode: [x0, y0, x1, y1] in page pixels, read on every page"
    )
    batch_size: int = Field(
        64, ge=1, description="pages decoded at once (static decoding: slots; give the pool a batch_size at least this large); "
        "on CUDA lowered to fit memory_fraction, halved on out-of-memory"
    )
    max_new_tokens: int = Field(8192, ge=1, description="token budget of the first attempt")
    max_pixels: int = Field(11_289_600, ge=784, description="pages are resized to at most this many pixels (dots.ocr default)")

    @model_validator(mode="after")
    def _grounding(self) -> DotsOptions:
        if self.prompt_mode == "grounding_ocr" and self.grounding_bbox is None:
            raise ValueError("prompt_mode grounding_ocr needs grounding_bbox: [x0, y0, x1, y1] in page pixels")
        if self.prompt_mode != "grounding_ocr" and self.grounding_bbox is not None:
            raise ValueError(f"grounding_bbox is only used with prompt_mode grounding_ocr, not {self.prompt_mode}")
        return self


class DotsLayoutEngine:
    name = "dots"

    def __init__(self, options: DotsOptions, generator: object | None = None):
        from engines.generative.backends import build_generator

        self.options = options
        self.generator = generator or build_generator(options, "layout")
        self.warmup_s = self._warm_up()

    def _warm_up(self) -> float:
        """Compiled static decoding: build the decode graphs now, at actor start, for a blank letter-size page."""
        warm_up = getattr(self.generator, "warm_up", None)
        if warm_up is None or not getattr(self.generator, "compiled", False) or self.options.warmup_page_pixels == 0:
            return 0.0
        height = max(28, round((self.options.warmup_page_pixels * 11 / 8.5) ** 0.5))
        width = max(28, round(self.options.warmup_page_pixels / height))
        meta = PageMeta(doc_id="warm-up", source="warm-up", page_number=1, width=width, height=height)
        request, _ = self._request(PageImage(image=np.full((height, width, 3), 255, dtype=np.uint8), meta=meta))
        return float(warm_up([request], self.options.max_new_tokens))

    def layout(self, pages: Sequence[PageImage]) -> list[PageLayout]:
        requests, sizes = [], []
        for page in pages:
            request, model_size = self._request(page)
            requests.append(request)
            sizes.append(model_size)
        outputs = self.generator.generate(requests, self.options.max_new_tokens)
        results = [self._parse(page, size, output) for page, size, output in zip(pages, sizes, outputs)]
        failed = [i for i, result in enumerate(results) if result.error is not None]
        if failed and self.options.extra_max_new_tokens > 0:
            budget = self.options.max_new_tokens + self.options.extra_max_new_tokens
            retried = self.generator.generate([requests[i] for i in failed], budget)
            for i, output in zip(failed, retried):
                results[i] = self._parse(pages[i], sizes[i], output)
                results[i].info["retries"] = 1
        return results

    def _request(self, page: PageImage) -> tuple[Request, tuple[int, int]]:
        width, height = page.meta.width, page.meta.height
        model_w, model_h = model_input_size(width, height, self.options.min_pixels, self.options.max_pixels)
        image = Image.fromarray(page.image)
        if (model_w, model_h) != image.size:
            image = image.resize((model_w, model_h), Image.Resampling.BICUBIC)
        bbox = None
        if self.options.grounding_bbox is not None:
            x0, y0, x1, y1 = self.options.grounding_bbox
            sx, sy = model_w / width, model_h / height
            bbox = [round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)]
        return Request(image=image, prompt=build_prompt(self.options.prompt_mode, bbox)), (model_w, model_h)

    def _parse(self, page: PageImage, model_size: tuple[int, int], output: Generated) -> PageLayout:
        page_size = (page.meta.width, page.meta.height)
        info: dict[str, object] = {"prompt_mode": self.options.prompt_mode, "new_tokens": output.new_tokens, "retries": 0}
        if not expects_json(self.options.prompt_mode):
            text = parse_text(output.text)
            box = self.options.grounding_bbox or [0.0, 0.0, float(page_size[0]), float(page_size[1])]
            elements = [Element(bbox=list(box), category="Text", text=text)] if text else []
            error = PageError("truncated_output", f"output cut off at {output.new_tokens} tokens") if output.truncated else None
            if error:
                info["raw_output"] = output.text
            return PageLayout(elements=elements, info=info, error=error)
        parsed = parse_layout(output.text, model_size, page_size, mode=self.options.prompt_mode)
        if parsed.notes:  # dropped boxes, unknown categories: visible in the report
            info["parse_notes"] = parsed.notes
        error = None
        if output.truncated or not parsed.complete:
            kind = "truncated_output" if output.truncated else "invalid_output"
            detail = parsed.error or f"output cut off at {output.new_tokens} tokens"
            error = PageError(kind, f"{detail}; kept {len(parsed.elements)} complete elements")
            info["raw_output"] = output.text
        return PageLayout(elements=parsed.elements, info=info, error=error)

    def close(self) -> None:
        self.generator.close()
