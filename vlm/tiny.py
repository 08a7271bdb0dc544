"""Tiny checkpoints with random weights, built and saved locally.

Model weights cannot be downloaded here (and CI has no GPU), yet the engines, the
compression toolkit and the training jobs must be exercised through the very
``from_pretrained`` path users take with real checkpoints. These builders save a
complete checkpoint directory: config, random weights, a byte-level tokenizer built
from scratch, the image processor and a chat template. The architectures are the real
ones (Qwen2.5-VL, the family of DOTS's language model and processor; Gemma 3), only
the sizes are tiny, so a model loads and generates in well under a second on a CPU.

Run ``python -m vlm.tiny OUT_DIR`` to write both checkpoints for manual experiments.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: Qwen2-VL's special tokens, in the order the real vocabulary lists them.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: The Qwen2-VL chat template, reduced to text and image parts.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: dots.ocr's dimensions (Qwen2-1.5B text model, 42-layer 1536-wide vision tower; about 3 B parameters),
#: for benchmarks that need real sizes but cannot download the weights.
DOTS_SHAPE: dict[str, Any] = dict(
    hidden_size=1536,
    num_layers=28,
    num_heads=12,
    num_kv_heads=2,
    intermediate_size=8960,
    vision_depth=42,
    vision_hidden_size=1536,
    vision_heads=12,
    vision_intermediate_size=4224,
    min_pixels=3136,
    max_pixels=11_289_600,
)

#: CPU benchmarks: small enough for two cores, big enough that matmuls dominate the time.
BENCH_SHAPE: dict[str, Any] = dict(
    hidden_size=256,
    num_layers=4,
    num_heads=4,
    num_kv_heads=2,
    vision_depth=4,
    vision_hidden_size=128,
    vision_heads=4,
    min_pixels=56 * 56,
    max_pixels=448 * 448,
)

GEMMA_SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>")

#: Gemma 3's chat template, reduced to text and image parts.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<start_of_image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def byte_level_tokenizer(special_tokens: tuple[str, ...], **kwargs: Any) -> Any:
    """A byte-level BPE tokenizer with no merges: every UTF-8 byte is a token, so any text round-trips."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(special_tokens))
    return PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)


def save_tiny_qwen2_5_vl(path: str | Path, **shape: Any) -> Path:
    """Save a Qwen2.5-VL checkpoint (model, tokenizer, processor) with random weights to ``path``.

    Tiny by default; ``DOTS_SHAPE`` gives dots.ocr's dimensions for GPU benchmarks. ``shape``:
    the keyword arguments of ``build_tiny_qwen2_5_vl``.
    """
    path = Path(path)
    model, processor = build_tiny_qwen2_5_vl(**shape)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_qwen2_5_vl(
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 64,
    min_pixels: int = 56 * 56,
    max_pixels: int = 224 * 224,
    seed: int = 0,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    vision_heads: int = 4,
    vision_intermediate_size: int | None = None,
    dtype: str = "float32",
    image_mean: float | None = None,
    image_std: float | None = None,
    rope_theta: float = 10000.0,
    mrope_section: list[int] | None = None,
) -> tuple[Any, Any]:
    """A Qwen2.5-VL model with random weights (seeded) and its processor, in memory.

    ``mrope_section`` splits the rotary frequencies of a head between the temporal, height
    and width position axes, highest frequencies first (default: half to time, a quarter
    each to height and width, as Qwen2.5-VL does).
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = byte_level_tokenizer(
        QWEN_SPECIAL_TOKENS, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    token_id = tokenizer.convert_tokens_to_ids
    half_head_dim = hidden_size // num_heads // 2  # M-RoPE splits half the head dim over t, h, w
    if mrope_section is None:
        mrope_section = [half_head_dim - 2 * (half_head_dim // 4), half_head_dim // 4, half_head_dim // 4]
    elif sum(mrope_section) != half_head_dim or len(mrope_section) != 3:
        raise ValueError(f"mrope_section {mrope_section} must be three numbers summing to half the head dim ({half_head_dim})")
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size or hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": list(mrope_section)},
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
            "bos_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_intermediate_size or vision_hidden_size * 2,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(getattr(torch, dtype)).eval()
    model.generation_config.eos_token_id = token_id("<|im_end|>")
    model.generation_config.pad_token_id = token_id("<|endoftext|>")
    normalisation = {}
    if image_mean is not None:  # e.g. 1.0 maps white paper to 0 (see training.settings.ReferenceSettings)
        normalisation = {"image_mean": [image_mean] * 3, "image_std": [image_std or 0.5] * 3}
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=14, merge_size=2, temporal_patch_size=2, **normalisation
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    return model, processor


def save_tiny_gemma3(path: str | Path, *, hidden_size: int = 64, num_layers: int = 2, image_size: int = 64, seed: int = 0) -> Path:
    """Save a tiny Gemma 3 (SigLIP vision tower) checkpoint to ``path`` and return it."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    path = Path(path)
    tokenizer = byte_level_tokenizer(
        GEMMA_SPECIAL_TOKENS,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        padding_side="left",
        extra_special_tokens={"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
    )
    token_id = tokenizer.convert_tokens_to_ids
    patch_size = 16
    tokens_per_image = (image_size // patch_size) ** 2
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": hidden_size // 4,
            "sliding_window": 64,
            "max_position_embeddings": 4096,
            "eos_token_id": [token_id("<eos>"), token_id("<end_of_turn>")],
            "pad_token_id": token_id("<pad>"),
            "bos_token_id": token_id("<bos>"),
        },
        vision_config={
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": patch_size,
            "vision_use_head": False,
        },
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=token_id("<start_of_image>"),
        eoi_token_index=token_id("<end_of_image>"),
        image_token_index=token_id("<image_soft_token>"),
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers initialises this projector to zeros: images would not reach the text model
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, 0.02)
    model.generation_config.eos_token_id = [token_id("<eos>"), token_id("<end_of_turn>")]
    model.generation_config.pad_token_id = token_id("<pad>")
    image_processor = Gemma3ImageProcessor(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA_CHAT_TEMPLATE,
        image_seq_length=tokens_per_image,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def text_like_pages(sizes: list[tuple[int, int]], seed: int = 0) -> list[Any]:
    """White (height, width) pages with dark text-like bars, so visual tokens differ like a real page's."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pages = []
    for height, width in sizes:
        page = np.full((height, width, 3), 255, dtype=np.uint8)
        for top in range(16, height - 16, 14):
            length = int(rng.integers(width // 4, width - 32))
            page[top : top + 7, 16 : 16 + length] = rng.integers(0, 90)
        pages.append(Image.fromarray(page))
    return pages


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder that receives qwen2_5_vl/ and gemma3/")
    args = parser.parse_args(argv)
    print(save_tiny_qwen2_5_vl(args.out / "qwen2_5_vl"))
    print(save_tiny_gemma3(args.out / "gemma3"))


if __name__ == "__main__":
    main()
