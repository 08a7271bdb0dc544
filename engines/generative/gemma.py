"""Gemma picture-OCR engine: reads the text inside picture-region crops with Gemma 3n or Gemma 3.

The model is loaded with ``AutoModelForImageTextToText`` and ``AutoProcessor``, and each
crop is wrapped in the model's own chat template with a configurable prompt. Crops
smaller than ``min_side`` are upscaled first (the crop stage already enlarged them by
its ``upscale`` factor): Gemma's processor resizes every image to its fixed input size,
and tiny crops lose their strokes in that resize. One ``generate`` call per batch.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from PIL import Image
from pydantic import Field

from engines.generative.generation import Request
from engines.generative.options import GenerativeEngineOptions

DEFAULT_PROMPT = (
    "Extract all text visible in this image, in reading order. "
    "Return only the text, without comments. If there is no text, return nothing."
)


class GemmaOptions(GenerativeEngineOptions):
    model: str = Field("google/gemma-3n-E4B-it", description="local checkpoint folder or hub id (Gemma 3n or Gemma 3)")
    prompt: str = Field(DEFAULT_PROMPT, min_length=1, description="instruction sent with every crop")
    min_side: int = Field(256, ge=1, description="crops whose shorter side is below this are upscaled to it")
    batch_size: int = Field(16, ge=1, description="crops per generate call (on CUDA lowered to fit memory_fraction, halved on out-of-memory)")
    decode: Literal["auto", "dynamic"] = Field(
        "auto", description="Gemma's sliding-window cache layers rule out static decoding: auto and dynamic both run generate"
    )
    max_new_tokens: int = Field(512, ge=1, description="token budget per crop")
    extra_max_new_tokens: int = Field(512, ge=0, description="added to the budget for crops whose text was cut off (0: no retry)")


class GemmaPictureEngine:
    name = "gemma"

    def __init__(self, options: GemmaOptions, generator: object | None = None):
        from engines.generative.backends import build_generator

        self.options = options
        self.generator = generator or build_generator(options, "picture")
        self.retries = 0  # crops generated again with the larger budget, over the engine's life

    def recognize(self, crops: Sequence[np.ndarray]) -> list[str]:
        requests = [Request(image=upscale_to_min_side(Image.fromarray(crop), self.options.min_side), prompt=self.options.prompt) for crop in crops]
        outputs = self.generator.generate(requests, self.options.max_new_tokens)
        cut = [i for i, output in enumerate(outputs) if output.truncated]
        if cut and self.options.extra_max_new_tokens > 0:
            budget = self.options.max_new_tokens + self.options.extra_max_new_tokens
            for i, output in zip(cut, self.generator.generate([requests[i] for i in cut], budget)):
                outputs[i] = output
            self.retries += len(cut)
        return [output.text.strip() for output in outputs]

    def close(self) -> None:
        self.generator.close()


def upscale_to_min_side(image: Image.Image, min_side: int) -> Image.Image:
    shorter = min(image.size)
    if shorter >= min_side or shorter == 0:
        return image
    factor = min_side / shorter
    return image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.Resampling.BICUBIC)
