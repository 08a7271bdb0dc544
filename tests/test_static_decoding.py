"""Static-cache decoding with slot refill gives plain ``generate``'s greedy tokens, page for page.

Pages end at different steps (forced lengths, the model's own end token, the budget),
slots are refilled while other rows decode, the cache is compacted and shrunk, and an
out-of-memory error halves the slots: through all of it the tokens must be exactly
those of ``generate`` with a dynamic cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engines.decoding.page_encoding import EncodedPage, collate
from engines.decoding.slot_refill import SlotRefillDecoder, StopRule
from engines.decoding.static_decoding import StaticDecodingGenerator, resolve_decode, static_decoding_blockers
from engines.generative.generation import Request, TransformersGenerator, encode_requests
from vlm.loading import ModelSource, load_model_and_processor
from vlm.tiny import text_like_pages

SIZES = [(120, 90), (224, 160), (60, 200), (150, 150), (100, 100), (80, 140), (200, 60)]  # width, height
STOPS = [3, None, 17, 1, 25, 0, 5]  # forced end after this many tokens; None: the budget ends the page


@pytest.fixture(scope="module")
def qwen(tiny_qwen_dir: Path):
    """The tiny checkpoint, sharpened (see ``_sharpen``)."""
    model, processor = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))
    return _sharpen(model), processor


def _sharpen(model):
    """Text attention 100x sharper: random init attends almost uniformly, so a wrong position or a misplaced cache
    column would not change a greedy token; with queries and keys 10x larger every token depends on both."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")) and "visual" not in name:
                parameter.mul_(10.0)
    return model


def _requests(stops: list[int | None] = STOPS) -> list[Request]:
    pages = text_like_pages([(h, w) for w, h in SIZES])
    return [Request(image=page, prompt="Read the page.", stop_after=stop) for page, stop in zip(pages, stops)]


def _order(requests: list[Request]) -> list[int]:
    return sorted(range(len(requests)), key=lambda i: requests[i].image.width * requests[i].image.height, reverse=True)


@pytest.mark.parametrize("slots", [8, 3, 1])
def test_static_path_and_slot_refill_give_generates_tokens(qwen, slots: int) -> None:
    model, processor = qwen
    requests = _requests()
    reference = TransformersGenerator(model, processor, batch_size=8).generate(requests, max_new_tokens=20)
    assert sorted(r.new_tokens for r in reference) == [0, 1, 3, 5, 17, 20, 20]  # rows end at different steps
    generator = StaticDecodingGenerator(model, processor, batch_size=slots)
    assert generator.generate(requests, max_new_tokens=20) == reference
    stats = generator.stats
    assert stats.prefilled_pages == len(requests)
    if slots < len(requests):
        assert stats.prefills > 1  # freed slots were refilled with waiting pages
    assert stats.busy_slot_steps == sum(min(r.new_tokens + 1, 20) - 1 for r in reference)  # a row steps until it ends, no longer


def test_natural_end_of_sequence_frees_the_slot(qwen) -> None:
    """Declare a token the model emits mid-page an end token: rows end on the model's own output, at different steps."""
    model, processor = qwen
    requests = _requests([None] * len(SIZES))
    rows = [encode_requests(processor, [r]) for r in requests]
    with torch.no_grad():
        tokens = [model.generate(**row, max_new_tokens=16, do_sample=False)[0, row["input_ids"].shape[1]:].tolist() for row in rows]
    firsts: dict[int, set[int]] = {}
    for row in tokens:
        for position, token in enumerate(row):
            if token not in row[:position]:
                firsts.setdefault(token, set()).add(position)
    stop_token = max(firsts, key=lambda t: (len(firsts[t]), sum(firsts[t])))  # first seen at the most different steps
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [original, stop_token]
    try:
        reference = TransformersGenerator(model, processor, batch_size=8).generate(requests, max_new_tokens=16)
        assert len({r.new_tokens for r in reference}) > 2 and not all(r.truncated for r in reference)
        assert StaticDecodingGenerator(model, processor, batch_size=3).generate(requests, max_new_tokens=16) == reference
    finally:
        model.generation_config.eos_token_id = original


def test_compaction_and_prompts_too_long_for_the_cache(qwen) -> None:
    """A cache just long enough: columns run out and are compacted, token for token; a shorter one defers long prompts."""
    model, processor = qwen
    requests = _requests()
    budget = 30
    reference = TransformersGenerator(model, processor, batch_size=8).generate(requests, max_new_tokens=budget)
    generator = StaticDecodingGenerator(model, processor, batch_size=3)
    pages = {i: generator._encode(requests, i) for i in range(len(requests))}
    lengths = {i: page.length for i, page in pages.items()}

    def decoder(length: int) -> SlotRefillDecoder:
        return SlotRefillDecoder(
            prefill=lambda group: generator._prefill([pages[i] for i in group]), step=generator.step, prompt_length=lengths.__getitem__,
            pool=generator.pool, slots=3, length=length, rule=StopRule(generator.end_ids, budget, STOPS), prefill_batch=2, refill_min=1,
        )

    tight = decoder(max(lengths.values()) + budget)
    results: dict = {}
    with torch.no_grad():
        assert tight.run(_order(requests), results) == []
    assert tight.stats.compactions >= 1 and tight.stats.shrinks >= 1
    assert [generator._generated(results[i], budget) for i in range(len(requests))] == reference

    short = sorted(lengths.values())[3] + budget  # the four shortest prompts fit, the three longest do not
    results = {}
    with torch.no_grad():
        deferred = decoder(short).run(_order(requests), results)
    assert sorted(deferred) == sorted(i for i in lengths if lengths[i] + budget > short) and len(deferred) == 3
    assert all(generator._generated(results[i], budget) == reference[i] for i in results) and len(results) == 4


def test_out_of_memory_halves_the_slots_and_loses_no_page(qwen) -> None:
    model, processor = qwen
    requests = _requests()
    reference = TransformersGenerator(model, processor, batch_size=8).generate(requests, max_new_tokens=20)
    generator = StaticDecodingGenerator(model, processor, batch_size=4)
    real_step, calls = generator.step, []

    def step_failing_at_four_slots(cache):
        calls.append(cache.slots)
        if cache.slots == 4 and len(calls) > 6:  # some pages have finished by then
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(cache)

    generator.step = step_failing_at_four_slots
    assert generator.generate(requests, max_new_tokens=20) == reference
    assert generator.oom_splits == 1 and set(generator.slot_cap.values()) == {2}
    assert 2 in calls and calls.index(2) > 6


@pytest.mark.parametrize("pooling", ["avg:2", "norm_drop:0.5"])
def test_pooled_visual_tokens_decode_the_same(tiny_qwen_dir: Path, pooling: str) -> None:
    """Token pooling (compression.pooling) rewrites prompts and M-RoPE positions; the static path follows both."""
    from compression.settings import PoolingConfig
    from engines.generative.backends import install_pooling

    model, processor = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))
    model, processor = install_pooling(_sharpen(model), processor, PoolingConfig.model_validate(pooling))
    requests = _requests()[:5]
    reference = TransformersGenerator(model, processor, batch_size=8).generate(requests, max_new_tokens=12)
    assert StaticDecodingGenerator(model, processor, batch_size=2).generate(requests, max_new_tokens=12) == reference


def test_collated_pages_equal_one_processor_call(qwen) -> None:
    _, processor = qwen
    requests = _requests()[:3]
    pages = [EncodedPage(dict(encode_requests(processor, [r]))) for r in requests]
    together = encode_requests(processor, requests)
    batch = collate(pages, pad_id=processor.tokenizer.pad_token_id)
    assert set(batch) == set(together.keys())
    for key in batch:
        assert torch.equal(batch[key], together[key]), key


def test_same_shapes_are_reused_across_calls(qwen) -> None:
    """5 pages and 7 pages both round up to the 8-slot bucket: one cache object, one step shape, nothing rebuilt."""
    model, processor = qwen
    generator = StaticDecodingGenerator(model, processor, batch_size=8)
    requests = _requests()
    generator.generate(requests[:5], max_new_tokens=4)
    shapes, caches = set(generator.step.shapes_seen), dict(generator.pool.caches)
    generator.generate(requests, max_new_tokens=4)
    assert generator.step.shapes_seen == shapes and generator.pool.caches == caches
    assert {slots for slots, _ in shapes} <= {1, 2, 8} and len({length for _, length in shapes}) == 1


def test_decode_step_traces_as_one_graph(qwen) -> None:
    """What CUDA graphs need: the step (static cache, explicit positions, mask) compiles without graph breaks."""
    from engines.decoding.decode_step import greedy_step
    from vlm.forward_args import cache_keyword, logits_to_keep

    model, processor = qwen
    generator = StaticDecodingGenerator(model, processor, batch_size=2)
    compiled = torch.compile(greedy_step, backend="eager", fullgraph=True)
    requests = _requests()[:2]
    with torch.no_grad():
        cache = generator.pool.get(2, 256)
        prefilled = generator._prefill([generator._encode(requests, i) for i in range(2)])
        cache.insert([0, 1], prefilled.cache, prefilled.mask)
        cache.tokens[:, 0] = torch.tensor(prefilled.first_tokens)
        cache.positions.copy_(prefilled.next_positions)
        cache.open_column()
        eager = greedy_step(model, generator.scheme, cache.cache, cache.tokens, cache.positions, cache.valid, logits_to_keep(model),
                            cache_keyword(model))
        cache.set_column(cache.column)  # the eager step advanced the layers' counters: write the same column again
        assert torch.equal(compiled(model, generator.scheme, cache.cache, cache.tokens, cache.positions, cache.valid, logits_to_keep(model),
                                    cache_keyword(model)), eager)


def test_decode_mode_resolution(qwen, tiny_gemma_dir: Path) -> None:
    model, _ = qwen
    assert static_decoding_blockers(model) == []
    assert resolve_decode("auto", model) == "dynamic"  # CPU: generate
    assert resolve_decode("static", model) == "static"
    gemma, _ = load_model_and_processor(ModelSource(model=str(tiny_gemma_dir)))
    assert resolve_decode("auto", gemma) == "dynamic"
    with pytest.raises(ValueError, match=r"decode: static is not available for model .*gemma.*sliding_attention"):
        resolve_decode("static", gemma)


def test_dots_engine_runs_on_static_decoding(tiny_qwen_dir: Path) -> None:
    import numpy as np

    from engines.base import PageImage, PageMeta
    from engines.registry import build_engine

    options = {"model": str(tiny_qwen_dir), "max_new_tokens": 3, "extra_max_new_tokens": 2, "max_pixels": 224 * 224, "batch_size": 2,
               "decode": "static"}
    engine = build_engine("dots", "layout", options)
    assert isinstance(engine.generator, StaticDecodingGenerator) and engine.warmup_s == 0.0  # nothing compiled on CPU
    pages = [PageImage(np.full((400, 300, 3), 255, np.uint8), PageMeta("d", "d.pdf", n, 300, 400)) for n in (1, 2, 3)]
    layouts = engine.layout(pages)
    assert [layout.info["new_tokens"] for layout in layouts] == [5, 5, 5]  # cut off at 3, retried with 5, like generate
    engine.close()


def test_warm_up_builds_every_slot_bucket_then_calls_reuse_them(qwen) -> None:
    model, processor = qwen
    generator = StaticDecodingGenerator(model, processor, batch_size=8)
    requests = _requests()
    seconds = generator.warm_up(requests[:1], 6)
    length = generator.pool.lengths()[0]
    assert seconds > 0 and generator.step.shapes_seen == {(1, length), (2, length), (8, length)}
    caches = dict(generator.pool.caches)
    generator.generate([requests[0]] * 7, max_new_tokens=6)  # same page size: the warmed cache length
    assert generator.pool.caches == caches


def test_dots_engine_warms_up_a_compiled_generator_at_start() -> None:
    """The engine hands its own prompt and budget to ``warm_up``, on a blank letter-size page within its pixel budget."""
    from engines.generative.dots import DotsLayoutEngine, DotsOptions

    class CompiledGenerator:
        compiled = True

        def __init__(self) -> None:
            self.calls: list[tuple[list[Request], int]] = []

        def warm_up(self, requests: list[Request], max_new_tokens: int) -> float:
            self.calls.append((requests, max_new_tokens))
            return 42.0

    generator = CompiledGenerator()
    options = DotsOptions(model="unused", max_new_tokens=700, warmup_page_pixels=1_000_000, max_pixels=2_000_000)
    engine = DotsLayoutEngine(options, generator)
    ((request,), budget), = generator.calls
    width, height = request.image.size
    assert engine.warmup_s == 42.0 and budget == 700
    assert abs(width * height - 1_000_000) < 60_000 and height > width and width % 28 == 0 and height % 28 == 0
    assert "layout" in request.prompt.lower() or "bbox" in request.prompt.lower()
    generator.compiled = False
    DotsLayoutEngine(options, generator)
    assert len(generator.calls) == 1  # nothing to compile: no warm-up
