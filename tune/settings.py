"""The ``tune`` section of ``ray_config.yaml``: what ``python -m jobs.sweep`` searches and how.

Torch-free, like the other sections, so loading a config stays light. Every axis value
is checked here, before any trial starts: a typo in the space should cost nothing, not
a failed trial an hour into a GPU sweep.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from compression.settings import PoolingConfig

Parts = Literal["language", "vision", "both"]  # vlm.families.TOWERS

#: The smallest pixel budget that still holds one merged 28x28 visual token.
MIN_PIXELS = 28 * 28


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class RatioRange(_Strict):
    """``{low: 1, high: 4, step: 0.5}``: every ratio from low to high in steps (grid), or quantised uniform (Optuna)."""

    low: float = Field(ge=1, description="smallest PELA ratio (1 = uncompressed)")
    high: float = Field(ge=1, description="largest PELA ratio")
    step: float = Field(0.5, gt=0, description="spacing of the ratios tried")

    @model_validator(mode="after")
    def _ordered(self) -> RatioRange:
        if self.high < self.low:
            raise ValueError(f"ratio range high {self.high} is below low {self.low}")
        if len(self.values()) > 200:
            raise ValueError(f"ratio range {self.low}..{self.high} step {self.step} has more than 200 values")
        return self

    def values(self) -> list[float]:
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 6) for i in range(count)]


class SpaceSettings(_Strict):
    """The axes. The uncompressed, unpooled, full-resolution, undistilled point is always run as well."""

    ratio: list[float] | RatioRange = Field(
        default_factory=lambda: [1.0, 2.0, 3.0], description="PELA compression ratios: a list or {low, high, step}; 1 = uncompressed"
    )
    parts: list[Parts] = Field(default_factory=lambda: ["both"], description="what is compressed: language | vision | both")
    pooling: list[PoolingConfig] = Field(
        default_factory=lambda: [PoolingConfig(), PoolingConfig(method="avg", factor=2)],
        description="image-token pooling: none | avg:K | max:K | norm_drop:R (or {method, factor, keep_ratio})",
    )
    max_pixels: list[int | None] = Field(
        default_factory=lambda: [None], description="processor pixel budgets (resolution); null = the model's own"
    )
    distill_steps: list[int] = Field(default_factory=lambda: [0], description="PELA distillation steps per trial (0 = compress and evaluate only)")

    @field_validator("ratio", "parts", "pooling", "max_pixels", "distill_steps", mode="before")
    @classmethod
    def _listify(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "ratio" and isinstance(value, dict):
            return value  # a range
        return _as_list(value)

    @field_validator("ratio")
    @classmethod
    def _ratios(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("needs at least one ratio")
            bad = [r for r in value if not r >= 1]
            if bad:
                raise ValueError(f"PELA ratios must be >= 1 (1 = uncompressed), got {bad}")
        return value

    @field_validator("max_pixels")
    @classmethod
    def _pixels(cls, value: list[int | None]) -> list[int | None]:
        bad = [p for p in value if p is not None and p < MIN_PIXELS]
        if bad:
            raise ValueError(f"max_pixels below one merged visual token ({MIN_PIXELS} pixels): {bad}")
        return value

    @field_validator("distill_steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        bad = [s for s in value if s < 0]
        if bad:
            raise ValueError(f"distillation steps must be >= 0, got {bad}")
        return value

    @field_validator("parts", "pooling", "max_pixels", "distill_steps")
    @classmethod
    def _not_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("needs at least one value")
        return value

    def ratios(self) -> list[float]:
        values = self.ratio.values() if isinstance(self.ratio, RatioRange) else self.ratio
        return sorted({float(r) for r in values})


class SearchSettings(_Strict):
    algorithm: Literal["grid", "optuna"] = Field(
        "grid", description="grid: every combination once; optuna: multi-objective search (accuracy up, FLOPs down)"
    )
    num_samples: int = Field(16, ge=1, description="optuna: trials to run, the baseline included (grid runs each point once)")
    seed: int = Field(0, description="seed of the Optuna sampler")


class SchedulerSettings(_Strict):
    type: Literal["none", "asha"] = Field("none", description="asha: stop weak distilling trials early on their intermediate accuracy")
    grace_period: int = Field(1, ge=1, description="asha: reports before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="asha: 1/reduction_factor of the trials go on at each rung")


class ResourceSettings(_Strict):
    cpu: float = Field(1.0, gt=0, description="CPUs per trial (also its torch threads)")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial; fractions (0.5) share one GPU between trials")


class EvalSettings(_Strict):
    split: str = Field("test", description="held-out split each trial is scored on")
    limit: int | None = Field(200, ge=1, description="rows of the split scored per trial (null: all)")
    batch_size: int = Field(32, ge=1, description="records per generate call")
    flops_pages: int = Field(4, ge=1, description="pages the FLOP counter runs on (one at a time, averaged)")
    metric: Literal["auto", "char_accuracy", "mc_accuracy"] = Field(
        "auto", description="accuracy: 1 - CER (char_accuracy) or multiple-choice accuracy; auto picks what the data has"
    )


_TARGET = re.compile(r"^\s*baseline\s*(?:([+-])\s*([0-9.eE+-]+))?\s*$")


class Target(_Strict):
    """A threshold: absolute, a share of the baseline's value, or the baseline's value plus a delta.

    Written as a number (``0.95``, ``2.0e9``: absolute), ``"99%"`` (relative) or
    ``"baseline-0.01"`` (one accuracy point below the baseline).
    """

    kind: Literal["absolute", "relative", "delta"]
    value: float

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("a target is a number, 'N%' or 'baseline-X'")
        if isinstance(data, (int, float)):
            return {"kind": "absolute", "value": float(data)}
        if isinstance(data, str):
            text = data.strip()
            if text.endswith("%"):
                try:
                    return {"kind": "relative", "value": float(text[:-1]) / 100}
                except ValueError:
                    pass
            match = _TARGET.match(text)
            if match:
                sign, amount = match.groups()
                try:
                    delta = 0.0 if amount is None else float(amount) * (-1 if sign == "-" else 1)
                except ValueError:
                    delta = None
                if delta is not None:
                    return {"kind": "delta", "value": delta}
            try:
                return {"kind": "absolute", "value": float(text)}
            except ValueError:
                raise ValueError(f"target {data!r}: expected a number, 'N%' (of the baseline) or 'baseline-X'") from None
        return data

    def resolve(self, baseline: float | None) -> float | None:
        """The threshold in the metric's units; None when it is relative and there is no baseline."""
        if self.kind == "absolute":
            return self.value
        if baseline is None:
            return None
        return baseline * self.value if self.kind == "relative" else baseline + self.value

    def describe(self) -> str:
        if self.kind == "absolute":
            return f"{self.value:g}"
        if self.kind == "relative":
            return f"{self.value * 100:g}% of baseline"
        return "baseline" if self.value == 0 else f"baseline {self.value:+g}"


class TargetSettings(_Strict):
    accuracy_min: Target | None = Field(
        default_factory=lambda: Target.model_validate("baseline-0.01"),
        description="accuracy a configuration must reach: a number, 'N%' of baseline or 'baseline-X'; null: none",
    )
    flops_max: Target | None = Field(None, description="FLOPs per page a configuration may cost: a number or 'N%' of baseline; null: none")


class TuneSettings(_Strict):
    """``python -m jobs.sweep``: a Ray Tune study over how hard to compress an OCR model (docs/sweep.md)."""

    name: str = Field("compression-sweep", description="sweep name; rerunning with the same name and storage_path resumes it")
    storage_path: str = Field("./ray_results", description="where Ray Tune keeps the sweep; shared storage on a multi-node cluster")
    model: str = Field(
        "runs/reference/model", description="the OCR model compressed: checkpoint folder or hub id (a layout family of vlm.families)"
    )
    data: str = Field("runs/reference/data", description="dataset folder the trials are scored on (see training.data.sources)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto: bfloat16 on GPUs that have it, else float32")
    trust_remote_code: bool = Field(
        False, description="run the checkpoint's own modelling code (the published dots.ocr ships some); --trust-remote-code"
    )
    space: SpaceSettings = Field(default_factory=SpaceSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    max_concurrent_trials: int = Field(2, ge=1, description="trials running at once")
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    targets: TargetSettings = Field(default_factory=TargetSettings)
    serve_prompt_mode: Literal["ocr", "layout_all", "layout_only"] = Field(
        "ocr", description="DOTS prompt mode written into best.yaml (ocr: plain text, as the sweep scores; layout_all for dots.ocr)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(f"sweep name {value!r}: letters, digits, '.', '_' and '-' only")
        return value

    def fingerprint_payload(self) -> dict[str, Any]:
        """What changes the trials' results; a resumed sweep must match it (resources and targets may change)."""
        return self.model_dump(mode="json", include={"model", "data", "dtype", "space", "search", "scheduler", "eval"})
