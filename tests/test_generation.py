"""Batched generation: one call per batch, input order kept, out-of-memory halves the batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engines.generative.generation import Request, TransformersGenerator
from vlm.loading import ModelSource, load_model_and_processor


def _images(sizes: list[tuple[int, int]], seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module")
def qwen(tiny_qwen_dir: Path):
    return load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))


class CountingModel:
    """Wraps a real model: counts generate calls and fails like CUDA when a batch is too big."""

    def __init__(self, model, max_batch: int | None = None):
        self.model = model
        self.max_batch = max_batch
        self.batch_sizes: list[int] = []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, **inputs):
        batch = inputs["input_ids"].shape[0]
        self.batch_sizes.append(batch)
        if self.max_batch is not None and batch > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model.generate(**inputs)


def test_batched_generation_matches_one_at_a_time(qwen) -> None:
    model, processor = qwen
    requests = [Request(image=img, prompt="Read the page.") for img in _images([(120, 90), (224, 160), (60, 200), (150, 150)])]
    counting = CountingModel(model)
    batched = TransformersGenerator(counting, processor, batch_size=4).generate(requests, max_new_tokens=6)
    assert counting.batch_sizes == [4]  # one generate call for the whole batch
    singles = [TransformersGenerator(model, processor, batch_size=1).generate([r], max_new_tokens=6)[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in singles]  # left padding: same greedy tokens, input order kept
    assert all(g.truncated and g.new_tokens == 6 for g in batched)  # random weights never say end-of-turn in 6 tokens


def test_out_of_memory_halves_the_batch_and_loses_nothing(qwen) -> None:
    model, processor = qwen
    requests = [Request(image=img, prompt="Read.") for img in _images([(100, 100)] * 5, seed=1)]
    counting = CountingModel(model, max_batch=2)
    generator = TransformersGenerator(counting, processor, batch_size=5)
    results = generator.generate(requests, max_new_tokens=3)
    assert len(results) == 5 and all(r.new_tokens == 3 for r in results)
    succeeded = [size for size in counting.batch_sizes if size <= 2]
    assert counting.batch_sizes[0] == 5 and sum(succeeded) == 5  # 5 -> 2 + 3 -> 2 + (1 + 2)
    assert generator.oom_splits == 2
    reference = TransformersGenerator(model, processor, batch_size=5).generate(requests, max_new_tokens=3)
    assert [r.text for r in results] == [r.text for r in reference]


def test_out_of_memory_on_a_single_page_is_raised(qwen) -> None:
    model, processor = qwen
    generator = TransformersGenerator(CountingModel(model, max_batch=0), processor, batch_size=4)
    with pytest.raises(torch.OutOfMemoryError):
        generator.generate([Request(image=_images([(80, 80)])[0], prompt="x")], max_new_tokens=2)
