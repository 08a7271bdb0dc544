"""Options shared by the engines that run a vision-language model (DOTS, Gemma)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vlm.loading import ModelSource


class GenerativeEngineOptions(ModelSource):
    """Where the model comes from (``ModelSource``) plus how it generates."""

    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="transformers: batched generate; vllm: continuous batching (GPU, pip install 'docvlm[vllm]')"
    )
    batch_size: int = Field(8, ge=1, description="images per generate call (halved automatically on CUDA out-of-memory)")
    min_pixels: int = Field(3136, ge=784, description="images are resized to at least this many pixels")
    max_pixels: int = Field(11_289_600, ge=784, description="images are resized to at most this many pixels")
    max_new_tokens: int = Field(4096, ge=1, description="token budget of the first attempt")
    extra_max_new_tokens: int = Field(
        4096, ge=0, description="added to the budget when an output was cut off; only those pages are retried (0: no retry)"
    )
    vllm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM back-end: share of GPU memory it may take")

    @model_validator(mode="after")
    def _pixels(self) -> "GenerativeEngineOptions":
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}")
        return self
