"""A Gemma 3n checkpoint folder (``google/gemma-3n-E4B-it``'s layout) at tiny size, random weights.

Gemma 3n is the default picture-OCR model. Unlike Gemma 3 its vision tower is timm's
MobileNet-V5 (``TimmWrapperModel``, architecture ``mobilenetv5_300m_enc``), which needs the
``timm`` package, and its multimodal ids are fixed by the architecture: visual soft tokens
are embedded by ``embed_vision`` from ``vocab_offset`` 262144 on, audio ones from 262272.
So this builder uses transformers' own classes (``Gemma3nForConditionalGeneration``,
``Gemma3nProcessor``) and keeps every published id and size that the code paths depend
on: the 262400-token vocabulary with ``<start_of_image>`` 255999, ``<end_of_image>`` 262144,
``<image_soft_token>`` 262145, ``<start_of_turn>`` 105 and ``<end_of_turn>`` 106; 256 soft
tokens per image from a 768 x 768 input; the audio tower and its processor. Only widths
and depths shrink (MobileNet-V5 through timm's ``channel_multiplier``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Published ids of the tokens the processor, the chat template and the model use.
SPECIAL_IDS = {
    "<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4,
    "<start_of_turn>": 105, "<end_of_turn>": 106,
    "<start_of_image>": 255999, "<start_of_audio>": 256000,
    "<end_of_image>": 262144, "<image_soft_token>": 262145, "<end_of_audio>": 262272, "<audio_soft_token>": 262273,
}
VOCAB_SIZE = 262400
BYTE_TOKENS_FROM = 300  # where the byte-level alphabet starts (ordinary ids; the real vocabulary is SentencePiece)

#: Gemma 3n's chat template, reduced to text, image and audio parts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' -%}{{ '<audio_soft_token>' }}"
    "{%- elif item['type'] == 'image' -%}{{ '<image_soft_token>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


def gemma3n_tokenizer() -> Any:
    """Byte-level BPE over the published id space: special tokens at their ids, fillers elsewhere."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {symbol: BYTE_TOKENS_FROM + i for i, symbol in enumerate(alphabet)}
    vocab.update(SPECIAL_IDS)
    taken = set(vocab.values())
    vocab.update({f"Ġv{index}": index for index in range(VOCAB_SIZE) if index not in taken})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_IDS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        extra_special_tokens={
            "image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
            "audio_token": "<audio_soft_token>", "boa_token": "<start_of_audio>", "eoa_token": "<end_of_audio>",
        },
    )
    assert tokenizer.convert_tokens_to_ids("<image_soft_token>") == SPECIAL_IDS["<image_soft_token>"]
    return tokenizer


def save_tiny_gemma3n(path: str | Path, *, hidden_size: int = 64, num_layers: int = 2, channel_multiplier: float = 0.125,
                      seed: int = 0) -> Path:
    """Write a Gemma 3n checkpoint (config, random weights, tokenizer, processor, chat template) to ``path``."""
    import torch
    from transformers import (
        Gemma3nAudioFeatureExtractor,
        Gemma3nConfig,
        Gemma3nForConditionalGeneration,
        Gemma3nProcessor,
        SiglipImageProcessor,
    )

    path = Path(path)
    tokenizer = gemma3n_tokenizer()
    config = Gemma3nConfig(
        text_config={
            "vocab_size": VOCAB_SIZE, "vocab_size_per_layer_input": 262144, "hidden_size": hidden_size,
            "hidden_size_per_layer_input": 8, "intermediate_size": 2 * hidden_size, "num_hidden_layers": num_layers,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "sliding_window": 64,
            "layer_types": ["sliding_attention"] * (num_layers - 1) + ["full_attention"], "num_kv_shared_layers": 0,
            "altup_num_inputs": 2, "laurel_rank": 4, "activation_sparsity_pattern": [0.0] * num_layers,
            "pad_token_id": 0, "eos_token_id": [1, 106], "bos_token_id": 2,
        },
        vision_config={"model_args": {"channel_multiplier": channel_multiplier}},
        audio_config={"hidden_size": 32, "conf_num_attention_heads": 2, "conf_num_hidden_layers": 1, "sscp_conv_channel_size": [8, 8]},
    )
    torch.manual_seed(seed)
    model = Gemma3nForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [1, 106]
    model.generation_config.pad_token_id = 0
    image_processor = SiglipImageProcessor(size={"height": 768, "width": 768}, do_normalize=False)
    processor = Gemma3nProcessor(
        feature_extractor=Gemma3nAudioFeatureExtractor(), image_processor=image_processor, tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE, image_seq_length=config.vision_soft_tokens_per_image,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
