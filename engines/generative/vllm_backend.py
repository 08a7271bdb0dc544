"""vLLM back-end (optional, GPU only): the same engines on ``vllm.LLM`` for continuous batching.

``backend: vllm`` in an engine's options swaps the transformers ``generate`` loop for one
``vllm.LLM`` inside the actor. vLLM schedules all requests of a batch together and
refills finished slots as it goes, so long and short pages no longer wait for each other.

Prompts are built here from the checkpoint's own chat template (through its processor,
which needs no GPU), so this module's prompt building is tested without vLLM installed;
only ``VLLMGenerator`` imports vLLM, and it says how to install it when it is missing.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Sequence

from engines.generative.generation import Generated, Request
from engines.generative.options import GenerativeEngineOptions
from vlm.families import Role
from vlm.loading import ModelLoadError, check_model_location, load_config, load_processor


def chat_prompt(processor: Any, prompt: str) -> str:
    """The text vLLM receives: the model's chat template around one image and the instruction."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def vllm_requests(processor: Any, requests: Sequence[Request]) -> list[dict[str, Any]]:
    """vLLM multimodal prompts: ``{"prompt": text, "multi_modal_data": {"image": PIL image}}``."""
    return [{"prompt": chat_prompt(processor, r.prompt), "multi_modal_data": {"image": r.image.convert("RGB")}} for r in requests]


def vllm_engine_args(options: GenerativeEngineOptions) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` from the engine options (pure: tested without vLLM)."""
    args: dict[str, Any] = {
        "model": check_model_location(options.model),
        "revision": options.revision,
        "dtype": options.dtype,
        "trust_remote_code": options.trust_remote_code,
        "gpu_memory_utilization": options.vllm_gpu_memory_utilization,
        "max_num_seqs": options.batch_size,
        "limit_mm_per_prompt": {"image": 1},
        "mm_processor_kwargs": {"min_pixels": options.min_pixels, "max_pixels": options.max_pixels},
    }
    if options.adapter:
        args.update(enable_lora=True, max_lora_rank=256)
    return args


class VLLMGenerator:
    """``TextGenerator`` on vLLM; greedy decoding like the transformers path."""

    def __init__(self, options: GenerativeEngineOptions, role: Role | None = None):
        if importlib.util.find_spec("vllm") is None:
            raise ModelLoadError("backend vllm needs the vllm package on a GPU machine: pip install 'docvlm[vllm]'")
        import torch
        from vllm import LLM

        if not torch.cuda.is_available():
            raise ModelLoadError("backend vllm needs a CUDA GPU; use backend: transformers on CPU machines")
        config, family = load_config(options, role)  # same kind and path checks as the transformers path
        from compression.persistence import is_compressed_checkpoint

        if is_compressed_checkpoint(check_model_location(options.model)):
            raise ModelLoadError(f"model {options.model} is a low-rank compressed checkpoint, which vLLM cannot load; use backend: transformers")
        self.options = options
        self.processor = load_processor(options, config, family)  # dots.ocr's own, with its <|imgpad|> placeholder
        self.llm = LLM(**vllm_engine_args(options))
        self.lora = None
        if options.adapter:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, check_model_location(options.adapter, what="adapter"))

    def generate(self, requests: Sequence[Request], max_new_tokens: int) -> list[Generated]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        outputs = self.llm.generate(vllm_requests(self.processor, requests), params, lora_request=self.lora, use_tqdm=False)
        results = []
        for output in outputs:
            best = output.outputs[0]
            results.append(Generated(text=best.text, truncated=best.finish_reason == "length", new_tokens=len(best.token_ids)))
        return results

    def close(self) -> None:
        self.llm = None
        from engines.generative.generation import free_accelerator_memory

        free_accelerator_memory()
