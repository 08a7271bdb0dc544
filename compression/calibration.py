"""Activation-aware low rank: make the SVD truncation care about the inputs the layer really sees.

Plain SVD keeps the directions of largest weight energy, but the output error is
``(W - W_r) x``: input channels that carry large activations matter more. Two known fixes,
both expressed as an input transform ``T`` (factor ``W T``, then fold ``T^-1`` into the
``down`` factor, see ``compression.lowrank.factorize``):

* ``asvd`` (ASVD, Yuan et al. 2023): ``T = diag(mean|x|)^alpha`` — cheap, per channel;
* ``whiten`` (SVD-LLM, Wang et al. 2024): ``T = L`` with ``L Lᵀ = XᵀX`` (Cholesky) — the
  truncation then minimises the output error on the calibration inputs exactly.

Statistics come from forward hooks over a few calibration batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

import torch
from torch import nn

Method = Literal["asvd", "whiten"]


@dataclass
class InputStatistics:
    abs_sum: torch.Tensor  # per input channel, sum of |x|
    gram: torch.Tensor | None  # XᵀX (float64 on CPU), for whitening
    count: int = 0


@dataclass
class Calibration:
    method: Method
    statistics: dict[str, InputStatistics] = field(default_factory=dict)
    alpha: float = 0.5  # ASVD's exponent
    damping: float = 1e-2  # whitening: added to the diagonal, relative to its mean

    def input_transform(self, name: str) -> torch.Tensor | None:
        """``T`` for layer ``name`` (in x in, float32), or None when the layer saw no calibration input."""
        stats = self.statistics.get(name)
        if stats is None or stats.count == 0:
            return None
        if self.method == "asvd":
            scale = (stats.abs_sum / stats.count).clamp_min(1e-6) ** self.alpha
            return torch.diag(scale.float())
        if stats.gram is None:
            raise ValueError(f"layer {name}: whitening needs XᵀX, collected with method='whiten'")
        gram = stats.gram / stats.count
        eye = torch.eye(gram.shape[0], dtype=gram.dtype)
        damp = self.damping * gram.diagonal().mean().clamp_min(1e-12)
        for attempt in range(6):
            factor, info = torch.linalg.cholesky_ex(gram + damp * (10**attempt) * eye)
            if int(info) == 0:
                return factor.float()
        raise ValueError(f"layer {name}: XᵀX is not positive definite even with damping")


def collect_input_statistics(
    model: nn.Module, batches: Iterable[Mapping[str, Any]], layer_names: Iterable[str], method: Method = "whiten"
) -> dict[str, InputStatistics]:
    """Run ``model(**batch)`` on each calibration batch and gather per-layer input statistics."""
    statistics: dict[str, InputStatistics] = {}
    hooks = []

    def make_hook(name: str):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1])
            stats = statistics.get(name)
            if stats is None:
                width = x.shape[-1]
                gram = torch.zeros(width, width, dtype=torch.float64) if method == "whiten" else None
                stats = statistics[name] = InputStatistics(torch.zeros(width, dtype=torch.float64), gram)
            stats.abs_sum += x.abs().sum(0).double().cpu()
            if stats.gram is not None:
                xd = x.double()
                stats.gram += (xd.T @ xd).cpu()
            stats.count += x.shape[0]

        return hook

    for name in layer_names:
        hooks.append(model.get_submodule(name).register_forward_pre_hook(make_hook(name)))
    try:
        with torch.no_grad():
            for batch in batches:
                model(**batch)
    finally:
        for handle in hooks:
            handle.remove()
    return statistics


def calibrate(
    model: nn.Module, batches: Iterable[Mapping[str, Any]], layer_names: Iterable[str], method: Method, alpha: float = 0.5
) -> Calibration:
    """Statistics for ``layer_names`` from ``batches``, ready to pass to ``compress(..., calibration=)``."""
    names = list(layer_names)
    return Calibration(method=method, statistics=collect_input_statistics(model, batches, names, method), alpha=alpha)
