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


@dataclass
class Generated:
    text: str
    truncated: bool  # stopped by the token budget, not by an end-of-sequence token
    new_tokens: int


class TextGenerator(Protocol):
    """A back-end that answers image+prompt requests (transformers here, vLLM in ``engines.vllm_backend``)."""

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
    """Batched ``generate`` on a transformers image-text-to-text model and its processor."""

    def __init__(self, model: Any, processor: Any, batch_size: int, processor_kwargs: dict[str, Any] | None = None):
        self.model = model
        self.processor = processor
        self.batch_size = batch_size
        self.processor_kwargs = processor_kwargs or {}
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"
        self.end_ids = _end_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.end_ids, default=0)
        self.oom_splits = 0  # how often a batch was halved; read by benchmarks and tests

    def generate(self, requests: Sequence[Request], max_new_tokens: int) -> list[Generated]:
        order = sorted(range(len(requests)), key=lambda i: requests[i].image.width * requests[i].image.height, reverse=True)
        results: dict[int, Generated] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
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

    def _generate_once(self, batch: list[Request], max_new_tokens: int) -> list[Generated]:
        import torch

        inputs = self.encode(batch)
        try:
            with torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_id)
            new_tokens = output[:, inputs["input_ids"].shape[1] :].cpu()
        finally:
            del inputs
            free_accelerator_memory()
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        results = []
        for row in new_tokens.tolist():
            ended = next((i for i, token in enumerate(row) if token in self.end_ids), None)
            kept = row if ended is None else row[:ended]
            text = tokenizer.decode(kept, skip_special_tokens=True)
            results.append(Generated(text=text, truncated=ended is None and len(row) >= max_new_tokens, new_tokens=len(kept)))
        return results

    def encode(self, batch: Sequence[Request]) -> Any:
        """Chat template per request, then one processor call for the whole batch (left padded)."""
        texts = [
            self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request.prompt}]}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for request in batch
        ]
        images = [[request.image] for request in batch]
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt", **self.processor_kwargs)
        return inputs.to(self.model.device)

    def close(self) -> None:
        self.model = None
        free_accelerator_memory()


def _end_token_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = ids if isinstance(ids, (list, tuple)) else [ids]
    return {int(i) for i in ids if i is not None}
