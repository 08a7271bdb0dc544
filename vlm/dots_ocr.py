"""The published dots.ocr checkpoint, made to run as is under current transformers: every workaround in one place.

``rednote-hilab/dots.ocr`` ships its own modelling code (``trust_remote_code``), written
against an older transformers. Loaded unmodified under transformers 5 it fails on every
page. The user must never have to edit files in the checkpoint folder, so the loader
(``vlm.loading``) adapts the loaded objects instead:

1. **Processor.** The checkpoint's ``auto_map`` has no ``AutoProcessor`` entry and its
   ``DotsVLProcessor`` registers itself under a string only when ``configuration_dots`` is
   imported, so ``AutoProcessor`` returns a bare tokenizer; its older revision also lacks
   the ``video_processor`` argument that ``Qwen2_5_VLProcessor`` now takes. The processor is
   therefore built here from the checkpoint's own parts: its tokenizer, its
   ``preprocessor_config.json`` (a ``Qwen2VLImageProcessor``) and its chat template, with
   the image placeholder the config names (``<|imgpad|>``, ``image_token_id`` 151665).
2. **Keys the model does not take.** Qwen2.5-VL's processor adds ``mm_token_type_ids``,
   which the published ``forward`` does not accept (``generate`` refuses it as an unused
   model kwarg). ``DotsOCRProcessor`` does not emit it: dots.ocr positions are 1-D.
3. **The image sent again.** The published ``prepare_inputs_for_generation`` adds
   ``pixel_values`` whenever ``cache_position`` is None, which current transformers never
   passes, so the second decode step runs the vision tower for a token that has no image
   placeholder and fails. A forward pre-hook drops pixels from any call whose
   ``input_ids`` hold no image placeholder.
4. **The vision tower's own dtype.** ``DotsVisionTransformer.forward(..., bf16=True)``
   casts its input to bfloat16, so an fp32 model fails in its first convolution. A
   forward pre-hook passes ``bf16`` as the tower's real dtype.
5. **Vision attention.** The tower picks its attention class from
   ``vision_config.attn_implementation`` (``flash_attention_2`` in the published config),
   not from the ``attn_implementation`` given to ``from_pretrained``; the loader sets it
   to what it resolved (sdpa where flash-attn is missing).
6. **Positions.** The language model is a Qwen2 with 1-D RoPE; static decoding counts
   positions over the attention mask (``engines.decoding.rope_positions``, family table).

The hooks are plain PyTorch forward pre-hooks: they survive ``copy.deepcopy``, peft's
wrappers and DeepSpeed, and ``save_pretrained`` writes the checkpoint unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from transformers import Qwen2_5_VLProcessor

IMAGE_TOKEN = "<|imgpad|>"
_HOOKED = "_docvlm_dots_hooks"


class DotsOCRProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor with dots.ocr's image placeholder; emits no ``mm_token_type_ids`` (1-D positions).

    ``end_of_turn_token``: dots.ocr's chat template closes no final assistant turn, so training
    targets (``training.examples``) append the token its generation config stops on.
    """

    return_mm_token_type_ids = False
    end_of_turn_token = "<|endofassistant|>"

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, video_processor: Any = None,
                 chat_template: str | None = None, image_token: str = IMAGE_TOKEN, **kwargs: Any):
        super().__init__(image_processor, tokenizer, video_processor, chat_template=chat_template, **kwargs)
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)


def prepare_config(config: Any, attn_implementation: str) -> Any:
    """Point the vision tower at the attention the loader resolved (the published config names flash-attn)."""
    vision = getattr(config, "vision_config", None)
    if vision is not None:
        vision.attn_implementation = attn_implementation
    return config


def load_processor(location: str, config: Any, **common: Any) -> DotsOCRProcessor:
    """The checkpoint's tokenizer, image processor and chat template, put together with its image placeholder.

    ``common``: ``revision`` / ``local_files_only`` / ``trust_remote_code`` / ``token`` as for ``from_pretrained``.
    """
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLVideoProcessor

    hub = {k: v for k, v in common.items() if k in ("revision", "local_files_only", "token")}
    tokenizer = AutoTokenizer.from_pretrained(location, **common)
    image_processor = AutoImageProcessor.from_pretrained(location, **common)
    image_token = tokenizer.convert_ids_to_tokens(int(config.image_token_id))
    chat_template = tokenizer.chat_template or _chat_template_file(location, **hub)
    if chat_template is None:
        raise ValueError(f"dots.ocr checkpoint {location} has no chat template (tokenizer_config.json, chat_template.json or .jinja)")
    return DotsOCRProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=chat_template,
        image_token=image_token,
    )


def _chat_template_file(location: str, **hub: Any) -> str | None:
    from transformers.utils import cached_file

    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(location, name, _raise_exceptions_for_missing_entries=False, **hub)
        if path is None:
            continue
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return None


def adapt_model(model: Any) -> Any:
    """Install the two pre-hooks (module docstring, 3 and 4) on a loaded dots.ocr model; once, in place."""
    if getattr(model, _HOOKED, False):
        return model
    image_token_id = int(model.config.image_token_id)

    def no_pixels_without_placeholders(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if kwargs.get("pixel_values") is not None and input_ids is not None and not bool((input_ids == image_token_id).any()):
            kwargs["pixel_values"] = None
        return args, kwargs

    def tower_dtype(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if "bf16" not in kwargs and len(args) < 3:
            import torch

            # The parameters, not the published ``dtype`` property: it reads blocks[0].mlp.fc2.weight, which a
            # PELA-compressed block no longer has.
            kwargs["bf16"] = next(module.parameters()).dtype == torch.bfloat16
        return args, kwargs

    model.register_forward_pre_hook(no_pixels_without_placeholders, with_kwargs=True)
    model.vision_tower.register_forward_pre_hook(tower_dtype, with_kwargs=True)
    setattr(model, _HOOKED, True)
    return model
