"""vLLM back-end: prompt building and engine arguments, tested without vLLM or a GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image
from transformers import AutoProcessor

from engines.generative.generation import Request
from engines.generative.options import GenerativeEngineOptions
from engines.generative.vllm_backend import VLLMGenerator, vllm_engine_args, vllm_requests
from vlm.loading import ModelLoadError


def test_prompts_use_the_checkpoints_chat_template(tiny_qwen_dir: Path, tiny_gemma_dir: Path) -> None:
    image = Image.new("L", (64, 48))
    for folder, image_marker, turn_marker in (
        (tiny_qwen_dir, "<|vision_start|><|image_pad|><|vision_end|>", "<|im_start|>assistant\n"),
        (tiny_gemma_dir, "<start_of_image>", "<start_of_turn>model\n"),
    ):
        processor = AutoProcessor.from_pretrained(folder)
        (request,) = vllm_requests(processor, [Request(image=image, prompt="Read this.")])
        assert image_marker in request["prompt"] and request["prompt"].endswith(turn_marker)
        assert request["prompt"].index(image_marker) < request["prompt"].index("Read this.")
        assert request["multi_modal_data"]["image"].mode == "RGB"


def test_engine_arguments_follow_the_options(tiny_qwen_dir: Path) -> None:
    options = GenerativeEngineOptions(
        model=str(tiny_qwen_dir), dtype="bfloat16", batch_size=12, min_pixels=1000, max_pixels=2000, trust_remote_code=True
    )
    args = vllm_engine_args(options)
    assert args["model"] == str(tiny_qwen_dir) and args["dtype"] == "bfloat16" and args["max_num_seqs"] == 12
    assert args["mm_processor_kwargs"] == {"min_pixels": 1000, "max_pixels": 2000} and args["trust_remote_code"] is True
    assert "enable_lora" not in args
    with pytest.raises(ModelLoadError, match="does not exist"):
        vllm_engine_args(GenerativeEngineOptions(model="/nowhere/model"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="checks the message shown without vLLM")
def test_missing_vllm_says_how_to_install(tiny_qwen_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"pip install 'docvlm\[vllm\]'"):
        VLLMGenerator(GenerativeEngineOptions(model=str(tiny_qwen_dir), backend="vllm"), ["qwen2_5_vl"])
