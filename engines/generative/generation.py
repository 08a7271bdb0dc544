"""Batched generation for image+prompt requests, shared by the DOTS and Gemma engines.

Why this shape:

* **One ``generate`` call per batch.** Decoding is memory-bound; a batch of N pages
  costs about what one page costs per step, so throughput grows with N
  (``bench/generation_batching.py``).
* **Sorted by size, left padding.** Requests are ordered by image area so a batch holds
  pages of similar token counts; the tokenizer pads on the left so every sequence's
  newest token sits in the last column, as ``generate`` requires for decoder-only models.
* **Out of memory halves the batch.** A CUDA OOM frees the cache and retries the two
  halves, down to one page; only a single page that does not fit fails (and the actor's
  per-page isolation records it). No page is lost.
* **Memory is handed back** after every batch (``torch.cuda.empty_cache``), so a pool
  of actors sharing a GPU does not hold the peak of its largest batch forever.

A request that stops because it hit ``max_new_tokens`` is marked ``truncated``; the
engines use that to retry with a larger budget.

This is the ``decode: dynamic`` path (and the baseline of ``bench/gpu_engine.py``); the
``static`` path, compiled static-cache decoding with slot refill, is
``engines.decoding.static_decoding``. Both size their batch from free GPU memory
(``engines.generative.batch_sizing``) when a memory fraction is given.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from PIL import Image


@dataclass
class Request:
    image: Image.Image
    prompt: str  # the user text; the chat template wraps it
    #: Benchmarks only: end-of-sequence is forced after this many new tokens (random weights never emit it).
    stop_after: int | None = None


@dataclass
class Generated:
    text: str
    truncated: bool  # stopped by the token budget, not by an end-of-sequence token
    new_tokens: int


class TextGenerator(Protocol):
    """A back-end that answers image+prompt requests (transformers here, vLLM in ``engines.generative.vllm_backend``)."""

    def generate(self, requests: Sequence[Request], max_new_tokens: int) -> list[Generated]: ...

    def close(self) -> None: ...


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    return isinstance(error, oom_types) or "out of memory" in str(error).lower() and isinstance(error, RuntimeError)


def free_accelerator_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TransformersGenerator:
    """Batched ``generate`` on a transformers image-text-to-text model and its processor.

    ``memory_fraction``: on CUDA, the batch is also capped at what fits in that share of
    free memory (KV cache of prompt + budget per page, twice for the dynamic cache's
    concatenations); None keeps ``batch_size`` as given.
    """

    def __init__(self, model: Any, processor: Any, batch_size: int, processor_kwargs: dict[str, Any] | None = None,
                 memory_fraction: float | None = None):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.processor_kwargs = processor_kwargs or {}
        self.memory_fraction = memory_fraction
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"
        self.end_ids = end_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.end_ids, default=0)
        self.oom_splits = 0  # how often a batch was halved; read by benchmarks and tests

    def generate(self, requests: Sequence[Request], max_new_tokens: int) -> list[Generated]:
        order = sorted(range(len(requests)), key=lambda i: requests[i].image.width * requests[i].image.height, reverse=True)
        results: dict[int, Generated] = {}
        batch_size = self._batch_size(requests[order[0]], max_new_tokens) if order else self.batch_size
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for index, result in zip(chunk, self._generate_splitting([requests[i] for i in chunk], max_new_tokens)):
                results[index] = result
        return [results[i] for i in range(len(requests))]

    def _generate_splitting(self, batch: list[Request], max_new_tokens: int) -> list[Generated]:
        try:
            return self._generate_once(batch, max_new_tokens)
        except Exception as error:
            if not is_out_of_memory(error) or len(batch) == 1:
                raise
        free_accelerator_memory()
        self.oom_splits += 1
        half = len(batch) // 2
        return self._generate_splitting(batch[:half], max_new_tokens) + self._generate_splitting(batch[half:], max_new_tokens)

    def _batch_size(self, largest: Request, max_new_tokens: int) -> int:
        """``batch_size``, lowered on CUDA to what fits in ``memory_fraction`` of free memory."""
        from engines.generative.batch_sizing import fit_batch_size, free_device_memory, kv_bytes_per_token

        free = free_device_memory(self.model.device) if self.memory_fraction else None
        if free is None:
            return self.batch_size
        prompt = int(encode_requests(self.processor, [largest], self.processor_kwargs)["input_ids"].shape[1])
        per_token = kv_bytes_per_token(self.model.config, self.model.dtype.itemsize)
        return fit_batch_size(free, self.memory_fraction or 1.0, 2 * per_token * (prompt + max_new_tokens), self.batch_size)

    def _generate_once(self, batch: list[Request], max_new_tokens: int) -> list[Generated]:
        import torch

        inputs = self.encode(batch)
        extra = {}
        if any(request.stop_after is not None for request in batch):
            extra["logits_processor"] = forced_stop_processors(batch, inputs["input_ids"].shape[1], min(self.end_ids))
        try:
            with torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_id, **extra)
            new_tokens = output[:, inputs["input_ids"].shape[1] :].cpu()
        finally:
            del inputs
            free_accelerator_memory()
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        return [to_generated(tokenizer, row, self.end_ids, max_new_tokens) for row in new_tokens.tolist()]

    def encode(self, batch: Sequence[Request]) -> Any:
        """Chat template per request, then one processor call for the whole batch (left padded)."""
        return encode_requests(self.processor, batch, self.processor_kwargs).to(self.model.device)

    def close(self) -> None:
        self.model = None
        free_accelerator_memory()


def encode_requests(processor: Any, batch: Sequence[Request], processor_kwargs: dict[str, Any] | None = None) -> Any:
    """The processor's inputs for ``batch`` (CPU tensors, left padded): chat template per request, one processor call."""
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request.prompt}]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for request in batch
    ]
    images = [[request.image] for request in batch]
    return processor(text=texts, images=images, padding=True, return_tensors="pt", **(processor_kwargs or {}))


def to_generated(tokenizer: Any, row: Sequence[int], end_ids: set[int], max_new_tokens: int) -> Generated:
    """Text up to the first end token; ``truncated`` when the budget ran out before one came."""
    ended = next((i for i, token in enumerate(row) if token in end_ids), None)
    kept = list(row) if ended is None else list(row[:ended])
    text = tokenizer.decode(kept, skip_special_tokens=True)
    return Generated(text=text, truncated=ended is None and len(row) >= max_new_tokens, new_tokens=len(kept))


def forced_stop_processors(batch: Sequence[Request], prompt_length: int, end_id: int) -> Any:
    """A ``generate`` logits processor ending each row after its ``stop_after`` tokens (benchmarks' page lengths)."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    stops = torch.tensor([-1 if r.stop_after is None else r.stop_after for r in batch])

    class ForcedStop(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            rows = (stops.to(scores.device) == input_ids.shape[1] - prompt_length).nonzero().flatten()
            if rows.numel():
                scores[rows] = torch.finfo(scores.dtype).min
                scores[rows, end_id] = 0
            return scores

    return LogitsProcessorList([ForcedStop()])


def end_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids that end a page: the generation config's (several for chat models), else the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = ids if isinstance(ids, (list, tuple)) else [ids]
    return {int(i) for i in ids if i is not None}
