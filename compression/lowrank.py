"""PELA low-rank compression: each targeted ``nn.Linear`` becomes two thin factors from a truncated SVD.

``W (out x in) ~= up (out x r) @ down (r x in)``, with the square root of the singular
values on each side (both factors then have similar scales, which keeps the later
distillation well conditioned, as in the PELA paper). The rank for a compression ratio
``ratio`` is ``r = in*out // (ratio*(in+out))``: the factors hold ``r*(in+out)``
parameters, ``1/ratio`` of the original. Layers where that saves nothing are left
alone.

The factors are two plain ``nn.Linear`` modules, so ``save_pretrained``, peft,
DeepSpeed and the FLOP counter see ordinary layers.

Which layers: ``target_modules`` (fnmatch patterns on module names) or a preset
(``vision``, ``language``, ``all`` for Qwen2.5-VL-architecture models), minus
``exclude_modules``. The defaults exclude what PELA's code keeps dense: the output head,
embeddings, norms, and the patch embedding, whose errors propagate to every token.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import nn

#: Name patterns never compressed by default (heads, embeddings, norms, patch embedding).
DEFAULT_EXCLUDE: tuple[str, ...] = ("*lm_head*", "*embed*", "*norm*", "*patch_embed*", "*classifier*")

#: Module-name presets for Qwen2.5-VL-architecture models (transformers 5 names).
PRESETS: dict[str, tuple[str, ...]] = {
    "vision": ("*visual.blocks.*", "*visual.merger.*"),
    "language": ("*language_model.*",),
    "all": ("*",),
}


class LowRankLinear(nn.Module):
    """``up(down(x))``: a rank-``r`` stand-in for an ``nn.Linear`` (bias kept on ``up``)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool, device: Any = None, dtype: Any = None):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def reconstructed_weight(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


@dataclass
class LayerStats:
    name: str
    in_features: int
    out_features: int
    rank: int
    params_before: int
    params_after: int
    relative_error: float  # ||W - up@down||_F / ||W||_F


@dataclass
class CompressionStats:
    ratio: float | None
    method: str
    layers: list[LayerStats] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # targeted, but low rank would not save parameters
    model_params_before: int = 0
    model_params_after: int = 0

    @property
    def targeted_params_before(self) -> int:
        return sum(layer.params_before for layer in self.layers)

    @property
    def targeted_params_after(self) -> int:
        return sum(layer.params_after for layer in self.layers)

    @property
    def ranks(self) -> dict[str, int]:
        return {layer.name: layer.rank for layer in self.layers}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            targeted_params_before=self.targeted_params_before,
            targeted_params_after=self.targeted_params_after,
            mean_relative_error=(sum(l.relative_error for l in self.layers) / len(self.layers)) if self.layers else 0.0,
        )
        return data


def rank_for_ratio(in_features: int, out_features: int, ratio: float | None, min_rank: int = 1, max_rank: int | None = None) -> int:
    """PELA's rank: ``in*out // (ratio*(in+out))``, clamped; ``ratio=None`` means full rank."""
    full = min(in_features, out_features)
    rank = full if ratio is None else int(in_features * out_features // (ratio * (in_features + out_features)))
    rank = max(rank, min_rank)
    if max_rank is not None:
        rank = min(rank, max_rank)
    return max(1, min(rank, full))


def select_linear_layers(
    model: nn.Module, target_modules: str | Sequence[str] | None = None, exclude_modules: Iterable[str] = DEFAULT_EXCLUDE
) -> list[str]:
    """Names of the ``nn.Linear`` modules matched by the targets (patterns or a preset) and not excluded."""
    if target_modules is None:
        patterns: Sequence[str] = PRESETS["all"]
    elif isinstance(target_modules, str):
        patterns = PRESETS.get(target_modules, (target_modules,))
    else:
        patterns = target_modules
    excluded = tuple(exclude_modules)
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in patterns) and not any(fnmatch.fnmatchcase(name, p) for p in excluded):
            names.append(name)
    if not names:
        raise ValueError(f"no nn.Linear layer matches target_modules={target_modules!r} outside exclude_modules={list(excluded)}")
    return names


def factorize(weight: torch.Tensor, rank: int, input_transform: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD in float32 on the weight's device: returns (up, down) with ``up @ down ~= weight``.

    ``input_transform`` (``T``, in x in, invertible) makes the truncation optimal for
    ``W @ x`` on the calibration inputs instead of for ``W`` itself: factor ``W T`` and
    fold ``T^-1`` into ``down`` (ASVD scaling and SVD-LLM whitening are both this).
    """
    matrix = weight.detach().float()
    if input_transform is not None:
        matrix = matrix @ input_transform
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    up = u[:, :rank] * root
    down = root[:, None] * vh[:rank]
    if input_transform is not None:
        down = torch.linalg.solve(input_transform.T, down.T).T  # down @ T^-1
    return up, down


def compress(
    model: nn.Module,
    ratio: float | None,
    target_modules: str | Sequence[str] | None = None,
    exclude_modules: Iterable[str] = DEFAULT_EXCLUDE,
    min_rank: int = 1,
    max_rank: int | None = None,
    calibration: Any | None = None,
    keep_original: bool = False,
) -> CompressionStats:
    """Replace targeted ``nn.Linear`` layers in place by ``LowRankLinear``; ``ratio=None`` keeps full rank.

    ``calibration``: a ``compression.calibration.Calibration`` (ASVD scaling or SVD-LLM
    whitening from activation statistics). ``keep_original=True`` stores each original
    weight as a non-persistent buffer ``original_weight`` for the weight-perturbation
    regulariser (it is not saved with the model).
    """
    params_before = sum(p.numel() for p in model.parameters())
    stats = CompressionStats(ratio=ratio, method=getattr(calibration, "method", "svd"))
    for name in select_linear_layers(model, target_modules, exclude_modules):
        layer: nn.Linear = model.get_submodule(name)
        rank = rank_for_ratio(layer.in_features, layer.out_features, ratio, min_rank, max_rank)
        if ratio is not None and rank * (layer.in_features + layer.out_features) >= layer.in_features * layer.out_features:
            stats.skipped.append(name)
            continue
        transform = calibration.input_transform(name) if calibration is not None else None
        up, down = factorize(layer.weight, rank, None if transform is None else transform.to(layer.weight.device))
        replacement = LowRankLinear(
            layer.in_features, layer.out_features, rank, layer.bias is not None, device=layer.weight.device, dtype=layer.weight.dtype
        )
        with torch.no_grad():
            replacement.up.weight.copy_(up.to(layer.weight.dtype))
            replacement.down.weight.copy_(down.to(layer.weight.dtype))
            if layer.bias is not None:
                replacement.up.bias.copy_(layer.bias)
            reconstruction = replacement.reconstructed_weight().float()
            original = layer.weight.detach().float()
            error = float((original - reconstruction).norm() / original.norm().clamp_min(1e-12))
        replacement.requires_grad_(layer.weight.requires_grad)
        if keep_original:
            replacement.register_buffer("original_weight", layer.weight.detach().clone(), persistent=False)
        _set_submodule(model, name, replacement)
        params_old = layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
        params_new = sum(p.numel() for p in replacement.parameters())
        stats.layers.append(LayerStats(name, layer.in_features, layer.out_features, rank, params_old, params_new, error))
    stats.model_params_before = params_before
    stats.model_params_after = sum(p.numel() for p in model.parameters())
    return stats


def low_rank_layers(model: nn.Module) -> dict[str, LowRankLinear]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LowRankLinear)}


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
