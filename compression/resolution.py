"""Resolution scaling: the pixel budget of Qwen2-VL-style processors.

Qwen2-VL-family models (Qwen2.5-VL, dots.ocr) see an image at a size chosen by the
processor: sides multiples of 28, area between ``min_pixels`` and ``max_pixels``. The
vision tokens, and so the vision and prefill FLOPs, grow with that area: lowering
``max_pixels`` is the resolution knob a sweep turns against accuracy.
"""

from __future__ import annotations

from typing import Any

#: The smallest area that still holds one merged 28x28 visual token.
MIN_BUDGET = 28 * 28


def _image_processor(processor: Any) -> Any:
    image_processor = getattr(processor, "image_processor", processor)
    if not hasattr(image_processor, "merge_size"):
        raise ValueError(f"{type(image_processor).__name__} has no dynamic-resolution pixel budget (not a Qwen2-VL-style processor)")
    return image_processor


def pixel_budget(processor: Any) -> tuple[int, int]:
    """The (min_pixels, max_pixels) the processor resizes images into."""
    size = _image_processor(processor).size
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return int(get("shortest_edge")), int(get("longest_edge"))


def set_pixel_budget(processor: Any, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Set the area range images are resized into; returns it. Works on a processor or its image processor."""
    if min_pixels < MIN_BUDGET or max_pixels < MIN_BUDGET:
        raise ValueError(f"pixel budget ({min_pixels}, {max_pixels}) is below one 28x28 visual token ({MIN_BUDGET} pixels)")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} is larger than max_pixels {max_pixels}")
    image_processor = _image_processor(processor)
    image_processor.size = {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(image_processor, name):  # older transformers keep both spellings
            setattr(image_processor, name, int(value))
    return int(min_pixels), int(max_pixels)


def scale_pixel_budget(processor: Any, scale: float) -> tuple[int, int]:
    """Multiply the maximum area by ``scale`` (0.5 = half the pixels, about half the visual tokens)."""
    if scale <= 0:
        raise ValueError(f"resolution scale must be positive, got {scale}")
    low, high = pixel_budget(processor)
    new_high = max(MIN_BUDGET, int(high * scale))
    return set_pixel_budget(processor, min(low, new_high), new_high)
