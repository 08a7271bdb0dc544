"""Batch size from free memory, and buckets that make compiled shapes reusable (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.generative import batch_sizing
from engines.generative.batch_sizing import cache_length, fit_batch_size, kv_bytes_per_token, round_up, slot_buckets
from vlm.tiny import DOTS_SHAPE

GIB = 2**30


def _dots_config():
    """dots.ocr's text dimensions, config only (no 3 B weights built)."""
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={
            "hidden_size": DOTS_SHAPE["hidden_size"],
            "num_hidden_layers": DOTS_SHAPE["num_layers"],
            "num_attention_heads": DOTS_SHAPE["num_heads"],
            "num_key_value_heads": DOTS_SHAPE["num_kv_heads"],
            "intermediate_size": DOTS_SHAPE["intermediate_size"],
        }
    )


def test_kv_bytes_per_token_of_the_dots_shape() -> None:
    # 2 (K, V) x 28 layers x 2 KV heads x 128 head size x 2 bytes (bf16)
    assert kv_bytes_per_token(_dots_config(), 2) == 2 * 28 * 2 * 128 * 2 == 28_672


def test_batch_size_from_a_given_free_memory_figure() -> None:
    per_token = kv_bytes_per_token(_dots_config(), 2)
    per_page = per_token * (1296 + 1000)  # a 1 Mpx page's prompt plus 1000 new tokens: 63 MiB
    assert fit_batch_size(60 * GIB, 0.85, per_page, cap=10_000) == int(60 * GIB * 0.85) // per_page == 831
    assert fit_batch_size(60 * GIB, 0.85, per_page, cap=64) == 64  # the configured batch size caps it
    assert fit_batch_size(1 * GIB, 0.5, per_page, cap=64) == 8
    assert fit_batch_size(10, 0.85, per_page, cap=64) == 1  # never zero: out-of-memory handling takes it from there
    with pytest.raises(ValueError, match="memory_fraction"):
        fit_batch_size(GIB, 1.5, per_page, cap=8)


def test_slot_buckets_are_few_and_include_the_batch() -> None:
    assert slot_buckets(64) == [4, 16, 64]
    assert slot_buckets(48) == [3, 12, 48]
    assert slot_buckets(8) == [1, 2, 8]
    assert slot_buckets(1) == [1]
    assert [round_up(n, slot_buckets(64)) for n in (1, 2, 5, 16, 17, 64)] == [4, 4, 16, 16, 64, 64]
    with pytest.raises(ValueError, match="65 is larger than the largest bucket 64"):
        round_up(65, slot_buckets(64))


def test_cache_lengths_round_up_to_a_few_reused_values() -> None:
    assert [cache_length(n) for n in (10, 300, 1024, 1025, 2048, 2316, 4316, 9508)] == [256, 320, 1024, 1280, 2048, 2560, 5120, 10240]
    lengths = {cache_length(n) for n in range(1, 16_385)}
    assert len(lengths) == 25  # 16k different needs, 25 possible shapes (4 per doubling)
    for n in range(1, 16_385, 97):
        assert n <= cache_length(n) <= max(256, n * 1.25)  # never short, at most a quarter unused past the minimum


def test_static_slots_follow_free_memory(monkeypatch: pytest.MonkeyPatch, tiny_qwen_dir: Path) -> None:
    from engines.decoding.static_decoding import StaticDecodingGenerator
    from vlm.loading import ModelSource, load_model_and_processor

    model, processor = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))
    per_token = kv_bytes_per_token(model.config, 4)  # the tiny model in float32: 512 bytes
    free = 300 * 2**20
    monkeypatch.setattr("engines.decoding.static_decoding.free_device_memory", lambda device: free)
    generator = StaticDecodingGenerator(model, processor, batch_size=256, memory_fraction=0.5)
    expected = int(free * 0.5) // (per_token * 2048 * 4 // 3)  # shrink buckets' caches counted: 4/3 of one
    assert generator._slots(2048) == expected == 112
    assert StaticDecodingGenerator(model, processor, batch_size=16)._slots(2048) == 16  # the cap wins when memory is plenty
    monkeypatch.setattr("engines.decoding.static_decoding.free_device_memory", lambda device: None)
    assert StaticDecodingGenerator(model, processor, batch_size=256)._slots(2048) == 256  # CPU: the configured batch


def test_generate_batch_follows_free_memory(monkeypatch: pytest.MonkeyPatch, tiny_qwen_dir: Path) -> None:
    from engines.generative.generation import Request, TransformersGenerator
    from vlm.loading import ModelSource, load_model_and_processor
    from vlm.tiny import text_like_pages

    model, processor = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))
    monkeypatch.setattr(batch_sizing, "free_device_memory", lambda device: 2**20)
    request = Request(image=text_like_pages([(200, 150)])[0], prompt="Read.")
    generator = TransformersGenerator(model, processor, batch_size=64, memory_fraction=0.5)
    prompt = generator.encode([request])["input_ids"].shape[1]
    per_page = 2 * kv_bytes_per_token(model.config, 4) * (prompt + 100)  # dynamic cache: twice, for its concatenations
    assert generator._batch_size(request, 100) == 2**19 // per_page
    assert TransformersGenerator(model, processor, batch_size=64)._batch_size(request, 100) == 64  # no fraction: as configured
