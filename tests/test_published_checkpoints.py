"""The published checkpoints' interfaces, loaded and run by the engines: dots.ocr (its own remote code) and Gemma 3n.

The fixtures (``vlm/tiny_dots.py`` with ``vlm/published/dots_ocr/``, ``vlm/tiny_gemma3n.py``)
reproduce what users download, quirks included, at tiny sizes. The first test checks that
the quirks are really there, so that the others prove the project copes with them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest
import torch
from PIL import Image

from engines.decoding.static_decoding import StaticDecodingGenerator
from engines.generative.generation import Request, TransformersGenerator
from vlm.families import UnsupportedModel, family_of, supported
from vlm.loading import ModelLoadError, ModelSource, load_model_and_processor
from vlm.tiny import text_like_pages
from vlm.tiny_dots import save_tiny_dots_ocr


def _dots(folder: Path, dtype: str = "float32"):
    return load_model_and_processor(ModelSource(model=str(folder), trust_remote_code=True, dtype=dtype), "layout")


def test_fixture_has_the_published_quirks(tiny_dots_dir: Path) -> None:
    config = json.loads((tiny_dots_dir / "config.json").read_text())
    assert config["model_type"] == "dots_ocr" and config["architectures"] == ["DotsOCRForCausalLM"]
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForCausalLM"}  # no AutoProcessor entry
    assert config["image_token_id"] == 151665 and config["vision_config"]["attn_implementation"] == "flash_attention_2"
    vocab = json.loads((tiny_dots_dir / "tokenizer.json").read_text())
    added = {token["content"]: token["id"] for token in vocab["added_tokens"]}
    assert added["<|imgpad|>"] == 151665 and added["<|endofassistant|>"] == 151673 and added["<|endoftext|>"] == 151643
    # In a fresh process AutoProcessor does not find DotsVLProcessor: it returns a bare tokenizer.
    script = (
        "from transformers import AutoProcessor; "
        f"print(type(AutoProcessor.from_pretrained({str(tiny_dots_dir)!r}, trust_remote_code=True)).__name__)"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "Tokenizer" in found.stdout.strip().splitlines()[-1], found.stderr[-2000:]
    # The published modelling code, as it is: forward takes no mm_token_type_ids, the tower casts to bf16 by default.
    import inspect

    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    model_class = get_class_from_dynamic_module("modeling_dots_ocr.DotsOCRForCausalLM", str(tiny_dots_dir))
    tower_class = get_class_from_dynamic_module("modeling_dots_vision.DotsVisionTransformer", str(tiny_dots_dir))
    assert "mm_token_type_ids" not in inspect.signature(model_class.forward).parameters
    assert inspect.signature(tower_class.forward).parameters["bf16"].default is True


def test_remote_code_needs_the_flag_and_unknown_kinds_list_the_families(tiny_dots_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_model_and_processor(ModelSource(model=str(tiny_dots_dir)))
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ModelLoadError, match="'llava' model, which this project does not drive; supported: .*dots.ocr .*Gemma 3n"):
        load_model_and_processor(ModelSource(model=str(tmp_path / "llava")))
    assert "Qwen2.5-VL (qwen2_5_vl)" in supported() and "Gemma 3n (gemma3n)" in supported()


@pytest.mark.parametrize("revision", ["current", "legacy"])
def test_processor_comes_from_the_checkpoints_parts_for_either_revision(tmp_path: Path, revision: str) -> None:
    folder = save_tiny_dots_ocr(tmp_path / "DotsOCR", processor_revision=revision, hidden_size=32, num_layers=1, vision_depth=1)
    _, processor = _dots(folder)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read the page."}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == " <|img|><|imgpad|><|endofimg|>Read the page.<|assistant|>"  # the published template's rendering
    inputs = processor(text=[prompt], images=[[Image.new("RGB", (140, 112), "white")]], return_tensors="pt")
    assert "mm_token_type_ids" not in inputs
    grid = inputs["image_grid_thw"][0].tolist()
    assert grid[0] == 1 and int((inputs["input_ids"] == 151665).sum()) == grid[0] * grid[1] * grid[2] // 4
    assert inputs["pixel_values"].shape[-1] == 3 * 14 * 14  # temporal patch 1, as published


def _sharpen(model):
    """Language attention 100x sharper, so a wrong position or cache column changes greedy tokens (random init)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")) and "vision" not in name:
                parameter.mul_(10.0)
    return model


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dots_static_decoding_gives_generates_tokens(tiny_dots_dir: Path, dtype: str) -> None:
    """Both decode paths on the published code, in fp32 (its tower would cast to bf16) and bf16, left padding, refills."""
    model, processor = _dots(tiny_dots_dir, dtype)
    model = _sharpen(model)
    pages = text_like_pages([(112, 84), (200, 140), (84, 168), (140, 140)])
    requests = [Request(image=page, prompt="Read the page.", stop_after=stop) for page, stop in zip(pages, [2, None, 7, 0])]
    reference = TransformersGenerator(model, processor, batch_size=4).generate(requests, max_new_tokens=9)
    assert sorted(r.new_tokens for r in reference) == [0, 2, 7, 9] and all(r.text for r in reference if r.new_tokens)
    static = StaticDecodingGenerator(model, processor, batch_size=2).generate(requests, max_new_tokens=9)
    assert static == reference


def test_dots_engine_on_every_decode_path(tiny_dots_dir: Path) -> None:
    import numpy as np

    from engines.base import PageImage, PageMeta
    from engines.registry import build_engine

    page = PageImage(np.full((300, 220, 3), 255, np.uint8), PageMeta("d", "d.pdf", 1, 220, 300))
    outputs = {}
    for decode in ("dynamic", "static"):
        for dtype in ("float32", "bfloat16"):
            options = {"model": str(tiny_dots_dir), "trust_remote_code": True, "decode": decode, "dtype": dtype,
                       "max_new_tokens": 4, "extra_max_new_tokens": 0, "max_pixels": 200_000}
            engine = build_engine("dots", "layout", options)
            (layout,) = engine.layout([page])
            engine.close()
            assert layout.error is not None and layout.error.kind in ("truncated_output", "invalid_output")  # random weights
            outputs[decode, dtype] = layout.info["raw_output"]
    assert outputs["static", "float32"] == outputs["dynamic", "float32"]
    assert outputs["static", "bfloat16"] == outputs["dynamic", "bfloat16"]


def test_vllm_backend_is_configured_for_the_published_checkpoint(tiny_dots_dir: Path) -> None:
    from engines.generative.options import GenerativeEngineOptions
    from engines.generative.vllm_backend import vllm_engine_args, vllm_requests

    options = GenerativeEngineOptions(model=str(tiny_dots_dir), backend="vllm", trust_remote_code=True, dtype="bfloat16")
    args = vllm_engine_args(options)
    assert args["trust_remote_code"] is True and args["model"] == str(tiny_dots_dir)
    _, processor = _dots(tiny_dots_dir)
    (request,) = vllm_requests(processor, [Request(image=Image.new("L", (64, 48)), prompt="Read this.")])
    assert request["prompt"] == " <|img|><|imgpad|><|endofimg|>Read this.<|assistant|>"  # vLLM expands <|imgpad|> itself


def test_gemma3n_loads_from_the_declared_install_and_reads_crops(tiny_gemma3n_dir: Path) -> None:
    import numpy as np

    from engines.generative.gemma import GemmaOptions, GemmaPictureEngine

    declared = [line for line in requires("docvlm") or [] if line.startswith("timm") and 'extra == "models"' in line]
    assert declared, "the models extra must install timm: Gemma 3n's vision tower is timm's MobileNet-V5"
    engine = GemmaPictureEngine(GemmaOptions(model=str(tiny_gemma3n_dir), max_new_tokens=3, extra_max_new_tokens=0, batch_size=2))
    model = engine.generator.model
    assert type(model.model.vision_tower).__name__ == "TimmWrapperModel" and family_of(model).name == "Gemma 3n"
    texts = engine.recognize([np.full((40, 90, 3), 255, np.uint8), np.full((64, 64, 3), 30, np.uint8)])
    assert len(texts) == 2 and all(isinstance(text, str) and text for text in texts)  # random weights: random words
    engine.close()


def test_one_family_table_names_every_tower(tiny_qwen_dir: Path, tiny_dots_dir: Path, tiny_gemma_dir: Path, tiny_gemma3n_dir: Path) -> None:
    from compression.lowrank import select_linear_layers
    from training.lora import lora_target_modules

    expected = {
        "Qwen2.5-VL": ("model.language_model.layers.", "model.visual."),
        "dots.ocr": ("model.layers.", "vision_tower."),
        "Gemma 3": ("model.language_model.layers.", "model.vision_tower."),
        "Gemma 3n": ("model.language_model.layers.", None),
    }
    for folder in (tiny_qwen_dir, tiny_dots_dir, tiny_gemma_dir, tiny_gemma3n_dir):
        model, _ = load_model_and_processor(ModelSource(model=str(folder), trust_remote_code=True, dtype="float32"))
        family = family_of(model)
        language_prefix, vision_prefix = expected[family.name]
        language = select_linear_layers(model, "language")
        assert language and all(name.startswith(language_prefix) for name in language), family.name
        adapted = lora_target_modules(model, "language")
        assert adapted and set(adapted) <= set(language) and all(".mlp." in n or "attn." in n for n in adapted)
        if vision_prefix is None:
            for towers in ("vision", "both"):
                with pytest.raises(UnsupportedModel, match="MobileNet-V5"):
                    select_linear_layers(model, towers)
                with pytest.raises(UnsupportedModel, match="MobileNet-V5"):
                    lora_target_modules(model, towers)
            continue
        vision = select_linear_layers(model, "vision")
        assert vision and all(name.startswith(vision_prefix) for name in vision), family.name
        assert set(select_linear_layers(model, "both")) == set(language) | set(vision)
        assert set(lora_target_modules(model, "both")) - set(adapted) <= set(vision)


def test_flops_pooling_and_compression_on_the_published_dots(tiny_dots_dir: Path) -> None:
    """The FLOP counter finds dots.ocr's tower and decoder through the family table; pooling and PELA both cut FLOPs."""
    import copy

    from compression.flops import count_flops
    from compression.lowrank import compress
    from compression.pooled_prompts import PooledProcessor
    from compression.pooling import PoolingConfig, apply_token_pooling
    from engines.generative.generation import encode_requests

    model, processor = _dots(tiny_dots_dir)
    requests = [Request(image=page, prompt="Read the page.") for page in text_like_pages([(224, 168)])]
    plain = count_flops(model, encode_requests(processor, requests), decode_tokens=2)
    for phase in (plain.vision, plain.prefill, plain.decode_per_token):
        assert phase.measured > 0 and abs(phase.ratio - 1) < 0.05, phase  # measured and analytic agree
    assert plain.visual_tokens == plain.patches // 4

    pooled_model = apply_token_pooling(copy.deepcopy(model), PoolingConfig(factor=2, method="avg"))
    pooled = count_flops(pooled_model, encode_requests(PooledProcessor(processor, PoolingConfig(factor=2)), requests), decode_tokens=2)
    assert pooled.visual_tokens < plain.visual_tokens and pooled.prefill.measured < plain.prefill.measured
    assert pooled.vision.measured == plain.vision.measured  # the tower still sees every patch

    compressed = copy.deepcopy(model)
    stats = compress(compressed, 2.0, target_modules="both")
    assert stats.model_params_after < stats.model_params_before and any(name.startswith("vision_tower.") for name in stats.ranks)
    smaller = count_flops(compressed, encode_requests(processor, requests), decode_tokens=2)
    assert smaller.vision.measured < plain.vision.measured and smaller.prefill.measured < plain.prefill.measured
    assert smaller.decode_per_token.measured < plain.decode_per_token.measured
