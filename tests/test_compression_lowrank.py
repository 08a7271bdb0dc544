"""PELA low-rank compression on a tiny Qwen2.5-VL model: ranks, errors, activation-aware SVD, save/load, losses."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import AutoModelForImageTextToText, AutoProcessor

from compression.calibration import Calibration, calibrate, collect_input_statistics
from compression.losses import DistillationWeights, distillation_loss, hidden_state_mse, logit_kl, weight_perturbation
from compression.lowrank import (
    LowRankLinear,
    compress,
    low_rank_layers,
    rank_for_ratio,
    select_linear_layers,
)
from compression.persistence import RANKS_FILE, is_compressed_checkpoint, load_compressed, save_compressed

TEXTS = [
    "The reservoir wall was inspected in March.",
    "Solar output rose by 12% over the quarter.",
    "Invoice 4471: three pallets of paper.",
    "Table 3 lists rainfall per station.",
    "Please sign and return the form by Friday.",
    "Chapter 2. Methods and materials.",
]


@pytest.fixture(scope="module")
def base(tiny_qwen_dir: Path) -> nn.Module:
    return AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir).eval()


@pytest.fixture(scope="module")
def processor(tiny_qwen_dir: Path):
    return AutoProcessor.from_pretrained(tiny_qwen_dir)


def page(seed: int) -> Image.Image:
    """A smooth random image (neighbouring patches correlate, as on real pages)."""
    low = np.random.default_rng(seed).random((6, 7, 3)) * 255
    return Image.fromarray(low.astype(np.uint8)).resize((84 + 28 * (seed % 2), 112), Image.BICUBIC)


def multimodal_batch(processor, index: int) -> dict:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": TEXTS[index % len(TEXTS)]}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return dict(processor(text=[text], images=[page(index)], return_tensors="pt"))


@pytest.fixture(scope="module")
def batch(processor) -> dict:
    return multimodal_batch(processor, 0)


def _logits(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_ratio_three_keeps_about_a_third_of_targeted_parameters(base) -> None:
    model = copy.deepcopy(base)
    stats = compress(model, ratio=3)
    assert 0.28 < stats.kept_fraction < 0.36
    assert stats.model_params_after < stats.model_params_before
    assert sum(p.numel() for p in model.parameters()) == stats.model_params_after
    for layer in stats.layers:
        assert layer.rank == rank_for_ratio(layer.in_features, layer.out_features, 3)
        bias = layer.params_before - layer.in_features * layer.out_features
        assert layer.params_after == layer.rank * (layer.in_features + layer.out_features) + bias
        assert 0 < layer.relative_error < 1
    names = {layer.name for layer in stats.layers}
    assert "lm_head" not in names and not any("embed" in name for name in names)  # default excludes
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["targeted_params_after"] == stats.targeted_params_after and len(data["layers"]) == len(stats.layers)


def test_full_rank_reproduces_outputs(base, batch) -> None:
    model = copy.deepcopy(base)
    stats = compress(model, ratio=None)
    assert len(low_rank_layers(model)) == len(stats.layers) == len(select_linear_layers(base))
    assert max(layer.relative_error for layer in stats.layers) < 1e-5
    torch.testing.assert_close(_logits(model, batch), _logits(base, batch), atol=1e-4, rtol=1e-4)


def test_higher_ratio_means_more_error(base, batch) -> None:
    reference = _logits(base, batch)
    weight_errors, output_errors, kept = [], [], []
    for ratio in (1.5, 2, 3, 5):
        model = copy.deepcopy(base)
        stats = compress(model, ratio=ratio)
        weight_errors.append(stats.mean_relative_error)
        output_errors.append(_relative(_logits(model, batch), reference))
        kept.append(stats.targeted_params_after)
    assert weight_errors == sorted(weight_errors) and output_errors == sorted(output_errors)
    assert kept == sorted(kept, reverse=True)


def test_vision_and_language_presets_touch_only_their_tower(base) -> None:
    vision = select_linear_layers(base, "vision")
    language = select_linear_layers(base, "language")
    assert vision and all(name.startswith("model.visual.") for name in vision)
    assert any(".merger." in name for name in vision)  # the projector into the language model is part of the tower
    assert language and all(name.startswith("model.language_model.layers.") for name in language)
    assert select_linear_layers(base, ["*language_model.layers.*"]) == language
    mlp = [f"model.language_model.layers.1.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    assert select_linear_layers(base, ["re:.*layers\\.1\\.mlp\\..*"]) == mlp
    for preset, tower, other in (("vision", vision, "model.language_model."), ("language", language, "model.visual.")):
        model = copy.deepcopy(base)
        stats = compress(model, ratio=2, target_modules=preset)
        assert {layer.name for layer in stats.layers} | set(stats.skipped) == set(tower)
        assert set(low_rank_layers(model)) == {layer.name for layer in stats.layers}
        assert not any(name.startswith(other) for name in low_rank_layers(model))


def test_layers_that_would_not_shrink_are_skipped_bias_and_dtype_kept() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64, bias=True), nn.Linear(64, 2), nn.Linear(64, 96)).to(torch.bfloat16)
    stats = compress(model, ratio=2, min_rank=40, target_modules=["*"], exclude_modules=[])
    assert set(stats.skipped) == {"0", "1", "2"} and not stats.layers  # rank 40 of 64x64 or 64x96 saves nothing; "1" is a 2-output head
    assert "would not save" in stats.skipped["0"] and all(isinstance(layer, nn.Linear) for layer in model)
    bias = model[0].bias.detach().clone()
    stats = compress(model, ratio=2, target_modules=["*"], exclude_modules=[])
    assert [layer.name for layer in stats.layers] == ["0", "2"] and list(stats.skipped) == ["1"]
    assert isinstance(model[0], LowRankLinear) and model[0].rank == 16 and model[2].rank == 19
    assert torch.equal(model[0].up.bias, bias) and model[2].up.bias is not None
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    assert model[0](x).dtype == model[2](x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="no nn.Linear layer matches"):
        compress(nn.Sequential(nn.Linear(8, 8)), ratio=2, target_modules=["nothing*"])


def test_tiny_model_in_bfloat16_stays_bfloat16(base, batch) -> None:
    model = copy.deepcopy(base).to(torch.bfloat16)
    stats = compress(model, ratio=3)
    assert {p.dtype for layer in low_rank_layers(model).values() for p in layer.parameters()} == {torch.bfloat16}
    assert stats.mean_relative_error < 1
    assert torch.isfinite(_logits(model, batch)).all()


class _Wrapper(nn.Module):
    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.layer = copy.deepcopy(layer)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.layer(input)


def test_activation_aware_beats_plain_svd_on_a_real_layer(base) -> None:
    layer = base.get_submodule("model.language_model.layers.0.mlp.up_proj")  # 64 -> 128
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(12, 64, generator=generator) * torch.logspace(1, -1, 12)[:, None]  # 12 correlated directions...
    channels = torch.exp(torch.randn(64, generator=generator))  # ...and uneven channel scales, as in trained models

    def inputs(n: int) -> torch.Tensor:
        return (torch.randn(n, 12, generator=generator) @ mixing + 0.05 * torch.randn(n, 64, generator=generator)) * channels

    calibration_inputs = [{"input": inputs(256)} for _ in range(4)]
    held_out = inputs(1024)
    reference = layer(held_out).detach()
    errors = {}
    for method in ("svd", "asvd", "whiten"):
        model = _Wrapper(layer)
        calibration = None if method == "svd" else calibrate(model, calibration_inputs, ["layer"], method)
        stats = compress(model, ratio=4, target_modules=["layer"], exclude_modules=[], calibration=calibration)
        assert stats.layers[0].method == method
        errors[method] = _relative(model(held_out).detach(), reference)
    assert errors["asvd"] < 0.8 * errors["svd"] and errors["whiten"] < 0.5 * errors["asvd"], errors


def test_activation_aware_beats_plain_svd_on_logits(base, processor) -> None:
    calibration_batches = [multimodal_batch(processor, i) for i in range(6)]
    held_out = [multimodal_batch(processor, 100 + i) for i in range(3)]
    reference = [_logits(base, b) for b in held_out]
    statistics = collect_input_statistics(base, calibration_batches, select_linear_layers(base), method="whiten")
    q, k = (statistics[f"model.language_model.layers.0.self_attn.{p}_proj"] for p in "qk")
    assert q is k  # layers fed the same tensor share one XᵀX
    errors = {}
    for method in ("svd", "asvd", "whiten"):
        model = copy.deepcopy(base)
        calibration = None if method == "svd" else Calibration(method, statistics)
        compress(model, ratio=2, calibration=calibration)
        outputs = [_logits(model, b) for b in held_out]
        errors[method] = float(sum((o - r).norm() ** 2 for o, r in zip(outputs, reference)) ** 0.5 / sum(r.norm() ** 2 for r in reference) ** 0.5)
    assert errors["asvd"] < errors["svd"] and errors["whiten"] < 0.7 * errors["svd"], errors


def test_save_and_load_round_trip_bit_for_bit(base, processor, batch, tmp_path) -> None:
    model = copy.deepcopy(base)
    stats = compress(model, ratio=3, keep_original=True)
    path = save_compressed(model, processor, tmp_path / "c", stats)
    assert is_compressed_checkpoint(path) and not is_compressed_checkpoint(tmp_path)
    spec = json.loads((path / RANKS_FILE).read_text())
    assert spec["format_version"] == 1 and spec["ratio"] == 3 and spec["method"] == "svd" and spec["ranks"] == stats.ranks
    assert (path / "model.safetensors").is_file() and (path / "processor_config.json").is_file()
    loaded = load_compressed(path)
    assert type(loaded) is type(base) and not loaded.training
    assert torch.equal(_logits(loaded, batch), _logits(model, batch))
    assert sum(p.numel() for p in loaded.parameters()) == stats.model_params_after < stats.model_params_before
    assert {name: m.rank for name, m in low_rank_layers(loaded).items()} == stats.ranks
    assert not any(hasattr(m, "original_weight") for m in low_rank_layers(loaded).values())  # never saved
    half = load_compressed(path, dtype=torch.bfloat16, attn_implementation="eager")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16} and half.config._attn_implementation == "eager"


def test_engines_load_compressed_checkpoints(base, processor, tmp_path) -> None:
    from vlm.loading import ModelSource, load_model_and_processor

    model = copy.deepcopy(base)
    compress(model, ratio=2, target_modules="language")
    save_compressed(model, processor, tmp_path / "c")
    served, served_processor = load_model_and_processor(ModelSource(model=str(tmp_path / "c")))
    assert set(low_rank_layers(served)) == set(low_rank_layers(model)) and served_processor is not None


def test_load_errors_name_the_checkpoint_and_the_problem(base, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_compressed(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"{RANKS_FILE} is missing"):
        load_compressed(tmp_path)
    model = copy.deepcopy(base)
    compress(model, ratio=3)
    path = save_compressed(model, None, tmp_path / "c")
    ranks = path / RANKS_FILE
    good = ranks.read_text()
    ranks.write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_compressed(path)
    ranks.write_text(good.replace("model.language_model.layers.0.self_attn.q_proj", "model.language_model.layers.9.q"))
    with pytest.raises(ValueError, match=r"layers\.9\.q does not exist"):
        load_compressed(path)
    spec = json.loads(good)
    name = "model.language_model.layers.0.mlp.up_proj"
    spec["ranks"][name] = spec["layers"][name]["rank"] = 5  # the saved factors have another rank
    ranks.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=f"{path}.*do not fit"):
        load_compressed(path)
    with pytest.raises(ValueError, match="no LowRankLinear"):
        save_compressed(copy.deepcopy(base), None, tmp_path / "dense")


def test_losses_are_zero_for_identical_models_and_positive_otherwise(base, batch) -> None:
    with torch.no_grad():
        teacher = base(**batch, output_hidden_states=True)
    mask = batch["attention_mask"]
    assert float(hidden_state_mse(teacher.hidden_states, teacher.hidden_states, attention_mask=mask)) == 0.0
    assert abs(float(logit_kl(teacher.logits, teacher.logits, 2.0, mask))) < 1e-6
    student = copy.deepcopy(base)
    compress(student, ratio=4, keep_original=True)
    out = student(**batch, output_hidden_states=True)
    total, parts = distillation_loss(out, teacher, student, DistillationWeights(), mask)
    assert set(parts) == {"hidden_mse", "logit_kl", "weight_perturbation"}
    assert all(value > 0 for value in parts.values()) and float(total.detach()) > 0
    assert float(hidden_state_mse(out.hidden_states, teacher.hidden_states, layers=[-1]).detach()) > 0
    total.backward()  # differentiable through the factors
    assert all(layer.down.weight.grad is not None for layer in low_rank_layers(student).values())
    only_kl, parts = distillation_loss(out, teacher, student, DistillationWeights(hidden_mse=0, weight_perturbation=0))
    assert set(parts) == {"logit_kl"}


def test_weight_perturbation_vanishes_at_full_rank(base) -> None:
    full = copy.deepcopy(base)
    compress(full, ratio=None, keep_original=True)
    low = copy.deepcopy(base)
    compress(low, ratio=4, keep_original=True)
    assert float(weight_perturbation(full, epsilon=0.0).detach()) < 1e-10 < float(weight_perturbation(low, epsilon=0.0).detach())
    torch.testing.assert_close(weight_perturbation(low, 1e-3, reference=base), weight_perturbation(low, 1e-3))
    assert not any("original_weight" in key for key in low.state_dict())  # never saved
    plain = copy.deepcopy(base)
    compress(plain, ratio=4)
    with pytest.raises(ValueError, match="keep_original=True"):
        weight_perturbation(plain)
