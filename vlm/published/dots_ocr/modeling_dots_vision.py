# Test fixture: written for docvlm to reproduce the *interface* of the modeling_dots_vision.py
# published with rednote-hilab/dots.ocr; not a copy of it. What it keeps as published:
#   * module names: patch_embed.patchifier.{proj,norm}, blocks.N.{norm1, attn.{qkv,proj}, norm2,
#     mlp.{fc1,fc2,fc3}}, post_trunk_norm, merger.{ln_q, mlp.0, mlp.2};
#   * forward(hidden_states, grid_thw, bf16=True) casts its input to bfloat16 by default, so an
#     fp32 tower fails unless called with bf16=False;
#   * the attention class comes from vision_config.attn_implementation (config.json says
#     flash_attention_2), not from the attn_implementation passed to from_pretrained;
#   * images are packed into one sequence, separated by cu_seqlens; 2-D rotary positions grouped
#     in merge-size blocks, as the Qwen2-VL image processor orders its patches.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import LayerNorm
from transformers.modeling_utils import PreTrainedModel

from .configuration_dots import DotsVisionConfig

try:
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None


def rotate_half(x):
    first, second = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-second, first), dim=-1)


def apply_rotary_pos_emb_vision(tensor, freqs):
    dtype = tensor.dtype
    tensor = tensor.float()
    cos = freqs.cos().unsqueeze(1).repeat(1, 1, 2).unsqueeze(0).float()
    sin = freqs.sin().unsqueeze(1).repeat(1, 1, 2).unsqueeze(0).float()
    return (tensor * cos + rotate_half(tensor) * sin).to(dtype)


class VisionRotaryEmbedding(nn.Module):
    def __init__(self, dim, theta=10000.0):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, seqlen):
        positions = torch.arange(seqlen, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        return torch.outer(positions, self.inv_freq)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class PatchMerger(nn.Module):
    def __init__(self, dim, context_dim, spatial_merge_size=2, pre_norm="layernorm", init_merger_std=None):
        super().__init__()
        self.hidden_size = context_dim * spatial_merge_size**2
        self.pre_norm = pre_norm
        self.ln_q = LayerNorm(context_dim, eps=1e-6) if pre_norm == "layernorm" else RMSNorm(context_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(self.hidden_size, self.hidden_size), nn.GELU(), nn.Linear(self.hidden_size, dim))
        if init_merger_std is not None:
            for layer in (self.mlp[0], self.mlp[2]):
                nn.init.normal_(layer.weight, mean=0.0, std=init_merger_std)
                nn.init.zeros_(layer.bias)

    def forward(self, x):
        return self.mlp(self.ln_q(x).view(-1, self.hidden_size))


def _qkv(module, hidden_states, rotary_pos_emb):
    length = hidden_states.shape[0]
    q, k, v = module.qkv(hidden_states).reshape(length, 3, module.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q = apply_rotary_pos_emb_vision(q.unsqueeze(0), rotary_pos_emb).squeeze(0)
    k = apply_rotary_pos_emb_vision(k.unsqueeze(0), rotary_pos_emb).squeeze(0)
    return q, k, v


def _same_image(cu_seqlens, length, device):
    mask = torch.zeros([1, length, length], device=device, dtype=torch.bool)
    for i in range(1, len(cu_seqlens)):
        mask[..., cu_seqlens[i - 1] : cu_seqlens[i], cu_seqlens[i - 1] : cu_seqlens[i]] = True
    return mask


class VisionAttention(nn.Module):
    def __init__(self, config, dim, num_heads=16, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, hidden_states, cu_seqlens, rotary_pos_emb=None):
        length = hidden_states.shape[0]
        q, k, v = (t.transpose(0, 1) for t in _qkv(self, hidden_states, rotary_pos_emb))
        bias = torch.zeros([1, length, length], device=q.device, dtype=q.dtype)
        bias.masked_fill_(~_same_image(cu_seqlens, length, q.device), torch.finfo(q.dtype).min)
        weights = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(self.head_dim) + bias
        weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.proj(torch.matmul(weights, v).transpose(0, 1).reshape(length, -1))


class VisionSdpaAttention(nn.Module):
    def __init__(self, config, dim, num_heads=16, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, hidden_states, cu_seqlens, rotary_pos_emb=None):
        length = hidden_states.shape[0]
        q, k, v = (t.transpose(0, 1) for t in _qkv(self, hidden_states, rotary_pos_emb))
        out = F.scaled_dot_product_attention(q, k, v, _same_image(cu_seqlens, length, q.device), dropout_p=0.0)
        return self.proj(out.transpose(0, 1).reshape(length, -1))


class VisionFlashAttention2(nn.Module):
    def __init__(self, config, dim, num_heads=16, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.is_causal = config.is_causal
        self.qkv = nn.Linear(dim, dim * 3, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, hidden_states, cu_seqlens, rotary_pos_emb=None):
        length = hidden_states.shape[0]
        q, k, v = _qkv(self, hidden_states, rotary_pos_emb)
        longest = (cu_seqlens[1:] - cu_seqlens[:-1]).max().item()
        out = flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, longest, longest, causal=self.is_causal)
        return self.proj(out.reshape(length, -1))


DOTS_VISION_ATTENTION_CLASSES = {
    "eager": VisionAttention,
    "flash_attention_2": VisionFlashAttention2,
    "sdpa": VisionSdpaAttention,
}


class DotsSwiGLUFFN(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = nn.Linear(config.embed_dim, config.intermediate_size, bias=config.use_bias)
        self.fc2 = nn.Linear(config.intermediate_size, config.embed_dim, bias=config.use_bias)
        self.fc3 = nn.Linear(config.embed_dim, config.intermediate_size, bias=config.use_bias)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


class DotsPatchEmbed(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_channels = config.num_channels
        self.patch_size = config.patch_size
        self.temporal_patch_size = config.temporal_patch_size
        self.embed_dim = config.embed_dim
        self.proj = nn.Conv2d(config.num_channels, config.embed_dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.norm = RMSNorm(config.embed_dim, eps=config.rms_norm_eps)

    def forward(self, x, grid_thw=None):
        x = x.view(-1, self.num_channels, self.temporal_patch_size, self.patch_size, self.patch_size)[:, :, 0]
        return self.norm(self.proj(x).view(-1, self.embed_dim))


class DotsViTPreprocessor(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.patchifier = DotsPatchEmbed(config)

    def forward(self, x, grid_thw=None):
        return self.patchifier(x, grid_thw)


class DotsVisionBlock(nn.Module):
    def __init__(self, config, attn_implementation="flash_attention_2"):
        super().__init__()
        attention = DOTS_VISION_ATTENTION_CLASSES[attn_implementation]
        self.attn = attention(config, config.embed_dim, num_heads=config.num_attention_heads, bias=config.use_bias)
        self.norm1 = RMSNorm(config.embed_dim, eps=config.rms_norm_eps)
        self.mlp = DotsSwiGLUFFN(config)
        self.norm2 = RMSNorm(config.embed_dim, eps=config.rms_norm_eps)

    def forward(self, hidden_states, cu_seqlens, rotary_pos_emb):
        hidden_states = hidden_states + self.attn(self.norm1(hidden_states), cu_seqlens=cu_seqlens, rotary_pos_emb=rotary_pos_emb)
        return hidden_states + self.mlp(self.norm2(hidden_states))


class DotsVisionTransformer(PreTrainedModel):
    def __init__(self, config: DotsVisionConfig):
        super().__init__(config)
        self.config = config
        self.spatial_merge_size = config.spatial_merge_size
        self.patch_embed = DotsViTPreprocessor(config)
        head_dim = config.embed_dim // config.num_attention_heads
        self.rotary_pos_emb = VisionRotaryEmbedding(head_dim // 2)
        self.blocks = nn.ModuleList([DotsVisionBlock(config, config.attn_implementation) for _ in range(config.num_hidden_layers)])
        if config.post_norm:
            self.post_trunk_norm = RMSNorm(config.embed_dim, eps=config.rms_norm_eps)
        self.merger = PatchMerger(
            dim=config.hidden_size, context_dim=config.embed_dim, spatial_merge_size=config.spatial_merge_size,
            init_merger_std=config.init_merger_std,
        )
        self.gradient_checkpointing = False

    @property
    def dtype(self):
        return self.blocks[0].mlp.fc2.weight.dtype

    @property
    def device(self):
        return self.blocks[0].mlp.fc2.weight.device

    def get_pos_ids_by_grid(self, grid_thw):
        merge = self.spatial_merge_size
        pos_ids = []
        for t, h, w in grid_thw:
            rows = torch.arange(h).unsqueeze(1).expand(-1, w).reshape(h // merge, merge, w // merge, merge)
            cols = torch.arange(w).unsqueeze(0).expand(h, -1).reshape(h // merge, merge, w // merge, merge)
            rows, cols = rows.permute(0, 2, 1, 3).flatten(), cols.permute(0, 2, 1, 3).flatten()
            pos_ids.append(torch.stack([rows, cols], dim=-1).repeat(t, 1))
        return pos_ids

    def rot_pos_emb(self, grid_thw):
        pos_ids = torch.cat(self.get_pos_ids_by_grid(grid_thw), dim=0)
        table = self.rotary_pos_emb(grid_thw[:, 1:].max())
        return table[pos_ids].flatten(1)

    def forward(self, hidden_states: torch.Tensor, grid_thw: torch.Tensor, bf16=True) -> torch.Tensor:
        if bf16:
            hidden_states = hidden_states.bfloat16()
        hidden_states = self.patch_embed(hidden_states, grid_thw)
        rotary_pos_emb = self.rot_pos_emb(grid_thw)
        cu_seqlens = torch.repeat_interleave(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0]).cumsum(dim=0, dtype=torch.int32)
        cu_seqlens = F.pad(cu_seqlens, (1, 0), value=0)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                hidden_states = torch.utils.checkpoint.checkpoint(block, hidden_states, cu_seqlens, rotary_pos_emb, use_reentrant=False)
            else:
                hidden_states = block(hidden_states, cu_seqlens=cu_seqlens, rotary_pos_emb=rotary_pos_emb)
        if self.config.post_norm:
            hidden_states = self.post_trunk_norm(hidden_states)
        return self.merger(hidden_states)
