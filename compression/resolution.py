"""Resolution scaling: the pixel budget of Qwen2-VL-style processors.

Qwen2-VL-family models (Qwen2.5-VL, dots.ocr) see an image at a size chosen by the
processor: sides multiples of ``patch_size * merge_size`` (28), area between
``min_pixels`` and ``max_pixels``. The vision tokens, and so the vision and prefill
FLOPs, grow with that area: lowering ``max_pixels`` is the resolution knob a sweep turns
against accuracy.

transformers 5 keeps the budget in the image processor's ``size`` as
``{"shortest_edge": min_pixels, "longest_edge": max_pixels}`` (a ``SizeDict`` once
loaded); older versions also had ``min_pixels`` / ``max_pixels`` attributes, which are
kept in step when present.
"""

from __future__ import annotations

from typing import Any

#: The smallest area that still holds one merged 28x28 visual token.
MIN_BUDGET = 28 * 28


def _image_processor(processor: Any) -> Any:
    image_processor = getattr(processor, "image_processor", processor)
    if not hasattr(image_processor, "merge_size") or not hasattr(image_processor, "size"):
        raise ValueError(f"{type(image_processor).__name__} has no dynamic-resolution pixel budget (not a Qwen2-VL-style processor)")
    return image_processor


def _min_budget(image_processor: Any) -> int:
    side = int(getattr(image_processor, "patch_size", 14) or 14) * int(image_processor.merge_size or 2)
    return max(MIN_BUDGET, side * side)


def pixel_budget(processor: Any) -> tuple[int, int]:
    """The (min_pixels, max_pixels) the processor resizes images into."""
    size = _image_processor(processor).size
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    low, high = get("shortest_edge"), get("longest_edge")
    if low is None or high is None:
        raise ValueError(f"image processor size {size!r} has no 'shortest_edge'/'longest_edge' pixel budget")
    return int(low), int(high)


def set_pixel_budget(processor: Any, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Set the area range images are resized into; returns it. Works on a processor or its image processor."""
    image_processor = _image_processor(processor)
    floor = _min_budget(image_processor)
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"{name} must be a whole number of pixels, got {value!r}")
    min_pixels, max_pixels = int(min_pixels), int(max_pixels)
    if min_pixels < floor or max_pixels < floor:
        raise ValueError(f"pixel budget ({min_pixels}, {max_pixels}) is below one merged visual token ({floor} pixels)")
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} is larger than max_pixels {max_pixels}")
    size = image_processor.size
    values = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    # Keep the container type: a loaded processor holds a SizeDict, a fresh one may hold a dict.
    image_processor.size = values if size is None or isinstance(size, dict) else type(size)(**values)
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(image_processor, name):  # older transformers keep both spellings
            setattr(image_processor, name, value)
    return min_pixels, max_pixels


def scaled_pixel_budget(processor: Any, scale: float) -> tuple[int, int]:
    """Multiply the processor's current area budget (both bounds) by ``scale``; returns the effective (min, max).

    ``scale`` is an area factor: 0.5 halves the pixels (about half the visual tokens),
    image sides shrink by ``sqrt(0.5)``. Bounds are clamped to one merged token, and
    min to max, so an extreme scale still leaves a valid budget.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"resolution scale must be a positive number, got {scale!r}")
    floor = _min_budget(_image_processor(processor))
    low, high = pixel_budget(processor)
    new_high = max(floor, int(round(high * scale)))
    new_low = min(max(floor, int(round(low * scale))), new_high)
    return set_pixel_budget(processor, new_low, new_high)
