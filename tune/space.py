"""The sweep's points and their Ray Tune form: grid or Optuna multi-objective, plus ASHA.

A point is one configuration (ratio, parts, pooling, resolution, distillation steps),
normalised so that configurations that build the same model are the same point: with
ratio 1 nothing is compressed or distilled, so ``parts`` and ``distill_steps`` are moot.
The point's ``key`` names its result and its cached models on disk; equal keys never
compute twice.

Ray Tune objects are imported inside the functions that build them, so the points can be
used (and tested) without Ray.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

from compression.settings import PoolingConfig
from tune.settings import TuneSettings

#: Objectives: accuracy up, FLOPs per page down (OptunaSearch's ``metric``/``mode``).
METRICS = ["accuracy", "flops_per_page"]
MODES = ["max", "min"]

@dataclass(frozen=True)
class TrialPoint:
    ratio: float
    parts: str  # language | vision | both; "none" when uncompressed
    pooling: str  # PoolingConfig label: none, avg:2, norm_drop:0.5
    max_pixels: int | None  # None: the model's own budget
    distill_steps: int

    @classmethod
    def make(cls, ratio: float, parts: str, pooling: Any, max_pixels: int | None, distill_steps: int) -> TrialPoint:
        """The normalised point (validates the pooling value)."""
        ratio = float(ratio)
        label = PoolingConfig.model_validate(pooling).label
        if ratio <= 1.0:
            return cls(1.0, "none", label, None if max_pixels is None else int(max_pixels), 0)
        return cls(ratio, str(parts), label, None if max_pixels is None else int(max_pixels), int(distill_steps))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialPoint:
        """From a Tune trial config: ``{"point": {...}}`` (grid) or the flat axes (Optuna)."""
        values = config.get("point", config)
        return cls.make(values["ratio"], values["parts"], values["pooling"], values.get("max_pixels"), values.get("distill_steps", 0))

    @property
    def is_baseline(self) -> bool:
        return self == BASELINE

    @property
    def pooling_options(self) -> PoolingConfig:
        return PoolingConfig.model_validate(self.pooling)

    @property
    def preset(self) -> str | None:
        """The towers ``compression.lowrank`` compresses (``vlm.families`` vocabulary); None when uncompressed."""
        return None if self.parts == "none" else self.parts

    @property
    def model_key(self) -> str:
        """The compressed model this point evaluates: one per (ratio, parts), shared by pooling and resolution."""
        return "original" if self.ratio == 1.0 else f"r{self.ratio:g}-{self.parts}"

    @property
    def distill_key(self) -> str:
        return f"{self.model_key}-d{self.distill_steps}"

    @property
    def key(self) -> str:
        pixels = "native" if self.max_pixels is None else str(self.max_pixels)
        pooling = self.pooling.replace(":", "")
        return f"{self.model_key}-{pooling}-px{pixels}-d{self.distill_steps}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


BASELINE = TrialPoint(1.0, "none", "none", None, 0)


def grid_points(settings: TuneSettings) -> list[TrialPoint]:
    """Baseline first, then every combination of the axes, each distinct point once."""
    space = settings.space
    combos = itertools.product(space.ratios(), space.parts, space.pooling, space.max_pixels, space.distill_steps)
    points = [BASELINE] + [TrialPoint.make(r, parts, pool, pixels, steps) for r, parts, pool, pixels, steps in combos]
    return list(dict.fromkeys(points))


def optuna_axes(settings: TuneSettings) -> dict[str, list[Any]]:
    """Categorical axes for Optuna, each holding the baseline's value (so the baseline can be enqueued)."""
    space = settings.space

    def with_value(values: list[Any], value: Any) -> list[Any]:
        return values if value in values else [value, *values]

    return {
        "ratio": with_value(space.ratios(), 1.0),
        "parts": list(dict.fromkeys(space.parts)),
        "pooling": with_value(list(dict.fromkeys(p.label for p in space.pooling)), "none"),
        "max_pixels": with_value(list(dict.fromkeys(space.max_pixels)), None),
        "distill_steps": with_value(sorted(set(space.distill_steps)), 0),
    }


def param_space(settings: TuneSettings) -> dict[str, Any]:
    """Tune's ``param_space``: one grid axis over whole points, or Optuna's categorical axes."""
    from ray import tune

    if settings.search.algorithm == "grid":
        return {"point": tune.grid_search([point.as_dict() for point in grid_points(settings)])}
    return {name: tune.choice(values) for name, values in optuna_axes(settings).items()}


def baseline_for_optuna(settings: TuneSettings) -> dict[str, Any]:
    """The baseline in Optuna's axes (``parts`` is moot at ratio 1: the first listed value)."""
    return {**BASELINE.as_dict(), "parts": settings.space.parts[0]}


def search_algorithm(settings: TuneSettings) -> Any:
    """None (Tune's grid generator) or ``OptunaSearch`` over both objectives, starting with the baseline."""
    if settings.search.algorithm == "grid":
        return None
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=list(METRICS), mode=list(MODES), points_to_evaluate=[baseline_for_optuna(settings)], seed=settings.search.seed)


def num_samples(settings: TuneSettings) -> int:
    return 1 if settings.search.algorithm == "grid" else settings.search.num_samples


def reports_per_trial(settings: TuneSettings, every_steps: int) -> int:
    """Most reports one trial makes: one per distillation checkpoint, plus the final one."""
    longest = max(settings.space.distill_steps)
    return (math.ceil(longest / max(1, min(every_steps, longest))) if longest else 0) + 1


def scheduler(settings: TuneSettings, every_steps: int) -> Any:
    """ASHA on ``accuracy`` (intermediate distillation reports included), or None (FIFO)."""
    chosen = settings.scheduler
    if chosen.type == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_t = max(reports_per_trial(settings, every_steps), chosen.grace_period + 1)
    return ASHAScheduler(
        metric="accuracy", mode="max", time_attr="training_iteration", max_t=max_t,
        grace_period=chosen.grace_period, reduction_factor=chosen.reduction_factor,
    )
