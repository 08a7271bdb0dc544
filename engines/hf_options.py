"""Options shared by the engines that run a vision-language model (DOTS, Gemma)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlm.loading import ModelSource

PoolingMethod = Literal["none", "avg", "max", "norm_drop"]
DecodeMode = Literal["auto", "dynamic", "static"]
CompileMode = Literal["auto", "on", "off"]


class PoolingOptions(BaseModel):
    """Image-token pooling after the vision tower (``compression.pooling``), as a config value.

    Torch-free so that validating a config stays light; ``to_config`` gives the
    ``PoolingConfig`` the model code uses. Written as a mapping
    (``{method: avg, factor: 2}``) or as its label: ``none``, ``avg:2``, ``max:2``,
    ``norm_drop:0.5``. The sweep's pooling axis uses the same model, so what a sweep
    measured is exactly what the engine serves.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: PoolingMethod = Field("none", description="none | avg | max (k x k visual tokens become one) | norm_drop (keep the largest-norm tokens)")
    factor: int = Field(1, ge=1, description="avg/max: pooling window side k")
    keep_ratio: float = Field(1.0, gt=0, le=1, description="norm_drop: share of each image's visual tokens kept")

    @model_validator(mode="before")
    @classmethod
    def _from_label(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, str):
            return value
        method, _, amount = value.strip().partition(":")
        if method == "none" and not amount:
            return {"method": "none"}
        if method in ("avg", "max") and amount:
            try:
                return {"method": method, "factor": int(amount)}
            except ValueError:
                pass
        if method == "norm_drop" and amount:
            try:
                return {"method": method, "keep_ratio": float(amount)}
            except ValueError:
                pass
        raise ValueError(f"pooling {value!r}: expected none, avg:K, max:K (K a whole number) or norm_drop:R (0 < R <= 1)")

    @model_validator(mode="after")
    def _consistent(self) -> "PoolingOptions":
        if self.method in ("none", "norm_drop") and self.factor != 1:
            raise ValueError(f"pooling factor applies to avg and max only, got factor {self.factor} with method {self.method}")
        if self.method != "norm_drop" and self.keep_ratio != 1.0:
            raise ValueError(f"pooling keep_ratio applies to norm_drop only, got {self.keep_ratio} with method {self.method}")
        return self

    @property
    def is_identity(self) -> bool:
        return self.method == "none" or (self.factor == 1 and self.keep_ratio == 1.0)

    @property
    def label(self) -> str:
        """``none``, ``avg:2``, ``norm_drop:0.5``: the short form, also accepted as input."""
        if self.is_identity:
            return "none"
        if self.method == "norm_drop":
            return f"norm_drop:{self.keep_ratio:g}"
        return f"{self.method}:{self.factor}"

    def to_config(self) -> Any:
        """The ``compression.pooling.PoolingConfig``, or None for no pooling (imports torch)."""
        if self.is_identity:
            return None
        from compression.pooling import PoolingConfig

        return PoolingConfig(factor=self.factor, method=self.method, keep_ratio=self.keep_ratio)  # type: ignore[arg-type]


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
        2_000_000, ge=0, description="static decoding on CUDA: compile the decode shapes at actor start for a page of this many pixels (0: on first use)"
    )
    min_pixels: int = Field(3136, ge=784, description="images are resized to at least this many pixels")
    max_pixels: int = Field(11_289_600, ge=784, description="images are resized to at most this many pixels")
    max_new_tokens: int = Field(4096, ge=1, description="token budget of the first attempt")
    extra_max_new_tokens: int = Field(
        4096, ge=0, description="added to the budget when an output was cut off; only those pages are retried (0: no retry)"
    )
    vllm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM back-end: share of GPU memory it may take")
    pooling: PoolingOptions = Field(
        default_factory=PoolingOptions,
        description="image-token pooling after the vision tower (Qwen2.5-VL-architecture models, transformers back-end), "
        "e.g. avg:2 or {method: norm_drop, keep_ratio: 0.5}; see docs/compression.md",
    )

    @model_validator(mode="after")
    def _pixels(self) -> "GenerativeEngineOptions":
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}")
        if self.backend == "vllm" and not self.pooling.is_identity:
            raise ValueError(f"pooling {self.pooling.label} needs backend: transformers (vLLM runs its own model code)")
        if self.backend == "vllm" and self.decode == "static":
            raise ValueError("decode: static needs backend: transformers (vLLM schedules its own decoding)")
        return self
