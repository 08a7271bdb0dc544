"""Pick the generation back-end an engine runs on: batched transformers ``generate`` or vLLM."""

from __future__ import annotations

from typing import Iterable

from engines.generation import TextGenerator, TransformersGenerator
from engines.hf_options import GenerativeEngineOptions
from vlm.loading import load_model_and_processor


def build_generator(
    options: GenerativeEngineOptions,
    expected_model_types: Iterable[str],
) -> TextGenerator:
    """Load the model once (per actor) behind the common ``TextGenerator`` interface."""
    if options.backend == "vllm":
        from engines.vllm_backend import VLLMGenerator

        return VLLMGenerator(options, expected_model_types)
    model, processor = load_model_and_processor(options, expected_model_types)
    set_pixel_budget(processor, options.min_pixels, options.max_pixels)
    return TransformersGenerator(model, processor, options.batch_size)


def set_pixel_budget(processor: object, min_pixels: int, max_pixels: int) -> None:
    """Make the processor's own resize agree with the engine's, so images the engine sized are left as they are."""
    if hasattr(getattr(processor, "image_processor", None), "merge_size"):  # Qwen2-VL-style dynamic resolution
        from compression.resolution import set_pixel_budget as set_budget

        set_budget(processor, min_pixels, max_pixels)
