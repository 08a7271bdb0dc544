"""One greedy decode step over a ``SlotCache``, optionally compiled with CUDA graphs.

On a GPU a plain decode step of a DOTS-sized model is almost all host-side launch
overhead (hundreds of small kernels), whatever the batch size.
``torch.compile(mode="reduce-overhead")`` fuses the step and replays it as a CUDA graph,
which the static cache makes possible (fixed shapes, fixed addresses); the figures are in
docs/gpu-engines.md. The step also takes the argmax inside the graph so only ``slots``
token ids leave the GPU.

GPU-only pieces: CUDA graphs need CUDA; on CPU the step runs eagerly (``compile=False``,
the default there), which is what the CPU tests exercise. ``torch.compile`` of this very
function is checked on CPU for graph breaks with the ``eager`` backend only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from engines.decoding.kv_slots import SlotCache
from engines.decoding.rope_positions import PositionScheme
from vlm.forward_args import cache_keyword, logits_to_keep

logger = logging.getLogger(__name__)

#: Recompiles allowed for the step (one per slot bucket × cache length is the expected count).
RECOMPILE_LIMIT = 64


def greedy_step(model: Any, scheme: PositionScheme, cache: Any, tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor,
                keep: dict[str, int], cache_key: str = "past_key_values") -> torch.Tensor:
    """Feed one token per slot at the cache's write column; return each slot's most likely next token.

    ``cache_key``: the keyword ``forward`` takes the cache under (``cache_keyword``).
    """
    output = model(
        input_ids=tokens,
        position_ids=scheme.decode(positions),
        attention_mask=valid,
        use_cache=True,
        **{cache_key: cache},
        **keep,
    )
    return output.logits[:, -1].argmax(dim=-1)


class DecodeStep:
    """Callable on a ``SlotCache``; compiles lazily per shape and remembers what compiling cost."""

    def __init__(self, model: Any, scheme: PositionScheme, compile: bool = False, backend: str = "inductor", mode: str | None = "reduce-overhead"):
        self.model, self.scheme, self.compiled = model, scheme, compile
        self.keep = logits_to_keep(model)
        self.cache_key = cache_keyword(model)
        self.shapes_seen: set[tuple[int, int]] = set()
        self.first_call_s: dict[tuple[int, int], float] = {}  # first call per shape: the compile, when compiled
        self._fn: Any = greedy_step
        if compile:
            _raise_recompile_limit()
            options = {"mode": mode} if backend == "inductor" and mode else {}
            self._fn = torch.compile(greedy_step, backend=backend, **options)

    def __call__(self, cache: SlotCache) -> torch.Tensor:
        shape = (cache.slots, cache.length)
        started = time.perf_counter()
        first_call = not cache.stepped
        if self.compiled:
            self._mark_static(cache)
            if hasattr(torch, "compiler") and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs were copied out: reuse its buffers
        next_tokens = self._fn(self.model, self.scheme, cache.cache, cache.tokens, cache.positions, cache.valid, self.keep, self.cache_key)
        if first_call:  # a new cache object: with compile, a new graph (dynamo guards the cache tensors' addresses)
            cache.stepped = True
            self.shapes_seen.add(shape)
            if next_tokens.is_cuda:
                torch.cuda.synchronize()
            self.first_call_s[shape] = self.first_call_s.get(shape, 0.0) + time.perf_counter() - started
            if self.compiled:
                logger.info("decode step for %d slots x %d cache columns compiled in %.1f s", shape[0], shape[1], time.perf_counter() - started)
        return next_tokens.clone() if self.compiled else next_tokens

    @staticmethod
    def _mark_static(cache: SlotCache) -> None:
        """The step's inputs keep their addresses for the cache's life: CUDA graphs read them in place, no copies."""
        if not cache.stepped:
            for tensor in (cache.tokens, cache.positions, cache.valid):
                torch._dynamo.mark_static_address(tensor)


def _raise_recompile_limit() -> None:
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6; older name kept as an alias
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    if hasattr(config, "accumulated_recompile_limit"):
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, RECOMPILE_LIMIT * 4)
