"""Options shared by the engines that run a vision-language model (DOTS, Gemma)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compression.settings import PoolingConfig
from vlm.loading import ModelSource

DecodeMode = Literal["auto", "dynamic", "static"]
CompileMode = Literal["auto", "on", "off"]


class GenerativeEngineOptions(ModelSource):
    """Where the model comes from (``ModelSource``) plus how it generates."""

    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="transformers: batched generate; vllm: continuous batching (GPU, pip install 'docvlm[vllm]')"
    )
    batch_size: int = Field(
        8, ge=1, description="images decoded at once (static decoding: slots); on CUDA lowered to fit memory_fraction, halved on out-of-memory"
    )
    decode: DecodeMode = Field(
        "auto",
        description="dynamic: plain generate; static: compiled static-cache decoding, finished pages' slots refilled "
        "(Qwen2-VL-family and dots.ocr models); auto: static on CUDA where the model allows it",
    )
    compile: CompileMode = Field(
        "auto", description="static decoding: torch.compile the decode step (CUDA graphs on CUDA); auto: on CUDA only"
    )
    memory_fraction: float = Field(
        0.85, gt=0, le=1, description="share of free GPU memory the KV cache may take when the batch size is picked (CUDA)"
    )
    warmup_page_pixels: int = Field(
        2_000_000,
        ge=0,
        description="static decoding on CUDA: compile the decode shapes at actor start for a page of this many pixels (0: on first use)",
    )
    min_pixels: int = Field(3136, ge=784, description="images are resized to at least this many pixels")
    max_pixels: int = Field(11_289_600, ge=784, description="images are resized to at most this many pixels")
    max_new_tokens: int = Field(4096, ge=1, description="token budget of the first attempt")
    extra_max_new_tokens: int = Field(
        4096, ge=0, description="added to the budget when an output was cut off; only those pages are retried (0: no retry)"
    )
    vllm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM back-end: share of GPU memory it may take")
    pooling: PoolingConfig = Field(
        default_factory=PoolingConfig,
        description="image-token pooling after the vision tower (Qwen2.5-VL-architecture models, transformers back-end), "
        "e.g. avg:2 or {method: norm_drop, keep_ratio: 0.5}; see docs/compression.md",
    )

    @model_validator(mode="after")
    def _pixels(self) -> GenerativeEngineOptions:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}")
        if self.backend == "vllm" and not self.pooling.is_identity:
            raise ValueError(f"pooling {self.pooling.label} needs backend: transformers (vLLM runs its own model code)")
        if self.backend == "vllm" and self.decode == "static":
            raise ValueError("decode: static needs backend: transformers (vLLM schedules its own decoding)")
        return self
