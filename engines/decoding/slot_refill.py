"""Continuous batching over a static KV cache: a finished page frees its slot for a waiting one.

Plain batched ``generate`` runs every batch until its longest page ends, so short pages
hold their rows idle; on a GPU, where a decode step costs about the same for 1 or 64
rows, that idle time is the throughput lost. Here each slot of a ``SlotCache`` is a
page: when it reaches end-of-sequence (or its token budget) the slot is freed, and
waiting pages are prefilled into free slots, several at a time so the vision tower and
the prompt pass run batched. When no page waits, the batch moves to a smaller slot
bucket once few rows are busy, and the loop stops when every row is done.

Why not transformers' own continuous batching (``transformers.generation.continuous_batching``,
``model.generate_batch`` / ``ContinuousBatchingManager``): in transformers 5.17 to 5.23 it
schedules lists of token ids only. Requests carry no ``pixel_values`` or
``image_grid_thw``, so the vision tower never runs, and it builds 1-D positions
(``range(past_length, ...)``) for its packed batches, while Qwen2.5-VL needs M-RoPE's
3-D positions for the image tokens and the ``rope_deltas`` offset after them. Its
paged cache and flash/sdpa-paged attention kernels would be the right base for a
text-only model; for image pages this module does the scheduling over transformers'
``StaticCache`` and the model's own ``forward``, and nothing else.

The model work is passed in (``prefill``, ``step``) so this loop is plain Python over
slots, tested token for token against ``generate`` on the tiny checkpoints.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from engines.decoding.kv_slots import SlotCache, SlotCachePool
from engines.generative.batch_sizing import round_up, slot_buckets


@dataclass
class Prefilled:
    """A group of pages after their prompt pass: KV cache rows, padding mask, first tokens, next positions."""

    cache: Any  # transformers DynamicCache, one row per page
    mask: torch.Tensor  # (pages, prompt columns) attention mask of the left-padded prompts
    first_tokens: list[int]
    next_positions: torch.Tensor  # (pages,) position of each page's next token


@dataclass
class Decoded:
    tokens: list[int]  # generated tokens, end-of-sequence excluded
    ended: bool  # stopped by an end-of-sequence token (natural or forced), not by the budget


@dataclass
class StopRule:
    """When a page is done: an end token, its budget, or a forced end after ``stop_after[i]`` tokens (benchmarks)."""

    end_ids: set[int]
    max_new_tokens: int
    stop_after: Sequence[int | None] = ()

    def forced_end(self, request: int, produced: int) -> bool:
        limit = self.stop_after[request] if request < len(self.stop_after) else None
        return limit is not None and produced >= limit


@dataclass
class DecodeStats:
    """Where the time went; read by the benchmark."""

    steps: int = 0
    slot_steps: int = 0  # steps × slots of the batch they ran at
    busy_slot_steps: int = 0  # of those, slots holding an unfinished page
    prefills: int = 0
    prefilled_pages: int = 0
    compactions: int = 0
    shrinks: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    batch_shapes: set[tuple[int, int]] = field(default_factory=set)

    def add(self, other: DecodeStats) -> None:
        for name in ("steps", "slot_steps", "busy_slot_steps", "prefills", "prefilled_pages", "compactions", "shrinks", "prefill_s", "decode_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.batch_shapes |= other.batch_shapes


PrefillFn = Callable[[list[int]], Prefilled]
StepFn = Callable[[SlotCache], torch.Tensor]
LengthFn = Callable[[int], int]


class SlotRefillDecoder:
    """Greedy decoding of many pages through ``slots`` rows of a static cache of ``length`` columns."""

    def __init__(self, prefill: PrefillFn, step: StepFn, prompt_length: LengthFn, pool: SlotCachePool, slots: int, length: int,
                 rule: StopRule, prefill_batch: int = 16, refill_min: int | None = None):
        if rule.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {rule.max_new_tokens}")
        if rule.max_new_tokens >= length:
            raise ValueError(f"a cache of {length} columns cannot hold a budget of {rule.max_new_tokens} new tokens")
        self.prefill, self.step, self.prompt_length, self.pool = prefill, step, prompt_length, pool
        self.slots, self.length, self.rule = slots, length, rule
        self.prefill_batch = max(1, prefill_batch)
        self.refill_min = refill_min or max(1, slots // 8)  # free slots gathered before a refill: batched prompt passes
        self.buckets = slot_buckets(slots)
        self.stats = DecodeStats()

    def run(self, order: Sequence[int], results: dict[int, Decoded]) -> list[int]:
        """Decode the requests in ``order`` (largest pages first); finished ones land in ``results`` as they end.

        ``results`` is filled in place so that a caller retrying after an out-of-memory
        error keeps the pages that finished before it. Returns the requests whose prompt
        plus budget does not fit this cache length: the caller runs them again with a
        longer cache.
        """
        queue = deque(order)
        deferred: list[int] = []
        if not queue:
            return deferred
        cache = self.pool.get(round_up(min(len(queue), self.slots), self.buckets), self.length)
        owner: list[int | None] = [None] * cache.slots  # request index per slot
        produced: dict[int, list[int]] = {}
        while queue or any(o is not None for o in owner):
            free = [slot for slot, request in enumerate(owner) if request is None]
            busy = len(owner) - len(free)
            if queue and free and (busy == 0 or len(free) >= min(self.refill_min, len(queue))):
                self._refill(cache, queue, free, owner, produced, results, deferred)
                continue
            if not queue and busy and round_up(busy, self.buckets) < cache.slots:  # the tail: few pages left
                cache, owner = self._shrink(cache, owner, round_up(busy, self.buckets))
            if busy:
                self._decode_step(cache, owner, produced, results)
        return deferred

    def _refill(self, cache: SlotCache, queue: deque, free: list[int], owner: list[int | None],
                produced: dict[int, list[int]], results: dict[int, Decoded], deferred: list[int]) -> None:
        group: list[int] = []
        while queue and len(group) < min(len(free), self.prefill_batch):
            request = queue.popleft()
            if self.prompt_length(request) + self.rule.max_new_tokens <= self.length:
                group.append(request)
            else:
                deferred.append(request)
        if not group:
            return
        slots = free[: len(group)]
        started = time.perf_counter()
        prefilled = self.prefill(group)
        cache.insert(slots, prefilled.cache, prefilled.mask)
        rows = torch.tensor(slots, device=cache.device)
        cache.tokens[rows, 0] = torch.tensor(prefilled.first_tokens, device=cache.device)
        cache.positions[rows] = prefilled.next_positions.to(cache.device)
        del prefilled.cache
        self.stats.prefills += 1
        self.stats.prefilled_pages += len(group)
        self.stats.prefill_s += time.perf_counter() - started
        for slot, request, token in zip(slots, group, prefilled.first_tokens):
            owner[slot] = request
            produced[request] = []
            self._take(cache, slot, request, token, owner, produced, results)

    def _decode_step(self, cache: SlotCache, owner: list[int | None], produced: dict[int, list[int]], results: dict[int, Decoded]) -> None:
        started = time.perf_counter()
        if cache.column >= cache.length:
            cache.compact()
            self.stats.compactions += 1
        cache.open_column()
        next_tokens = self.step(cache)
        cache.advance()
        cache.tokens.copy_(next_tokens.view(-1, 1))
        cache.positions.add_(1)
        values = next_tokens.tolist()
        self.stats.steps += 1
        self.stats.slot_steps += cache.slots
        self.stats.batch_shapes.add((cache.slots, cache.length))
        for slot, request in enumerate(owner):
            if request is not None:
                self.stats.busy_slot_steps += 1
                self._take(cache, slot, request, values[slot], owner, produced, results)
        self.stats.decode_s += time.perf_counter() - started

    def _take(self, cache: SlotCache, slot: int, request: int, token: int, owner: list[int | None],
              produced: dict[int, list[int]], results: dict[int, Decoded]) -> None:
        """Record one generated token; a page that ended frees its slot."""
        tokens = produced[request]
        ended = token in self.rule.end_ids or self.rule.forced_end(request, len(tokens))
        if not ended:
            tokens.append(token)
        if ended or len(tokens) >= self.rule.max_new_tokens:
            results[request] = Decoded(tokens=produced.pop(request), ended=ended)
            owner[slot] = None
            cache.free(slot)

    def _shrink(self, cache: SlotCache, owner: list[int | None], slots: int) -> tuple[SlotCache, list[int | None]]:
        """Move the busy rows into a cache of ``slots`` rows: finished rows stop costing a decode step."""
        rows = [slot for slot, request in enumerate(owner) if request is not None]
        smaller = self.pool.get(slots, cache.length)
        cache.copy_rows(smaller, rows)
        self.stats.shrinks += 1
        return smaller, [owner[row] for row in rows] + [None] * (slots - len(rows))
