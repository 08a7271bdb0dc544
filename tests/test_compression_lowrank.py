"""PELA low-rank compression on a tiny Qwen2.5-VL model: ranks, errors, activation-aware SVD, save/load, losses."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForImageTextToText

from compression.calibration import calibrate
from compression.lowrank import LowRankLinear, compress, low_rank_layers, rank_for_ratio, select_linear_layers
from compression.losses import DistillationWeights, distillation_loss, hidden_state_mse, logit_kl, weight_perturbation
from compression.persistence import is_compressed_checkpoint, load_compressed, save_compressed


@pytest.fixture(scope="module")
def base(tiny_qwen_dir: Path) -> nn.Module:
    return AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir).eval()


@pytest.fixture(scope="module")
def text_batch(tiny_qwen_dir: Path) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    return dict(tokenizer(["The reservoir wall was inspected in March.", "Solar output rose by 12%."], padding=True, return_tensors="pt"))


def _logits(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_ratio_three_keeps_about_a_third_of_targeted_parameters(base) -> None:
    model = copy.deepcopy(base)
    stats = compress(model, ratio=3)
    kept = stats.targeted_params_after / stats.targeted_params_before
    assert 0.28 < kept < 0.36
    assert stats.model_params_after < stats.model_params_before
    assert sum(p.numel() for p in model.parameters()) == stats.model_params_after
    for layer in stats.layers:
        assert layer.rank == rank_for_ratio(layer.in_features, layer.out_features, 3)
    assert "lm_head" not in {layer.name for layer in stats.layers}  # heads excluded by default


def test_full_rank_reproduces_outputs(base, text_batch) -> None:
    model = copy.deepcopy(base)
    compress(model, ratio=None)
    assert low_rank_layers(model)
    torch.testing.assert_close(_logits(model, text_batch), _logits(base, text_batch), atol=1e-4, rtol=1e-4)


def test_higher_ratio_means_more_error(base, text_batch) -> None:
    reference = _logits(base, text_batch)
    weight_errors, output_errors = [], []
    for ratio in (1.5, 2, 3, 5):
        model = copy.deepcopy(base)
        stats = compress(model, ratio=ratio)
        weight_errors.append(stats.to_dict()["mean_relative_error"])
        output_errors.append(float((_logits(model, text_batch) - reference).norm() / reference.norm()))
    assert weight_errors == sorted(weight_errors) and output_errors == sorted(output_errors)


def test_vision_and_language_presets_touch_only_their_tower(base) -> None:
    vision = select_linear_layers(base, "vision")
    language = select_linear_layers(base, "language")
    assert vision and all(name.startswith("model.visual.") for name in vision)
    assert language and all(name.startswith("model.language_model.") for name in language)
    model = copy.deepcopy(base)
    stats = compress(model, ratio=2, target_modules="vision")
    assert {layer.name for layer in stats.layers} | set(stats.skipped) == set(vision)
    assert not any(name.startswith("model.language_model.") for name in low_rank_layers(model))


def test_layers_that_would_not_shrink_are_skipped_and_bias_dtype_kept() -> None:
    model = nn.Sequential(nn.Linear(64, 64, bias=True), nn.Linear(64, 2)).to(torch.bfloat16)
    stats = compress(model, ratio=2, min_rank=40, target_modules=["*"], exclude_modules=[])
    assert stats.skipped == ["0", "1"] and not stats.layers  # rank 40 of 64x64, rank 2 of 64->2: no saving
    assert all(isinstance(layer, nn.Linear) for layer in model)
    compress(model, ratio=2, target_modules=["*"], exclude_modules=[])
    assert isinstance(model[0], LowRankLinear) and model[0].up.weight.dtype == torch.bfloat16
    assert model[0].up.bias is not None
    with pytest.raises(ValueError, match="no nn.Linear layer matches"):
        compress(nn.Sequential(nn.Linear(8, 8)), ratio=2, target_modules=["nothing*"])


def test_activation_aware_beats_plain_svd_on_output_error() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(96, 96)
    mixing = torch.randn(96, 8) @ torch.randn(8, 96) + 0.05 * torch.randn(96, 96)  # correlated, uneven channels
    scales = torch.logspace(-1, 1, 96)
    calibration_inputs = [{"input": (torch.randn(256, 96) @ mixing) * scales} for _ in range(4)]
    held_out = (torch.randn(512, 96) @ mixing) * scales

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = copy.deepcopy(layer)

        def forward(self, input):
            return self.layer(input)

    errors = {}
    reference = layer(held_out).detach()
    torch.set_grad_enabled(False)
    for method in ("svd", "asvd", "whiten"):
        model = Wrapper()
        calibration = None if method == "svd" else calibrate(model, calibration_inputs, ["layer"], method)
        compress(model, ratio=4, target_modules=["layer"], exclude_modules=[], calibration=calibration)
        errors[method] = float((model(held_out) - reference).norm() / reference.norm())
    torch.set_grad_enabled(True)
    assert errors["asvd"] < errors["svd"] and errors["whiten"] < errors["asvd"]


def test_save_and_load_round_trip_bit_for_bit(base, tiny_qwen_dir, text_batch, tmp_path) -> None:
    from transformers import AutoProcessor

    model = copy.deepcopy(base)
    stats = compress(model, ratio=3)
    save_compressed(model, AutoProcessor.from_pretrained(tiny_qwen_dir), tmp_path / "c", stats)
    assert is_compressed_checkpoint(tmp_path / "c") and not is_compressed_checkpoint(tiny_qwen_dir)
    loaded = load_compressed(tmp_path / "c")
    assert torch.equal(_logits(loaded, text_batch), _logits(model, text_batch))
    assert sum(p.numel() for p in loaded.parameters()) == stats.model_params_after < stats.model_params_before
    assert {name: m.rank for name, m in low_rank_layers(loaded).items()} == stats.ranks


def test_engines_load_compressed_checkpoints(base, tiny_qwen_dir, tmp_path) -> None:
    from transformers import AutoProcessor

    from vlm.loading import ModelSource, load_model_and_processor

    model = copy.deepcopy(base)
    compress(model, ratio=2, target_modules="language")
    save_compressed(model, AutoProcessor.from_pretrained(tiny_qwen_dir), tmp_path / "c")
    served, processor = load_model_and_processor(ModelSource(model=str(tmp_path / "c")), ["qwen2_5_vl"])
    assert low_rank_layers(served) and processor is not None


def test_broken_ranks_file_is_named(base, tmp_path) -> None:
    model = copy.deepcopy(base)
    compress(model, ratio=3)
    save_compressed(model, None, tmp_path / "c")
    ranks = tmp_path / "c" / "lowrank_ranks.json"
    ranks.write_text(ranks.read_text().replace("model.language_model.layers.0.self_attn.q_proj", "model.language_model.layers.9.q"))
    with pytest.raises(ValueError, match="layers.9.q"):
        load_compressed(tmp_path / "c")


def test_losses_are_zero_for_identical_models_and_positive_otherwise(base, text_batch) -> None:
    with torch.no_grad():
        teacher = base(**text_batch, output_hidden_states=True)
    mask = text_batch["attention_mask"]
    assert float(hidden_state_mse(teacher.hidden_states, teacher.hidden_states, mask)) == 0.0
    assert abs(float(logit_kl(teacher.logits, teacher.logits, 2.0, mask))) < 1e-6
    student = copy.deepcopy(base)
    compress(student, ratio=4, keep_original=True)
    out = student(**text_batch, output_hidden_states=True)
    total, parts = distillation_loss(out, teacher, student, DistillationWeights(), mask)
    assert all(value > 0 for value in parts.values()) and float(total) > 0
    total.backward()  # differentiable through the factors
    assert next(iter(low_rank_layers(student).values())).down.weight.grad is not None


def test_weight_perturbation_vanishes_at_full_rank(base) -> None:
    full = copy.deepcopy(base)
    compress(full, ratio=None, keep_original=True)
    low = copy.deepcopy(base)
    compress(low, ratio=4, keep_original=True)
    assert float(weight_perturbation(full)) < 1e-8 < float(weight_perturbation(low))
    assert not any("original_weight" in key for key in low.state_dict())  # never saved
