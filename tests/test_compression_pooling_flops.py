"""Image-token pooling, pixel budgets and the FLOP counter on tiny random Qwen2.5-VL checkpoints (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import AutoModelForImageTextToText, AutoProcessor

from compression.flops import FlopReport, PhaseFlops, count_flops
from compression.pooled_prompts import PooledProcessor, pool_processor_inputs, visual_token_count
from compression.pooling import (
    PoolingConfig,
    apply_token_pooling,
    pool_image_features,
    pooled_token_counts,
    remove_token_pooling,
    token_pooling_config,
)
from compression.resolution import pixel_budget, scaled_pixel_budget, set_pixel_budget
from vlm.tiny import save_tiny_qwen2_5_vl

# Merged grids (14-px patches, merge 2): 112x112 -> 4x4, 224x168 -> 8x6, 100x80 -> 4x3 (odd width).
EVEN, EVEN_WIDE, ODD = (112, 112), (224, 168), (100, 80)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny") / "qwen")


@pytest.fixture(scope="module")
def wider_path(tmp_path_factory):
    return save_tiny_qwen2_5_vl(
        tmp_path_factory.mktemp("wider") / "qwen", hidden_size=128, num_layers=3, vision_depth=3, vision_hidden_size=128, seed=1
    )


@pytest.fixture(scope="module")
def processor(tiny_path):
    return AutoProcessor.from_pretrained(tiny_path)


def load(path, attn="sdpa"):
    return AutoModelForImageTextToText.from_pretrained(path, attn_implementation=attn).eval()


def images(*sizes):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def prompts(processor, n):
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read" + " page" * i}]}] for i in range(n)]
    return [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]


def batch(processor, sizes, config=None):
    proc = processor if config is None else PooledProcessor(processor, config)
    return proc(text=prompts(processor, len(sizes)), images=images(*sizes), return_tensors="pt", padding=True)


def logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def image_token(processor):
    return processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")


# --- config and pure functions ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(factor=0), "factor"),
        (dict(method="mean"), "method"),
        (dict(method="norm_drop", keep_ratio=0.0), "keep_ratio"),
        (dict(method="norm_drop", factor=2, keep_ratio=0.5), "factor must stay 1"),
        (dict(method="avg", factor=2, keep_ratio=0.5), "only applies"),
    ],
)
def test_pooling_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PoolingConfig(**kwargs)


def test_pooled_counts_exact_for_even_grids_and_ceil_otherwise():
    grid = torch.tensor([[1, 8, 8], [1, 16, 12], [1, 8, 6], [2, 10, 14]])  # merged 4x4, 8x6, 4x3, 2 frames of 5x7
    assert pooled_token_counts(grid, PoolingConfig(factor=2), 2) == [4, 12, 4, 2 * 3 * 4]
    assert pooled_token_counts(grid, PoolingConfig(factor=4, method="max"), 2) == [1, 4, 1, 2 * 2 * 2]
    assert pooled_token_counts(grid, PoolingConfig(), 2) == [16, 48, 12, 70]
    # norm_drop: max(1, ceil(keep_ratio * n)) per image.
    assert pooled_token_counts(grid, PoolingConfig(method="norm_drop", keep_ratio=0.25), 2) == [4, 12, 3, 18]
    assert pooled_token_counts(grid, PoolingConfig(method="norm_drop", keep_ratio=0.01), 2) == [1, 1, 1, 1]


def test_avg_and_max_pool_blocks_with_partial_edges():
    features = torch.arange(4 * 3, dtype=torch.float32).reshape(12, 1)  # 4x3 grid, value = 3*row + col
    avg, keep = pool_image_features(features, (1, 4, 3), PoolingConfig(factor=2))
    assert keep is None
    # Blocks: rows {0,1},{2,3} x cols {0,1},{2}; the edge block averages only the real tokens.
    assert avg.flatten().tolist() == [2.0, 3.5, 8.0, 9.5]
    high, _ = pool_image_features(features, (1, 4, 3), PoolingConfig(factor=2, method="max"))
    assert high.flatten().tolist() == [4.0, 5.0, 10.0, 11.0]
    same, _ = pool_image_features(features, (1, 4, 3), PoolingConfig(factor=1))
    assert same is features


def test_norm_drop_keeps_largest_norms_in_order():
    features = torch.tensor([[1.0], [-9.0], [3.0], [0.5], [7.0], [2.0], [-4.0], [0.0]])
    kept, keep = pool_image_features(features, (1, 2, 4), PoolingConfig(method="norm_drop", keep_ratio=0.25))
    assert keep.tolist() == [1, 4]
    assert kept.flatten().tolist() == [-9.0, 7.0]


# --- prompts ------------------------------------------------------------------------------


def test_pooled_prompt_has_four_times_fewer_placeholders_and_keeps_left_padding(processor):
    base = batch(processor, [EVEN, EVEN_WIDE])
    pooled = batch(processor, [EVEN, EVEN_WIDE], PoolingConfig(factor=2))
    token = image_token(processor)
    assert visual_token_count(base, token) == 16 + 48
    assert visual_token_count(pooled, token) * 4 == visual_token_count(base, token)
    assert torch.equal(pooled["image_grid_thw"], base["image_grid_thw"])  # the tower still sees the real grid
    assert torch.equal(pooled["pixel_values"], base["pixel_values"])
    for b in range(2):
        mask = pooled["attention_mask"][b]
        first = int(mask.argmax())
        assert mask[first:].all() and not mask[:first].any()  # left padded, contiguous
        ids = pooled["input_ids"][b][mask.bool()]
        old = base["input_ids"][b][base["attention_mask"][b].bool()]
        assert ids[ids != token].tolist() == old[old != token].tolist()  # text untouched, in order
        types = pooled["mm_token_type_ids"][b][mask.bool()]
        assert torch.equal(types.bool(), ids == token)
    assert pooled["attention_mask"][:, -1].all()


def test_pooled_prompt_odd_grid_uses_ceil(processor):
    pooled = batch(processor, [ODD, EVEN], PoolingConfig(factor=2))
    assert pooled["image_grid_thw"].tolist() == [[1, 8, 6], [1, 8, 8]]
    assert visual_token_count(pooled, image_token(processor)) == 2 * 2 + 2 * 2


def test_pool_processor_inputs_rejects_mismatched_runs(processor):
    pooled = batch(processor, [EVEN], PoolingConfig(factor=2))
    with pytest.raises(ValueError, match="already pooled"):
        pool_processor_inputs(pooled, PoolingConfig(factor=2), merge_size=2, image_token_id=image_token(processor), pad_token_id=0)


# --- the model ----------------------------------------------------------------------------


def test_window_reordering_is_undone_before_the_merged_output(tiny_path, processor):
    """With no transformer blocks, merged token i must come from patches 4i..4i+3 (row-major merged grid)."""
    model = load(tiny_path)
    visual = model.model.visual
    visual.blocks = nn.ModuleList()
    inputs = batch(processor, [EVEN_WIDE])
    with torch.no_grad():
        merged = visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"]).pooler_output
        direct = visual.merger(visual.patch_embed(inputs["pixel_values"]))
    assert torch.allclose(merged, direct, atol=1e-6)


@pytest.mark.parametrize(
    "config", [PoolingConfig(factor=2), PoolingConfig(factor=2, method="max"), PoolingConfig(method="norm_drop", keep_ratio=0.25)]
)
def test_generate_batched_with_different_image_sizes(tiny_path, processor, config):
    model = apply_token_pooling(load(tiny_path), config)
    assert token_pooling_config(model) == config
    inputs = batch(processor, [ODD, EVEN_WIDE], config)
    grids_seen = []
    tower = model.model.visual.forward
    model.model.visual.forward = lambda x, grid_thw, **kw: (grids_seen.append(grid_thw.tolist()), tower(x, grid_thw=grid_thw, **kw))[1]
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    first = logits(model, inputs)[:, -1].argmax(-1)
    assert out.shape == (2, inputs["input_ids"].shape[1] + 4)
    assert torch.equal(out[:, inputs["input_ids"].shape[1]], first)  # generate's positions/embeddings = forward's
    assert grids_seen and all(g == [[1, 8, 6], [1, 16, 12]] for g in grids_seen)
    assert len(grids_seen) == 2  # one vision pass in generate (norm_drop too), one in forward
    expected = pooled_token_counts(inputs["image_grid_thw"], config, 2)
    assert visual_token_count(inputs, image_token(processor)) == sum(expected)


def test_avg_positions_follow_the_pooled_grid(tiny_path, processor):
    model = apply_token_pooling(load(tiny_path), PoolingConfig(factor=2))
    inputs = batch(processor, [ODD], PoolingConfig(factor=2))
    positions, _ = model.model.get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    is_image = inputs["input_ids"][0] == image_token(processor)
    image_pos = positions[:, 0, is_image]
    start = int(image_pos[0, 0])
    assert image_pos[1].tolist() == [start + r for r in (0, 0, 1, 1)]  # pooled 2x2 grid of the 4x3 merged grid
    assert image_pos[2].tolist() == [start + c for c in (0, 1, 0, 1)]
    after = int(is_image.nonzero().max()) + 1
    assert positions[:, 0, after].tolist() == [start + 2] * 3  # text resumes after max(2, 2)


def test_norm_drop_tokens_keep_their_original_positions(tiny_path, processor):
    config = PoolingConfig(method="norm_drop", keep_ratio=0.25)
    model = load(tiny_path)
    inner = model.model
    base = batch(processor, [EVEN, EVEN_WIDE])
    base_pos, _ = inner.get_rope_index(
        base["input_ids"], mm_token_type_ids=base["mm_token_type_ids"], image_grid_thw=base["image_grid_thw"], attention_mask=base["attention_mask"]
    )
    with torch.no_grad():
        full = inner.get_image_features(base["pixel_values"], base["image_grid_thw"]).pooler_output
    apply_token_pooling(model, config)
    inputs = batch(processor, [EVEN, EVEN_WIDE], config)
    with torch.no_grad():
        kept = inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    positions, deltas = inner.get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    token = image_token(processor)
    for b in range(2):
        n = full[b].shape[0]
        keep = full[b].norm(dim=-1).topk(n // 4).indices.sort().values
        assert kept[b].shape[0] == n // 4 and torch.equal(kept[b], full[b][keep])
        old_valid, new_valid = base["attention_mask"][b].bool(), inputs["attention_mask"][b].bool()
        old_ids, new_ids = base["input_ids"][b][old_valid], inputs["input_ids"][b][new_valid]
        old_pos, new_pos = base_pos[:, b, old_valid], positions[:, b, new_valid]
        assert torch.equal(new_pos[:, new_ids != token], old_pos[:, old_ids != token])  # text keeps its positions
        assert torch.equal(new_pos[:, new_ids == token], old_pos[:, old_ids == token][:, keep])
        assert int(deltas[b]) == int(new_pos.max()) + 1 - int(new_valid.sum())


def test_remove_restores_identical_outputs_and_factor_one_is_identity(tiny_path, processor):
    model = load(tiny_path)
    base = batch(processor, [ODD, EVEN_WIDE])
    reference = logits(model, base)
    apply_token_pooling(model, PoolingConfig(factor=1))
    same_prompt = batch(processor, [ODD, EVEN_WIDE], PoolingConfig(factor=1))
    assert torch.equal(same_prompt["input_ids"], base["input_ids"])
    assert torch.equal(logits(model, same_prompt), reference)
    apply_token_pooling(model, PoolingConfig(factor=2))
    pooled = logits(model, batch(processor, [ODD, EVEN_WIDE], PoolingConfig(factor=2)))
    assert pooled.shape[1] < reference.shape[1]
    assert remove_token_pooling(model) and token_pooling_config(model) is None
    assert not remove_token_pooling(model)
    assert torch.equal(logits(model, base), reference)


def test_unpooled_prompt_on_pooled_model_names_the_fix(tiny_path, processor):
    model = apply_token_pooling(load(tiny_path), PoolingConfig(factor=2))
    with pytest.raises(ValueError, match="PooledProcessor"):
        logits(model, batch(processor, [EVEN]))


# --- FLOPs --------------------------------------------------------------------------------


def assert_agrees(report: FlopReport, tolerance: float = 0.10) -> None:
    for phase in ("vision", "prefill", "decode_per_token"):
        flops: PhaseFlops = getattr(report, phase)
        assert flops.measured > 0, phase
        assert abs(flops.ratio - 1) <= tolerance, (phase, flops)


def test_pooling_cuts_prefill_flops_not_vision(tiny_path, processor):
    model = load(tiny_path)
    plain = count_flops(model, batch(processor, [EVEN, EVEN_WIDE]), decode_tokens=2)
    apply_token_pooling(model, PoolingConfig(factor=2))
    pooled = count_flops(model, batch(processor, [EVEN, EVEN_WIDE], PoolingConfig(factor=2)), decode_tokens=2)
    assert pooled.visual_tokens * 4 == plain.visual_tokens == 64
    assert pooled.vision.measured == plain.vision.measured and pooled.patches == plain.patches
    assert pooled.prefill.measured < 0.75 * plain.prefill.measured
    assert pooled.decode_per_token.measured < plain.decode_per_token.measured  # shorter kv
    assert_agrees(plain)
    assert_agrees(pooled)


@pytest.mark.parametrize("which, attn", [("tiny", "sdpa"), ("tiny", "eager"), ("wider", "sdpa")])
def test_measured_and_analytic_agree(which, attn, tiny_path, wider_path, processor):
    model = load(tiny_path if which == "tiny" else wider_path, attn)
    inputs = batch(processor, [ODD, EVEN_WIDE])
    report = count_flops(model, inputs, decode_tokens=3)
    assert report.attn_implementation == attn
    assert report.prompt_length == inputs["input_ids"].shape[1] and report.patches == int(inputs["image_grid_thw"].prod(-1).sum())
    assert report.decode_context_length == report.prompt_length + 2
    assert_agrees(report)
    if which == "wider":
        config = PoolingConfig(method="norm_drop", keep_ratio=0.25)
        apply_token_pooling(model, config)
        assert_agrees(count_flops(model, batch(processor, [ODD, EVEN_WIDE], config), decode_tokens=2))


def test_low_rank_layers_count_fewer_flops(tiny_path, processor):
    lowrank = pytest.importorskip("compression.lowrank")
    model = load(tiny_path)
    inputs = batch(processor, [EVEN_WIDE])
    dense = count_flops(model, inputs, decode_tokens=2)
    lowrank.compress(model, 2.0)
    compressed = count_flops(model, inputs, decode_tokens=2)
    assert_agrees(compressed)
    for phase in ("vision", "prefill", "decode_per_token"):
        assert getattr(compressed, phase).measured < getattr(dense, phase).measured, phase


def test_pixel_budget_changes_patches_and_flops(tiny_path):
    processor = AutoProcessor.from_pretrained(tiny_path)
    model = load(tiny_path)
    assert pixel_budget(processor) == (56 * 56, 224 * 224)
    large = count_flops(model, batch(processor, [EVEN_WIDE]), decode_tokens=1)
    assert scaled_pixel_budget(processor, 0.25) == (28 * 28, 112 * 112)  # min clamped to one merged token
    small_inputs = batch(processor, [EVEN_WIDE])
    small = count_flops(model, small_inputs, decode_tokens=1)
    assert small.patches < large.patches and int(small_inputs["image_grid_thw"].prod()) * 14 * 14 <= 112 * 112
    assert small.vision.measured < large.vision.measured and small.prefill.measured < large.prefill.measured
    assert set_pixel_budget(processor.image_processor, 56 * 56, 224 * 224) == (56 * 56, 224 * 224)
    assert batch(processor, [EVEN_WIDE])["image_grid_thw"].tolist() == [[1, 16, 12]]


@pytest.mark.parametrize(
    "low, high, message", [(100, 224 * 224, "below one merged"), (224 * 224, 56 * 56, "larger than"), (3136.5, 50176, "whole number")]
)
def test_pixel_budget_validation(processor, low, high, message):
    with pytest.raises(ValueError, match=message):
        set_pixel_budget(processor, low, high)
    with pytest.raises(ValueError, match="positive"):
        scaled_pixel_budget(processor, 0)


def test_flop_report_json_round_trips(tiny_path, processor):
    report = count_flops(load(tiny_path), batch(processor, [ODD]), decode_tokens=1)
    text = report.to_json()
    assert FlopReport.from_json(text) == report
    assert '"ratio"' in text and report.prompt_tokens <= report.prompt_length * report.batch_size
