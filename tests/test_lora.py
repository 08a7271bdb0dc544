"""LoRA / QLoRA on the tiny Qwen2.5-VL and Gemma 3 checkpoints: targets, training, saving, export."""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from training.examples import Example, encode_batch
from training.lora import (
    PRESETS,
    LoraSettings,
    QuantizationUnavailable,
    apply_lora,
    describe_trainable,
    is_quantized,
    lora_target_modules,
    quantization_config,
    quantization_support,
    save_adapter,
    trainable_parameters,
)
from training.lora_export import export_adapter_zip
from vlm.families import family_for
from vlm.loading import ModelSource, load_model_and_processor
from vlm.tiny import text_like_pages

#: The preset ranks the settings promise (the specification, not a measured result).
SPEC_RANKS = {"minimal": 4, "standard": 16, "high_capacity": 64, "qlora_4bit": 16, "qlora_8bit": 16}

#: Per tiny model: fixture, model type, where the language and vision transformer blocks live.
MODELS = {
    "qwen": ("tiny_qwen_dir", "qwen2_5_vl", "model.language_model.layers.", "model.visual.blocks."),
    "gemma": ("tiny_gemma_dir", "gemma3", "model.language_model.layers.", "model.vision_tower.encoder.layers."),
}
PEFT_PREFIX = "base_model.model."


def load(request: pytest.FixtureRequest, kind: str) -> tuple[Any, Any, Path]:
    fixture, model_type = MODELS[kind][:2]
    location = request.getfixturevalue(fixture)
    model, processor = load_model_and_processor(ModelSource(model=str(location)))
    return model, processor, location


def batch(processor: Any, with_labels: bool = True) -> dict[str, Any]:
    (page,) = text_like_pages([(56, 84)])
    return encode_batch(processor, [Example(page, target="Total 42" if with_labels else None)])


def linear_names(model: nn.Module, prefix: str) -> set[str]:
    return {name for name, module in model.named_modules() if isinstance(module, nn.Linear) and name.startswith(prefix)}


def lora_layer_names(peft_model: nn.Module) -> set[str]:
    """Names (relative to the base model) of the modules peft put LoRA weights on."""
    from peft.tuners.lora import LoraLayer

    return {name.removeprefix(PEFT_PREFIX) for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}


def randomize_lora_b(peft_model: nn.Module, seed: int = 0) -> None:
    """LoRA B starts at zero (an identity adapter); give it values, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def make_images_matter(model: nn.Module) -> None:
    """The tiny Gemma 3's projector is zero-initialised (transformers' init), so images would not reach the
    language model and the vision tower would get no gradient; give it random weights in memory."""
    projector = getattr(model.model, "multi_modal_projector", None)
    weight = getattr(projector, "mm_input_projection_weight", None)
    if weight is not None and not weight.any():
        with torch.no_grad():
            weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)) * 0.1)


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_rank_alpha_dropout(preset: str) -> None:
    settings = LoraSettings(preset=preset)
    assert settings.rank == SPEC_RANKS[preset]
    assert settings.lora_alpha == 2 * SPEC_RANKS[preset]
    assert settings.lora_dropout == 0.05
    assert settings.quantization == {"qlora_4bit": "4bit", "qlora_8bit": "8bit"}.get(preset)


def test_overrides_and_unknown_fields() -> None:
    assert LoraSettings(r=8).lora_alpha == 16  # alpha follows an overridden rank
    assert LoraSettings(r=8, alpha=5, dropout=0.0).lora_alpha == 5
    with pytest.raises(ValidationError):
        LoraSettings(rank=8)
    with pytest.raises(ValidationError):
        LoraSettings(preset="huge")


# --- targets --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("targets", ["language", "vision", "both"])
def test_targets_adapt_only_the_chosen_tower(request: pytest.FixtureRequest, kind: str, targets: str) -> None:
    model, _, _ = load(request, kind)
    language_prefix, vision_prefix = MODELS[kind][2:]
    expected = {
        "language": linear_names(model, language_prefix),
        "vision": linear_names(model, vision_prefix),
    }
    expected["both"] = expected["language"] | expected["vision"]
    assert expected["language"] and expected["vision"]
    peft_model = apply_lora(model, LoraSettings(targets=targets, gradient_checkpointing=False))
    adapted = lora_layer_names(peft_model)
    assert adapted == expected[targets]
    assert not any("lm_head" in name or "embed" in name or "merger" in name or "projector" in name for name in adapted)


def test_dots_ocr_module_names(tiny_dots_dir: Path) -> None:
    """The published dots.ocr code: Qwen2 language model at ``model.layers``, its own vision tower at ``vision_tower``."""
    model, _ = load_model_and_processor(ModelSource(model=str(tiny_dots_dir), trust_remote_code=True, dtype="float32"))
    vision = linear_names(model, "vision_tower.blocks.")
    language = linear_names(model, "model.layers.")
    assert set(lora_target_modules(model, "vision")) == vision and len(vision) == 2 * 5  # attn.qkv, attn.proj, mlp.fc1..3
    assert set(lora_target_modules(model, "language")) == language and len(language) == 2 * 7
    assert set(lora_target_modules(model, "both")) == vision | language


def test_explicit_target_modules_win(tiny_qwen_dir: Path) -> None:
    model, _ = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))
    expected = {name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.endswith(".q_proj")}
    expected |= {"model.visual.merger.mlp.0", "lm_head"}
    settings = LoraSettings(targets="vision", target_modules=["q_proj", r"re:.*visual\.merger\.mlp\.0", "lm_head"])
    peft_model = apply_lora(model, settings.model_copy(update={"gradient_checkpointing": False}))
    assert lora_layer_names(peft_model) == expected


def test_unmatched_target_module_is_named(tiny_qwen_dir: Path) -> None:
    model, _ = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))
    with pytest.raises(ValueError, match="'qproj'"):
        apply_lora(model, LoraSettings(target_modules=["qproj"]))


# --- parameters and training ----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_trainable_parameter_count(request: pytest.FixtureRequest, kind: str) -> None:
    model, _, _ = load(request, kind)
    peft_model = apply_lora(model, LoraSettings(targets="both", gradient_checkpointing=False))
    trainable, total, percent = trainable_parameters(peft_model)
    assert trainable == sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert trainable == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert total == sum(p.numel() for p in peft_model.parameters())
    assert 0 < trainable < total
    assert percent == pytest.approx(100 * trainable / total)
    assert (trainable, total) == peft_model.get_nb_trainable_parameters()
    assert describe_trainable(peft_model) == f"trainable params: {trainable:,} of {total:,} ({percent:.2f}%)"


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_training_step_changes_only_lora_weights(request: pytest.FixtureRequest, kind: str) -> None:
    model, processor, _ = load(request, kind)
    make_images_matter(model)
    peft_model = apply_lora(model, LoraSettings(targets="both"))
    before = {name: p.detach().clone() for name, p in peft_model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    peft_model.train()
    loss = peft_model(**batch(processor)).loss
    loss.backward()
    optimizer.step()
    after = dict(peft_model.named_parameters())
    base = [name for name in before if "lora_" not in name]
    lora_b = [name for name in before if "lora_B" in name]
    assert base and lora_b
    assert all(torch.equal(before[name], after[name]) for name in base)
    unchanged = [name for name in lora_b if torch.equal(before[name], after[name])]
    assert not unchanged  # every adapted layer, in both towers, learnt something


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_gradient_checkpointing_gives_the_same_gradients(request: pytest.FixtureRequest, kind: str) -> None:
    grads, recomputed = {}, {}
    for checkpointing in (False, True):
        model, processor, _ = load(request, kind)
        make_images_matter(model)
        torch.manual_seed(0)
        peft_model = apply_lora(model, LoraSettings(targets="both", dropout=0.0, gradient_checkpointing=checkpointing))
        randomize_lora_b(peft_model)
        assert peft_model.get_base_model().is_activation_checkpointing is checkpointing
        # The first adapted layer of each tower's first block: inside the checkpointed region, and entered again
        # when the backward pass recomputes it (pre-hooks: recomputation may stop before a module returns).
        calls: dict[str, int] = {}
        base, adapted = peft_model.get_base_model(), lora_layer_names(peft_model)
        for prefix in MODELS[kind][2:]:
            first = next(name for name, _ in base.named_modules() if name.startswith(prefix + "0.") and name in adapted)
            base.get_submodule(first).register_forward_pre_hook(
                lambda *_, key=prefix, calls=calls: calls.__setitem__(key, calls.get(key, 0) + 1)
            )
        peft_model.train()
        peft_model(**batch(processor)).loss.backward()
        recomputed[checkpointing] = calls
        grads[checkpointing] = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    towers = MODELS[kind][2:]
    assert recomputed == {False: dict.fromkeys(towers, 1), True: dict.fromkeys(towers, 2)}  # both towers recomputed
    assert grads[True].keys() == grads[False].keys()
    for name, grad in grads[True].items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, grads[False][name], atol=1e-6, rtol=1e-4)


# --- saving and export ----------------------------------------------------------------------


def trained_peft_model(request: pytest.FixtureRequest, kind: str) -> tuple[Any, Any, Path]:
    model, processor, location = load(request, kind)
    torch.manual_seed(0)
    peft_model = apply_lora(model, LoraSettings(targets="both", gradient_checkpointing=False))
    randomize_lora_b(peft_model)
    return peft_model.eval(), processor, location


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_saved_adapter_and_merged_model_reproduce_logits(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoProcessor

    peft_model, processor, location = trained_peft_model(request, kind)
    inputs = batch(processor, with_labels=False)
    with torch.no_grad():
        expected = peft_model(**inputs).logits
        with peft_model.disable_adapter():
            base_logits = peft_model(**inputs).logits
    assert not torch.allclose(expected, base_logits, atol=1e-4)  # the adapter matters

    adapter_dir, merged_dir = tmp_path / "adapter", tmp_path / "merged"
    assert save_adapter(peft_model, adapter_dir, processor, merged_dir=merged_dir) == adapter_dir
    saved_processor = AutoProcessor.from_pretrained(adapter_dir)
    assert torch.equal(batch(saved_processor, with_labels=False)["input_ids"], inputs["input_ids"])

    for merge in (False, True):
        loaded, _ = load_model_and_processor(
            ModelSource(model=str(location), adapter=str(adapter_dir), merge_adapter=merge)
        )
        with torch.no_grad():
            torch.testing.assert_close(loaded(**inputs).logits, expected, atol=1e-5, rtol=1e-4)

    merged, _ = load_model_and_processor(ModelSource(model=str(merged_dir)))
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, expected, atol=1e-5, rtol=1e-4)
    for weights in merged_dir.glob("*.safetensors"):
        with safe_open(str(weights), "pt") as tensors:
            assert not [key for key in tensors.keys() if "lora_" in key or "base_layer" in key]


def test_export_zip(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    peft_model, processor, location = trained_peft_model(request, "qwen")
    adapter_dir = save_adapter(peft_model, tmp_path / "adapter", processor)
    settings = LoraSettings(targets="both", r=8, gradient_checkpointing=False)
    extra = {"cer": 0.125, "steps": 3}
    zip_path = export_adapter_zip(
        adapter_dir, tmp_path / "out" / "lora.zip", base_model=str(location), settings=settings, family=family_for("qwen2_5_vl"), extra=extra
    )

    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        for name in names:
            path = PurePosixPath(name)
            assert not path.is_absolute() and ".." not in path.parts and not re.match(r"^[A-Za-z]:", name), name
        files = sorted(p.relative_to(adapter_dir).as_posix() for p in adapter_dir.rglob("*") if p.is_file())
        assert sorted(names) == sorted([f"adapter/{f}" for f in files] + ["docvlm_lora.json", "README.md"])
        for f in files:
            assert archive.read(f"adapter/{f}") == (adapter_dir / f).read_bytes()
        manifest = json.loads(archive.read("docvlm_lora.json"))
        readme = archive.read("README.md").decode()
        archive.extractall(tmp_path / "unzipped")

    assert manifest["base_model"] == str(location)
    assert LoraSettings.model_validate(manifest["settings"]) == settings
    assert manifest["extra"] == extra
    assert "PeftModel.from_pretrained" in readme and f"model: {location}" in readme and "adapter: " in readme
    loaded, _ = load_model_and_processor(
        ModelSource(model=str(location), adapter=str(tmp_path / "unzipped" / "adapter"))
    )
    inputs = batch(processor, with_labels=False)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, peft_model(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_export_refuses_a_folder_without_adapter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="adapter_config.json missing"):
        export_adapter_zip(tmp_path, tmp_path / "x.zip", base_model="m", settings=LoraSettings(), family=family_for("qwen2_5_vl"))


# --- QLoRA ----------------------------------------------------------------------------------

QLORA_PRESETS = ["qlora_4bit", "qlora_8bit"]


def bitsandbytes_can_run() -> bool:
    available = all(importlib.util.find_spec(name) is not None for name in ("bitsandbytes", "accelerate"))
    return available and torch.cuda.is_available()


@pytest.mark.parametrize("preset", ["minimal", "standard", "high_capacity"])
def test_unquantized_presets_need_no_bitsandbytes(preset: str) -> None:
    assert quantization_support(preset)[0] is True
    assert quantization_config(LoraSettings(preset=preset)) is None


@pytest.mark.parametrize("preset", QLORA_PRESETS)
def test_qlora_support_reports_what_is_missing(preset: str) -> None:
    supported, reason = quantization_support(preset)
    assert supported == bitsandbytes_can_run()
    if supported:
        config = quantization_config(LoraSettings(preset=preset))
        assert (config.load_in_4bit, config.load_in_8bit) == (preset == "qlora_4bit", preset == "qlora_8bit")
        return
    assert "bitsandbytes" in reason and "pip install 'docvlm[qlora]'" in reason
    if importlib.util.find_spec("bitsandbytes") is None:
        assert "bitsandbytes package is not installed" in reason
    if not torch.cuda.is_available():
        assert "CUDA" in reason
    with pytest.raises(QuantizationUnavailable) as raised:
        quantization_config(LoraSettings(preset=preset))
    assert str(raised.value) == reason


@pytest.mark.parametrize("preset", QLORA_PRESETS)
def test_qlora_loads_quantized_and_trains(tiny_qwen_dir: Path, preset: str) -> None:
    supported, reason = quantization_support(preset)
    if not supported:
        pytest.skip(reason)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    settings = LoraSettings(preset=preset, targets="both")
    model = AutoModelForImageTextToText.from_pretrained(
        tiny_qwen_dir, quantization_config=quantization_config(settings), device_map={"": 0}
    )
    processor = AutoProcessor.from_pretrained(tiny_qwen_dir)
    assert is_quantized(model)
    peft_model = apply_lora(model, settings)
    trainable, total, _ = trainable_parameters(peft_model)
    assert 0 < trainable < total
    peft_model.train()
    inputs = {k: v.to("cuda:0") if hasattr(v, "to") else v for k, v in batch(processor).items()}
    loss = peft_model(**inputs).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in peft_model.parameters() if p.requires_grad)
