"""Pick the generation back-end an engine runs on: transformers (``generate`` or static decoding) or vLLM."""

from __future__ import annotations

from typing import Any

from compression.settings import PoolingConfig
from engines.generative.generation import TextGenerator, TransformersGenerator
from engines.generative.options import GenerativeEngineOptions
from vlm.families import Role
from vlm.loading import ModelLoadError, load_model_and_processor


def build_generator(options: GenerativeEngineOptions, role: Role) -> TextGenerator:
    """Load the model once (per actor) behind the common ``TextGenerator`` interface; ``role``: the engine's (family table)."""
    if options.backend == "vllm":
        from engines.generative.vllm_backend import VLLMGenerator

        return VLLMGenerator(options, role)
    model, processor = load_model_and_processor(options, role)
    set_pixel_budget(processor, options.min_pixels, options.max_pixels)
    model, processor = install_pooling(model, processor, options.pooling, options.model)
    from engines.decoding.static_decoding import StaticDecodingGenerator, resolve_compile, resolve_decode

    try:
        decode = resolve_decode(options.decode, model)
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    if decode == "static":
        compile_step = resolve_compile(options.compile, model)
        return StaticDecodingGenerator(model, processor, options.batch_size, memory_fraction=options.memory_fraction, compile=compile_step)
    return TransformersGenerator(model, processor, options.batch_size, memory_fraction=options.memory_fraction)


def set_pixel_budget(processor: object, min_pixels: int, max_pixels: int) -> None:
    """Make the processor's own resize agree with the engine's, so images the engine sized are left as they are."""
    if hasattr(getattr(processor, "image_processor", None), "merge_size"):  # Qwen2-VL-style dynamic resolution
        from compression.resolution import set_pixel_budget as set_budget

        set_budget(processor, min_pixels, max_pixels)


def install_pooling(model: Any, processor: Any, pooling: PoolingConfig, name: str = "model") -> tuple[Any, Any]:
    """Pool the visual tokens on the model and shrink the prompts to match; no pooling leaves both as they are."""
    if pooling.is_identity:
        return model, processor
    from compression.pooled_prompts import PooledProcessor
    from compression.pooling import apply_token_pooling

    try:
        apply_token_pooling(model, pooling)
        return model, PooledProcessor(processor, pooling)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"pooling {pooling.label} cannot be applied to model {name}: {error}") from error
