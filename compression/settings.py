"""Compression settings that config files hold; torch-free so loading a config stays light."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DistillationWeights(BaseModel):
    """Loss weights and knobs; defaults from PELA's code where it has one."""

    model_config = ConfigDict(extra="forbid")

    hidden_mse: float = Field(1.0, ge=0, description="per-block hidden-state MSE (PELA DeiT: kd_alpha=1)")
    logit_kl: float = Field(1.0, ge=0, description="KL(teacher||student) on the logits")
    weight_perturbation: float = Field(1.0, ge=0, description="PELA's weight-perturbation regulariser (PELA ALBEF: weight 1)")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the logit KL (DeiT distillation tau: 1)")
    epsilon: float = Field(1e-3, ge=0, description="tolerance of the weight-perturbation regulariser (PELA inf_norm_eps: 1e-3)")


class LowRankSettings(BaseModel):
    """How PELA factors a model: shared by ``jobs.compress``, the distillation job and the sweep."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ratio: float = Field(2.0, gt=1, description="PELA compression ratio (3 keeps about a third of the targeted weights)")
    target_modules: str | list[str] = Field(
        "both", description="towers to compress (language | vision | both, per vlm.families) or module-name patterns"
    )
    exclude_modules: list[str] | None = Field(None, description="extra patterns to leave dense (heads, norms, embeddings always are)")
    min_rank: int = Field(1, ge=1, description="smallest rank a compressed layer gets")
    max_rank: int | None = Field(None, ge=1, description="largest rank a compressed layer gets (null: no cap)")
    calibration: Literal["none", "asvd", "whiten"] = Field("none", description="activation-aware SVD from a few training batches")
    calibration_batches: int = Field(4, ge=1, description="training batches used for calibration")

    @model_validator(mode="after")
    def _rank_limits(self) -> LowRankSettings:
        if self.max_rank is not None and self.max_rank < self.min_rank:
            raise ValueError(f"max_rank {self.max_rank} is below min_rank {self.min_rank}")
        return self

    def exclude(self) -> tuple[str, ...]:
        """PELA's default excludes (heads, embeddings, norms...) and the extra patterns."""
        from compression.lowrank import DEFAULT_EXCLUDE

        return tuple(DEFAULT_EXCLUDE) + tuple(self.exclude_modules or ())

    def compress_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``compression.lowrank.compress`` (all but the model and the calibration)."""
        return dict(
            ratio=self.ratio,
            target_modules=self.target_modules,
            exclude_modules=self.exclude(),
            min_rank=self.min_rank,
            max_rank=self.max_rank,
        )


PoolingMethod = Literal["none", "avg", "max", "norm_drop"]


class PoolingConfig(BaseModel):
    """Image-token pooling after the vision tower: the one model the engines' ``pooling`` option, the sweep's
    pooling axis, ``jobs.flops`` and the model code (``compression.pooling``) share.

    Written as a mapping (``{method: avg, factor: 2}``) or as its label: ``none``,
    ``avg:2``, ``max:2``, ``norm_drop:0.5``. A mapping with a ``factor`` and no ``method``
    means ``avg``; one with a ``keep_ratio`` and no ``method`` means ``norm_drop``.
    ``factor=1`` (avg/max) and ``keep_ratio=1`` are the identity, like ``none``.
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
        if isinstance(value, dict):
            if "method" not in value and value.get("factor", 1) != 1:
                return {**value, "method": "avg"}
            if "method" not in value and value.get("keep_ratio", 1.0) != 1.0:
                return {**value, "method": "norm_drop"}
            return value
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
    def _consistent(self) -> PoolingConfig:
        if self.method == "norm_drop" and self.factor != 1:
            raise ValueError(f"norm_drop selects tokens by keep_ratio; factor must stay 1, got {self.factor}")
        if self.method == "none" and self.factor != 1:
            raise ValueError(f"pooling factor applies to avg and max only, got factor {self.factor} with method none")
        if self.method != "norm_drop" and self.keep_ratio != 1.0:
            raise ValueError(f"keep_ratio only applies to method norm_drop, got {self.keep_ratio} with method {self.method}")
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

    def pooled_grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Merged-token grid (t, h_m, w_m) after avg/max pooling: ceil on each spatial side."""
        k = self.factor
        return t, -(-h // k), -(-w // k)

    def pooled_count(self, t: int, h: int, w: int) -> int:
        """How many tokens the LM sees for an image whose merged grid is (t, h_m, w_m)."""
        if self.is_identity:
            return t * h * w
        if self.method == "norm_drop":
            n = t * h * w
            return max(1, min(n, math.ceil(self.keep_ratio * n - 1e-9)))
        tp, hp, wp = self.pooled_grid(t, h, w)
        return tp * hp * wp
