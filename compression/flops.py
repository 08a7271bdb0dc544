"""FLOPs of a vision-language model per phase, measured and analytic side by side (Qwen2-VL family, dots.ocr).

Why both: the measured count (``torch.utils.flop_counter.FlopCounterMode``) is what the
kernels are asked to do on this input; the analytic count says why, and agreeing within
a few percent is the check that neither misses a part of the model. Compression shows up
in both: pooling shortens the prompt, low-rank layers are two thin ``nn.Linear``
(``LowRankLinear.down``/``up``) that both counts see as ordinary matmuls.

What FlopCounterMode counts: matmuls (``mm``/``addmm``/``bmm``/``baddbmm``: 2*m*n*k,
bias adds not included), convolutions (2 * output elements * kernel volume * in
channels) and fused attention kernels (``sdpa``: 2 matmuls of 2*s_q*s_k*d per head,
**full** s_q x s_k even when causal or masked). Elementwise work (norms, activations,
softmax, rotary, residuals) is not counted. On CPU, PyTorch runs unmasked sdpa in
``_scaled_dot_product_flash_attention_for_cpu``, which FlopCounterMode does not know;
it is registered here with the same formula so that ``sdpa`` and ``eager`` (whose
QK^T and AV are plain matmuls) count the same. FlashAttention-2 kernels from the
``flash_attn`` package are not aten ops and would not be counted: use sdpa or eager.
transformers 5.17 computes the M-RoPE angles with a tiny matmul that is counted too
(+0.03% on the tiny test model); 5.23 uses an elementwise product.

The analytic formula, the same conventions:

* language model, per forward of ``q`` new tokens on a ``kv``-long context, batch ``B``:
  ``2 * P_lm * B*q + 4 * layers * B*q*kv * heads*head_dim + 2 * P_head * logit_tokens``,
  where ``P_lm`` is the weight count of the ``nn.Linear`` layers run per token (q, k,
  v, o, gate, up, down; a low-rank layer contributes its two factors) and the attention
  term counts QK^T and AV over the full ``q x kv`` rectangle like the kernels (a causal
  prefill really needs about half of it). Prefill: ``q = kv = S`` (padded prompt
  length; padding is computed too) and the lm_head runs on the last position only
  (``logits_to_keep=1``, as ``generate`` does). Decode: ``q = 1``,
  ``kv = S + step + 1``, lm_head on that token.
* vision encoder over ``N`` patches (``N/merge^2`` merged tokens):
  ``2 * P_patch_embed * N + sum_blocks 2 * P_block * N + 2 * P_merger * N/merge^2``
  plus ``4 * d * sum(len^2)`` per block over its attention segments: windows of
  ``window_size/patch_size`` patches per side (merged-grid aligned, edge windows
  smaller) in windowed blocks, each whole frame in the ``fullatt_block_indexes`` blocks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class PhaseFlops:
    """One phase: FLOPs from FlopCounterMode and from the formula."""

    measured: int
    analytic: int

    @property
    def ratio(self) -> float:
        """measured / analytic (1.0 when both are zero)."""
        if self.analytic == 0:
            return 1.0 if self.measured == 0 else float("inf")
        return self.measured / self.analytic


@dataclass
class FlopReport:
    """FLOPs of one batch: vision encoder, prefill (LM only) and one decoded token per sequence."""

    vision: PhaseFlops
    prefill: PhaseFlops
    decode_per_token: PhaseFlops  # per sequence, averaged over the decode steps
    batch_size: int
    patches: int  # vision-tower input patches, whole batch
    visual_tokens: int  # visual tokens the LM sees (after pooling), whole batch
    prompt_length: int  # padded prompt length S
    prompt_tokens: int  # non-padding prompt tokens, whole batch
    decode_steps: int
    decode_context_length: float  # mean kv length over the decode steps
    attn_implementation: str
    pooling: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("vision", "prefill", "decode_per_token"):
            data[name]["ratio"] = getattr(self, name).ratio
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlopReport:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("vision", "prefill", "decode_per_token"):
            phase = data[name]
            values[name] = PhaseFlops(measured=int(phase["measured"]), analytic=int(phase["analytic"]))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> FlopReport:
        return cls.from_dict(json.loads(text))


# --- measuring ---------------------------------------------------------------------------


def _sdpa_cpu_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """FlopCounterMode's sdpa formula for the CPU fused kernel: QK^T + AV, full rectangle, per query head."""
    b, h, s_q, d_q = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * d_q + 2 * b * h * s_q * s_k * d_v


def _custom_mapping() -> dict[Any, Any]:
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None else {op: _sdpa_cpu_flop}


def measure_flops(fn: Any, *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """Run ``fn`` under FlopCounterMode; returns (total FLOPs, result)."""
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with counter:
        result = fn(*args, **kwargs)
    return int(counter.get_total_flops()), result


# --- analytic ----------------------------------------------------------------------------


def matmul_weight_count(module: nn.Module) -> int:
    """Weights of the matmul layers in ``module`` (``nn.Linear`` and convolutions; a low-rank layer's two factors)."""
    total = 0
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            total += sub.weight.numel()
    return total


def _segments(sizes: int, window: int) -> list[int]:
    return [min(window, sizes - start) for start in range(0, sizes, window)]


def vision_flops_analytic(tower: nn.Module, image_grid_thw: torch.Tensor) -> int:
    """The ViT formula (see module docstring) for one tower call on these grids.

    Qwen2.5-VL's tower attends within windows except in its ``fullatt_block_indexes``
    blocks; Qwen2-VL's and dots.ocr's (no ``window_size``) attend over each whole image.
    """
    config = tower.config
    merge, patch = int(config.spatial_merge_size), int(config.patch_size)
    window_size = getattr(config, "window_size", None)
    full_blocks = set(getattr(config, "fullatt_block_indexes", []) or []) if window_size else set(range(len(tower.blocks)))
    grids = [tuple(int(v) for v in row) for row in image_grid_thw.tolist()]
    patches = sum(t * h * w for t, h, w in grids)
    window_sq = full_sq = 0
    for t, h, w in grids:
        full_sq += t * (h * w) ** 2
        if window_size:
            window = int(window_size) // merge // patch  # window side in merged tokens
            for rows in _segments(h // merge, window):
                for cols in _segments(w // merge, window):
                    window_sq += t * (rows * cols * merge * merge) ** 2
    flops = 2 * matmul_weight_count(tower.patch_embed) * patches
    flops += 2 * matmul_weight_count(tower.merger) * (patches // (merge * merge))
    for index, block in enumerate(tower.blocks):
        attn_dim = int(block.attn.qkv.out_features) // 3
        flops += 2 * matmul_weight_count(block) * patches
        flops += 4 * attn_dim * (full_sq if index in full_blocks else window_sq)
    return int(flops)


def _text_config(model: nn.Module) -> Any:
    config = model.config
    return getattr(config, "text_config", config)


def lm_flops_analytic(model: nn.Module, batch: int, new_tokens: int, context: int, logit_tokens: int) -> int:
    """LM forward of ``new_tokens`` per row on a ``context``-long kv, lm_head on ``logit_tokens`` rows in all."""
    from vlm.families import family_of

    language_model = family_of(model).language_model(model)
    config = _text_config(model)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    layers = len(language_model.layers)
    tokens = batch * new_tokens
    flops = 2 * matmul_weight_count(language_model) * tokens
    flops += 4 * layers * tokens * context * heads * head_dim
    head = model.get_output_embeddings()
    if head is not None:
        flops += 2 * matmul_weight_count(head) * logit_tokens
    return int(flops)


# --- the three phases --------------------------------------------------------------------


def _image_features(model: nn.Module, family: Any, pixel_values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The visual tokens the LM sees (pooled when pooling is installed), concatenated over the batch's images."""
    if family.positions == "mrope":  # Qwen2-VL family: the model's own get_image_features (pooling wraps it)
        inner = family.submodule(model, "model")
        return torch.cat(list(inner.get_image_features(pixel_values, grid, return_dict=True).pooler_output), dim=0)
    tower = family.vision_tower(model)  # dots.ocr: the tower's output (pooling hooks it)
    return tower(pixel_values.type(_dtype(tower)), grid_thw=grid)


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _prefill_inputs(model: nn.Module, family: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """What the LM gets for the prompt, built outside the counter: embeddings with the visual tokens in, and positions.

    Positions per the family (``vlm.families``): M-RoPE as 4 rows (text row, then time,
    height, width) with each row's offset for decoding; 1-D counted over the mask.
    """
    input_ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(input_ids)
    embeds = model.get_input_embeddings()(input_ids)
    grid = inputs.get("image_grid_thw")
    image_token_id = family.image_token_id(model.config)
    if inputs.get("pixel_values") is not None:
        features = _image_features(model, family, inputs["pixel_values"], grid).to(embeds.device, embeds.dtype)
        image_mask = (input_ids == image_token_id).unsqueeze(-1).expand_as(embeds)
        if int(image_mask[..., 0].sum()) != features.shape[0]:
            raise ValueError(
                f"inputs hold {int(image_mask[..., 0].sum())} image placeholder tokens but the vision tower gives "
                f"{features.shape[0]} visual tokens (pooled prompts need PooledProcessor)"
            )
        embeds = embeds.masked_scatter(image_mask, features)
    text_positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    if family.positions != "mrope":
        return embeds, mask, text_positions, None
    if grid is not None:
        token_types = inputs.get("mm_token_type_ids")
        if token_types is None:
            token_types = (input_ids == image_token_id).long()
        inner = family.submodule(model, "model")
        positions, deltas = inner.get_rope_index(input_ids, mm_token_type_ids=token_types, image_grid_thw=grid, attention_mask=mask)
    else:
        positions = text_positions.unsqueeze(0).expand(3, -1, -1)
        deltas = torch.zeros((input_ids.shape[0], 1), dtype=torch.long, device=input_ids.device)
    return embeds, mask, torch.cat([text_positions.unsqueeze(0), positions.to(text_positions.device)], dim=0), deltas


def _decode_positions(text_positions: torch.Tensor, deltas: torch.Tensor | None) -> torch.Tensor:
    if deltas is None:  # 1-D
        return text_positions
    return torch.cat([text_positions.unsqueeze(0), (text_positions + deltas.to(text_positions.device)).unsqueeze(0).expand(3, -1, -1)], dim=0)


def _lm_step(model: nn.Module, language_model: nn.Module, cache: Any = None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """The decoder stack, then the output head on the last position: what one prefill or decode step computes."""
    from vlm.forward_args import cache_keyword, output_cache

    out = language_model(use_cache=True, **{cache_keyword(language_model): cache}, **kwargs)
    logits = model.get_output_embeddings()(out.last_hidden_state[:, -1:])
    return logits, output_cache(out)


@torch.no_grad()
def count_flops(model: nn.Module, processor_inputs: Any, decode_tokens: int = 4) -> FlopReport:
    """Measure and estimate FLOPs of vision, prefill and per decoded token for one processor batch.

    ``processor_inputs`` is the processor's output (pooled by ``PooledProcessor`` when
    pooling is installed); the batch is moved to the model's device. The model's family
    (``vlm.families``) says where its vision tower and decoder stack are and how its
    positions work; families the counter does not know are refused with the reason.
    """
    from compression.pooling import token_pooling_config
    from vlm.families import family_of

    if decode_tokens < 1:
        raise ValueError(f"decode_tokens must be >= 1, got {decode_tokens}")
    family = family_of(model)
    family.refuse("flops")
    tower, language_model = family.vision_tower(model), family.language_model(model)
    model.eval()
    device = next(model.parameters()).device
    inputs = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in dict(processor_inputs.items()).items()}
    input_ids = inputs["input_ids"]
    batch, prompt_length = input_ids.shape

    pixel_values, grid = inputs.get("pixel_values"), inputs.get("image_grid_thw")
    if pixel_values is not None:
        vision_measured, _ = measure_flops(tower, pixel_values.type(_dtype(tower)), grid_thw=grid)
        vision = PhaseFlops(vision_measured, vision_flops_analytic(tower, grid))
        patches = int(grid.prod(-1).sum())
    else:
        vision, patches = PhaseFlops(0, 0), 0

    embeds, mask, positions, deltas = _prefill_inputs(model, family, inputs)
    prefill_measured, (logits, cache) = measure_flops(
        _lm_step, model, language_model, inputs_embeds=embeds, attention_mask=mask, position_ids=positions
    )
    prefill = PhaseFlops(prefill_measured, lm_flops_analytic(model, batch, prompt_length, prompt_length, logit_tokens=batch))

    next_token = logits[:, -1].argmax(-1, keepdim=True)
    valid = mask.long().sum(-1, keepdim=True)
    measured = analytic = 0
    contexts = []
    for step in range(decode_tokens):
        mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=-1)
        step_flops, (logits, cache) = measure_flops(
            _lm_step, model, language_model, input_ids=next_token, attention_mask=mask,
            position_ids=_decode_positions(valid + step, deltas), cache=cache,
        )
        next_token = logits[:, -1].argmax(-1, keepdim=True)
        context = prompt_length + step + 1
        contexts.append(context)
        measured += step_flops
        analytic += lm_flops_analytic(model, batch, 1, context, logit_tokens=batch)
    decode = PhaseFlops(round(measured / (batch * decode_tokens)), round(analytic / (batch * decode_tokens)))

    pooling = token_pooling_config(model)
    image_token_id = family.image_token_id(model.config)
    return FlopReport(
        vision=vision,
        prefill=prefill,
        decode_per_token=decode,
        batch_size=batch,
        patches=patches,
        visual_tokens=int(((input_ids == image_token_id) & inputs.get("attention_mask", torch.ones_like(input_ids)).bool()).sum()),
        prompt_length=prompt_length,
        prompt_tokens=int(valid.sum()),
        decode_steps=decode_tokens,
        decode_context_length=sum(contexts) / len(contexts),
        attn_implementation=str(getattr(model.config, "_attn_implementation", None)),
        pooling=None if pooling is None else repr(pooling),
    )
