"""A dots.ocr checkpoint folder as published (``rednote-hilab/dots.ocr``), at any size, random weights.

The engines, the compression and training jobs and the sweep must cope with the published
checkpoint, which ships its own modelling code (``trust_remote_code``) and quirks that a
copy of the project's own architectures would never show. This builder writes a folder
with the published layout:

* ``config.json``: ``model_type`` ``dots_ocr``, ``architectures`` ``DotsOCRForCausalLM``,
  an ``auto_map`` for ``AutoConfig`` and ``AutoModelForCausalLM`` only, the Qwen2 text
  fields, ``image_token_id`` 151665 and the ``vision_config`` (whose
  ``attn_implementation`` says ``flash_attention_2``);
* ``configuration_dots.py``, ``modeling_dots_ocr.py``, ``modeling_dots_vision.py``: this
  project's own stand-ins for the published remote code (``vlm/published/dots_ocr/``),
  which reproduce its interface and its quirks (see each file's header); the older
  processor revision is ``processor_revision="legacy"``;
* a Qwen2 byte-level BPE tokenizer with the published vocabulary size and every special
  token at its published id (``<|endoftext|>`` 151643 ... ``<|imgpad|>`` 151665,
  ``<|img|>`` 151666, ``<|endofimg|>`` 151667, ``<|user|>`` 151670 ... ``<|endofassistant|>``
  151673); the ordinary ids hold filler tokens, so random weights decode to text;
* ``preprocessor_config.json`` (``Qwen2VLImageProcessor``, patch 14, merge 2, temporal
  patch 1, CLIP normalisation, ``processor_class`` ``DotsVLProcessor``), the chat template
  in ``chat_template.json`` and ``generation_config.json`` (ends on 151643 or 151673).

Only the sizes shrink; ``DOTS_OCR_SHAPE`` gives the published ones (GPU benchmarks).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

PUBLISHED_CODE = Path(__file__).parent / "published" / "dots_ocr"

#: Qwen2's special tokens from 151643 on, then dots.ocr's own (151665..151673).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
    "<|imgpad|>", "<|img|>", "<|endofimg|>", "<|systemprompt|>", "<|endofsystemprompt|>", "<|user|>",
    "<|endofuser|>", "<|assistant|>", "<|endofassistant|>",
)
FIRST_SPECIAL_ID = 151643
VOCAB_SIZE = 151936
IMAGE_TOKEN_ID = 151665

#: dots.ocr's chat template as it renders: a list-valued user turn is neither opened by
#: <|user|> nor closed by <|endofuser|> and starts with a space; the last assistant turn gets no end token.
CHAT_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'system' %}{{- '<|system|>' + m.content + '<|endofsystem|>\\n' }}"
    "{%- elif m.role == 'user' %}"
    "{% if m.content is string %}{{- '<|user|>' + m.content + '<|endofuser|>' }}"
    "{% else %} {% for content in m.content %}"
    "{% if content.type == 'image' %}{{ '<|img|><|imgpad|><|endofimg|>' }}{% else %}{{ content.text }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{%- elif m.role == 'assistant' %}{{- '<|assistant|>' + m.content }}"
    "{%- if not loop.last %}{{- '<|endofassistant|>' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if messages[-1].role != 'assistant' %}{{- '<|assistant|>' }}{%- endif %}"
)

#: The published sizes (Qwen2-1.5B text model, 42-block vision tower; about 3.0 B parameters).
DOTS_OCR_SHAPE: dict[str, Any] = dict(
    hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2, intermediate_size=8960,
    vision_embed_dim=1536, vision_depth=42, vision_heads=12, vision_intermediate_size=4224,
)


def qwen2_tokenizer(vocab_size: int = VOCAB_SIZE) -> Any:
    """Qwen2-style byte-level BPE: 256 byte tokens, filler tokens up to 151643, the special tokens at their ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    for index in range(len(vocab), FIRST_SPECIAL_ID):  # never produced by encoding (no merges); decodes to text
        vocab[f"Ġw{index}"] = index
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=131072
    )
    assert tokenizer.convert_tokens_to_ids("<|imgpad|>") == IMAGE_TOKEN_ID, "special tokens off their published ids"
    assert len(tokenizer) <= vocab_size
    return tokenizer


def save_tiny_dots_ocr(
    path: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    vision_embed_dim: int = 64,
    vision_depth: int = 2,
    vision_heads: int = 4,
    vision_intermediate_size: int | None = None,
    dtype: str = "bfloat16",
    processor_revision: Literal["current", "legacy"] = "current",
    seed: int = 0,
) -> Path:
    """Write the folder (see the module docstring) and return it. Weights are random (seeded), saved in ``dtype``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _copy_remote_code(path, processor_revision)
    config = published_config(
        hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size or 2 * hidden_size, vision_embed_dim=vision_embed_dim,
        vision_depth=vision_depth, vision_heads=vision_heads, vision_intermediate_size=vision_intermediate_size or 2 * vision_embed_dim,
        dtype=dtype,
    )
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.manual_seed(seed)
    loaded = AutoConfig.from_pretrained(path, trust_remote_code=True)
    loaded.vision_config.attn_implementation = "eager"  # building needs no flash-attn; the saved config keeps the published value
    model = AutoModelForCausalLM.from_config(loaded, trust_remote_code=True).to(getattr(torch, dtype))
    model.save_pretrained(path)
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")  # exactly the published fields, not save_pretrained's
    (path / "generation_config.json").write_text(
        json.dumps({"bos_token_id": FIRST_SPECIAL_ID, "eos_token_id": [FIRST_SPECIAL_ID, 151673]}, indent=2) + "\n"
    )
    qwen2_tokenizer().save_pretrained(path)
    _rewrite_json(path / "tokenizer_config.json", lambda data: {**data, "tokenizer_class": "Qwen2Tokenizer"})
    (path / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2) + "\n")
    (path / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2) + "\n")
    return path


PREPROCESSOR_CONFIG: dict[str, Any] = {
    "min_pixels": 3136,
    "max_pixels": 11289600,
    "patch_size": 14,
    "temporal_patch_size": 1,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "DotsVLProcessor",
}


def published_config(
    *, hidden_size: int, num_layers: int, num_heads: int, num_kv_heads: int, intermediate_size: int,
    vision_embed_dim: int, vision_depth: int, vision_heads: int, vision_intermediate_size: int, dtype: str,
) -> dict[str, Any]:
    """``config.json`` with the published fields; the text model's width is also the merger's output width."""
    return {
        "architectures": ["DotsOCRForCausalLM"],
        "model_type": "dots_ocr",
        "auto_map": {
            "AutoConfig": "configuration_dots.DotsOCRConfig",
            "AutoModelForCausalLM": "modeling_dots_ocr.DotsOCRForCausalLM",
        },
        "attention_bias": True,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": 131072,
        "max_window_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": num_kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB_SIZE,
        "image_token_id": IMAGE_TOKEN_ID,
        "video_token_id": 151656,
        "vision_config": {
            "embed_dim": vision_embed_dim,
            "hidden_size": hidden_size,
            "intermediate_size": vision_intermediate_size,
            "num_hidden_layers": vision_depth,
            "num_attention_heads": vision_heads,
            "num_channels": 3,
            "patch_size": 14,
            "post_norm": True,
            "rms_norm_eps": 1e-05,
            "spatial_merge_size": 2,
            "temporal_patch_size": 1,
            "use_bias": False,
            "attn_implementation": "flash_attention_2",
            "init_merger_std": 0.02,
            "initializer_range": 0.02,
            "is_causal": False,
        },
    }


def _copy_remote_code(path: Path, processor_revision: str) -> None:
    for name in ("modeling_dots_ocr.py", "modeling_dots_vision.py"):
        shutil.copy(PUBLISHED_CODE / name, path / name)
    source = "configuration_dots_legacy.py" if processor_revision == "legacy" else "configuration_dots.py"
    shutil.copy(PUBLISHED_CODE / source, path / "configuration_dots.py")


def _rewrite_json(path: Path, change: Any) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2) + "\n")
