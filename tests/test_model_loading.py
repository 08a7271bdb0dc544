"""Loading models the way users point at them: folders, hub ids offline, wrong kinds, LoRA adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlm.loading import ModelLoadError, ModelSource, load_model_and_processor, resolve_attention


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=f"model path {missing} does not exist"):
        load_model_and_processor(ModelSource(model=str(missing)))


def test_folder_without_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a checkpoint folder"):
        load_model_and_processor(ModelSource(model=str(tmp_path)))


def test_wrong_model_kind_is_named(tiny_gemma_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"is a Gemma 3 model \(gemma3\); the layout engine drives Qwen2-VL .*dots.ocr \(dots_ocr\)"):
        load_model_and_processor(ModelSource(model=str(tiny_gemma_dir)), "layout")


def test_hub_id_in_offline_mode_names_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="rednote-hilab/dots.ocr.*offline mode is on"):
        load_model_and_processor(ModelSource(model="rednote-hilab/dots.ocr"), "layout")


def test_auto_attention_without_cuda_is_sdpa() -> None:
    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    assert resolve_attention("auto") == "sdpa"


def test_lora_adapter_is_applied(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base, processor = load_model_and_processor(ModelSource(model=str(tiny_qwen_dir)))
    text = processor.tokenizer("hello world", return_tensors="pt")
    reference = base(**text).logits
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    expected = peft_model(**text).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    for merge in (True, False):
        served, _ = load_model_and_processor(
            ModelSource(model=str(tiny_qwen_dir), adapter=str(tmp_path / "adapter"), merge_adapter=merge)
        )
        logits = served(**text).logits
        assert not torch.allclose(logits, reference, atol=1e-4)  # the adapter changes the model
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_missing_adapter_is_named(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="adapter path .*nope does not exist"):
        load_model_and_processor(ModelSource(model=str(tiny_qwen_dir), adapter=str(tmp_path / "nope")))
