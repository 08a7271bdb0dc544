"""How many pages to decode at once, and how long a static cache to allocate.

Why buckets: a compiled decode step (CUDA graphs) is specialised to its tensor shapes,
and the first call at a new shape compiles for about a minute on an H100. Batch sizes
and cache lengths are therefore rounded *up* to a short list of values, so one graph
serves many calls instead of one graph per call.

Why memory-aware: the KV cache grows linearly with batch × cache length, and a batch
that does not fit costs a CUDA out-of-memory error and a retry. From the free GPU
memory, the model's KV-cache bytes per token and the tokens a page needs, the largest
batch under a configured share of that memory is picked up front; out-of-memory
halving stays as the backstop for what the estimate misses (activations, fragmentation).

Pure arithmetic apart from ``free_device_memory``, so it is tested without a GPU.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

#: Shortest static cache; shorter prompts+budgets round up to it.
MIN_CACHE_LENGTH = 256
#: Cache lengths step by a quarter octave (..., 1024, 1280, 1536, 1792, 2048, 2560, ...): at most 25% unused columns.
STEPS_PER_OCTAVE = 4


def slot_buckets(slots: int) -> list[int]:
    """Batch sizes a compiled decode step is built for: ``slots``, a quarter and a sixteenth of it (at least 1).

    Three shapes at most keep the compiles few (each costs up to a minute on an H100):
    64 slots give 4, 16, 64. The smaller ones serve a batch's tail, when few pages are left.
    """
    if slots < 1:
        raise ValueError(f"batch size must be at least 1, got {slots}")
    return sorted({slots, max(1, slots // 4), max(1, slots // 16)})


def round_up(value: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``value``; a value beyond the largest bucket is an error naming both."""
    for bucket in sorted(buckets):
        if bucket >= value:
            return bucket
    raise ValueError(f"{value} is larger than the largest bucket {max(buckets)}")


def cache_length(tokens: int) -> int:
    """Static cache length for ``tokens`` (longest prompt + token budget), rounded up to a quarter-octave step."""
    if tokens <= MIN_CACHE_LENGTH:
        return MIN_CACHE_LENGTH
    octave = 1 << (math.ceil(math.log2(tokens)) - 1)  # the power of two just below tokens (or equal to half of it)
    step = max(octave // STEPS_PER_OCTAVE, 1)
    return -(-tokens // step) * step


def kv_bytes_per_token(config: Any, bytes_per_value: int) -> int:
    """Bytes one token takes in the KV cache of every layer: 2 (K and V) × layers × KV heads × head size × value size."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * heads * head_dim * bytes_per_value


def fit_batch_size(free_bytes: int, memory_fraction: float, bytes_per_page: int, cap: int) -> int:
    """Largest batch (at least 1, at most ``cap``) whose pages take at most ``memory_fraction`` of ``free_bytes``."""
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    if bytes_per_page <= 0:
        raise ValueError(f"bytes_per_page must be positive, got {bytes_per_page}")
    return max(1, min(cap, int(free_bytes * memory_fraction) // bytes_per_page))


def free_device_memory(device: Any) -> int | None:
    """Free bytes on a CUDA device (what the caching allocator holds unused counts as free); None elsewhere."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    reserved_unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + reserved_unused)
