"""A transformers ``StaticCache`` used as independent slots over one shared column axis.

transformers' ``StaticLayer`` writes every row's new token at the same column (its
``cumulative_length`` counter), and the causal mask lets a query see every column up to
that one. Rows that joined at different times still work with that, because RoPE is
applied *before* keys are cached: a key carries its position in its values, so which
column it sits in does not matter, only whether the row's mask lets it be seen. So:

* a slot's prompt is copied in right-aligned, ending just before the shared write
  column, and the row's mask marks exactly its own columns;
* every step writes all slots at the write column (``valid[:, column] = True``);
* when the write column reaches the end, all columns shift left by the oldest active
  row's first column (``compact``), which frees room without touching any row's content;
* a smaller batch (fewer slots still busy) is a row copy into a smaller cache (``copy_rows``).

The tensors the compiled decode step reads (cache, tokens, positions, mask) live here
and keep their addresses for the life of the object: CUDA graphs replay on fixed
addresses, and transformers guards static cache tensors by address, so a cache object
is reused across calls rather than rebuilt (``SlotCachePool``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


class SlotCache:
    """``slots`` rows × ``length`` columns of KV cache, a shared write column, and per-row masks."""

    def __init__(self, config: Any, slots: int, length: int, dtype: torch.dtype, device: torch.device | str):
        from transformers import StaticCache

        text = config.get_text_config(decoder=True)
        heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.slots, self.length = slots, length
        self.cache = StaticCache(config=config, max_cache_len=length)
        self.cache.early_initialization(batch_size=slots, num_heads=heads, head_dim=head_dim, dtype=dtype, device=torch.device(device))
        layer_kinds = sorted({type(layer).__name__ for layer in self.cache.layers})
        if any(getattr(layer, "is_sliding", False) for layer in self.cache.layers):
            raise ValueError(f"static decoding needs full-attention cache layers only, this model has {layer_kinds}")
        if not all(hasattr(layer, "keys") and hasattr(layer, "cumulative_length") for layer in self.cache.layers):
            import transformers

            raise RuntimeError(f"transformers {transformers.__version__}'s {layer_kinds} lack the keys/cumulative_length "
                               "this module drives (written against 5.17 to 5.23)")
        self.valid = torch.zeros(slots, length, dtype=torch.bool, device=device)
        self.tokens = torch.zeros(slots, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(slots, dtype=torch.long, device=device)
        self.column = 0
        self.starts: list[int | None] = [None] * slots  # first column of each busy row's prompt; None: free slot
        self.stepped = False  # set by the decode step on its first call with this cache

    @property
    def device(self) -> torch.device:
        return self.valid.device

    def reset(self) -> None:
        """Empty every slot (the key/value tensors keep their storage)."""
        self.valid.zero_()
        self.starts = [None] * self.slots
        self.set_column(0)

    def set_column(self, column: int) -> None:
        """Where every row's next token is written: the static layers' own write counters follow."""
        if not 0 <= column <= self.length:
            raise ValueError(f"write column {column} outside a cache of {self.length} columns")
        self.column = column
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(column)

    def advance(self) -> None:
        """After a decode step: the step's ``update`` moved the layers' counters; follow them here."""
        self.column += 1

    def open_column(self) -> None:
        """Before a decode step: every row may see the column its new token is written to."""
        if self.column >= self.length:
            raise RuntimeError(f"cache of {self.length} columns is full; compact() before stepping")
        self.valid[:, self.column] = True

    def insert(self, slots: Sequence[int], prefill_cache: Any, prefill_mask: torch.Tensor) -> None:
        """Copy a left-padded prefill (``DynamicCache`` of ``len(slots)`` rows) into ``slots``, ending before the write column."""
        width = prefill_mask.shape[1]
        if width > self.length:
            raise ValueError(f"a prompt of {width} tokens does not fit a cache of {self.length} columns")
        if self.column < width:
            self.shift(width - self.column)
        start, rows = self.column - width, torch.tensor(list(slots), device=self.device)
        for layer, source in zip(self.cache.layers, prefill_cache.layers):
            layer.keys[rows, :, start : self.column] = source.keys.to(layer.keys.dtype)
            layer.values[rows, :, start : self.column] = source.values.to(layer.values.dtype)
        self.valid[rows] = False
        self.valid[rows, start : self.column] = prefill_mask.to(self.device, torch.bool)
        for slot, length in zip(slots, prefill_mask.sum(-1).tolist()):
            self.starts[slot] = self.column - int(length)

    def free(self, slot: int) -> None:
        """A finished row sees nothing old any more (it keeps stepping on its own new column until refilled)."""
        self.valid[slot] = False
        self.starts[slot] = None

    def compact(self) -> None:
        """Shift left by the first column of the oldest busy row: frees columns at the end, loses nothing."""
        busy = [start for start in self.starts if start is not None]
        if not busy or min(busy) == 0:
            raise RuntimeError(f"a row fills all {self.length} cache columns; the cache length must cover prompt + token budget")
        self.shift(-min(busy))

    def shift(self, delta: int) -> None:
        """Move every row's columns by ``delta`` (negative: left); what falls off an end is dropped."""
        if delta == 0:
            return
        if abs(delta) >= self.length or self.column + delta < 0 or self.column + delta > self.length:
            raise ValueError(f"cannot shift a cache of {self.length} columns written up to {self.column} by {delta}")
        tensors = [self.valid] + [t for layer in self.cache.layers for t in (layer.keys, layer.values)]
        for tensor in tensors:
            axis = 1 if tensor is self.valid else 2
            if delta < 0:
                kept = tensor.narrow(axis, -delta, self.length + delta).clone()
                tensor.narrow(axis, 0, self.length + delta).copy_(kept)
                tensor.narrow(axis, self.length + delta, -delta).zero_()
            else:
                kept = tensor.narrow(axis, 0, self.length - delta).clone()
                tensor.narrow(axis, delta, self.length - delta).copy_(kept)
                tensor.narrow(axis, 0, delta).zero_()
        self.starts = [None if start is None or start + delta < 0 else start + delta for start in self.starts]
        self.set_column(self.column + delta)

    def copy_rows(self, target: SlotCache, rows: Sequence[int]) -> None:
        """Copy ``rows`` of this cache into slots 0..len(rows)-1 of ``target`` (same length); other target slots are emptied."""
        if target.length != self.length or len(rows) > target.slots:
            raise ValueError(f"cannot copy {len(rows)} rows of a {self.slots}x{self.length} cache into {target.slots}x{target.length}")
        index = torch.tensor(list(rows), device=self.device)
        count = len(rows)
        target.reset()
        for mine, theirs in zip(self.cache.layers, target.cache.layers):
            theirs.keys[:count] = mine.keys.index_select(0, index)
            theirs.values[:count] = mine.values.index_select(0, index)
        target.valid[:count] = self.valid.index_select(0, index)
        target.tokens[:count] = self.tokens.index_select(0, index)
        target.positions[:count] = self.positions.index_select(0, index)
        target.starts[:count] = [self.starts[row] for row in rows]
        target.set_column(self.column)


class SlotCachePool:
    """One ``SlotCache`` per (slots, length) shape, kept and reused: a new cache object would recompile the decode step."""

    def __init__(self, config: Any, dtype: torch.dtype, device: torch.device | str):
        self.config, self.dtype, self.device = config, dtype, device
        self.caches: dict[tuple[int, int], SlotCache] = {}

    def get(self, slots: int, length: int) -> SlotCache:
        key = (slots, length)
        if key not in self.caches:
            self.caches[key] = SlotCache(self.config, slots, length, self.dtype, self.device)
        cache = self.caches[key]
        cache.reset()
        return cache

    def lengths(self) -> list[int]:
        return sorted({length for _, length in self.caches})

    def clear(self) -> None:
        self.caches.clear()
