"""``decode: static``: compiled static-cache decoding with slot refill, behind the ``TextGenerator`` interface.

What it puts together, and why (figures: DOTS-shaped model on one H100, see docs/gpu-engines.md):

* **Static cache + compiled step** (``engines.decoding.kv_slots``, ``engines.decoding.decode_step``): plain
  ``generate`` spends ~105 ms per decode step on host overhead at any batch size;
  a CUDA-graph step over a static cache does the same work in a fraction of that.
* **Buckets** (``engines.generative.batch_sizing``): slot counts are ``slots``, ``slots/4``, ... and
  cache lengths a quarter-octave grid, so compiled graphs are reused; ``warm_up`` compiles
  them at actor start and logs the time once.
* **Memory-aware slots**: the slot count is the largest that fits ``memory_fraction`` of
  free GPU memory for the cache length at hand, capped at ``batch_size``. An
  out-of-memory error still halves it and reruns only the pages not finished yet.
* **Slot refill** (``engines.decoding.slot_refill``): a page that ends frees its slot for a waiting
  one; when none waits, the batch shrinks to a smaller bucket.
* **Encoding off the critical path** (``engines.decoding.page_encoding``): the processor runs on a
  background thread while the GPU decodes; refills prefill several pages at once, so the
  vision tower runs batched.
* **Same greedy tokens as ``generate``**: the prompt pass is the model's own ``forward``
  with the positions ``generate`` would use (``engines.decoding.rope_positions``), and decoding is
  argmax over the same logits; checked token for token in ``tests/test_static_decoding.py``.

Limits: models whose cache has sliding-window layers (Gemma 3) and checkpoints whose
generation config changes greedy tokens (repetition penalty and the like) are refused
with the reason; ``decode: auto`` then stays on ``generate``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from engines.decoding.decode_step import DecodeStep
from engines.decoding.kv_slots import SlotCachePool
from engines.decoding.page_encoding import EncodeAhead, EncodedPage, collate
from engines.decoding.rope_positions import position_scheme
from engines.decoding.slot_refill import Decoded, DecodeStats, Prefilled, SlotRefillDecoder, StopRule
from engines.generative.batch_sizing import cache_length, fit_batch_size, free_device_memory, kv_bytes_per_token, slot_buckets
from engines.generative.generation import Generated, Request, encode_requests, end_token_ids, free_accelerator_memory, is_out_of_memory, to_generated
from vlm.forward_args import cache_keyword, logits_to_keep

logger = logging.getLogger(__name__)

#: Generation-config settings that change greedy tokens and are not applied by the static loop, with their neutral values.
GREEDY_CHANGING_SETTINGS = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "min_new_tokens": None,
    "min_length": 0,
}


def static_decoding_blockers(model: Any) -> list[str]:
    """Why this model cannot use static decoding (empty: it can). Pure checks, no GPU needed."""
    reasons = []
    try:
        position_scheme(model)
    except ValueError as error:
        reasons.append(str(error))
    text = model.config.get_text_config(decoder=True)
    layer_types = set(getattr(text, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        reasons.append(f"its cache has {sorted(layer_types)} layers; slot refill needs full attention only")
    config = getattr(model, "generation_config", None)
    for name, neutral in GREEDY_CHANGING_SETTINGS.items():
        value = getattr(config, name, neutral)
        if value not in (neutral, None):
            reasons.append(f"its generation config sets {name}={value!r}, which the static loop does not apply")
    return reasons


def resolve_decode(requested: str, model: Any) -> str:
    """``static`` or ``dynamic`` for this model: ``auto`` means static on CUDA unless the model rules it out."""
    if requested == "dynamic":
        return "dynamic"
    blockers = static_decoding_blockers(model)
    if requested == "static":
        if blockers:
            name = getattr(model.config, "_name_or_path", "") or model.config.model_type
            raise ValueError(f"decode: static is not available for model {name}: " + "; ".join(blockers))
        return "static"
    if requested != "auto":
        raise ValueError(f"decode must be auto, dynamic or static, got {requested!r}")
    if model.device.type != "cuda":
        return "dynamic"
    if blockers:
        logger.info("decode: auto stays on generate for this model: %s", "; ".join(blockers))
        return "dynamic"
    return "static"


def resolve_compile(requested: str, model: Any) -> bool:
    """Compile the decode step? ``auto``: on CUDA, where CUDA graphs pay off; CPU compiles cost more than they save."""
    if requested not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off, got {requested!r}")
    return requested == "on" or (requested == "auto" and model.device.type == "cuda")


class StaticDecodingGenerator:
    """``TextGenerator`` decoding pages in the slots of a static cache, refilled as pages end."""

    def __init__(self, model: Any, processor: Any, batch_size: int, memory_fraction: float = 0.85, compile: bool = False,
                 processor_kwargs: dict[str, Any] | None = None, prefill_batch: int = 16):
        resolve_decode("static", model)  # raises, naming the model and why, when it cannot be driven
        self.model, self.processor = model, processor
        self.batch_size, self.memory_fraction = batch_size, memory_fraction
        self.processor_kwargs = processor_kwargs or {}
        self.prefill_batch = prefill_batch
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        self.end_ids = end_token_ids(model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.end_ids, default=0)
        self.scheme = position_scheme(model)
        self.step = DecodeStep(model, self.scheme, compile=compile)
        self.compiled = compile  # then warm_up at actor start is worth its minute
        self.pool = SlotCachePool(model.config, model.dtype, model.device)
        self.slot_cap: dict[int, int] = {}  # slots per cache length, set once from free memory, halved on OOM
        self.oom_splits = 0
        self.stats = DecodeStats()  # over the generator's life; the benchmark reads it
        self._gpu_thread: ThreadPoolExecutor | None = None

    # -- the TextGenerator interface ---------------------------------------------------------
    def generate(self, requests: Sequence[Request], max_new_tokens: int) -> list[Generated]:
        return self._on_gpu_thread(self._generate, requests, max_new_tokens)

    def _generate(self, requests: Sequence[Request], max_new_tokens: int) -> list[Generated]:
        import torch

        order = sorted(range(len(requests)), key=lambda i: requests[i].image.width * requests[i].image.height, reverse=True)
        rule = StopRule(self.end_ids, max_new_tokens, [request.stop_after for request in requests])
        results: dict[int, Decoded] = {}
        pending = order
        with torch.no_grad():  # not inference_mode: pooled caches outlive the call and are updated in later ones
            while pending:
                pending = self._run(requests, pending, rule, results)
        return [self._generated(results[i], max_new_tokens) for i in range(len(requests))]

    def warm_up(self, requests: Sequence[Request], max_new_tokens: int) -> float:
        """Build (and on CUDA compile and capture) the decode step for every slot bucket at these pages' cache length.

        Returns the seconds it took, logged once: the actor calls this at start so that no
        page waits for a compile.
        """
        return self._on_gpu_thread(self._warm_up, requests, max_new_tokens)

    def _warm_up(self, requests: Sequence[Request], max_new_tokens: int) -> float:
        import torch

        if not requests:
            return 0.0
        started = time.perf_counter()
        with torch.no_grad():
            prompt = max(self._encode(requests, i).length for i in range(len(requests)))
            length = cache_length(prompt + max_new_tokens)
            for slots in slot_buckets(self._slots(length)):
                cache = self.pool.get(slots, length)
                cache.set_column(prompt)
                cache.valid[:, :prompt] = True
                for _ in range(3):  # CUDA graph trees: warm-up run, capture, replay
                    cache.open_column()
                    self.step(cache)
                    cache.advance()
                cache.reset()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        spent = time.perf_counter() - started
        logger.info("static decoding warmed up %s (slots x cache columns) in %.1f s", sorted(self.step.shapes_seen), spent)
        return spent

    def _on_gpu_thread(self, work: Any, *args: Any) -> Any:
        """Compiled: run on one long-lived thread. CUDA graph trees are per thread, and the actor may call from a
        fresh thread each time (per-page timeouts): graphs captured at warm-up are then replayed, not captured again."""
        if not self.compiled:
            return work(*args)
        if self._gpu_thread is None:
            self._gpu_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="static-decoding")
        return self._gpu_thread.submit(work, *args).result()

    def close(self) -> None:
        if self._gpu_thread is not None:
            self._gpu_thread.shutdown(wait=False)
        self.pool.clear()
        self.model = None
        free_accelerator_memory()

    # -- one pass over the pending pages ------------------------------------------------------
    def _run(self, requests: Sequence[Request], pending: list[int], rule: StopRule, results: dict[int, Decoded]) -> list[int]:
        """Decode ``pending`` at one cache length; returns what is left (pages too long for it, or an OOM's leftovers)."""
        # Two prompt passes' worth ahead: enough to keep the GPU fed, few enough that pixels (~24 MB per 1 Mpx page) stay small.
        ahead = EncodeAhead(lambda i: self._encode(requests, i), pending, lookahead=2 * self.prefill_batch)
        try:
            length = cache_length(ahead.get(pending[0]).length + rule.max_new_tokens)
            slots = self._slots(length)
            decoder = SlotRefillDecoder(
                prefill=lambda group: self._prefill([ahead.take(i) for i in group]),
                step=self.step,
                prompt_length=lambda i: ahead.get(i).length,
                pool=self.pool,
                slots=slots,
                length=length,
                rule=rule,
                prefill_batch=self.prefill_batch,
            )
            try:
                deferred = decoder.run(pending, results)
            except Exception as error:
                if not is_out_of_memory(error) or slots == 1:
                    raise
                self.pool.clear()
                free_accelerator_memory()
                self.slot_cap[length] = slots // 2
                self.prefill_batch = max(1, min(self.prefill_batch, slots // 2))  # the prompt pass may have been what failed
                self.oom_splits += 1
                logger.warning("out of memory with %d slots x %d columns; retrying unfinished pages with %d", slots, length, slots // 2)
                return [i for i in pending if i not in results]
            finally:
                self.stats.add(decoder.stats)
            # Prompts longer than the first page's did not fit: one more pass, longest first, sizes the cache from them.
            return sorted(deferred, key=lambda i: -ahead.get(i).length)
        finally:
            ahead.close()

    def _slots(self, length: int) -> int:
        """Slots for a cache of ``length`` columns: ``batch_size``, lowered to fit ``memory_fraction`` of free GPU memory.

        Decided once per cache length, from the memory free at that moment (caches of other
        lengths stay allocated: dropping them would cost a recompile when they come back).
        """
        if length not in self.slot_cap:
            free = free_device_memory(self.model.device)
            slots = self.batch_size
            if free is not None:
                per_token = kv_bytes_per_token(self.model.config, self.model.dtype.itemsize)
                per_slot = per_token * length * 4 // 3  # the shrink buckets (1/4, 1/16, ...) hold caches of their own
                slots = fit_batch_size(free, self.memory_fraction, per_slot, self.batch_size)
                logger.info("static decoding: %d slots x %d columns fit in %.0f%% of %.1f GiB free",
                            slots, length, 100 * self.memory_fraction, free / 2**30)
            self.slot_cap[length] = slots
        return self.slot_cap[length]

    def _encode(self, requests: Sequence[Request], index: int) -> EncodedPage:
        inputs = encode_requests(self.processor, [requests[index]], self.processor_kwargs)
        return EncodedPage({key: value for key, value in inputs.items() if hasattr(value, "shape")})

    def _prefill(self, pages: list[EncodedPage]) -> Prefilled:
        """The prompt pass of a group of pages: the model's own forward (vision tower included), batched."""
        import torch
        from transformers import DynamicCache

        device = self.model.device
        inputs = {key: value.to(device, non_blocking=True) for key, value in collate(pages, self.pad_id).items()}
        positions, next_positions = self.scheme.prefill(inputs)
        cache = DynamicCache(config=self.model.config)
        output = self.model(**inputs, position_ids=positions, use_cache=True, **{cache_keyword(self.model): cache}, **logits_to_keep(self.model))
        first = output.logits[:, -1].argmax(dim=-1).tolist()
        del output
        return Prefilled(cache=cache, mask=inputs["attention_mask"], first_tokens=first, next_positions=next_positions.to(torch.long))

    def _generated(self, decoded: Decoded, max_new_tokens: int) -> Generated:
        row = decoded.tokens + ([min(self.end_ids)] if decoded.ended else [])
        return to_generated(self.tokenizer, row, self.end_ids, max_new_tokens)
