"""Gemma picture-OCR engine on a tiny Gemma 3 checkpoint: loading by name, batching, retries, upscaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.generative.gemma import GemmaPictureEngine, upscale_to_min_side
from engines.registry import build_engine


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (20 + 7 * i, 40 + 5 * i, 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def engine(tiny_gemma_dir: Path) -> GemmaPictureEngine:
    return build_engine(
        "gemma", "picture", {"model": str(tiny_gemma_dir), "batch_size": 3, "max_new_tokens": 4, "extra_max_new_tokens": 2}
    )


def test_reads_a_batch_of_crops_in_order(engine: GemmaPictureEngine) -> None:
    crops = _crops(5)
    texts = engine.recognize(crops)
    assert len(texts) == 5 and all(isinstance(t, str) for t in texts)
    singles = [engine.recognize([crop])[0] for crop in crops]
    assert texts == singles


def test_cut_off_crops_are_retried_with_the_larger_budget(engine: GemmaPictureEngine) -> None:
    before = engine.retries
    engine.recognize(_crops(2, seed=3))  # random weights never stop within 4 tokens
    assert engine.retries - before == 2


def test_small_crops_are_upscaled_to_min_side() -> None:
    from PIL import Image

    small = Image.new("RGB", (40, 10))
    assert upscale_to_min_side(small, 64).size == (256, 64)
    assert upscale_to_min_side(Image.new("RGB", (300, 100)), 64).size == (300, 100)


def test_gemma_options_reject_unknown_keys() -> None:
    from engines.registry import validate_options

    with pytest.raises(ValueError, match="promt"):
        validate_options("gemma", "picture", {"promt": "x"})
